// The few places where the extension's logic meets the vscode API, kept thin.

import * as os from "os";
import * as vscode from "vscode";
import type { BaseLanguageClient } from "vscode-languageclient";
import type { Transport } from "./client";
import type { Where } from "./launch";
import type { ConfigReader, Variables } from "./settings";

export const SECTION = "compilot";

/** `compilot.*` settings as VS Code resolves them (defaults from package.json). */
export function configReader(): ConfigReader {
  const config = vscode.workspace.getConfiguration(SECTION);
  return {
    get: (key) => config.get(key),
    defaultValue: (key) => config.inspect(key)?.defaultValue,
  };
}

/** Values for `${workspaceFolder}`, `${userHome}`, `${env:…}` in settings. */
export function variables(): Variables {
  return { home: os.homedir(), workspaceFolder: vscode.workspace.workspaceFolders?.[0]?.uri.fsPath, env: process.env };
}

/** Where the window runs: remote or local, trusted or not (what the server launch depends on). */
export function where(): Where {
  return { remoteName: vscode.env.remoteName, trusted: vscode.workspace.isTrusted };
}

/** The language client as a transport for the server's commands. */
export function clientTransport(client: BaseLanguageClient): Transport {
  return {
    request: (method, params) => client.sendRequest(method, params),
    notify: (method, params) => client.sendNotification(method, params),
  };
}

/** Set the context key that the Escape key binding's `when` clause reads. */
export function setContext(key: string, value: unknown): void {
  void vscode.commands.executeCommand("setContext", key, value);
}
