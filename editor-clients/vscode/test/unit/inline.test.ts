import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type * as vscode from "vscode";
import { debounce, executeCommand, InlineGate, provideInlineCompletionItems } from "../../src/inline";
import { Reporter } from "../../src/reporter";
import { FakeToken, RecordingSink } from "../fakes";

// vscode.InlineCompletionTriggerKind: Invoke = 0, Automatic = 1 (vscode.d.ts).
const INVOKE = 0;
const AUTOMATIC = 1;

function gate(over: Partial<InlineGate> = {}): InlineGate & { busyLog: number[] } {
  const busyLog: number[] = [];
  return {
    languages: () => ({ "*": true, plaintext: false }),
    debounceMs: () => 0,
    paused: () => false,
    automatic: AUTOMATIC,
    busy: (d) => busyLog.push(d),
    busyLog,
    ...over,
  };
}

const doc = (languageId = "python") =>
  ({ languageId, uri: { toString: () => "file:///w/a.py" } }) as unknown as vscode.TextDocument;
const pos = { line: 1, character: 4 } as vscode.Position;
const ctx = (triggerKind: number, selected = false) =>
  ({ triggerKind, selectedCompletionInfo: selected ? { text: "x" } : undefined }) as unknown as vscode.InlineCompletionContext;
const item = (id: string, text: string) => ({
  insertText: text,
  range: { start: pos, end: pos },
  command: { title: "compilot: accepted", command: "compilot.accepted", arguments: [id, { parsed: true }] },
});

function harness(g: InlineGate, result: unknown = { items: [item("a1", "return 1"), item("a2", "pass")] }) {
  const sink = new RecordingSink();
  const reporter = new Reporter(sink);
  const calls: unknown[] = [];
  const next = (async (...args: unknown[]) => {
    calls.push(args);
    return result;
  }) as never;
  const provide = provideInlineCompletionItems(g, reporter);
  return { sink, reporter, calls, provide, next };
}

describe("inline completion middleware", () => {
  test("asks the server and follows the top item", async () => {
    const g = gate();
    const h = harness(g);
    const token = new FakeToken();
    const result = await h.provide(doc(), pos, ctx(AUTOMATIC), token as never, h.next);
    assert.equal(h.calls.length, 1);
    assert.deepEqual((result as { items: unknown[] }).items.length, 2);
    assert.equal(h.reporter.tracked?.candidate.id, "a1");
    assert.deepEqual(g.busyLog, [1, -1]);
  });

  test("an array result works too", async () => {
    const h = harness(gate(), [item("b1", "x")]);
    await h.provide(doc(), pos, ctx(INVOKE), new FakeToken() as never, h.next);
    assert.equal(h.reporter.tracked?.candidate.id, "b1");
  });

  const skipped: [string, Partial<InlineGate>, string, boolean][] = [
    ["paused", { paused: () => true }, "python", false],
    ["language-off", {}, "plaintext", false],
  ];
  for (const [id, over, lang, selected] of skipped) {
    test(`does not ask the server: ${id}`, async () => {
      const h = harness(gate(over));
      const result = await h.provide(doc(lang), pos, ctx(AUTOMATIC, selected), new FakeToken() as never, h.next);
      assert.equal(result, undefined);
      assert.equal(h.calls.length, 0);
      assert.equal(h.reporter.tracked, undefined);
    });
  }

  test("with the suggest widget open the server is asked, and the answer is not followed", async () => {
    const h = harness(gate({}));
    const result = await h.provide(doc(), pos, ctx(AUTOMATIC, true), new FakeToken() as never, h.next);
    assert.equal(h.calls.length, 1);
    assert.deepEqual((result as { items: unknown[] }).items.length, 2);
    assert.equal(h.reporter.tracked, undefined);
  });

  test("typing waits for the debounce; an explicit request does not", async () => {
    const h = harness(gate({ debounceMs: () => 120 }));
    let t = Date.now();
    await h.provide(doc(), pos, ctx(AUTOMATIC), new FakeToken() as never, h.next);
    assert.ok(Date.now() - t >= 110, `waited ${Date.now() - t} ms`);
    t = Date.now();
    await h.provide(doc(), pos, ctx(INVOKE), new FakeToken() as never, h.next);
    assert.ok(Date.now() - t < 100, `waited ${Date.now() - t} ms`);
    assert.equal(h.calls.length, 2);
  });

  test("a keystroke during the debounce cancels the request before the server sees it", async () => {
    const h = harness(gate({ debounceMs: () => 5_000 }));
    const token = new FakeToken();
    const pending = h.provide(doc(), pos, ctx(AUTOMATIC), token as never, h.next);
    setTimeout(() => token.cancel(), 20);
    const t = Date.now();
    assert.equal(await pending, undefined);
    assert.ok(Date.now() - t < 1_000);
    assert.equal(h.calls.length, 0);
  });

  test("an answer that arrives cancelled is not followed", async () => {
    const g = gate();
    const h = harness(g);
    const token = new FakeToken();
    const next = (async () => {
      token.cancel();
      return { items: [item("late", "x")] };
    }) as never;
    await h.provide(doc(), pos, ctx(INVOKE), token as never, next);
    assert.equal(h.reporter.tracked, undefined);
    assert.deepEqual(h.sink.calls, []);
  });

  test("the busy count is given back when the request fails", async () => {
    const g = gate();
    const h = harness(g);
    const next = (async () => {
      throw new Error("connection closed");
    }) as never;
    await assert.rejects(h.provide(doc(), pos, ctx(INVOKE), new FakeToken() as never, next));
    assert.deepEqual(g.busyLog, [1, -1]);
  });
});

describe("executeCommand middleware", () => {
  test("the item's compilot.accepted goes through the reporter", async () => {
    const sink = new RecordingSink();
    const reporter = new Reporter(sink);
    const forwarded: unknown[] = [];
    const run = executeCommand(reporter);
    await run("compilot.accepted", ["a1", { parsed: true }], (c, a) => forwarded.push([c, a]));
    assert.deepEqual(sink.outcomes, [["accepted", "a1"]]);
    assert.deepEqual(forwarded, []);
  });

  test("other commands go to the server unchanged", async () => {
    const reporter = new Reporter(new RecordingSink());
    const forwarded: unknown[] = [];
    await executeCommand(reporter)("compilot.train", [], (c, a) => forwarded.push([c, a]));
    assert.deepEqual(forwarded, [["compilot.train", []]]);
  });
});

describe("debounce", () => {
  test("zero does not wait", async () => assert.equal(await debounce(0, new FakeToken()), true));

  test("an already cancelled token", async () => {
    const token = new FakeToken();
    token.cancel();
    assert.equal(await debounce(1_000, token), false);
  });

  test("the cancellation listener is removed after the wait", async () => {
    const token = new FakeToken();
    assert.equal(await debounce(5, token), true);
    token.cancel(); // no listener left to resolve twice
  });
});
