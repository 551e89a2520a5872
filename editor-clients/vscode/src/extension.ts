// The extension: starts `compilot serve` through vscode-languageclient, gates and follows its
// inline completions, and shows its status. Logic lives in the vscode-free modules it wires.

import * as vscode from "vscode";
import {
  CloseAction,
  ErrorAction,
  Executable,
  LanguageClient,
  LanguageClientOptions,
  RevealOutputChannelOn,
  State,
} from "vscode-languageclient/node";
import { CompilotApi, initializationOptions } from "./client";
import { CursorNotifier } from "./cursor";
import { executeCommand, provideInlineCompletionItems } from "./inline";
import { Launch, describeLaunch, launchProblem, serverLaunch, startFailureMessage } from "./launch";
import { Reporter } from "./reporter";
import { RestartPolicy } from "./restart";
import { ClientSettings, changeKind, readSettings } from "./settings";
import { ClientState, MenuAction, menuEntries, statsMarkdown, statusView } from "./status";
import { SECTION, clientTransport, configReader, setContext, variables, where } from "./vscodeapi";

const STATUS_REFRESH_MS = 30_000;
/** After an accept: once for the accept count, once more when its compile check has run. */
const REFRESH_AFTER_ACCEPT_MS = [500, 8_000];
const STOP_TIMEOUT_MS = 3_000;

class Compilot implements vscode.Disposable {
  private readonly output = vscode.window.createOutputChannel("compilot", { log: true });
  private readonly item = vscode.window.createStatusBarItem("compilot.status", vscode.StatusBarAlignment.Right, 100);
  private readonly restarts = new RestartPolicy();
  private readonly disposables: vscode.Disposable[] = [];
  private settings: ClientSettings;
  private client: LanguageClient | undefined;
  private api: CompilotApi | undefined;
  private reporter: Reporter | undefined;
  private cursor: CursorNotifier | undefined;
  private state: ClientState = { phase: "starting", paused: false, busy: 0 };
  private timers = new Set<ReturnType<typeof setTimeout>>();
  private stopping: Promise<void> | undefined;
  /** The last settings problems shown, so that each is shown once. */
  private settingProblems = "";

  constructor() {
    this.settings = this.readSettings();
    this.item.name = "compilot";
    this.item.command = "compilot.showMenu";
    this.render();
    this.item.show();
  }

  register(context: vscode.ExtensionContext): void {
    const command = (id: string, run: () => unknown) =>
      this.disposables.push(vscode.commands.registerCommand(id, run));
    command("compilot.showMenu", () => this.showMenu());
    command("compilot.togglePause", () => this.setPaused(!this.state.paused));
    command("compilot.showStats", () => this.showStats());
    command("compilot.trainNow", () => this.train());
    command("compilot.openReport", () => this.openReport());
    command("compilot.restartServer", () => {
      this.restarts.reset();
      return this.restart();
    });
    command("compilot.showLog", () => this.output.show());
    command("compilot.dismiss", async () => {
      this.reporter?.dismissed();
      await vscode.commands.executeCommand("editor.action.inlineSuggest.hide");
    });
    this.disposables.push(
      vscode.workspace.onDidChangeTextDocument((e) => this.reporter?.changed(e.document.uri.toString(), e.contentChanges)),
      vscode.window.onDidChangeTextEditorSelection((e) => {
        if (e.textEditor === vscode.window.activeTextEditor && e.selections.length > 0) {
          const active = e.selections[0].active;
          this.reporter?.moved(e.textEditor.document.uri.toString(), active);
          this.cursor?.moved(e.textEditor.document.uri.toString(), { line: active.line, character: active.character });
        }
      }),
      vscode.window.onDidChangeActiveTextEditor((editor) => {
        this.reporter?.editorChanged(editor?.document.uri.toString());
        this.focused(editor);
      }),
      vscode.workspace.onDidChangeConfiguration((e) => this.configurationChanged(e)),
      // Trust may make the workspace's own compilot usable (and changes which settings apply).
      vscode.workspace.onDidGrantWorkspaceTrust(() => {
        this.settings = this.readSettings();
        if (this.state.phase === "failed") {
          void this.restart();
        }
      }),
    );
    const interval = setInterval(() => void this.refresh(), STATUS_REFRESH_MS);
    this.disposables.push({ dispose: () => clearInterval(interval) });
    context.subscriptions.push({ dispose: () => void this.dispose() });
  }

