// When a server that died is started again: at most `max` times within `windowMs`.

export interface RestartDecision {
  restart: boolean;
  /** For the notification: what happened and what happens next. */
  message: string;
}

export class RestartPolicy {
  private deaths: number[] = [];

  constructor(
    readonly max = 5,
    readonly windowMs = 3 * 60 * 1000,
    private readonly now: () => number = Date.now,
  ) {}

  /** The connection to the server closed without the extension asking for it. */
  closed(): RestartDecision {
    const t = this.now();
    this.deaths = this.deaths.filter((d) => t - d < this.windowMs);
    this.deaths.push(t);
    const n = this.deaths.length;
    const minutes = Math.round(this.windowMs / 60000);
    if (n > this.max) {
      return {
        restart: false,
        message: `compilot: the server stopped ${n} times in ${minutes} minutes; it is not restarted again. `
          + "See the compilot output channel, fix the cause, then run \"compilot: Restart the Server\".",
      };
    }
    return { restart: true, message: `compilot: the server stopped; restarting it (${n} of ${this.max}).` };
  }

  /** A restart the user asked for starts the count afresh. */
  reset(): void {
    this.deaths = [];
  }
}
