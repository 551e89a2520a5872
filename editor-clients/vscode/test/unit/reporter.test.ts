import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  Candidate,
  Change,
  Pos,
  Reporter,
  advance,
  candidateOf,
  isPartialAccept,
  lspItem,
  partialKind,
} from "../../src/reporter";
import { ManualClock, RecordingSink } from "../fakes";

const URI = "file:///w/a.py";
const p = (line: number, character: number): Pos => ({ line, character });
const insert = (at: Pos, text: string): Change => ({ range: { start: at, end: at }, text });
const replace = (start: Pos, end: Pos, text: string): Change => ({ range: { start, end }, text });
const cand = (id: string, text: string, at: Pos = p(3, 4)): Candidate => ({ id, text, at });

/** A reporter following `first`; `settled`: the editor then settled with it on screen (it
 * counts as shown, inferred), as most tests below take for granted. */
function setup(first: Candidate = cand("c1", "return x + 1\n    # done"), settled = true) {
  const sink = new RecordingSink();
  const tracking: boolean[] = [];
  const accepted: string[] = [];
  const logs: string[] = [];
  const clock = new ManualClock();
  const reporter = new Reporter(sink, {
    tracking: (a) => tracking.push(a),
    accepted: (id) => accepted.push(id),
    log: (m) => logs.push(m),
  }, clock);
  reporter.provided(URI, [first, cand("c2", "pass", first.at)]);
  if (settled) {
    clock.settle();
  }
  return { sink, reporter, tracking, accepted, logs, first, clock };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe("Reporter: shown", () => {
  test("the top item is reported shown once, as an LSP item, and followed", () => {
    const { sink, reporter, tracking, first } = setup();
    assert.deepEqual(sink.calls, [["shown", lspItem(first), true]]);
    assert.deepEqual(tracking, [true]);
    assert.equal(reporter.tracked?.candidate.id, "c1");
  });

  test("an empty answer keeps the suggestion on screen", () => {
    const { sink, reporter } = setup();
    reporter.provided(URI, []);
    assert.equal(reporter.tracked?.candidate.id, "c1");
    assert.deepEqual(sink.outcomes, []);
  });

  test("a different suggestion in its place dismisses the first", () => {
    const { sink, reporter, clock } = setup();
    reporter.provided(URI, [cand("c9", "raise ValueError")]);
    clock.settle();
    assert.deepEqual(sink.outcomes, [["rejected", "c1"]]);
    assert.equal(reporter.tracked?.candidate.id, "c9");
    assert.equal(sink.calls.filter((c) => c[0] === "shown").length, 2);
  });

  test("the same text asked again at the same place continues it (the server's new id)", () => {
    const { sink, reporter, first } = setup();
    reporter.provided(URI, [cand("c1-again", first.text)]);
    assert.deepEqual(sink.outcomes, []);
    assert.equal(reporter.tracked?.candidate.id, "c1-again");
    assert.equal(sink.calls.filter((c) => c[0] === "shown").length, 1);
  });
});

describe("Reporter: what was on screen (VS Code says nothing of it)", () => {
  test("an item still current once the editor settles is shown, inferred", () => {
    const { sink, clock, first } = setup(undefined, false);
    assert.deepEqual(sink.calls, []);
    clock.settle();
    assert.deepEqual(sink.calls, [["shown", lspItem(first), true]]);
  });

  for (const [id, leave] of [
    ["typed over", (r: Reporter, at: Pos) => r.changed(URI, [insert(at, "y")])],
    ["the cursor moved", (r: Reporter) => r.moved(URI, p(0, 0))],
    ["another editor", (r: Reporter) => r.editorChanged("file:///w/b.py")],
    ["another suggestion", (r: Reporter) => r.provided(URI, [cand("c9", "raise ValueError")])],
  ] as [string, (r: Reporter, at: Pos) => void][]) {
    test(`left before the editor settled (${id}): neither shown nor dismissed`, () => {
      const { sink, reporter, clock, first, logs } = setup(undefined, false);
      leave(reporter, first.at);
      clock.settle();
      const aboutFirst = sink.calls.filter((c) => (c[0] === "shown"
        ? (c[1] as { command: { arguments: string[] } }).command.arguments[0] : c[1]) === "c1");
      assert.deepEqual(aboutFirst, []);
      assert.ok(logs.some((l) => l.includes("before it was known to be shown")), logs.join("\n"));
    });
  }

  test("Escape before it settled: shown (its key binding needs it visible), then dismissed", () => {
    const { sink, reporter, clock, first } = setup(undefined, false);
    reporter.dismissed();
    assert.deepEqual(sink.calls, [["shown", lspItem(first), false], ["rejected", "c1"]]);
    clock.settle();
    assert.equal(sink.calls.length, 2);
  });

  test("paused before it settled: nothing (pausing says nothing of the screen)", () => {
    const { sink, reporter, clock } = setup(undefined, false);
    reporter.dismissed(false);
    clock.settle();
    assert.deepEqual(sink.calls, []);
  });

  test("Accept Next Word before it settled: shown, then the partial accept", () => {
    const { sink, reporter, first } = setup(undefined, false);
    reporter.changed(URI, [insert(first.at, "return")]);
    assert.deepEqual(sink.calls, [["shown", lspItem(first), false], ["partiallyAccepted", "c1", 6, "word"]]);
  });

  test("Tab before it settled: shown, then accepted", async () => {
    const { sink, reporter, first } = setup(undefined, false);
    reporter.changed(URI, [insert(first.at, first.text)]);
    await reporter.accepted(["c1"]);
    assert.deepEqual(sink.calls, [["shown", lspItem(first), false], ["accepted", "c1"]]);
  });

  test("typing through it waits for the editor to settle again", () => {
    const { sink, reporter, clock, first } = setup(undefined, false);
    const sets = clock.sets;
    reporter.changed(URI, [insert(first.at, "r")]);
    assert.equal(clock.sets, sets + 1);
    assert.equal(clock.pending.size, 1);
    clock.settle();
    assert.deepEqual(sink.calls, [["shown", lspItem(first), true]]);
  });
});

describe("Reporter: accepted", () => {
  test("Tab: VS Code inserts the text, then runs the command: accepted only", async () => {
    const { sink, reporter, tracking, accepted, first } = setup();
    reporter.changed(URI, [insert(first.at, first.text)]);
    reporter.moved(URI, advance(first.at, first.text));
    await reporter.accepted(["c1", { parsed: true, logprob: -0.2 }]);
    assert.deepEqual(sink.outcomes, [["accepted", "c1"]]);
    assert.deepEqual(accepted, ["c1"]);
    assert.equal(reporter.tracked, undefined);
    assert.deepEqual(tracking, [true, false]);
  });

  test("command before the edit works too", async () => {
    const { sink, reporter, first } = setup();
    await reporter.accepted(["c1"]);
    reporter.changed(URI, [insert(first.at, first.text)]);
    reporter.moved(URI, advance(first.at, first.text));
    assert.deepEqual(sink.outcomes, [["accepted", "c1"]]);
  });

  test("after typing through, VS Code replaces the typed part with the whole item", async () => {
    const { sink, reporter, first } = setup();
    reporter.changed(URI, [insert(first.at, "r")]);
    reporter.changed(URI, [insert(p(3, 5), "e")]);
    reporter.changed(URI, [replace(first.at, p(3, 6), first.text)]);
    await reporter.accepted(["c1"]);
    assert.deepEqual(sink.outcomes, [["accepted", "c1"]]);
  });

  test("another item of the list (Alt+]) accepted: no dismissal of the first", async () => {
    const { sink, reporter } = setup();
    await reporter.accepted(["c2"]);
    assert.deepEqual(sink.outcomes, [["accepted", "c2"]]);
  });

  test("an {id} argument is understood; no id reports nothing", async () => {
    const { sink, reporter } = setup();
    await reporter.accepted([{ id: "c1" }]);
    assert.equal(await reporter.accepted([]), false);
    assert.deepEqual(sink.outcomes, [["accepted", "c1"]]);
  });
});

describe("Reporter: typing through", () => {
  test("single characters that follow the suggestion report nothing", () => {
    const { sink, reporter, first } = setup();
    let at = first.at;
    for (const ch of "return") {
      reporter.changed(URI, [insert(at, ch)]);
      at = advance(at, ch);
      reporter.moved(URI, at);
    }
    assert.deepEqual(sink.outcomes, []);
    assert.equal(reporter.tracked?.consumed, 6);
  });

  test("the server's typed-through answer continues it; Escape then dismisses the new id", () => {
    const { sink, reporter, first } = setup();
    reporter.changed(URI, [insert(first.at, "r")]);
    reporter.provided(URI, [cand("c1-rest", first.text.slice(1), p(3, 5))]);
    assert.deepEqual(sink.outcomes, []);
    reporter.dismissed();
    assert.deepEqual(sink.outcomes, [["rejected", "c1-rest"]]);
  });

  test("Enter with auto-indent that matches is typing, not a partial accept", () => {
    const { sink, reporter } = setup(cand("n1", "\n    return 1", p(0, 10)));
    reporter.changed(URI, [insert(p(0, 10), "\n    ")]);
    assert.deepEqual(sink.outcomes, []);
    assert.equal(reporter.tracked?.consumed, 5);
  });

  test("an auto-closed pair is typing", () => {
    const { sink, reporter } = setup(cand("b1", "()\n", p(0, 3)));
    reporter.changed(URI, [insert(p(0, 3), "()")]);
    assert.deepEqual(sink.outcomes, []);
  });

  test("typing all of it by hand leaves nothing to dismiss", () => {
    const { sink, reporter } = setup(cand("s1", "ab", p(0, 0)));
    reporter.changed(URI, [insert(p(0, 0), "a")]);
    reporter.changed(URI, [insert(p(0, 1), "b")]);
    reporter.moved(URI, p(5, 0));
    reporter.provided(URI, [cand("s2", "cd", p(5, 0))]);
    assert.deepEqual(sink.outcomes, []);
  });

  test("backspace inside the typed part keeps following it", () => {
    const { sink, reporter, first } = setup();
    reporter.changed(URI, [insert(first.at, "r")]);
    reporter.changed(URI, [replace(first.at, p(3, 5), "")]);
    assert.deepEqual(sink.outcomes, []);
    assert.equal(reporter.tracked?.consumed, 0);
  });
});

describe("Reporter: partially accepted", () => {
  test("Accept Next Word: the word's length and kind", () => {
    const { sink, reporter, first } = setup();
    reporter.changed(URI, [insert(first.at, "return")]);
    assert.deepEqual(sink.outcomes, [["partiallyAccepted", "c1", 6, "word"]]);
  });

  test("words one after another report the length accepted so far", () => {
    const { sink, reporter, first } = setup();
    reporter.changed(URI, [insert(first.at, "return")]);
    reporter.changed(URI, [insert(p(3, 10), " x")]);
    assert.deepEqual(sink.outcomes, [
      ["partiallyAccepted", "c1", 6, "word"],
      ["partiallyAccepted", "c1", 8, "word"],
    ]);
  });

  test("Accept Next Line: the first line", () => {
    const { sink, reporter, first } = setup();
    reporter.changed(URI, [insert(first.at, "return x + 1")]);
    assert.deepEqual(sink.outcomes, [["partiallyAccepted", "c1", 12, "line"]]);
    reporter.moved(URI, p(3, 16));
    assert.deepEqual(sink.outcomes.length, 1);
  });

  test("then the rest with Tab: accepted", async () => {
    const { sink, reporter, first } = setup();
    reporter.changed(URI, [insert(first.at, "return x + 1")]);
    reporter.changed(URI, [insert(p(3, 16), "\n    # done")]);
    await reporter.accepted(["c1"]);
    assert.deepEqual(sink.outcomes, [["partiallyAccepted", "c1", 12, "line"], ["accepted", "c1"]]);
  });

  test("then Escape: dismissed", () => {
    const { sink, reporter, first } = setup();
    reporter.changed(URI, [insert(first.at, "return")]);
    reporter.dismissed();
    assert.deepEqual(sink.outcomes, [["partiallyAccepted", "c1", 6, "word"], ["rejected", "c1"]]);
  });

  test("lengths are UTF-16 code units", () => {
    const { sink, reporter } = setup(cand("u1", "s = '😀😀' + t", p(0, 0)));
    reporter.changed(URI, [insert(p(0, 0), "s = '😀😀'")]);
    assert.deepEqual(sink.outcomes, [["partiallyAccepted", "u1", 10, "word"]]);
    reporter.moved(URI, p(0, 10));
    assert.deepEqual(sink.outcomes.length, 1);
  });
});

describe("Reporter: dismissed", () => {
  test("Escape", () => {
    const { sink, reporter, tracking } = setup();
    reporter.dismissed();
    reporter.dismissed();
    assert.deepEqual(sink.outcomes, [["rejected", "c1"]]);
    assert.deepEqual(tracking, [true, false]);
  });

  test("typing something else at the cursor", () => {
    const { sink, reporter, first } = setup();
    reporter.changed(URI, [insert(first.at, "y")]);
    assert.deepEqual(sink.outcomes, [["rejected", "c1"]]);
  });

  test("an edit elsewhere in the document", () => {
    const { sink, reporter } = setup();
    reporter.changed(URI, [insert(p(0, 0), "import os\n")]);
    assert.deepEqual(sink.outcomes, [["rejected", "c1"]]);
  });

  test("several changes at once (multi-cursor, format)", () => {
    const { sink, reporter, first } = setup();
    reporter.changed(URI, [insert(first.at, "r"), insert(p(9, 0), "r")]);
    assert.deepEqual(sink.outcomes, [["rejected", "c1"]]);
  });

  test("the cursor moved away", () => {
    const { sink, reporter, first } = setup();
    reporter.moved(URI, first.at);
    assert.deepEqual(sink.outcomes, []);
    reporter.moved(URI, p(4, 0));
    assert.deepEqual(sink.outcomes, [["rejected", "c1"]]);
  });

  test("another editor became active", () => {
    const { sink, reporter } = setup();
    reporter.editorChanged(URI);
    assert.deepEqual(sink.outcomes, []);
    reporter.editorChanged("file:///w/b.py");
    assert.deepEqual(sink.outcomes, [["rejected", "c1"]]);
  });

  test("edits to another document are not about it", () => {
    const { sink, reporter } = setup();
    reporter.changed("file:///w/b.py", [insert(p(0, 0), "x")]);
    assert.deepEqual(sink.outcomes, []);
  });

  test("after a server restart nothing is reported for the old ids", () => {
    const { sink, reporter } = setup();
    reporter.reset();
    reporter.dismissed();
    assert.deepEqual(sink.outcomes, []);
  });

  test("a failed report is logged, never thrown", async () => {
    const { sink, reporter, logs } = setup();
    sink.fail = true;
    reporter.dismissed();
    await flush();
    assert.ok(logs.some((l) => l.includes("could not report rejected")), logs.join("\n"));
  });
});

describe("Reporter: helpers", () => {
  const advances: [string, Pos, string, Pos][] = [
    ["same-line", p(2, 4), "abc", p(2, 7)],
    ["empty", p(2, 4), "", p(2, 4)],
    ["newline", p(2, 4), "a\n  b", p(3, 3)],
    ["crlf", p(2, 4), "a\r\nb", p(3, 1)],
    ["trailing-newline", p(0, 0), "x\n", p(1, 0)],
    ["surrogates", p(0, 0), "😀", p(0, 2)],
  ];
  for (const [id, at, text, want] of advances) {
    test(`advance: ${id}`, () => assert.deepEqual(advance(at, text), want));
  }

  const partial: [string, string, boolean][] = [
    ["word", "return", true],
    ["one-char", "r", false],
    ["whitespace", "\n    ", false],
    ["paren-pair", "()", false],
    ["quote-pair", '""', false],
    ["two-chars", "x.", true],
  ];
  for (const [id, text, want] of partial) {
    test(`isPartialAccept: ${id}`, () => assert.equal(isPartialAccept(text), want));
  }

  const kinds: [string, string, number, number, string][] = [
    ["first-word", "return x + 1\npass", 0, 6, "word"],
    ["first-line", "return x + 1\npass", 0, 12, "line"],
    ["line-with-newline", "return x + 1\npass", 0, 13, "line"],
    ["last-word-of-line", "return x + 1\npass", 10, 12, "word"],
    ["rest-of-line-words", "return x + 1\npass", 6, 12, "line"],
    ["second-line", "a = 1\nb = 2\nc", 5, 11, "line"],
    ["whole-text", "foo(bar)", 0, 8, "line"],
  ];
  for (const [id, text, from, to, want] of kinds) {
    test(`partialKind: ${id}`, () => assert.equal(partialKind(text, from, to), want));
  }

  test("candidateOf: an LSP item from the server", () => {
    const item = {
      insertText: "pass",
      range: { start: { line: 1, character: 4 }, end: { line: 1, character: 4 } },
      command: { title: "compilot: accepted", command: "compilot.accepted", arguments: ["id1", { parsed: true }] },
    };
    assert.deepEqual(candidateOf(item, p(0, 0)), { id: "id1", text: "pass", at: p(1, 4) });
  });

  test("candidateOf: a VS Code item (snippet value, no range)", () => {
    const item = { insertText: { value: "x = 1" }, command: { command: "compilot.accepted", arguments: ["id2"] } };
    assert.deepEqual(candidateOf(item, p(7, 2)), { id: "id2", text: "x = 1", at: p(7, 2) });
  });

  const foreign: [string, unknown][] = [
    ["no-command", { insertText: "x" }],
    ["other-command", { insertText: "x", command: { command: "other.accept", arguments: ["id"] } }],
    ["empty-text", { insertText: "", command: { command: "compilot.accepted", arguments: ["id"] } }],
    ["not-an-object", "x"],
  ];
  for (const [id, item] of foreign) {
    test(`candidateOf: ${id} is not ours`, () => assert.equal(candidateOf(item, p(0, 0)), undefined));
  }
});
