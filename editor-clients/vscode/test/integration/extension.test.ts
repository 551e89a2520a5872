// The extension itself (extension.ts: vscode-languageclient, its middleware, the status item,
// the restart policy) activated in a fake VS Code (test/vscode-fake.ts) against the real
// server: a smoke test of the wiring that the vscode-free modules' tests cannot see.

import assert from "node:assert/strict";
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { after, before, describe, test } from "node:test";
import { ROOT, defaults } from "../fakes";
import { until as waitUntil } from "../wait";
import {
  CancellationTokenSource, CodeAction, CodeActionKind, FakeVscode, InlineCompletionList, Position, Range, document,
} from "../vscode-fake";

const PYTHON = process.env.COMPILOT_PYTHON || path.resolve(ROOT, "..", "..", ".venv", "bin", "python");
const TIMEOUT_MS = 90_000;

/** `until` with this file's bound. */
const until = <T>(what: string, probe: Parameters<typeof waitUntil<T>>[1], ms = TIMEOUT_MS) => waitUntil(what, probe, ms);

/** Whether Python compiles `source` (the premise and the outcome of a repair, checked as the server
 * checks Python: `compile()`). */
function compiles(source: string): boolean {
  try {
    execFileSync(PYTHON, ["-c", "import sys; compile(sys.stdin.read(), 'f.py', 'exec')"], { input: source, stdio: ["pipe", "ignore", "ignore"] });
    return true;
  } catch {
    return false;
  }
}

/** Rows of the server's event store, read with the project's Python (sqlite3, WAL). */
function query(dataDir: string, sql: string): unknown[][] {
  const script = "import json, sqlite3, sys; print(json.dumps(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchall()))";
  return JSON.parse(execFileSync(PYTHON, ["-c", script, path.join(dataDir, "events.db"), sql]).toString());
}

/** Child processes of this test (the server the language client started). */
function children(): number[] {
  try {
    return execFileSync("ps", ["-o", "pid=,comm=", "--ppid", String(process.pid)]).toString().trim().split("\n")
      .map((line) => line.trim().split(/\s+/)).filter(([, comm]) => comm !== "ps").map(([pid]) => Number(pid)).filter((n) => n > 0);
  } catch {
    return [];
  }
}

// One fake for the file: the extension and vscode-languageclient bind `vscode` when loaded.
const fake = new FakeVscode();
fake.install();
const extension = require("../../src/extension") as typeof import("../../src/extension");

