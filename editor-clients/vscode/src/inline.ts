// Language-client middleware: the extension decides when the server is asked for an inline
// completion (language, pause, debounce), follows what is shown, and routes the item's
// `compilot.accepted` command through the reporter. `vscode` is imported for types only.

import type * as vscode from "vscode";
import type { ExecuteCommandSignature, Middleware } from "vscode-languageclient";
import { ServerCommands } from "./client";
import { Candidate, Reporter, candidateOf } from "./reporter";
import { languageEnabled } from "./settings";

/** The parts of a cancellation token that waiting needs. */
export interface Cancellation {
  readonly isCancellationRequested: boolean;
  onCancellationRequested(listener: () => void): { dispose(): void };
}

/** Wait `ms`; false if cancelled first (a newer keystroke). */
export function debounce(ms: number, token: Cancellation): Promise<boolean> {
  if (token.isCancellationRequested) {
    return Promise.resolve(false);
  }
  if (ms <= 0) {
    return Promise.resolve(true);
  }
  return new Promise((resolve) => {
    const sub = token.onCancellationRequested(() => {
      clearTimeout(timer);
      sub.dispose();
      resolve(false);
    });
    const timer = setTimeout(() => {
      sub.dispose();
      resolve(!token.isCancellationRequested);
    }, ms);
  });
}

export interface InlineGate {
  languages(): Record<string, boolean>;
  debounceMs(): number;
  paused(): boolean;
  /** `vscode.InlineCompletionTriggerKind.Automatic` (typing), passed in to keep vscode out. */
  readonly automatic: number;
  /** A request to the server started (+1) or ended (-1): the status item's spinner. */
  busy?(delta: 1 | -1): void;
}

/** The language client's own request (its InlineCompletionItemFeature), which middleware wraps. */
type ProvideInlineCompletionItemsSignature = Parameters<NonNullable<Middleware["provideInlineCompletionItems"]>>[4];
type InlineResult = vscode.InlineCompletionItem[] | vscode.InlineCompletionList | null | undefined;

/** Whether to ask the server at all. */
export function shouldAsk(gate: InlineGate, languageId: string): boolean {
  // With the suggest widget open the request is asked too: it carries the selected entry
  // (selectedCompletionInfo), and the server answers as if that entry were accepted.
  return !gate.paused() && languageEnabled(gate.languages(), languageId);
}

/** `middleware.provideInlineCompletionItems`. */
export function provideInlineCompletionItems(gate: InlineGate, reporter: Reporter) {
  return async (
    document: vscode.TextDocument,
    position: vscode.Position,
    context: vscode.InlineCompletionContext,
    token: vscode.CancellationToken,
    next: ProvideInlineCompletionItemsSignature,
  ): Promise<InlineResult> => {
    if (!shouldAsk(gate, document.languageId)) {
      return undefined;
    }
    if (context.triggerKind === gate.automatic && !(await debounce(gate.debounceMs(), token))) {
      return undefined;
    }
    gate.busy?.(1);
    let result: InlineResult;
    try {
      result = await next(document, position, context, token);
    } finally {
      gate.busy?.(-1);
    }
    // An answer over the suggest widget's entry replaces that entry's range with the entry's
    // text and the candidate's: the reporter follows insertions at the cursor of the
    // candidate's own text, so it does not follow these (a full accept is still reported, by
    // the item's command), rather than record as shown or dismissed what it cannot follow.
    if (result && !token.isCancellationRequested && !context.selectedCompletionInfo) {
      const items = Array.isArray(result) ? result : result.items;
      const at = { line: position.line, character: position.character };
      reporter.provided(document.uri.toString(), items.map((item) => candidateOf(item, at)).filter(
        (c): c is Candidate => c !== undefined));
    }
    return result;
  };
}

/** `middleware.executeCommand`: the accept goes through the reporter, the rest to the server. */
export function executeCommand(reporter: Reporter) {
  return (command: string, args: unknown[], next: ExecuteCommandSignature): vscode.ProviderResult<unknown> =>
    command === ServerCommands.accepted ? reporter.accepted(args) : next(command, args);
}