  private readSettings(): ClientSettings {
    const { settings, problems } = readSettings(configReader());
    for (const problem of problems) {
      this.output.warn(problem);
    }
    const said = problems.join("; ");
    if (said && said !== this.settingProblems) {
      void vscode.window.showWarningMessage(`compilot settings: ${said}`);
    }
    this.settingProblems = said;
    return settings;
  }

  async start(): Promise<void> {
    const launch = serverLaunch(this.settings.server, variables(), where());
    const cwd = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
    const executable: Executable = {
      command: launch.command,
      args: launch.args,
      options: { env: launch.env, cwd },
    };
    const problem = launchProblem(launch, cwd);
    if (problem) {
      return this.failed(problem, launch);
    }
    this.output.info(`starting ${describeLaunch(launch)} (from ${launch.source})`);
    const holder: { reporter?: Reporter } = {};
    const client = new LanguageClient(SECTION, "compilot", executable, this.clientOptions(holder));
    const api = new CompilotApi(clientTransport(client));
    const reporter = new Reporter(api, {
      tracking: (active) => setContext("compilot.suggestionShown", active),
      accepted: () => this.refreshSoon(),
      log: (message) => this.output.debug(message),
    });
    holder.reporter = reporter;
    this.client = client;
    this.api = api;
    this.reporter = reporter;
    // Where the cursor is, so that the server evaluates the window there ahead of a request.
    this.cursor = new CursorNotifier((method, params) => {
      if (client === this.client && client.isRunning()) {
        client.sendNotification(method, params).catch((error: unknown) => this.output.debug(`${method}: ${String(error)}`));
      }
    });
    client.onDidChangeState((e) => {
      if (client !== this.client) {
        return;
      }
      if (e.newState === State.Running) {
        this.state = { ...this.state, phase: "running", problem: undefined };
        this.focused(vscode.window.activeTextEditor);
        void this.refresh();
      } else if (e.newState === State.Starting) {
        this.state = { ...this.state, phase: "starting", busy: 0 };
      } else {
        this.state = { ...this.state, phase: "stopped", status: undefined, busy: 0 };
      }
      this.render();
    });
    this.state = { ...this.state, phase: "starting" };
    this.render();
    try {
      await client.start();
    } catch (error) {
      if (client === this.client) {
        await this.failed(startFailureMessage(launch, error), launch);
      }
    }
  }

  /** The server could not start: say why and what to set (in a remote window, the Remote
   * settings; with an untrusted workspace's venv, the trust editor); no restarts. */
  private async failed(message: string, launch: Launch): Promise<void> {
    this.output.error(message);
    this.state = { ...this.state, phase: "failed", problem: message };
    this.render();
    const settings = launch.where.remoteName ? "Open Remote Settings" : "Open Settings";
    const actions = [settings, ...(launch.untrustedVenv ? ["Manage Workspace Trust"] : []), "Show Log"];
    const choice = await vscode.window.showErrorMessage(message, ...actions);
    if (choice === "Open Settings") {
      await vscode.commands.executeCommand("workbench.action.openSettings", "compilot.server");
    } else if (choice === "Open Remote Settings") {
      await vscode.commands.executeCommand("workbench.action.openRemoteSettings", "compilot.server");
    } else if (choice === "Manage Workspace Trust") {
      await vscode.commands.executeCommand("workbench.trust.manage");
    } else if (choice === "Show Log") {
      this.output.show();
    }
  }

