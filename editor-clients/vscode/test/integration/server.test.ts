// The extension's client wiring against the real `compilot serve` (the embedded model), over
// stdio with vscode-languageserver-protocol's transport, without a VS Code window: settings
// mapped from package.json's defaults, the launch resolved from the settings, and the accept,
// partial accept and dismissal reported by the same Reporter / CompilotApi the extension uses.
//
// The server is `$COMPILOT_PYTHON -m compilot serve` (default: the repository's .venv), with
// its own temporary data dir and no config file.

import assert from "node:assert/strict";
import { ChildProcess, execFileSync, spawn } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { after, before, describe, test } from "node:test";
import {
  InitializeRequest,
  InitializeResult,
  InlineCompletionList,
  InlineCompletionRequest,
  ProtocolConnection,
  StreamMessageReader,
  StreamMessageWriter,
  createProtocolConnection,
} from "vscode-languageserver-protocol/node";
import { CompilotApi, ServerCommands, ServerStatus, Transport, initializationOptions } from "../../src/client";
import { describeLaunch, serverLaunch } from "../../src/launch";
import { Candidate, Change, Reporter, advance, candidateOf } from "../../src/reporter";
import { readSettings } from "../../src/settings";
import { ROOT, defaults, fakeConfig } from "../fakes";

const PYTHON = process.env.COMPILOT_PYTHON || path.resolve(ROOT, "..", "..", ".venv", "bin", "python");
/** Every wait has this bound; the first completion loads the model and evaluates the prompt. */
const TIMEOUT_MS = 90_000;

