// The extension's settings: read once, typed, and mapped onto the server's settings tree.
//
// package.json (contributes.configuration) is the only place defaults live: VS Code's
// `WorkspaceConfiguration.get` returns them, and a value of the wrong type falls back to the
// default that `inspect` reports, so nothing here restates one. No `vscode` import: the reader
// is an interface, so tests (and the integration test) feed it package.json's defaults.

/** Where settings come from: `workspace.getConfiguration("compilot")` in the extension. */
export interface ConfigReader {
  /** The effective value of `compilot.<key>` (package.json's default when unset). */
  get(key: string): unknown;
  /** package.json's default of `compilot.<key>`. */
  defaultValue(key: string): unknown;
}

export interface ServerLaunchSettings {
  command: string;
  interpreter: string;
  args: string[];
  env: Record<string, string>;
  /** Further server settings (the config.toml tree), passed through. */
  settings: Record<string, unknown>;
}

export interface ClientSettings {
  /** language id → on/off; `*` is every other language. */
  languages: Record<string, boolean>;
  debounceMs: number;
  completion: { maxTokens: number; candidates: number; predictMs: number };
  model: { path: string };
  logging: { enabled: boolean };
  server: ServerLaunchSettings;
}

/** The server's settings tree (camelCase), as initializationOptions / didChangeConfiguration. */
export type ServerSettings = Record<string, unknown>;

export interface ReadResult {
  settings: ClientSettings;
  /** One line per setting that had a value of the wrong type (its default was used). */
  problems: string[];
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

type Check<T> = (v: unknown) => v is T;
const isString: Check<string> = (v): v is string => typeof v === "string";
const isBool: Check<boolean> = (v): v is boolean => typeof v === "boolean";
const isCount: Check<number> = (v): v is number => Number.isInteger(v) && (v as number) >= 0;
const isNonNegative: Check<number> = (v): v is number => typeof v === "number" && Number.isFinite(v) && v >= 0;
const isStrings: Check<string[]> = (v): v is string[] => Array.isArray(v) && v.every(isString);
const isStringMap: Check<Record<string, string>> = (v): v is Record<string, string> =>
  isRecord(v) && Object.values(v).every(isString);
const isBoolMap: Check<Record<string, boolean>> = (v): v is Record<string, boolean> =>
  isRecord(v) && Object.values(v).every(isBool);
const isObject: Check<Record<string, unknown>> = (v): v is Record<string, unknown> => isRecord(v);

/** Read every `compilot.*` setting into one typed object. */
export function readSettings(config: ConfigReader): ReadResult {
  const problems: string[] = [];
  function read<T>(key: string, check: Check<T>, expected: string): T {
    const value = config.get(key);
    if (check(value)) {
      return value;
    }
    const fallback = config.defaultValue(key);
    if (!check(fallback)) {
      // package.json and this reader disagree: a bug, caught by test/unit/manifest.test.ts.
      throw new Error(`compilot.${key}: package.json has no default of type ${expected}`);
    }
    problems.push(`compilot.${key}: expected ${expected}, got ${JSON.stringify(value)}; using the default`);
    return fallback;
  }
  const settings: ClientSettings = {
    languages: read("languages", isBoolMap, "an object of booleans"),
    debounceMs: read("debounceMs", isCount, "a non-negative integer"),
    completion: {
      maxTokens: read("completion.maxTokens", isCount, "a non-negative integer"),
      candidates: read("completion.candidates", isCount, "a non-negative integer"),
      predictMs: read("completion.predictMs", isNonNegative, "a non-negative number"),
    },
    model: { path: read("model.path", isString, "a string") },
    logging: { enabled: read("logging.enabled", isBool, "true or false") },
    server: {
      command: read("server.command", isString, "a string"),
      interpreter: read("server.interpreter", isString, "a string"),
      args: read("server.args", isStrings, "a list of strings"),
      env: read("server.env", isStringMap, "an object of strings"),
      settings: read("server.settings", isObject, "an object"),
    },
  };
  return { settings, problems };
}

/** Values for `${workspaceFolder}`, `${userHome}`, `${env:NAME}` and a leading `~`. */
export interface Variables {
  home: string;
  workspaceFolder?: string;
  env: Record<string, string | undefined>;
}

/** Expand the variables VS Code users write in path settings. */
export function expand(value: string, vars: Variables): string {
  let out = value.replace(/\$\{(userHome|workspaceFolder|env:([^}]+))\}/g, (whole, name: string, env?: string) => {
    if (env !== undefined) {
      return vars.env[env] ?? "";
    }
    if (name === "userHome") {
      return vars.home;
    }
    return vars.workspaceFolder ?? whole;
  });
  if (out === "~" || out.startsWith("~/")) {
    out = vars.home + out.slice(1);
  }
  return out;
}

/** Merge `over` into `base` key by key (objects recursively); neither is modified. */
export function deepMerge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const old = out[key];
    out[key] = isRecord(old) && isRecord(value) ? deepMerge(old, value) : value;
  }
  return out;
}

/** The server's settings tree for these settings: what `initializationOptions` and
 * `workspace/didChangeConfiguration` carry. Client-only settings (languages, debounce, how the
 * server is started) stay out; an empty model path is left out so that the server's own
 * config.toml (or its embedded model) decides. */
export function serverSettings(settings: ClientSettings, vars: Variables): ServerSettings {
  const own: Record<string, unknown> = {
    completion: {
      maxTokens: settings.completion.maxTokens,
      candidates: settings.completion.candidates,
      predictMs: settings.completion.predictMs,
    },
    logging: { enabled: settings.logging.enabled },
  };
  const modelPath = settings.model.path.trim();
  if (modelPath) {
    own.model = { path: expand(modelPath, vars) };
  }
  return deepMerge(settings.server.settings, own);
}

/** Whether `languageId` gets inline completions under the `compilot.languages` map. */
export function languageEnabled(languages: Record<string, boolean>, languageId: string): boolean {
  return languages[languageId] ?? languages["*"] ?? true;
}

/** Which part of the extension a settings change concerns. */
export function changeKind(affects: (section: string) => boolean): { restart: boolean; server: boolean } {
  const restart = affects("compilot.server.command") || affects("compilot.server.interpreter")
    || affects("compilot.server.args") || affects("compilot.server.env");
  const server = affects("compilot.completion") || affects("compilot.model") || affects("compilot.logging")
    || affects("compilot.server.settings");
  return { restart, server };
}