describe("the extension in a fake VS Code, against the real server", { timeout: 4 * TIMEOUT_MS }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "compilot-ext-"));
  const text = 'def greet(name):\n    """Return a greeting for name."""\n    return ';
  const doc = document(path.join(tmp, "greet.py"), "python", text + "\n");
  const item = () => fake.statusItems[0];

  before(() => {
    fake.defaults = defaults();
    fake.settings = new Map<string, unknown>([
      ["server.interpreter", PYTHON],
      ["server.env", { COMPILOT_DATA_DIR: path.join(tmp, "data"), COMPILOT_CONFIG: path.join(tmp, "none.toml") }],
      ["completion.maxTokens", 16],
      ["completion.candidates", 1],
      ["debounceMs", 50],
    ]);
    fake.documents.push(doc);
  });

  after(async () => {
    await extension.deactivate();
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("activates: starts the server, registers the inline provider and the commands, shows the status", async () => {
    extension.activate({ subscriptions: [] } as never);
    await until("the status item to show the serving adapter", () => /base · acc/.test(item()?.text ?? ""));
    assert.equal(item().visible, true);
    assert.equal(fake.providers("InlineCompletionItem").length, 1);
    for (const command of ["compilot.showMenu", "compilot.dismiss", "compilot.accepted", "compilot.status"]) {
      assert.ok(fake.commandHandlers.has(command), command);
    }
    assert.deepEqual(fake.messages.filter((m) => m.level !== "info"), []);
  });

  test("an inline completion is shown, accepted through the item's command, and counted in the status", async (t) => {
    const provider = fake.providers("InlineCompletionItem")[0] as {
      provideInlineCompletionItems(...args: unknown[]): Promise<InlineCompletionList | undefined>;
    };
    const lines = text.split("\n");
    const at = new Position(lines.length - 1, lines[lines.length - 1].length);
    const started = Date.now();
    const result = await provider.provideInlineCompletionItems(doc, at, { triggerKind: 1, selectedCompletionInfo: undefined },
      new CancellationTokenSource().token);
    const top = result?.items[0] as { insertText: string; command: { command: string; arguments: unknown[] } } | undefined;
    assert.ok(top, "no inline completion");
    t.diagnostic(`completion ${JSON.stringify(top.insertText)} in ${Date.now() - started} ms`);
    assert.equal(fake.contexts.get("compilot.suggestionShown"), true);
    const commands = fake.module.commands as { executeCommand(id: string, ...args: unknown[]): Promise<unknown> };
    assert.equal(await commands.executeCommand(top.command.command, ...top.command.arguments), true);
    assert.equal(fake.contexts.get("compilot.suggestionShown"), false);
    await until("the status item to count the accept", () => / acc 100% /.test(item().text));
  });

  test("the menu's statistics open a document with today's figures", async () => {
    fake.pick = (items) => items.find((i) => i.label.includes("statistics"));
    await fake.commandHandlers.get("compilot.showMenu")!();
    const opened = await until("the statistics document", () => fake.opened.at(-1));
    assert.match(opened.content ?? "", /\| accepted \| 1 \(100%\) \|/);
  });

  test("a server that dies is restarted, with a notification", async () => {
    const pids = children();
    assert.ok(pids.length > 0, "no server process");
    for (const pid of pids) {
      process.kill(pid, "SIGKILL");
    }
    await until("the restart notification", () => fake.messages.find((m) => /restarting it \(1 of 5\)/.test(m.message)));
    await until("the status item after the restart", () => /base · acc/.test(item().text));
    assert.notDeepEqual(children(), pids);
  });
  test("changing how the server starts restarts it; other settings are sent to the running server", async () => {
    const before = children();
    fake.settings.set("completion.maxTokens", 8);
    fake.didChangeConfiguration.fire({ affectsConfiguration: (s) => ["compilot", "compilot.completion", "compilot.completion.maxTokens"].includes(s) });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(children(), before);
    const env = fake.settings.get("server.env") as Record<string, string>;
    fake.settings.set("server.env", { ...env, COMPILOT_TEST_MARK: "1" });
    fake.didChangeConfiguration.fire({ affectsConfiguration: (s) => ["compilot", "compilot.server", "compilot.server.env"].includes(s) });
    await until("a new server process", () => children().length > 0 && !children().some((pid) => before.includes(pid)));
    await until("the status item after the restart", () => /base · acc/.test(item().text));
  });
});

describe("the extension with a server that cannot start", { timeout: TIMEOUT_MS }, () => {
  test("an error names the setting to fix; the status item shows it; nothing restarts", async () => {
    fake.messages.length = 0;
    fake.statusItems.length = 0;
    fake.settings = new Map<string, unknown>([["server.command", "/nonexistent/bin/compilot"], ["server.interpreter", PYTHON]]);
    try {
      extension.activate({ subscriptions: [] } as never);
      const error = await until("the error message", () => fake.messages.find((m) => m.level === "error"), 20_000);
      assert.match(error.message, /could not start the server \(\/nonexistent\/bin\/compilot serve\)/);
      assert.match(error.message, /compilot\.server\.command/);
      assert.deepEqual(error.items, ["Open Settings", "Show Log"]);
      assert.equal(fake.messages.filter((m) => m.level === "error").length, 1);
      assert.equal(fake.statusItems[0].text, "$(warning) compilot");
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.deepEqual(fake.messages.filter((m) => /restarting/.test(m.message)), []);
    } finally {
      await extension.deactivate();
    }
  });
});

