// The packaged extension in a real VS Code: code-server (VS Code's own workbench and extension
// host, served to a browser) driven by Debian's Chromium through puppeteer-core, against the real
// `compilot serve` and the embedded model. What the fake VS Code of the integration tests cannot
// show: that VS Code displays the ghost text, that Tab inserts it and the server hears of it, that
// what the extension infers of partial accepts and dismissals matches what VS Code does with the
// cursor, and that the status bar item and the restart logic behave. As Continue tests its
// autocomplete, the assertions read the editor's DOM.
//
// `make test` installs code-server and Node 24 into a cache folder once per machine
// (scripts/e2e-install.sh) and passes it as COMPILOT_E2E; without it, or without Chromium, the
// test is skipped with a message that says how to get them. The recipe: ../shared/vscode-e2e.md.

import assert from "node:assert/strict";
import { ChildProcess, execFileSync, spawn } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { after, before, describe, test } from "node:test";
import type { Browser, Page } from "puppeteer-core";
import { ROOT, manifest } from "../fakes";
import { until as waitUntil } from "../wait";

const E2E = process.env.COMPILOT_E2E ?? "";
const PYTHON = process.env.COMPILOT_PYTHON || path.resolve(ROOT, "..", "..", ".venv", "bin", "python");
const CHROMIUM = process.env.COMPILOT_CHROMIUM ?? "/usr/bin/chromium";
const NODE = path.join(E2E, "node", "bin", "node");
const CODE_SERVER = path.join(E2E, "node_modules", "code-server", "out", "node", "entry.js");
const VSIX = path.join(ROOT, `${manifest().name}-${manifest().version}.vsix`);
/** A bound for hangs (a first request loads the model), not a performance claim. */
const WAIT_MS = 120_000;

function why(): string | undefined {
  if (!E2E || !fs.existsSync(path.join(E2E, ".installed"))) {
    return "code-server is not installed: `make test` installs it (scripts/e2e-install.sh) and sets COMPILOT_E2E";
  }
  if (!fs.existsSync(CHROMIUM)) {
    return `no Chromium at ${CHROMIUM}: install Debian's (as root: apt-get install chromium), or set COMPILOT_CHROMIUM`;
  }
  if (!fs.existsSync(VSIX)) {
    return `no packaged extension at ${VSIX}: run \`npm run package\` first (npm run test:e2e does)`;
  }
  return undefined;
}

const TEXT = [
  "def to_fahrenheit(celsius):",
  '    """Convert a temperature in degrees Celsius to Fahrenheit."""',
  "",
  "",
  "def area_of_circle(radius):",
  '    """Return the area of a circle of the given radius."""',
  "",
  "",
  "def to_kelvin(celsius):",
  '    """Convert a temperature in degrees Celsius to Kelvin."""',
  "",
  "",
  "def to_celsius(fahrenheit):",
  '    """Convert a temperature in degrees Fahrenheit to Celsius."""',
  "    return (fahrenheit - 32) * 5 / 9",
  "",
].join("\n");

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}


