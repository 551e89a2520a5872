// Fakes of the editor side for unit tests: package.json's settings as VS Code would resolve
// them, a recording report sink, and cancellation tokens.

import * as fs from "fs";
import * as path from "path";
import type { PartialKind } from "../src/client";
import type { Clock, ReportSink } from "../src/reporter";
import type { ConfigReader } from "../src/settings";

/** The extension folder (tests run from out/test/...). */
export const ROOT = path.resolve(__dirname, "..", "..");

export interface Manifest {
  name: string;
  version: string;
  publisher: string;
  main: string;
  engines: { vscode: string };
  devDependencies: Record<string, string>;
  capabilities: { untrustedWorkspaces: { restrictedConfigurations: string[] } };
  contributes: {
    configuration: { properties: Record<string, Record<string, unknown>> };
    commands: { command: string; title: string }[];
    keybindings: { command: string; key: string; when: string }[];
  };
}

export function manifest(): Manifest {
  return JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as Manifest;
}

/** `compilot.<key>` → package.json default. */
export function defaults(): Map<string, unknown> {
  const out = new Map<string, unknown>();
  for (const [name, schema] of Object.entries(manifest().contributes.configuration.properties)) {
    out.set(name.replace(/^compilot\./, ""), schema.default);
  }
  return out;
}

/** A ConfigReader like `workspace.getConfiguration("compilot")`: the user's values over
 * package.json's defaults. `read` records the keys asked for. */
export function fakeConfig(user: Record<string, unknown> = {}): ConfigReader & { read: Set<string> } {
  const base = defaults();
  const read = new Set<string>();
  return {
    read,
    get(key: string) {
      read.add(key);
      return key in user ? user[key] : structuredClone(base.get(key));
    },
    defaultValue(key: string) {
      return structuredClone(base.get(key));
    },
  };
}

export type Call =
  | ["accepted", string]
  | ["rejected", string]
  | ["partiallyAccepted", string, number, PartialKind]
  | ["shown", unknown, boolean];

/** Records what the reporter sends. */
export class RecordingSink implements ReportSink {
  calls: Call[] = [];
  fail = false;

  private done(): Promise<unknown> {
    return this.fail ? Promise.reject(new Error("server gone")) : Promise.resolve(true);
  }

  accepted(id: string) {
    this.calls.push(["accepted", id]);
    return this.done();
  }

  rejected(id: string) {
    this.calls.push(["rejected", id]);
    return this.done();
  }

  partiallyAccepted(id: string, length: number, kind: PartialKind) {
    this.calls.push(["partiallyAccepted", id, length, kind]);
    return this.done();
  }

  shown(item: unknown, inferred: boolean) {
    this.calls.push(["shown", item, inferred]);
    return this.done();
  }

  /** The calls without `shown` (the ones about what the user did). */
  get outcomes(): Call[] {
    return this.calls.filter((c) => c[0] !== "shown");
  }
}

/** Timers that run when the test says: `settle()` runs the ones set, as if time had passed. */
export class ManualClock implements Clock {
  private next = 1;
  readonly pending = new Map<number, () => void>();
  /** How many timers were set (a restarted wait sets another). */
  sets = 0;

  set(run: () => void): unknown {
    this.sets += 1;
    this.pending.set(this.next, run);
    return this.next++;
  }

  clear(handle: unknown): void {
    this.pending.delete(handle as number);
  }

  settle(): void {
    const due = [...this.pending.values()];
    this.pending.clear();
    due.forEach((run) => run());
  }
}

/** A cancellation token that the test cancels. */
export class FakeToken {
  isCancellationRequested = false;
  private listeners: (() => void)[] = [];

  onCancellationRequested(listener: () => void) {
    this.listeners.push(listener);
    return { dispose: () => (this.listeners = this.listeners.filter((l) => l !== listener)) };
  }

  cancel(): void {
    this.isCancellationRequested = true;
    for (const l of [...this.listeners]) {
      l();
    }
  }
}
