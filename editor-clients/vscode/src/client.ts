// The client side of the server's contract: its commands and notifications, over any JSON-RPC
// transport. The extension passes the language client; the integration test passes a
// vscode-languageserver-protocol connection to the real server. No `vscode` import.

import { ClientSettings, ServerSettings, Variables, serverSettings } from "./settings";

/** The server's `workspace/executeCommand` commands (server/lsp.py). */
export const ServerCommands = {
  accepted: "compilot.accepted",
  rejected: "compilot.rejected",
  partiallyAccepted: "compilot.partiallyAccepted",
  status: "compilot.status",
  train: "compilot.train",
  stats: "compilot.stats",
  settle: "compilot.settle",
} as const;

/** Copilot's notification that an inline item was shown; the server records a `shown` event. */
export const DID_SHOW_COMPLETION = "textDocument/didShowCompletion";

export interface Transport {
  request(method: string, params: unknown): Promise<unknown>;
  notify(method: string, params: unknown): Promise<void>;
}

export type PartialKind = "word" | "line";

/** What `compilot.status` answers. */
export interface ServerStatus {
  version: string;
  adapter: string | null;
  model: string | null;
  error: string | null;
  today: {
    shown: number;
    accepted: number;
    acceptRate: number | null;
    checked: number;
    compiled: number;
    compileRate: number | null;
  };
  training: { running: boolean; log: string };
  report: string | null;
}

/** What `compilot.train` answers. */
export interface TrainResult {
  started: boolean;
  message: string;
  log: string;
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);
const num = (v: unknown): number => (typeof v === "number" && Number.isFinite(v) ? v : 0);
const rate = (v: unknown): number | null => (typeof v === "number" && Number.isFinite(v) ? v : null);
const str = (v: unknown): string | null => (typeof v === "string" ? v : null);

/** A `compilot.status` answer with every field present (an older server may lack some). */
export function parseStatus(value: unknown): ServerStatus {
  const v = isRecord(value) ? value : {};
  const today = isRecord(v.today) ? v.today : {};
  const training = isRecord(v.training) ? v.training : {};
  return {
    version: str(v.version) ?? "?",
    adapter: str(v.adapter),
    model: str(v.model),
    error: str(v.error),
    today: {
      shown: num(today.shown),
      accepted: num(today.accepted),
      acceptRate: rate(today.acceptRate),
      checked: num(today.checked),
      compiled: num(today.compiled),
      compileRate: rate(today.compileRate),
    },
    training: { running: training.running === true, log: str(training.log) ?? "" },
    report: str(v.report),
  };
}

/** The settings tree the server gets at `initialize` (bare, as initializationOptions). */
export function initializationOptions(settings: ClientSettings, vars: Variables): ServerSettings {
  return serverSettings(settings, vars);
}

/** The server's commands as typed calls. */
export class CompilotApi {
  constructor(private readonly transport: Transport) {}

  execute(command: string, args: unknown[] = []): Promise<unknown> {
    return this.transport.request("workspace/executeCommand", { command, arguments: args });
  }

  accepted(id: string): Promise<unknown> {
    return this.execute(ServerCommands.accepted, [id]);
  }

  rejected(id: string): Promise<unknown> {
    return this.execute(ServerCommands.rejected, [id]);
  }

  /** `length`: UTF-16 code units of the candidate now in the document. */
  partiallyAccepted(id: string, length: number, kind: PartialKind): Promise<unknown> {
    return this.execute(ServerCommands.partiallyAccepted, [id, { length, kind }]);
  }

  /** Tell the server the item was shown (`item` is the LSP inline completion item;
   * `inferred`: from the item staying current, not from an action only a visible one allows). */
  shown(item: unknown, inferred = false): Promise<void> {
    return this.transport.notify(DID_SHOW_COMPLETION, { item, inferred });
  }

  async status(): Promise<ServerStatus> {
    return parseStatus(await this.execute(ServerCommands.status));
  }

  async train(): Promise<TrainResult> {
    const v = await this.execute(ServerCommands.train);
    const r = isRecord(v) ? v : {};
    return { started: r.started === true, message: str(r.message) ?? "", log: str(r.log) ?? "" };
  }

  stats(): Promise<unknown> {
    return this.execute(ServerCommands.stats);
  }

  settle(): Promise<unknown> {
    return this.execute(ServerCommands.settle);
  }

  /** Send changed settings (`workspace/didChangeConfiguration`, under the "compilot" key). */
  configure(tree: ServerSettings): Promise<void> {
    return this.transport.notify("workspace/didChangeConfiguration", { settings: { compilot: tree } });
  }
}
