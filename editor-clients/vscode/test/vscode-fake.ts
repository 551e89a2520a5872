// A fake of the `vscode` module, enough for the extension and vscode-languageclient to run in
// plain Node: real event emitters, positions, ranges, URIs and cancellation; windows, commands
// and providers that record what they are given. Names it does not define are inert (a class,
// or an event / register function that returns a disposable). `install()` makes
// `require("vscode")` return it.

import Module from "module";
import * as path from "path";

type Listener<T> = (e: T) => unknown;

export class Disposable {
  constructor(private readonly fn: () => unknown = () => undefined) {}
  dispose(): void {
    this.fn();
  }
  static from(...items: { dispose(): unknown }[]): Disposable {
    return new Disposable(() => items.forEach((d) => d?.dispose()));
  }
}

export class EventEmitter<T> {
  private listeners = new Set<Listener<T>>();
  event = (listener: Listener<T>, thisArg?: unknown, disposables?: Disposable[]): Disposable => {
    const bound: Listener<T> = (e) => listener.call(thisArg, e);
    this.listeners.add(bound);
    const d = new Disposable(() => this.listeners.delete(bound));
    disposables?.push(d);
    return d;
  };
  fire(e: T): void {
    for (const l of [...this.listeners]) {
      l(e);
    }
  }
  dispose(): void {
    this.listeners.clear();
  }
}

export class Position {
  constructor(readonly line: number, readonly character: number) {}
  isEqual(other: Position): boolean {
    return this.line === other.line && this.character === other.character;
  }
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(a: Position | number, b: Position | number, c?: number, d?: number) {
    if (typeof a === "number") {
      this.start = new Position(a, b as number);
      this.end = new Position(c as number, d as number);
    } else {
      this.start = a;
      this.end = b as Position;
    }
  }
  get isEmpty(): boolean {
    return this.start.isEqual(this.end);
  }
}

export class Selection extends Range {
  constructor(readonly anchor: Position, readonly active: Position) {
    super(anchor, active);
  }
}

export class Uri {
  private constructor(readonly scheme: string, readonly authority: string, readonly path: string) {}
  static parse(value: string): Uri {
    const m = /^([a-z][\w+.-]*):(?:\/\/([^/]*))?(.*)$/i.exec(value);
    return m ? new Uri(m[1], m[2] ?? "", decodeURIComponent(m[3])) : new Uri("file", "", value);
  }
  static file(path: string): Uri {
    return new Uri("file", "", path);
  }
  get fsPath(): string {
    return this.path;
  }
  with(change: { scheme?: string; path?: string }): Uri {
    return new Uri(change.scheme ?? this.scheme, this.authority, change.path ?? this.path);
  }
  toString(): string {
    return `${this.scheme}://${this.authority}${encodeURI(this.path)}`;
  }
  toJSON(): unknown {
    return { scheme: this.scheme, path: this.path };
  }
}

export class CancellationTokenSource {
  private emitter = new EventEmitter<void>();
  readonly token = {
    isCancellationRequested: false,
    onCancellationRequested: this.emitter.event,
  };
  cancel(): void {
    if (!this.token.isCancellationRequested) {
      this.token.isCancellationRequested = true;
      this.emitter.fire();
    }
  }
  dispose(): void {
    this.emitter.dispose();
  }
}

export class CancellationError extends Error {}

export class InlineCompletionItem {
  constructor(public insertText: string | { value: string }, public range?: Range, public command?: unknown) {}
}

export class InlineCompletionList {
  constructor(public items: InlineCompletionItem[]) {}
}