  /** `holder.reporter` is set once the client exists (the reporter sends through it). */
  private clientOptions(holder: { reporter?: Reporter }): LanguageClientOptions {
    const provide = (reporter: Reporter) => provideInlineCompletionItems({
      languages: () => this.settings.languages,
      debounceMs: () => this.settings.debounceMs,
      paused: () => this.state.paused,
      automatic: vscode.InlineCompletionTriggerKind.Automatic,
      busy: (delta) => {
        this.state.busy = Math.max(0, this.state.busy + delta);
        this.render();
      },
    }, reporter);
    let inline: ReturnType<typeof provide> | undefined;
    return {
      documentSelector: [{ scheme: "file" }, { scheme: "untitled" }],
      outputChannel: this.output,
      traceOutputChannel: this.output,
      revealOutputChannelOn: RevealOutputChannelOn.Never,
      // A function: every (re)start sends the settings as they are then.
      initializationOptions: () => initializationOptions(this.settings, variables()),
      errorHandler: {
        error: (_error, _message, count) => ({ action: count !== undefined && count <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown }),
        closed: () => {
          holder.reporter?.reset();
          const decision = this.restarts.closed();
          this.output.warn(decision.message);
          if (decision.restart) {
            void vscode.window.showWarningMessage(decision.message, "Show Log").then((c) => c && this.output.show());
          } else {
            void vscode.window.showErrorMessage(decision.message, "Show Log", "Restart").then((c) => {
              if (c === "Show Log") {
                this.output.show();
              } else if (c === "Restart") {
                void vscode.commands.executeCommand("compilot.restartServer");
              }
            });
          }
          return { action: decision.restart ? CloseAction.Restart : CloseAction.DoNotRestart, message: decision.message, handled: true };
        },
      },
      middleware: {
        provideInlineCompletionItems: (document, position, context, token, next) => {
          if (!holder.reporter) {
            return undefined;
          }
          inline ??= provide(holder.reporter);
          return inline(document, position, context, token, next);
        },
        executeCommand: (command, args, next) =>
          holder.reporter ? executeCommand(holder.reporter)(command, args, next) : next(command, args),
        // Suggestions are ghost text only: the server's textDocument/completion is for clients
        // without inline completion, and in the suggest widget it would duplicate them.
        provideCompletionItem: () => undefined,
      },
    };
  }

  /** Tell the server which document has the focus and where its cursor is. */
  private focused(editor: vscode.TextEditor | undefined): void {
    const active = editor?.selection.active;
    this.cursor?.focused(editor?.document.uri.toString(), active ? { line: active.line, character: active.character } : undefined);
  }

  private async stop(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    this.api = undefined;
    this.cursor?.cancel();
    this.cursor = undefined;
    this.reporter?.reset();
    this.reporter = undefined;
    if (client) {
      try {
        // shutdown + exit, then the process is killed if it has not gone within the timeout.
        await client.dispose(STOP_TIMEOUT_MS);
      } catch (error) {
        this.output.warn(`stopping the server: ${String(error)}`);
      }
    }
  }

  async restart(): Promise<void> {
    this.output.info("restarting the server");
    await this.stop();
    await this.start();
  }

  private configurationChanged(e: vscode.ConfigurationChangeEvent): void {
    if (!e.affectsConfiguration(SECTION)) {
      return;
    }
    this.settings = this.readSettings();
    const kind = changeKind((section) => e.affectsConfiguration(section));
    if (kind.restart) {
      void this.restart();
    } else if (kind.server && this.api && this.state.phase === "running") {
      this.api.configure(initializationOptions(this.settings, variables())).catch((error: unknown) =>
        this.output.warn(`sending settings: ${String(error)}`));
    }
    this.render();
  }

  private async refresh(): Promise<void> {
    const api = this.api;
    if (!api || this.state.phase !== "running") {
      return;
    }
    try {
      const status = await api.status();
      this.state = { ...this.state, status, problem: undefined };
    } catch (error) {
      this.state = { ...this.state, status: undefined, problem: `compilot.status failed: ${String(error)}` };
    }
    this.render();
  }

