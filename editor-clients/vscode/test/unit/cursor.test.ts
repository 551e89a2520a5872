import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CursorNotifier, DID_FOCUS, DID_MOVE_CURSOR, Timers } from "../../src/cursor";

/** A clock the test advances by hand. */
class FakeTimers implements Timers {
  now = 0;
  private next = 1;
  private readonly due = new Map<number, { at: number; run: () => void }>();
  set(run: () => void, ms: number): unknown {
    const id = this.next++;
    this.due.set(id, { at: this.now + ms, run });
    return id;
  }
  clear(handle: unknown): void {
    this.due.delete(handle as number);
  }
  advance(ms: number): void {
    this.now += ms;
    for (const [id, t] of [...this.due].sort((a, b) => a[1].at - b[1].at)) {
      if (t.at <= this.now) {
        this.due.delete(id);
        t.run();
      }
    }
  }
}

const setup = () => {
  const sent: [string, unknown][] = [];
  const timers = new FakeTimers();
  const notifier = new CursorNotifier((m, p) => sent.push([m, p]), 300, timers);
  return { sent, timers, notifier };
};

describe("cursor notifications", () => {
  test("focus is told at once, with the cursor", () => {
    const { sent, notifier } = setup();
    notifier.focused("file:///a.py", { line: 3, character: 4 });
    assert.deepEqual(sent, [[DID_FOCUS, { textDocument: { uri: "file:///a.py" }, position: { line: 3, character: 4 } }]]);
  });

  test("a move is told once the cursor rests, only the last of a burst", () => {
    const { sent, timers, notifier } = setup();
    notifier.moved("file:///a.py", { line: 10, character: 0 });
    timers.advance(100);
    notifier.moved("file:///a.py", { line: 20, character: 2 });
    timers.advance(299);
    assert.deepEqual(sent, []);
    timers.advance(1);
    assert.deepEqual(sent, [[DID_MOVE_CURSOR, { textDocument: { uri: "file:///a.py" }, position: { line: 20, character: 2 } }]]);
  });

  test("typing along the line told last is not told again", () => {
    const { sent, timers, notifier } = setup();
    notifier.focused("file:///a.py", { line: 5, character: 0 });
    for (let c = 1; c < 6; c++) {
      notifier.moved("file:///a.py", { line: 5, character: c });
      timers.advance(400);
    }
    assert.equal(sent.length, 1);
    notifier.moved("file:///a.py", { line: 6, character: 0 });
    timers.advance(300);
    assert.equal(sent.length, 2);
    assert.equal(sent[1][0], DID_MOVE_CURSOR);
  });

  test("a focus change cancels a pending move", () => {
    const { sent, timers, notifier } = setup();
    notifier.moved("file:///a.py", { line: 1, character: 0 });
    notifier.focused("file:///b.py", { line: 0, character: 0 });
    timers.advance(1000);
    assert.deepEqual(sent.map(([m]) => m), [DID_FOCUS]);
  });

  test("no editor: nothing is told", () => {
    const { sent, notifier } = setup();
    notifier.focused(undefined, undefined);
    assert.deepEqual(sent, []);
  });
});
