// Waiting in the tests that run the real server: every wait has a bound (for hangs, not a
// performance claim) and names what it waited for.

/** Poll `probe` every `everyMs` until it gives a truthy value, which is returned; throws after
 * `ms`, naming `what`. */
export async function until<T>(what: string, probe: () => T | undefined | null | false | "" | Promise<T | undefined | null | false | "">,
  ms: number, everyMs = 50): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) {
      return value;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    }
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
