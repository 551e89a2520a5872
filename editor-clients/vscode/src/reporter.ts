// What happened to the suggestion on screen: accepted, partly accepted or dismissed.
//
// VS Code's stable API tells an inline completion provider neither that its item was shown nor
// that it was dismissed, nor that a word or line of it was accepted: those hooks
// (handleDidShowCompletionItem, handleDidPartiallyAcceptCompletionItem, handleEndOfLifetime)
// belong to the `inlineCompletionsAdditions` API proposal, which only extensions run with
// --enable-proposed-api may use. So the extension follows the item itself: the top item of the
// last answer; the document and cursor events say what became of it.
//
// Whether VS Code displayed it is inferred, conservatively: VS Code drops an answer that no
// longer fits the editor (the cursor moved, the text changed under it), so an item counts as
// shown only once it is still the current one when the editor has settled (no change for
// SETTLE_MS), and the server is told the event was inferred. What only a visible suggestion
// allows proves it shown (not inferred): Tab, Accept Next Word / Line, and Escape (its key
// binding requires `inlineSuggestionVisible`). A suggestion left before either is reported
// neither shown nor dismissed: the store must not say the user refused what they never saw.
// - full accept: VS Code runs the item's command (`compilot.accepted`), which lands here;
// - partial accept (Accept Next Word / Line): an insertion of two or more characters at the
//   cursor that continue the suggestion; single characters are typing through it;
// - dismissal: Escape (the `compilot.dismiss` key binding), an edit or a cursor move that does
//   not follow the suggestion, another editor, or another suggestion in its place.
// Positions are LSP/VS Code positions (UTF-16 code units), as plain values: no `vscode` import.

import { PartialKind } from "./client";

export interface Pos {
  line: number;
  character: number;
}

export interface Change {
  range: { start: Pos; end: Pos };
  text: string;
}

export interface Candidate {
  id: string;
  text: string;
  /** Where the text is inserted (the item's range start). */
  at: Pos;
}

/** Where reports go: `CompilotApi` in the extension and the integration test. */
export interface ReportSink {
  accepted(id: string): Promise<unknown>;
  rejected(id: string): Promise<unknown>;
  partiallyAccepted(id: string, length: number, kind: PartialKind): Promise<unknown>;
  /** `inferred`: from the item staying current, not from something only a visible one allows. */
  shown(item: unknown, inferred: boolean): Promise<unknown>;
}

/** How long the editor must stay unchanged with the item current for it to count as shown. */
export const SETTLE_MS = 500;