export class MarkdownString {
  constructor(public value = "", public supportThemeIcons = false) {}
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export class SnippetString {
  constructor(public value = "") {}
}

/** VS Code's hierarchical code action kinds (extHostTypes.ts): `quickfix`, `refactor.extract`;
 * vscode-languageclient builds the kinds a server names from `Empty.append`. */
export class CodeActionKind {
  static readonly Empty = new CodeActionKind("");
  static readonly QuickFix = CodeActionKind.Empty.append("quickfix");
  static readonly Refactor = CodeActionKind.Empty.append("refactor");
  static readonly RefactorExtract = CodeActionKind.Refactor.append("extract");
  static readonly RefactorInline = CodeActionKind.Refactor.append("inline");
  static readonly RefactorMove = CodeActionKind.Refactor.append("move");
  static readonly RefactorRewrite = CodeActionKind.Refactor.append("rewrite");
  static readonly Source = CodeActionKind.Empty.append("source");
  static readonly SourceOrganizeImports = CodeActionKind.Source.append("organizeImports");
  static readonly SourceFixAll = CodeActionKind.Source.append("fixAll");
  static readonly Notebook = CodeActionKind.Empty.append("notebook");
  constructor(readonly value: string) {}
  append(part: string): CodeActionKind {
    return new CodeActionKind(this.value ? `${this.value}.${part}` : part);
  }
  contains(other: CodeActionKind): boolean {
    return this.value === other.value || other.value.startsWith(`${this.value}.`);
  }
  intersects(other: CodeActionKind): boolean {
    return this.contains(other) || other.contains(this);
  }
}

export const CodeActionTriggerKind = { Invoke: 1, Automatic: 2 };

export class TextEdit {
  constructor(public range: Range, public newText: string) {}
}

/** The text edits of a workspace edit, by document (file operations are not needed here). */
export class WorkspaceEdit {
  private readonly edits = new Map<string, [Uri, TextEdit[]]>();
  set(uri: Uri, edits: (TextEdit | [TextEdit, unknown])[]): void {
    this.edits.set(uri.toString(), [uri, edits.map((e) => (Array.isArray(e) ? e[0] : e))]);
  }
  replace(uri: Uri, range: Range, newText: string): void {
    const [, have] = this.edits.get(uri.toString()) ?? [uri, []];
    this.set(uri, [...have, new TextEdit(range, newText)]);
  }
  get(uri: Uri): TextEdit[] {
    return this.edits.get(uri.toString())?.[1] ?? [];
  }
  entries(): [Uri, TextEdit[]][] {
    return [...this.edits.values()];
  }
  get size(): number {
    return this.edits.size;
  }
}

export class CodeAction {
  edit?: WorkspaceEdit;
  command?: { title: string; command: string; arguments?: unknown[] };
  diagnostics?: unknown[];
  isPreferred?: boolean;
  constructor(public title: string, public kind?: CodeActionKind) {}
}

export const StatusBarAlignment = { Left: 1, Right: 2 };
export const InlineCompletionTriggerKind = { Invoke: 0, Automatic: 1 };
export const LogLevel = { Off: 0, Trace: 1, Debug: 2, Info: 3, Warning: 4, Error: 5 };
export const ProgressLocation = { SourceControl: 1, Window: 10, Notification: 15 };

export interface FakeDocument {
  uri: Uri;
  languageId: string;
  version: number;
  getText(): string;
  /** Replaces the text (`FakeVscode.edit` does it as an editor does, with the change event). */
  setText(text: string): void;
  isClosed: boolean;
  isUntitled: boolean;
  fileName: string;
  lineCount: number;
}

export function document(path: string, languageId: string, text: string): FakeDocument {
  return {
    uri: Uri.file(path),
    languageId,
    version: 1,
    getText: () => text,
    setText(value: string) {
      text = value;
      this.version += 1;
      this.lineCount = text.split("\n").length;
    },
    isClosed: false,
    isUntitled: false,
    fileName: path,
    lineCount: text.split("\n").length,
  };
}

/** The offset of a position in a text (lines end with "\n"). */
export function offsetAt(text: string, position: Position): number {
  const lines = text.split("\n");
  return lines.slice(0, position.line).reduce((n, line) => n + line.length + 1, 0) + position.character;
}

/** Inert fallbacks: `onDid…`/`onWill…` are events, `register…` record and return a disposable. */
function namespace<T extends object>(name: string, known: T, registered: [string, unknown[]][]): T {
  return new Proxy(known, {
    get(target, key) {
      if (typeof key !== "string" || key in target) {
        return (target as Record<string | symbol, unknown>)[key];
      }
      if (/^on(Did|Will)/.test(key)) {
        return () => new Disposable();
      }
      if (/^(register|create)/.test(key)) {
        return (...args: unknown[]) => {
          registered.push([`${name}.${key}`, args]);
          return Object.assign(new Disposable(), { set() {}, clear() {}, delete() {}, forEach() {}, get() {}, has: () => false });
        };
      }
      return undefined;
    },
  });
}

export interface StatusItem {
  text: string;
  tooltip?: unknown;
  name?: string;
  command?: unknown;
  backgroundColor?: unknown;
  visible: boolean;
  show(): void;
  hide(): void;
  dispose(): void;
}

export class FakeVscode {
  readonly registered: [string, unknown[]][] = [];
  readonly messages: { level: "info" | "warning" | "error"; message: string; items: string[] }[] = [];
  readonly log: string[] = [];
  readonly statusItems: StatusItem[] = [];
  readonly contexts = new Map<string, unknown>();
  readonly executed: [string, unknown[]][] = [];
  readonly opened: { content?: string; language?: string }[] = [];
  readonly external: string[] = [];
  readonly commandHandlers = new Map<string, (...args: unknown[]) => unknown>();
  readonly documents: FakeDocument[] = [];
  /** `compilot.*` settings (key without the prefix); others are undefined. */
  settings = new Map<string, unknown>();
  defaults = new Map<string, unknown>();
  /** `env.remoteName`: set, the window is a remote one (SSH, WSL, a container, code-server). */
  remoteName: string | undefined = undefined;
  /** `workspace.isTrusted` (`grantTrust` grants it, as the trust editor does). */
  trusted = true;
  /** `workspace.workspaceFolders`, as folder paths. */
  folders: string[] = [];
  /** What a quick pick answers: the chosen item, given the items. */
  pick: (items: { label: string }[]) => unknown = () => undefined;

