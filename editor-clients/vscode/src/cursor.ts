// Where the cursor is, told to the server so that it can evaluate the window there before the
// first request (server/lsp.py: `textDocument/didFocus`, Copilot's notification, with the
// cursor's position; `compilot/didMoveCursor` once the cursor rests on another line). No
// `vscode` import: the extension feeds it editor events, the tests a fake clock.

export const DID_FOCUS = "textDocument/didFocus";
export const DID_MOVE_CURSOR = "compilot/didMoveCursor";
/** Milliseconds without a cursor move before the cursor counts as resting. */
export const REST_MS = 300;

export interface Position {
  line: number;
  character: number;
}

export interface Timers {
  set(run: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: Timers = {
  set: (run, ms) => setTimeout(run, ms),
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export class CursorNotifier {
  private pending: unknown = undefined;
  /** The place last told: a new notification only when the cursor rests somewhere else. */
  private told: { uri: string; line: number } | undefined;

  constructor(
    private readonly notify: (method: string, params: unknown) => void,
    private readonly restMs: number = REST_MS,
    private readonly timers: Timers = realTimers,
  ) {}

  /** Another document got the focus, its cursor at `pos`: told at once. */
  focused(uri: string | undefined, pos: Position | undefined): void {
    this.cancel();
    if (uri === undefined) {
      return;
    }
    this.told = pos ? { uri, line: pos.line } : undefined;
    this.notify(DID_FOCUS, { textDocument: { uri }, ...(pos ? { position: pos } : {}) });
  }

  /** The cursor moved: told once it has rested `restMs` on a line other than the last told
   * (typing along a line moves it too, and the completion request covers that). */
  moved(uri: string, pos: Position): void {
    this.cancel();
    this.pending = this.timers.set(() => {
      this.pending = undefined;
      if (this.told && this.told.uri === uri && this.told.line === pos.line) {
        return;
      }
      this.told = { uri, line: pos.line };
      this.notify(DID_MOVE_CURSOR, { textDocument: { uri }, position: pos });
    }, this.restMs);
  }

  cancel(): void {
    if (this.pending !== undefined) {
      this.timers.clear(this.pending);
      this.pending = undefined;
    }
  }
}