describe("the workspace's own compilot and remote windows", { timeout: 2 * TIMEOUT_MS }, () => {
  test("an untrusted workspace's .venv is not run; trusting the workspace starts it", async () => {
    const ws = fs.mkdtempSync(path.join(os.tmpdir(), "compilot-ws-"));
    const bin = path.join(ws, ".venv", "bin");
    fs.mkdirSync(bin, { recursive: true });
    fs.writeFileSync(path.join(bin, "compilot"), `#!/bin/sh\nexec '${PYTHON}' -m compilot "$@"\n`, { mode: 0o755 });
    const emptyPath = fs.mkdtempSync(path.join(os.tmpdir(), "compilot-path-"));
    const savedPath = process.env.PATH;
    process.env.PATH = emptyPath;  // no compilot on PATH: the workspace's is the only one
    fake.messages.length = 0;
    fake.statusItems.length = 0;
    fake.folders = [ws];
    fake.trusted = false;
    fake.settings = new Map<string, unknown>([
      ["server.env", { COMPILOT_DATA_DIR: path.join(ws, "data"), COMPILOT_CONFIG: path.join(ws, "none.toml") }]]);
    try {
      extension.activate({ subscriptions: [] } as never);
      const error = await until("the error message", () => fake.messages.find((m) => m.level === "error"), 20_000);
      assert.match(error.message, /compilot was not found on PATH/);
      assert.match(error.message, /The workspace has .*\.venv\/bin\/compilot, which compilot starts only in a trusted workspace/);
      assert.deepEqual(error.items, ["Open Settings", "Manage Workspace Trust", "Show Log"]);
      assert.equal(fake.statusItems[0].text, "$(warning) compilot");
      fake.grantTrust();
      await until("the status item once the workspace's server runs", () => /base · acc/.test(fake.statusItems[0].text));
      assert.ok(fake.log.some((line) => line.includes(`starting ${bin}/compilot serve (from workspace venv)`)), fake.log.join("\n"));
    } finally {
      await extension.deactivate();
      process.env.PATH = savedPath;
      fake.folders = [];
      fake.trusted = true;
      fs.rmSync(ws, { recursive: true, force: true });
      fs.rmSync(emptyPath, { recursive: true, force: true });
    }
  });

  test("in a remote window the error says the server settings go in the Remote settings", async () => {
    fake.messages.length = 0;
    fake.statusItems.length = 0;
    fake.remoteName = "ssh-remote";
    fake.settings = new Map<string, unknown>([["server.command", "/nonexistent/bin/compilot"]]);
    try {
      extension.activate({ subscriptions: [] } as never);
      const error = await until("the error message", () => fake.messages.find((m) => m.level === "error"), 20_000);
      assert.match(error.message, /Check the setting compilot\.server\.command in your Remote settings/);
      assert.match(error.message, /This is a remote window \(ssh-remote\)/);
      assert.deepEqual(error.items, ["Open Remote Settings", "Show Log"]);
    } finally {
      await extension.deactivate();
      fake.remoteName = undefined;
    }
  });
});