  readonly didChangeTextDocument = new EventEmitter<unknown>();
  readonly didChangeSelection = new EventEmitter<unknown>();
  readonly didChangeActiveEditor = new EventEmitter<unknown>();
  readonly didChangeConfiguration = new EventEmitter<{ affectsConfiguration(section: string): boolean }>();
  readonly didGrantWorkspaceTrust = new EventEmitter<void>();
  readonly module: Record<string, unknown>;

  constructor() {
    const self = this;
    const message = (level: "info" | "warning" | "error") => async (msg: string, ...items: unknown[]) => {
      self.messages.push({ level, message: msg, items: items.filter((i): i is string => typeof i === "string") });
      return undefined;
    };
    const window = namespace("window", {
      createOutputChannel: (name: string) => {
        const line = (level: string) => (msg: string) => self.log.push(`[${name}] ${level} ${msg}`);
        return {
          name,
          logLevel: LogLevel.Info,
          onDidChangeLogLevel: () => new Disposable(),
          trace: line("trace"), debug: line("debug"), info: line("info"), warn: line("warn"), error: line("error"),
          append: line(""), appendLine: line(""), replace: line(""), clear() {}, show() {}, hide() {}, dispose() {},
        };
      },
      createStatusBarItem: () => {
        const item: StatusItem = {
          text: "", visible: false,
          show() { item.visible = true; }, hide() { item.visible = false; }, dispose() { item.visible = false; },
        };
        self.statusItems.push(item);
        return item;
      },
      showInformationMessage: message("info"),
      showWarningMessage: message("warning"),
      showErrorMessage: message("error"),
      showQuickPick: async (items: { label: string }[]) => self.pick(await items),
      showTextDocument: async (doc: unknown) => ({ document: doc }),
      withProgress: (_o: unknown, task: (p: unknown, t: unknown) => unknown) => task({ report() {} }, new CancellationTokenSource().token),
      activeTextEditor: undefined,
      visibleTextEditors: [],
      tabGroups: { all: [], onDidChangeTabs: () => new Disposable(), onDidChangeTabGroups: () => new Disposable() },
      onDidChangeTextEditorSelection: this.didChangeSelection.event,
      onDidChangeActiveTextEditor: this.didChangeActiveEditor.event,
    }, this.registered);
    const workspace = namespace("workspace", {
      getConfiguration: (section?: string) => {
        const full = (key: string) => (section ? `${section}.${key}` : key);
        const local = (key: string) => full(key).replace(/^compilot\./, "");
        const isOurs = (key: string) => full(key).startsWith("compilot.");
        return {
          get: (key: string, fallback?: unknown) => {
            if (!isOurs(key)) {
              return fallback;
            }
            const k = local(key);
            return structuredClone(self.settings.has(k) ? self.settings.get(k) : self.defaults.get(k) ?? fallback);
          },
          has: (key: string) => isOurs(key) && self.defaults.has(local(key)),
          inspect: (key: string) => (isOurs(key) ? { key: full(key), defaultValue: structuredClone(self.defaults.get(local(key))) } : undefined),
          update: async () => undefined,
        };
      },
      get textDocuments() {
        return self.documents;
      },
      get workspaceFolders() {
        return self.folders.length ? self.folders.map((folder, index) => ({ uri: Uri.file(folder), name: path.basename(folder), index })) : undefined;
      },
      get isTrusted() {
        return self.trusted;
      },
      onDidGrantWorkspaceTrust: this.didGrantWorkspaceTrust.event,
      notebookDocuments: [],
      openTextDocument: async (options: { content?: string; language?: string }) => {
        self.opened.push(options);
        return options;
      },
      onDidChangeTextDocument: this.didChangeTextDocument.event,
      onDidChangeConfiguration: this.didChangeConfiguration.event,
      applyEdit: async () => true,
    }, this.registered);
    const languages = namespace("languages", {
      match: (selector: unknown, doc: FakeDocument) => {
        const filters = (Array.isArray(selector) ? selector : [selector]) as ({ scheme?: string; language?: string } | string)[];
        return filters.some((f) => (typeof f === "string" ? f === doc.languageId
          : (f.scheme === undefined || f.scheme === doc.uri.scheme) && (f.language === undefined || f.language === doc.languageId))) ? 10 : 0;
      },
    }, this.registered);
    const commands = namespace("commands", {
      registerCommand: (id: string, fn: (...args: unknown[]) => unknown) => {
        if (self.commandHandlers.has(id)) {
          throw new Error(`command '${id}' already exists`);
        }
        self.commandHandlers.set(id, fn);
        return new Disposable(() => self.commandHandlers.delete(id));
      },
      executeCommand: async (id: string, ...args: unknown[]) => {
        self.executed.push([id, args]);
        if (id === "setContext") {
          self.contexts.set(args[0] as string, args[1]);
          return undefined;
        }
        return self.commandHandlers.get(id)?.(...args);
      },
      getCommands: async () => [...self.commandHandlers.keys()],
    }, this.registered);
    const env = namespace("env", {
      appName: "Visual Studio Code (fake)",
      language: "en",
      machineId: "fake",
      sessionId: "fake",
      uriScheme: "vscode",
      get remoteName() {
        return self.remoteName;
      },
      openExternal: async (uri: Uri) => (self.external.push(uri.toString()), true),
    }, this.registered);
    const known: Record<string, unknown> = {
      version: "1.91.0",
      Disposable, EventEmitter, Position, Range, Selection, Uri, CancellationTokenSource, CancellationError,
      InlineCompletionItem, InlineCompletionList, MarkdownString, ThemeColor, SnippetString,
      CodeActionKind, CodeActionTriggerKind, CodeAction, TextEdit, WorkspaceEdit, StatusBarAlignment, InlineCompletionTriggerKind, LogLevel, ProgressLocation,
      window, workspace, languages, commands, env,
    };
    this.module = new Proxy(known, {
      get(target, key) {
        if (typeof key !== "string" || key in target) {
          return target[key as string];
        }
        // Any other class or enum: an inert class (enums read as undefined members).
        target[key] = /^[A-Z]/.test(key) ? class {} : namespace(key, {}, self.registered);
        return target[key];
      },
    });
  }