function within<T>(promise: Promise<T>, what: string, ms = TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function hasSqlite3(): boolean {
  try {
    execFileSync("sqlite3", ["-version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

describe("client wiring against the real server", { timeout: 5 * TIMEOUT_MS }, () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "compilot-vscode-"));
  const dataDir = path.join(tmp, "data");
  const vars = { home: os.homedir(), workspaceFolder: tmp, env: process.env };
  // What a user would put in settings.json; everything else is package.json's defaults.
  const { settings } = readSettings(fakeConfig({
    "server.interpreter": PYTHON,
    "server.env": { COMPILOT_DATA_DIR: "${workspaceFolder}/data", COMPILOT_CONFIG: "${workspaceFolder}/none.toml" },
    "completion.maxTokens": 16,
    "completion.candidates": 1,
  }));
  const launch = serverLaunch(settings.server, vars);
  let proc: ChildProcess;
  let connection: ProtocolConnection;
  let api: CompilotApi;
  let stderr = "";
  const messages: string[] = [];
  /** Every request and notification the reporting code sent, in order. */
  const sent: [string, unknown][] = [];
  let version = 0;
  const uri = `file://${tmp}/greet.py`;
  let text = 'def greet(name):\n    """Return a greeting for name."""\n    return ';

  /** Apply `change` to the document, tell the server (didChange) and the reporter (as VS
   * Code's onDidChangeTextDocument would). */
  function edit(reporter: Reporter, change: Change): void {
    const lines = text.split("\n");
    const offset = (p: { line: number; character: number }) =>
      lines.slice(0, p.line).reduce((n, l) => n + l.length + 1, 0) + p.character;
    text = text.slice(0, offset(change.range.start)) + change.text + text.slice(offset(change.range.end));
    void connection.sendNotification("textDocument/didChange", {
      textDocument: { uri, version: ++version },
      contentChanges: [change],
    });
    reporter.changed(uri, [change]);
  }

  async function ask(): Promise<Candidate[]> {
    const position = advance({ line: 0, character: 0 }, text);
    const list = await within(connection.sendRequest(InlineCompletionRequest.type, {
      textDocument: { uri },
      position,
      context: { triggerKind: 1 },
    }), "textDocument/inlineCompletion") as InlineCompletionList | null;
    const items = Array.isArray(list) ? list : list?.items ?? [];
    return items.map((item) => candidateOf(item, position)).filter((c): c is Candidate => c !== undefined);
  }

  before(async () => {
    assert.ok(fs.existsSync(PYTHON), `no Python at ${PYTHON}: set COMPILOT_PYTHON to a Python with compilot installed`);
    assert.equal(launch.source, "compilot.server.interpreter");
    assert.equal(launch.env.COMPILOT_DATA_DIR, dataDir);
    proc = spawn(launch.command, launch.args, { env: launch.env, cwd: tmp, stdio: ["pipe", "pipe", "pipe"] });
    proc.stderr!.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
    connection = createProtocolConnection(new StreamMessageReader(proc.stdout!), new StreamMessageWriter(proc.stdin!));
    connection.onNotification("window/showMessage", (m: { message: string }) => void messages.push(m.message));
    connection.onNotification("window/logMessage", () => undefined);
    connection.onRequest("client/registerCapability", () => null);
    connection.onRequest("workspace/configuration", (p: { items: unknown[] }) => p.items.map(() => null));
    connection.listen();
    const transport: Transport = {
      request: (method, params) => (sent.push([method, params]), connection.sendRequest(method, params)),
      notify: (method, params) => (sent.push([method, params]), connection.sendNotification(method, params)),
    };
    api = new CompilotApi(transport);
  });

  after(async () => {
    try {
      await within(connection.sendRequest("shutdown"), "shutdown", 20_000);
      await connection.sendNotification("exit");
      await within(new Promise((resolve) => proc.exitCode !== null ? resolve(null) : proc.once("exit", resolve)), "server exit", 20_000);
    } finally {
      if (proc.exitCode === null) {
        proc.kill("SIGKILL");
      }
      connection.dispose();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test("initialize with the mapped settings; the server offers inline completion and the commands", async () => {
    const options = initializationOptions(settings, vars);
    assert.deepEqual(options.completion, { maxTokens: 16, candidates: 1, predictMs: defaults().get("completion.predictMs") });
    const result = await within(connection.sendRequest(InitializeRequest.type, {
      processId: process.pid,
      rootUri: `file://${tmp}`,
      workspaceFolders: null,
      capabilities: { textDocument: { inlineCompletion: { dynamicRegistration: true } }, workspace: { executeCommand: { dynamicRegistration: true } } },
      initializationOptions: options,
    }), `initialize (${describeLaunch(launch)})`) as InitializeResult;
    await connection.sendNotification("initialized", {});
    assert.ok(result.capabilities.inlineCompletionProvider, "inlineCompletionProvider");
    const commands = result.capabilities.executeCommandProvider?.commands ?? [];
    for (const command of Object.values(ServerCommands)) {
      assert.ok(commands.includes(command), `${command} not in ${commands.join(", ")}`);
    }
    const status = await within(api.status(), "compilot.status");
    assert.equal(status.adapter, "base");
    assert.equal(status.error, null, `${status.error}\n${stderr.slice(-2000)}`);
  });

  test("dismiss, then partly accept and accept a completion: the server records each", async (t) => {
    const before: ServerStatus = await within(api.status(), "compilot.status");
    await connection.sendNotification("textDocument/didOpen", {
      textDocument: { uri, languageId: "python", version, text },
    });
    const reporter = new Reporter(api, { log: (m) => sent.push(["log", m]) });

    // Shown, then Escape.
    const first = await ask();
    assert.ok(first.length > 0, `no completion; server said: ${messages.join(" | ")}\n${stderr.slice(-2000)}`);
    reporter.provided(uri, first);
    reporter.dismissed();

    // Asked again at the same place (the server's cache: same text, a new id), shown again.
    const second = await ask();
    assert.equal(second[0]?.text, first[0].text);
    assert.notEqual(second[0].id, first[0].id);
    reporter.provided(uri, second);
    const top = second[0];

    // Accept Next Word, then Tab on the rest: VS Code's edits, then the item's command.
    const word = /^\s*\S+/.exec(top.text)?.[0] ?? top.text;
    const piece = word.length >= 2 && word.length < top.text.length ? word : top.text.slice(0, Math.max(2, Math.floor(top.text.length / 2)));
    const at = top.at;
    edit(reporter, { range: { start: at, end: at }, text: piece });
    const mid = advance(at, piece);
    edit(reporter, { range: { start: mid, end: mid }, text: top.text.slice(piece.length) });
    assert.equal(reporter.tracked?.complete, true);
    assert.equal(await within(reporter.accepted([top.id, { parsed: true }]), "compilot.accepted"), true);
    await within(api.settle(), "compilot.settle");

    const reports = sent.filter(([m]) => m !== "log").map(([method, params]) =>
      method === "workspace/executeCommand" ? (params as { command: string; arguments: unknown[] }).command : method);
    const partial = top.text.length > piece.length;
    t.diagnostic(`completion ${JSON.stringify(top.text)}; accepted ${JSON.stringify(piece)} first; reported ${reports.join(", ")}`);
    assert.deepEqual(reports.filter((r) => r !== "compilot.status" && r !== "compilot.settle"), [
      "textDocument/didShowCompletion",
      "compilot.rejected",
      "textDocument/didShowCompletion",
      ...(partial ? ["compilot.partiallyAccepted"] : []),
      "compilot.accepted",
    ]);

    const stats = await within(api.stats(), "compilot.stats") as { store: Record<string, number> & { path: string } };
    assert.equal(stats.store.accepted, 1);
    assert.equal(stats.store.rejected, 1);
    assert.equal(stats.store.shown, 2);
    assert.equal(stats.store.partial, partial ? 1 : 0);

    const now = await within(api.status(), "compilot.status");
    assert.equal(now.today.accepted, before.today.accepted + 1);
    assert.equal(now.today.shown, before.today.shown + 2);
    assert.equal(now.today.checked, before.today.checked + 1);
    assert.ok(now.today.acceptRate !== null && now.today.acceptRate > 0);

    if (hasSqlite3()) {
      const rows = execFileSync("sqlite3", [stats.store.path,
        `SELECT candidate_id, kind, coalesce(accepted_length, '') FROM events ORDER BY id`]).toString().trim().split("\n");
      assert.deepEqual(rows, [
        `${first[0].id}|shown|`,
        `${first[0].id}|rejected|`,
        `${top.id}|shown|`,
        ...(partial ? [`${top.id}|partial|${piece.length}`] : []),
        `${top.id}|accepted|`,
      ]);
    }
  });

  test("changed settings reach the server (didChangeConfiguration) and apply", async (t) => {
    const changed = readSettings(fakeConfig({ "completion.maxTokens": 2, "completion.candidates": 1 })).settings;
    await api.configure(initializationOptions(changed, vars));
    text += "\n\n\ndef add(a, b):\n    \"\"\"Return the sum of a and b.\"\"\"\n    return ";
    await connection.sendNotification("textDocument/didChange", {
      textDocument: { uri, version: ++version },
      contentChanges: [{ text }],
    });
    await ask();
    const status = await within(api.status(), "compilot.status");
    assert.equal(status.error, null);
    assert.deepEqual(messages.filter((m) => m.includes("settings")), []);
    if (hasSqlite3()) {
      const stats = await within(api.stats(), "compilot.stats") as { store: { path: string } };
      const tokens = execFileSync("sqlite3", [stats.store.path,
        "SELECT max(c.tokens) FROM candidates c WHERE c.request_id = (SELECT id FROM requests ORDER BY created_at DESC LIMIT 1)"]).toString().trim();
      t.diagnostic(`max tokens of the last request: ${tokens}`);
      assert.ok(tokens !== "" && Number(tokens) <= 2, `tokens ${tokens}`);
    }
  });
});
