// How the server is started: the executable, its arguments and environment, from the settings.

import * as fs from "fs";
import * as path from "path";
import { ServerLaunchSettings, Variables, expand } from "./settings";

export interface Launch {
  command: string;
  args: string[];
  env: Record<string, string>;
  /** Which setting chose the command (for messages that tell the user what to fix). */
  source: "compilot.server.command" | "compilot.server.interpreter" | "PATH" | "workspace venv";
  /** Where the window runs (for messages: a remote window reads other settings). */
  where: Where;
  /** A compilot in the workspace's virtual environment that was not used because the
   * workspace is not trusted (running it runs the workspace's code). */
  untrustedVenv?: string;
}

/** The window the extension runs in. */
export interface Where {
  /** `vscode.env.remoteName`: set in a remote window (SSH, WSL, a container, code-server). */
  remoteName?: string;
  /** `vscode.workspace.isTrusted`. */
  trusted: boolean;
}

/** The executable looked up on PATH when neither command nor interpreter is set. */
export const DEFAULT_COMMAND = "compilot";

/** Where a workspace's own virtual environment keeps compilot, looked for after PATH. */
export const WORKSPACE_VENVS = [".venv/bin/compilot", "venv/bin/compilot", ".venv/Scripts/compilot.exe"];

/** `<command> serve <args>`, else `<interpreter> -m compilot serve <args>`, else `compilot serve
 * <args>` from PATH, else (in a trusted workspace only) the workspace's `.venv/bin/compilot`;
 * the environment is VS Code's plus `compilot.server.env`. */
export function serverLaunch(server: ServerLaunchSettings, vars: Variables, where: Where = { trusted: false },
  isExecutable: (file: string) => boolean = isExecutableFile): Launch {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(vars.env)) {
    if (value !== undefined) {
      env[key] = value;
    }
  }
  for (const [key, value] of Object.entries(server.env)) {
    env[key] = expand(value, vars);
  }
  const extra = server.args.map((arg) => expand(arg, vars));
  const command = server.command.trim();
  if (command) {
    return { command: expand(command, vars), args: ["serve", ...extra], env, source: "compilot.server.command", where };
  }
  const interpreter = server.interpreter.trim();
  if (interpreter) {
    return {
      command: expand(interpreter, vars),
      args: ["-m", "compilot", "serve", ...extra],
      env,
      source: "compilot.server.interpreter",
      where,
    };
  }
  const fromPath: Launch = { command: DEFAULT_COMMAND, args: ["serve", ...extra], env, source: "PATH", where };
  if (findExecutable(DEFAULT_COMMAND, env, undefined, isExecutable) !== undefined || !vars.workspaceFolder) {
    return fromPath;
  }
  const venv = WORKSPACE_VENVS.map((rel) => path.join(vars.workspaceFolder as string, rel)).find(isExecutable);
  if (venv === undefined) {
    return fromPath;
  }
  return where.trusted
    ? { ...fromPath, command: venv, source: "workspace venv" }
    : { ...fromPath, untrustedVenv: venv };
}

/** The command line, quoted for a log line or a message. */
export function describeLaunch(launch: Launch): string {
  const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`);
  return [launch.command, ...launch.args].map(quote).join(" ");
}

function isExecutableFile(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The file `command` runs (a path, else looked up on the PATH of `env`), or undefined:
 * checked before starting, so that a wrong setting gets one clear message. */
export function findExecutable(command: string, env: Record<string, string>, cwd?: string,
  isExecutable: (file: string) => boolean = isExecutableFile): string | undefined {
  if (command.includes("/")) {
    const file = cwd ? path.resolve(cwd, command) : command;
    return isExecutable(file) ? file : undefined;
  }
  for (const dir of (env.PATH ?? "").split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, command))) {
      return path.join(dir, command);
    }
  }
  return undefined;
}

/** A message for a server that could not be started, naming the settings that fix it and,
 * in a remote window, where they go. */
export function startFailureMessage(launch: Launch, error: unknown): string {
  const detail = error instanceof Error ? error.message : String(error);
  const remote = launch.where.remoteName;
  const settings = remote ? "your Remote settings (Preferences: Open Remote Settings)" : "your settings";
  let hint: string;
  if (launch.source === "PATH") {
    hint = `Set compilot.server.command in ${settings} to the compilot executable (e.g. <compilot>/.venv/bin/compilot), or compilot.server.interpreter to a Python that has compilot installed.`;
  } else if (launch.source === "workspace venv") {
    hint = `It is the workspace's own compilot; set compilot.server.command in ${settings} to use another.`;
  } else {
    hint = `Check the setting ${launch.source} in ${settings}.`;
  }
  if (remote) {
    hint += ` This is a remote window (${remote}): the server runs on the remote machine, and VS Code takes compilot.server.* there from the Remote settings only, not from the User settings.`;
  }
  if (launch.untrustedVenv) {
    hint += ` The workspace has ${launch.untrustedVenv}, which compilot starts only in a trusted workspace (it runs the workspace's code): trust the workspace to use it.`;
  }
  return `compilot: could not start the server (${describeLaunch(launch)}): ${detail.replace(/\.$/, "")}. ${hint}`;
}

/** Why `launch` cannot start, or undefined when its executable is there. */
export function launchProblem(launch: Launch, cwd?: string, isExecutable?: (file: string) => boolean): string | undefined {
  if (findExecutable(launch.command, launch.env, cwd, isExecutable) !== undefined) {
    return undefined;
  }
  const detail = launch.command.includes("/")
    ? `${launch.command} is not an executable file`
    : `${launch.command} was not found on PATH`;
  return startFailureMessage(launch, detail);
}