describe("compilot's fix as a VS Code code action, through the language client", { timeout: 3 * TIMEOUT_MS }, () => {
  // Three tokens cut the model's body short (`max(values`), which does not compile: the
  // accepted completion breaks the file, and the server's background repair finds a fix.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "compilot-fix-"));
  const head = 'def largest(values):\n    """Return the largest of the values."""\n    return ';
  const tail = "\n\n\nprint(largest([1, 2]))\n";
  const doc = document(path.join(tmp, "largest.py"), "python", head + tail);
  const dataDir = path.join(tmp, "data");

  after(async () => {
    await extension.deactivate();
    fake.documents.length = 0;
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test("a broken accept gets 'compilot: fix'; applying it makes the file compile and lands a revision", async () => {
    fake.messages.length = 0;
    fake.statusItems.length = 0;
    fake.documents.length = 0;
    fake.documents.push(doc);
    fake.defaults = defaults();
    fake.settings = new Map<string, unknown>([
      ["server.interpreter", PYTHON],
      ["server.env", { COMPILOT_DATA_DIR: dataDir, COMPILOT_CONFIG: path.join(tmp, "none.toml") }],
      ["server.settings", { context: { enabled: false }, checks: { background: false } }],
      ["completion.maxTokens", 3],
      ["completion.candidates", 1],
      ["debounceMs", 0],
    ]);
    extension.activate({ subscriptions: [] } as never);
    await until("the server", () => /base · acc/.test(fake.statusItems[0]?.text ?? ""));
    // This activation's providers: the fake keeps what earlier activations registered too.
    const actionsProvider = fake.providers("CodeActions").at(-1) as {
      provideCodeActions(...args: unknown[]): Promise<CodeAction[] | null | undefined>;
    } | undefined;
    assert.ok(actionsProvider, "no code action provider registered");
    const metadata = [...fake.registered].reverse().find(([name]) => name === "languages.registerCodeActionsProvider")?.[1][2] as
      { providedCodeActionKinds?: CodeActionKind[] };
    assert.deepEqual(metadata.providedCodeActionKinds?.map((k) => k.value), ["quickfix"]);

    // The completion, inserted and accepted as VS Code does (the edit, then the item's command).
    const lines = head.split("\n");
    const at = new Position(lines.length - 1, lines[lines.length - 1].length);
    const inline = fake.providers("InlineCompletionItem").at(-1) as {
      provideInlineCompletionItems(...args: unknown[]): Promise<InlineCompletionList | undefined>;
    };
    const result = await inline.provideInlineCompletionItems(doc, at, { triggerKind: 0, selectedCompletionInfo: undefined },
      new CancellationTokenSource().token);
    const top = result?.items[0] as { insertText: string; command: { command: string; arguments: unknown[] } } | undefined;
    assert.ok(top, "no inline completion");
    assert.ok(!compiles(head + top.insertText + tail), `the premise: the completion ${JSON.stringify(top.insertText)} breaks the file`);
    fake.edit(doc, new Range(at, at), top.insertText);
    const commands = fake.module.commands as { executeCommand(id: string, ...args: unknown[]): Promise<unknown> };
    assert.equal(await commands.executeCommand(top.command.command, ...top.command.arguments), true);

    // VS Code asks for code actions as the cursor moves; the answer comes from fixes ready.
    const broken = new Range(at, new Position(at.line, at.character + top.insertText.length));
    const context = { diagnostics: [], only: undefined, triggerKind: 2 };
    const actions = await until("compilot's fix", async () => {
      const found = await actionsProvider.provideCodeActions(doc, broken, context, new CancellationTokenSource().token);
      return found?.length ? found : undefined;
    });
    const action = actions[0];
    assert.match(action.title, /^compilot: fix/);
    assert.equal(action.kind?.value, "quickfix");
    assert.equal(action.isPreferred, true);
    const edits = action.edit?.get(doc.uri) ?? [];
    assert.equal(edits.length, 1);

    // Applied as VS Code applies a code action: its edit, then its command (to the server).
    const before = doc.getText();
    fake.edit(doc, edits[0].range as Range, edits[0].newText);
    assert.ok(compiles(doc.getText()), doc.getText());
    assert.ok(action.command, "the action has no command");
    assert.equal(await commands.executeCommand(action.command.command, ...(action.command.arguments ?? [])), true);
    const revisions = await until("the revision in the store", () => {
      const rows = query(dataDir, "SELECT broken, fixed, source FROM revisions WHERE source LIKE 'fix:%'");
      return rows.length ? rows : undefined;
    });
    assert.equal(revisions.length, 1);
    assert.equal(revisions[0][0], top.insertText, before);
    assert.equal(revisions[0][1], edits[0].newText);
    // Fixed: nothing more to offer there.
    assert.deepEqual(await actionsProvider.provideCodeActions(doc, broken, context, new CancellationTokenSource().token) ?? [], []);
  });
});