  private refreshSoon(): void {
    for (const delay of REFRESH_AFTER_ACCEPT_MS) {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        void this.refresh();
      }, delay);
      this.timers.add(timer);
    }
  }

  private render(): void {
    const view = statusView(this.state);
    this.item.text = view.text;
    this.item.tooltip = new vscode.MarkdownString(view.tooltip, true);
    this.item.backgroundColor = view.warning ? new vscode.ThemeColor("statusBarItem.warningBackground") : undefined;
  }

  private setPaused(paused: boolean): void {
    this.state = { ...this.state, paused };
    if (paused) {
      this.reporter?.dismissed(false);  // pausing says nothing of what was on screen
    }
    this.output.info(paused ? "completions paused" : "completions resumed");
    this.render();
  }

  private async showMenu(): Promise<void> {
    await this.refresh();
    const entries = menuEntries(this.state);
    const picked = await vscode.window.showQuickPick(
      entries.map((entry) => ({ label: entry.label, description: entry.description, action: entry.action })),
      { title: "compilot", placeHolder: statusView(this.state).text.replace(/\$\([^)]*\)\s*/g, "") },
    );
    if (picked) {
      await this.run(picked.action);
    }
  }

  private async run(action: MenuAction): Promise<void> {
    switch (action) {
      case "pause":
        return this.setPaused(true);
      case "resume":
        return this.setPaused(false);
      case "stats":
        return this.showStats();
      case "train":
        return this.train();
      case "report":
        return this.openReport();
      case "log":
        return this.output.show();
      case "restart":
        this.restarts.reset();
        return this.restart();
      case "settings":
        await vscode.commands.executeCommand("workbench.action.openSettings", "@ext:compilot.compilot");
        return;
    }
  }

  private async showStats(): Promise<void> {
    const api = this.api;
    if (!api || this.state.phase !== "running") {
      void vscode.window.showWarningMessage("compilot: the server is not running.");
      return;
    }
    try {
      const [status, stats] = await Promise.all([api.status(), api.stats()]);
      const doc = await vscode.workspace.openTextDocument({ language: "markdown", content: statsMarkdown(status, stats) });
      await vscode.window.showTextDocument(doc, { preview: true });
    } catch (error) {
      void vscode.window.showErrorMessage(`compilot: could not read the statistics: ${String(error)}`);
    }
  }

  private async train(): Promise<void> {
    const api = this.api;
    if (!api || this.state.phase !== "running") {
      void vscode.window.showWarningMessage("compilot: the server is not running.");
      return;
    }
    try {
      const result = await api.train();
      this.output.info(`training: ${result.message}`);
      const show = result.log ? ["Show Training Log"] : [];
      const choice = result.started
        ? await vscode.window.showInformationMessage(`compilot: ${result.message}`, ...show)
        : await vscode.window.showWarningMessage(`compilot: ${result.message}`, ...show);
      if (choice && result.log) {
        await vscode.window.showTextDocument(vscode.Uri.file(result.log), { preview: true });
      }
      this.refreshSoon();
    } catch (error) {
      void vscode.window.showErrorMessage(`compilot: could not start a training round: ${String(error)}`);
    }
  }

  private async openReport(): Promise<void> {
    await this.refresh();
    const report = this.state.status?.report;
    if (!report) {
      void vscode.window.showInformationMessage("compilot: there is no report yet.");
      return;
    }
    await vscode.env.openExternal(vscode.Uri.file(report));
  }

  /** Stop everything; resolves when the server has shut down. */
  dispose(): Promise<void> {
    this.stopping ??= (async () => {
      for (const timer of this.timers) {
        clearTimeout(timer);
      }
      for (const d of this.disposables) {
        d.dispose();
      }
      this.item.dispose();
      await this.stop();
      this.output.dispose();
    })();
    return this.stopping;
  }
}

let extension: Compilot | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const current = new Compilot();
  extension = current;
  current.register(context);
  // Not awaited: a server that cannot start must not hold up activation (start() tells why).
  void current.start();
}

export async function deactivate(): Promise<void> {
  const current = extension;
  extension = undefined;
  await current?.dispose();
}
