// How the server is started: the executable, its arguments and environment, from the settings.

import * as fs from "fs";
import * as path from "path";
import { ServerLaunchSettings, Variables, expand } from "./settings";

export interface Launch {
  command: string;
  args: string[];
  env: Record<string, string>;
  /** Which setting chose the command (for messages that tell the user what to fix). */
  source: "compilot.server.command" | "compilot.server.interpreter" | "PATH";
}

/** The executable looked up on PATH when neither command nor interpreter is set. */
export const DEFAULT_COMMAND = "compilot";

/** `<command> serve <args>`, else `<interpreter> -m compilot serve <args>`, else `compilot serve
 * <args>` from PATH; the environment is VS Code's plus `compilot.server.env`. */
export function serverLaunch(server: ServerLaunchSettings, vars: Variables): Launch {
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
    return { command: expand(command, vars), args: ["serve", ...extra], env, source: "compilot.server.command" };
  }
  const interpreter = server.interpreter.trim();
  if (interpreter) {
    return {
      command: expand(interpreter, vars),
      args: ["-m", "compilot", "serve", ...extra],
      env,
      source: "compilot.server.interpreter",
    };
  }
  return { command: DEFAULT_COMMAND, args: ["serve", ...extra], env, source: "PATH" };
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

/** A message for a server that could not be started, naming the settings that fix it. */
export function startFailureMessage(launch: Launch, error: unknown): string {
  const detail = error instanceof Error ? error.message : String(error);
  const hint = launch.source === "PATH"
    ? "Set compilot.server.command to the compilot executable (e.g. <compilot>/.venv/bin/compilot), or compilot.server.interpreter to a Python that has compilot installed."
    : `Check the setting ${launch.source}.`;
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