describe("the extension in a real VS Code (code-server), against the real server", { timeout: 8 * WAIT_MS }, () => {
  const skip = why();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "compilot-e2e-"));
  const ws = path.join(tmp, "workspace");
  const file = path.join(ws, "temps.py");
  const data = path.join(tmp, "data");
  const shots: string[] = [];
  let failed = false;
  const timings: string[] = [];
  let codeServer: ChildProcess | undefined;
  let browser: Browser | undefined;
  let page: Page;

  /** A screenshot of the window now, under the test's folder. */
  async function shot(name: string): Promise<string> {
    const out = path.join(tmp, `${String(shots.length + 1).padStart(2, "0")}-${name}.png`);
    await page.screenshot({ path: out as `${string}.png` });
    shots.push(out);
    return out;
  }

  /** One step of the session: a screenshot after it; when it fails, the screenshot of the moment
   * is named in the failure message. */
  async function step<T>(name: string, body: () => Promise<T>): Promise<T> {
    const started = Date.now();
    try {
      const value = await body();
      await shot(name);
      timings.push(`${name} ${Date.now() - started} ms`);
      return value;
    } catch (error) {
      failed = true;
      const picture = await shot(`${name}-failed`).catch(() => "(no screenshot)");
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`step "${name}" failed: ${message}\nscreenshot: ${picture}\nall screenshots: ${tmp}`, { cause: error });
    }
  }

  const until = <T>(what: string, probe: Parameters<typeof waitUntil<T>>[1], ms = WAIT_MS) => waitUntil(what, probe, ms, 200);

  async function keys(combo: string): Promise<void> {
    const parts = combo.split("+");
    for (const key of parts.slice(0, -1)) {
      await page.keyboard.down(key as never);
    }
    await page.keyboard.press(parts[parts.length - 1] as never);
    for (const key of parts.slice(0, -1).reverse()) {
      await page.keyboard.up(key as never);
    }
  }

  /** The ghost text on screen (the inline suggestion's spans, in order; the editor renders
   * spaces as no-break spaces), "" when none. */
  const ghost = () => page.$$eval(".monaco-editor [class*=ghost-text]", (els) =>
    els.filter((e) => !e.querySelector("[class*=ghost-text]")).map((e) => e.textContent ?? "").join("")
      .replace(/\u00a0/g, " "));
  const suggestWidget = () => page.$$eval(".monaco-editor .suggest-widget.visible", (els) => els.length > 0);
  const statusItem = () => page.$$eval(".statusbar-item", (els) =>
    els.map((e) => (e.textContent ?? "").trim()).find((t) => / · acc /.test(t)) ?? "");
  const toasts = () => page.$$eval(".notifications-toasts .notification-list-item-message", (els) =>
    els.map((e) => e.textContent ?? ""));

  /** Events of one kind in the server's store (read with the project's Python: sqlite3, WAL). */
  function events(kind: string): { text: string; length: number | null; inferred: number | null }[] {
    const script = "import json, sqlite3, sys; print(json.dumps(sqlite3.connect(sys.argv[1]).execute("
      + "'SELECT c.text, e.accepted_length, e.inferred FROM events e JOIN candidates c ON c.id = e.candidate_id "
      + "WHERE e.kind = ? ORDER BY e.id', (sys.argv[2],)).fetchall()))";
    const rows = JSON.parse(execFileSync(PYTHON, ["-c", script, path.join(data, "events.db"), kind]).toString()) as
      [string, number | null, number | null][];
    return rows.map(([text, length, inferred]) => ({ text, length, inferred }));
  }

  /** The `compilot serve` this window started (found by its data dir, which no other has). */
  function serverPids(): number[] {
    const out: number[] = [];
    for (const entry of fs.readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) {
        continue;
      }
      try {
        const environ = fs.readFileSync(`/proc/${entry}/environ`, "utf8").split("\0");
        const cmdline = fs.readFileSync(`/proc/${entry}/cmdline`, "utf8");
        if (environ.includes(`COMPILOT_DATA_DIR=${data}`) && cmdline.includes("serve")) {
          out.push(Number(entry));
        }
      } catch {
        // gone, or not ours to read
      }
    }
    return out;
  }

  /** Save, and the file's text on disk (once the editor's tab is no longer dirty). */
  async function saved(): Promise<string> {
    await keys("Control+KeyS");
    await until("the file saved", () => page.$$eval(".tabs-container .tab.dirty", (els) => els.length === 0), 20_000);
    // The tab is clean before the remote file system has finished writing: a file read then
    // can be cut short. Read until two reads 300 ms apart agree.
    let last = fs.readFileSync(file, "utf8");
    return until("the saved file to stop changing", async () => {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const now = fs.readFileSync(file, "utf8");
      const same = now === last && now;
      last = now;
      return same;
    }, 20_000);
  }

  /** Put the cursor at the end of the line that holds `needle` (found in the saved file) with
   * Go to Line. */
  async function endOfLineWith(needle: string): Promise<void> {
    const text = await saved();
    const line = text.split("\n").findIndex((l) => l.includes(needle)) + 1;
    assert.ok(line > 0, `no line with ${needle} in the saved file: ${JSON.stringify(text)}`);
    await keys("Control+KeyG");
    await page.waitForSelector(".quick-input-widget input", { visible: true });
    await page.keyboard.type(String(line));
    await page.keyboard.press("Enter");
    await until("the cursor on the line", () => page.$$eval(".statusbar-item", (els, n) =>
      els.some((e) => (e.textContent ?? "").includes(`Ln ${n},`)), line), 10_000);
    await page.keyboard.press("End");
  }

  before(async () => {
    if (skip) {
      return;
    }
    fs.mkdirSync(ws, { recursive: true });
    fs.writeFileSync(file, TEXT);
    const user = path.join(tmp, "user");
    const extensions = path.join(tmp, "extensions");
    fs.mkdirSync(path.join(user, "User"), { recursive: true });
    fs.mkdirSync(path.join(user, "Machine"), { recursive: true });
    fs.writeFileSync(path.join(user, "User", "settings.json"), JSON.stringify({
      "security.workspace.trust.enabled": false,
      "workbench.startupEditor": "none",
      "workbench.tips.enabled": false,
      "telemetry.telemetryLevel": "off",
      "extensions.autoUpdate": false,
      "update.mode": "none",
      "chat.disableAIFeatures": true,
      "files.autoSave": "off",
      "files.hotExit": "off",
    }));
    // code-server is a remote window: VS Code takes the machine-overridable server settings
    // from the Remote (Machine) settings only, as in Remote-SSH, WSL and dev containers.
    fs.writeFileSync(path.join(user, "Machine", "settings.json"), JSON.stringify({
      "compilot.server.command": path.join(path.dirname(PYTHON), "compilot"),
      "compilot.server.env": { COMPILOT_DATA_DIR: data, COMPILOT_CONFIG: path.join(tmp, "none.toml") },
      // Whole suggestions, not cut by the 250 ms decoding limit: what the model answers at a
      // cursor then does not depend on the machine's load (the LSP tests do the same). At
      // `ret` a cut answer (` = 632.8333`) disagreed with the suggest widget's `return`.
      "compilot.completion.predictMs": 0,
    }));
    const env = { ...process.env, XDG_CONFIG_HOME: path.join(tmp, "xdg"), XDG_DATA_HOME: path.join(tmp, "xdg"),
      XDG_CACHE_HOME: path.join(tmp, "xdg") };
    execFileSync(NODE, [CODE_SERVER, "--extensions-dir", extensions, "--user-data-dir", user, "--install-extension", VSIX],
      { env, stdio: "ignore" });
    const port = await freePort();
    codeServer = spawn(NODE, [CODE_SERVER, "--auth", "none", "--bind-addr", `127.0.0.1:${port}`, "--disable-telemetry",
      "--disable-update-check", "--disable-workspace-trust", "--extensions-dir", extensions, "--user-data-dir", user, ws],
    { env, detached: true, stdio: ["ignore", fs.openSync(path.join(tmp, "code-server.log"), "w"), fs.openSync(path.join(tmp, "code-server.err"), "w")] });
    await until("code-server to answer", async () => fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false), 60_000);
    const puppeteer = await import("puppeteer-core");
    browser = await puppeteer.launch({
      executablePath: CHROMIUM, headless: true, userDataDir: path.join(tmp, "chromium"),
      args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 900 });
    await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(ws)}`);
  });

  after(async () => {
    await browser?.close().catch(() => undefined);
    if (codeServer?.pid) {
      try {
        process.kill(-codeServer.pid, "SIGKILL");  // its process group: the extension host and the server
      } catch {
        // already gone
      }
    }
    for (const pid of serverPids()) {
      process.kill(pid, "SIGKILL");
    }
    if (!failed && !process.env.COMPILOT_E2E_KEEP) {  // a failure's screenshots and logs stay
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });

  test("ghost text, Tab, a word, Escape, the status bar and a restart, as a user sees them", { skip }, async (t) => {
    t.after(() => t.diagnostic(timings.join(", ")));
    await step("file-open", async () => {
      await page.waitForSelector(".monaco-workbench", { timeout: WAIT_MS });
      await page.waitForSelector(".explorer-folders-view .monaco-list-row", { timeout: WAIT_MS });
      await keys("Control+KeyP");
      await page.waitForSelector(".quick-input-widget input", { visible: true });
      await page.keyboard.type("temps.py");
      await until("the file in quick open", () => page.$$eval(".quick-input-list .monaco-list-row", (rows) =>
        rows.some((r) => (r.textContent ?? "").includes("temps.py"))));
      await page.keyboard.press("Enter");
      await page.waitForSelector(".monaco-editor .view-lines", { timeout: WAIT_MS });
      await until("the status item with the serving adapter", async () => /^base · acc/.test(await statusItem()));
    });

    // At the start of a new body line: ghost text appears; Tab inserts it; the server hears of it.
    const first = await step("line-start-ghost-text", async () => {
      await endOfLineWith("degrees Celsius to Fahrenheit");
      await page.keyboard.press("Enter");
      return until("ghost text at the line start", ghost);
    });
    await step("tab-accepts", async () => {
      await page.keyboard.press("Tab");
      await until("the ghost text to be gone", async () => (await ghost()) === "");
      const text = await saved();
      const line = text.split("\n")[2];
      assert.equal(line.trim(), first.split("\n")[0].trim(), `line 3 after Tab: ${JSON.stringify(line)}`);
      const accepted = await until("the accept in the store", async () => events("accepted").length > 0 && events("accepted"));
      assert.equal(accepted.length, 1);
      assert.equal(accepted[0].text.split("\n")[0].trim(), first.split("\n")[0].trim());
      // It was shown, and the store says how the extension knew (inferred or from the Tab).
      const shown = events("shown").find((e) => e.text === accepted[0].text);
      assert.ok(shown && (shown.inferred === 0 || shown.inferred === 1), JSON.stringify(events("shown")));
    });

    // Mid-word, with VS Code's suggest widget open (quick suggestions are on by default): the
    // server is asked with the selected entry and answers items that start with it.
    await step("mid-word-with-suggest-widget", async () => {
      await endOfLineWith("area of a circle");
      await page.keyboard.press("Enter");
      await page.keyboard.type("ret", { delay: 120 });
      // Quick suggestions open the widget as the word is typed, but not every time: on a loaded
      // machine the word's suggestions can come after the inline answer, and the widget then
      // stays closed. What this step checks is ghost text while the widget is open, so open it
      // as a user would (Ctrl+Space, Trigger Suggest) when typing did not.
      const opened = await waitUntil("the suggest widget", suggestWidget, 10_000, 200).catch(() => false);
      if (!opened) {
        timings.push("mid-word: the suggest widget opened with Ctrl+Space");
        await keys("Control+Space");
        await until("the suggest widget after Ctrl+Space", suggestWidget);
      }
      const text = await until("ghost text beside the suggest widget", ghost);
      assert.ok(await suggestWidget(), "the suggest widget closed");
      assert.ok(text.length > 0);
      await page.keyboard.press("Escape");  // closes the widget
      await until("the suggest widget to close", async () => !(await suggestWidget()));
      await page.keyboard.press("Escape");
      await keys("Control+Shift+KeyK");  // the line typed goes again
    });

    // A word with Ctrl+Right (Accept Next Word) is a partial accept; Escape then a dismissal.
    const third = await step("third-ghost-text", async () => {
      await endOfLineWith("degrees Celsius to Kelvin");
      await page.keyboard.press("Enter");
      return until("ghost text in the third function", ghost);
    });
    await step("ctrl-right-takes-a-word", async () => {
      await keys("Control+ArrowRight");
      const partial = await until("the partial accept in the store", async () => events("partial").length > 0 && events("partial"));
      assert.equal(partial.length, 1);
      assert.ok((partial[0].length ?? 0) > 0 && (partial[0].length ?? 0) < third.length, JSON.stringify(partial[0]));
      assert.ok(third.startsWith(partial[0].text.slice(0, partial[0].length ?? 0)), JSON.stringify({ third, partial }));
      await until("the rest of the suggestion still shown", ghost, 10_000);
    });
    await step("escape-dismisses", async () => {
      const before = events("rejected").length;
      await page.keyboard.press("Escape");
      await until("the ghost text to be gone", async () => (await ghost()) === "");
      await until("the dismissal in the store", async () => events("rejected").length > before);
    });

    await step("status-bar", async () => {
      const text = await until("the status item's rates", async () => {
        const t = await statusItem();
        return /^base · acc \d+% · comp (\d+%|–)$/.test(t) && t;
      });
      assert.match(text, /^base · acc/);
    });

    await step("server-killed-and-restarted", async () => {
      const pids = serverPids();
      assert.ok(pids.length > 0, "no compilot serve process found");
      for (const pid of pids) {
        process.kill(pid, "SIGKILL");
      }
      await until("the restart notification", async () => (await toasts()).some((t) => /restarting it \(1 of 5\)/.test(t)));
      await until("a new server", async () => serverPids().some((pid) => !pids.includes(pid)));
      await until("the status item after the restart", async () => /^base · acc/.test(await statusItem()));
    });
  });
});