/** Timers (the tests drive them by hand). */
export interface Clock {
  set(run: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realClock: Clock = {
  set: (run, ms) => setTimeout(run, ms).unref(),
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export interface ReporterHooks {
  /** A suggestion is being followed (true) or not any more (false): the Escape key binding's
   * context key `compilot.suggestionShown`. */
  tracking?(active: boolean): void;
  /** After a full accept was reported (the status item refreshes). */
  accepted?(id: string): void;
  log?(message: string): void;
}

const ACCEPTED_COMMAND = "compilot.accepted";

/** An inline item as the server sends it and as VS Code's converter makes it: both have
 * `insertText` (a string or a snippet's `value`), `range.start`, and `command.arguments[0]`,
 * the candidate id. Items of other providers (no compilot.accepted command) give undefined. */
export function candidateOf(item: unknown, fallback: Pos): Candidate | undefined {
  if (typeof item !== "object" || item === null) {
    return undefined;
  }
  const it = item as {
    insertText?: unknown;
    range?: { start?: { line?: unknown; character?: unknown } };
    command?: { command?: unknown; arguments?: unknown[] };
  };
  const id = it.command?.command === ACCEPTED_COMMAND ? it.command.arguments?.[0] : undefined;
  const text = typeof it.insertText === "string" ? it.insertText : (it.insertText as { value?: unknown })?.value;
  if (typeof id !== "string" || typeof text !== "string" || text.length === 0) {
    return undefined;
  }
  const start = it.range?.start;
  const at = typeof start?.line === "number" && typeof start?.character === "number"
    ? { line: start.line, character: start.character }
    : fallback;
  return { id, text, at };
}

/** The LSP item for `textDocument/didShowCompletion`. */
export function lspItem(c: Candidate): unknown {
  return {
    insertText: c.text,
    range: { start: c.at, end: c.at },
    command: { title: "compilot: accepted", command: ACCEPTED_COMMAND, arguments: [c.id] },
  };
}

export const samePos = (a: Pos, b: Pos): boolean => a.line === b.line && a.character === b.character;

/** The position after `text` is inserted at `at`. */
export function advance(at: Pos, text: string): Pos {
  const lines = text.split("\n");
  if (lines.length === 1) {
    return { line: at.line, character: at.character + text.length };
  }
  return { line: at.line + lines.length - 1, character: lines[lines.length - 1].length };
}

/** What typing inserts in one edit besides single characters: an auto-closed pair. */
const AUTO_CLOSED = new Set(["()", "[]", "{}", '""', "''", "``", "<>"]);

/** Whether an insertion that continues the suggestion is VS Code accepting part of it, not
 * the user typing: more than one character, not only whitespace (Enter plus auto-indent),
 * not an auto-closed pair. */
export function isPartialAccept(inserted: string): boolean {
  return inserted.length >= 2 && /\S/.test(inserted) && !AUTO_CLOSED.has(inserted);
}

/** Accept Next Line takes the rest of a line; Accept Next Word one word. An accepted piece
 * that ends at a line end and starts a line or spans several words was a line. */
export function partialKind(text: string, from: number, to: number): PartialKind {
  const piece = text.slice(from, to);
  const endsLine = piece.endsWith("\n") || to === text.length || text.startsWith("\n", to)
    || text.startsWith("\r\n", to);
  if (!endsLine) {
    return "word";
  }
  const startsLine = from === 0 || text[from - 1] === "\n";
  return startsLine || /\S\s+\S/.test(piece.trim()) ? "line" : "word";
}

interface Tracked {
  uri: string;
  candidate: Candidate;
  /** UTF-16 code units of the candidate now in the document (typed or accepted). */
  consumed: number;
  /** Fully in the document: its command reports it, nothing else may. */
  complete: boolean;
  /** Reported shown: not yet, inferred (it stayed current), or known (a visible one's action). */
  shown: "no" | "inferred" | "known";
}

export class Reporter {
  private current: Tracked | undefined;
  private settling: unknown;

  constructor(private readonly sink: ReportSink, private readonly hooks: ReporterHooks = {},
    private readonly clock: Clock = realClock) {}

  /** The suggestion being followed (tests). */
  get tracked(): Readonly<Tracked> | undefined {
    return this.current;
  }

  /** An answer reached the editor for `uri` (not cancelled): its first item is on screen. */
  provided(uri: string, candidates: Candidate[]): void {
    const top = candidates[0];
    if (top === undefined) {
      return; // VS Code keeps showing an earlier item that still fits
    }
    const cur = this.current;
    if (cur && !cur.complete && cur.uri === uri && this.continues(cur, top)) {
      // Typed through, or asked again at the same place: the server names the rest anew
      // (on screen as the rest of the same suggestion was, or not yet known to be).
      this.current = { uri, candidate: top, consumed: 0, complete: false, shown: cur.shown };
      if (cur.shown === "no") {
        this.settle();
      }
      return;
    }
    if (cur && !cur.complete) {
      this.reject(cur, "replaced by another suggestion");
    }
    this.current = { uri, candidate: top, consumed: 0, complete: false, shown: "no" };
    this.hooks.tracking?.(true);
    this.settle();
  }

  /** Text changed in `uri` (VS Code's contentChanges, in order). */
  changed(uri: string, changes: readonly Change[]): void {
    const cur = this.current;
    if (!cur || cur.complete || cur.uri !== uri || changes.length === 0) {
      return;
    }
    const consumed = changes.length === 1 ? this.follow(cur, changes[0]) : undefined;
    if (consumed === undefined) {
      this.reject(cur, "edited");
      return;
    }
    const before = cur.consumed;
    cur.consumed = consumed;
    const text = cur.candidate.text;
    if (consumed === text.length) {
      cur.complete = true;
      this.unsettle();
      this.hooks.tracking?.(false);
      return;
    }
    const inserted = changes[0].text;
    if (consumed > before && isPartialAccept(inserted)) {
      this.show(cur, false);  // only a visible suggestion has a word or a line to accept
      const kind = partialKind(text, consumed - inserted.length, consumed);
      this.send(() => this.sink.partiallyAccepted(cur.candidate.id, consumed, kind), "partiallyAccepted");
    } else if (cur.shown === "no") {
      this.settle();  // typed through: the editor has not settled yet
    }
  }

  /** The cursor of the active editor (showing `uri`) moved to `pos`. */
  moved(uri: string, pos: Pos): void {
    const cur = this.current;
    if (!cur || cur.complete) {
      return;
    }
    if (uri !== cur.uri || !samePos(pos, this.expected(cur))) {
      this.reject(cur, "cursor moved");
    }
  }

  /** Another editor (or none) became active. */
  editorChanged(uri: string | undefined): void {
    const cur = this.current;
    if (cur && !cur.complete && uri !== cur.uri) {
      this.reject(cur, "editor changed");
    }
  }

  /** Escape (`visible`: its key binding requires the suggestion on screen, so it was shown),
   * or completions paused (`visible` false: reported only if it was known to be shown). */
  dismissed(visible = true): void {
    const cur = this.current;
    if (cur && !cur.complete) {
      if (visible) {
        this.show(cur, false);
      }
      this.reject(cur, visible ? "escape" : "paused");
    }
  }

  /** The item's command ran (`compilot.accepted` with the item's arguments): report it. */
  async accepted(args: readonly unknown[]): Promise<unknown> {
    const first = args[0];
    const id = typeof first === "string" ? first
      : typeof first === "object" && first !== null && typeof (first as { id?: unknown }).id === "string"
        ? (first as { id: string }).id : undefined;
    // Whichever item was taken (Alt+] cycles), the followed one is not dismissed; taken, it
    // was on screen.
    const cur = this.current;
    if (cur && cur.candidate.id === id) {
      this.show(cur, false);
    }
    this.drop();
    if (id === undefined) {
      return false;
    }
    const result = await this.sink.accepted(id);
    this.hooks.accepted?.(id);
    return result;
  }

  /** The server restarted: the ids it gave are gone. */
  reset(): void {
    this.drop();
  }

  /** Stop following the suggestion without reporting anything. */
  private drop(): void {
    const cur = this.current;
    this.current = undefined;
    this.unsettle();
    if (cur && !cur.complete) {
      this.hooks.tracking?.(false);
    }
  }

  private expected(cur: Tracked): Pos {
    return advance(cur.candidate.at, cur.candidate.text.slice(0, cur.consumed));
  }

  private continues(cur: Tracked, next: Candidate): boolean {
    return next.id === cur.candidate.id
      || (samePos(next.at, this.expected(cur)) && next.text === cur.candidate.text.slice(cur.consumed));
  }

  /** How much of the candidate is in the document after `change`, or undefined if the
   * change leaves the suggestion (it must end at the cursor and keep the text a prefix). */
  private follow(cur: Tracked, change: Change): number | undefined {
    const { text, at } = cur.candidate;
    if (!samePos(change.range.end, this.expected(cur))) {
      return undefined;
    }
    // The change may replace part of what is already in (VS Code's accept replaces the item's
    // whole range): find where it starts within the consumed text.
    let pos = at;
    let from = -1;
    for (let i = 0; i <= cur.consumed; i++) {
      if (samePos(pos, change.range.start)) {
        from = i;
        break;
      }
      pos = text[i] === "\n" ? { line: pos.line + 1, character: 0 } : { line: pos.line, character: pos.character + 1 };
    }
    if (from < 0) {
      return undefined;
    }
    const now = text.slice(0, from) + change.text;
    return text.startsWith(now) ? now.length : undefined;
  }

  private reject(cur: Tracked, why: string): void {
    this.drop();
    if (cur.shown === "no") {
      this.hooks.log?.(`left ${cur.candidate.id} (${why}) before it was known to be shown: not reported`);
      return;
    }
    this.hooks.log?.(`dismissed ${cur.candidate.id} (${why})`);
    this.send(() => this.sink.rejected(cur.candidate.id), "rejected");
  }

  /** Report `cur` shown, once. */
  private show(cur: Tracked, inferred: boolean): void {
    if (cur.shown !== "no") {
      return;
    }
    cur.shown = inferred ? "inferred" : "known";
    if (cur === this.current) {
      this.unsettle();
    }
    this.send(() => this.sink.shown(lspItem(cur.candidate), inferred), "shown");
  }

  /** (Re)start waiting for the editor to settle with the current item on screen. */
  private settle(): void {
    this.unsettle();
    this.settling = this.clock.set(() => {
      this.settling = undefined;
      const cur = this.current;
      if (cur && !cur.complete) {
        this.show(cur, true);
      }
    }, SETTLE_MS);
  }

  private unsettle(): void {
    if (this.settling !== undefined) {
      this.clock.clear(this.settling);
      this.settling = undefined;
    }
  }

  private send(call: () => Promise<unknown>, what: string): void {
    call().catch((error: unknown) => this.hooks.log?.(`could not report ${what}: ${String(error)}`));
  }
}