  /** Replace `range` of `doc` with `text` as an editor does: the document's text and version
   * change, then `onDidChangeTextDocument` fires with the change. */
  edit(doc: FakeDocument, range: Range, text: string): void {
    const old = doc.getText();
    const start = offsetAt(old, range.start);
    const end = offsetAt(old, range.end);
    doc.setText(old.slice(0, start) + text + old.slice(end));
    this.didChangeTextDocument.fire({
      document: doc, reason: undefined,
      contentChanges: [{ range, rangeOffset: start, rangeLength: end - start, text }],
    });
  }

  /** Trust the workspace: `isTrusted` turns true and `onDidGrantWorkspaceTrust` fires. */
  grantTrust(): void {
    this.trusted = true;
    this.didGrantWorkspaceTrust.fire();
  }

  /** Providers registered with `languages.register<kind>Provider`. */
  providers(kind: string): unknown[] {
    return this.registered.filter(([name]) => name === `languages.register${kind}Provider`).map(([, args]) => args[1]);
  }

  /** Make `require("vscode")` return this fake (for modules loaded after this call). */
  install(): void {
    const mod = Module as unknown as {
      _resolveFilename(request: string, ...rest: unknown[]): string;
      _cache: Record<string, unknown>;
    };
    const resolve = mod._resolveFilename;
    mod._resolveFilename = function (request: string, ...rest: unknown[]) {
      return request === "vscode" ? "vscode" : resolve.call(this, request, ...rest);
    };
    require.cache["vscode"] = { id: "vscode", filename: "vscode", loaded: true, exports: this.module } as NodeJS.Module;
  }
}
