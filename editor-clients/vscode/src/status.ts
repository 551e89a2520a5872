// What the status bar item and its menu show, from the client's state and `compilot.status`.

import { ServerStatus } from "./client";

export type Phase = "starting" | "running" | "stopped" | "failed";

export interface ClientState {
  phase: Phase;
  paused: boolean;
  /** Requests to the server in flight. */
  busy: number;
  /** The latest `compilot.status` answer, if any. */
  status?: ServerStatus;
  /** Why the server is not running, or why status could not be read. */
  problem?: string;
}

export interface StatusView {
  text: string;
  /** Markdown. */
  tooltip: string;
  /** Show the item with the warning background. */
  warning: boolean;
}

/** `0.4213` → `42%`; null (nothing to divide by yet) → `–`. */
export function percent(rate: number | null): string {
  return rate === null ? "–" : `${Math.round(rate * 100)}%`;
}

/** The serving adapter: `base` or an adapter version. */
export function adapterLabel(status: ServerStatus | undefined): string {
  return status?.adapter ?? "base";
}

export function statusView(state: ClientState): StatusView {
  const s = state.status;
  if (state.phase === "failed" || state.phase === "stopped") {
    return {
      text: "$(warning) compilot",
      tooltip: `**compilot**: the server is not running. ${state.problem ?? ""}\n\nClick for the menu.`.trim(),
      warning: true,
    };
  }
  if (state.phase === "starting") {
    return { text: "$(loading~spin) compilot", tooltip: "**compilot**: starting the server…", warning: false };
  }
  if (s?.error) {
    return { text: "$(warning) compilot", tooltip: `**compilot**: ${s.error}`, warning: true };
  }
  const icon = state.paused ? "$(circle-slash)" : state.busy > 0 ? "$(loading~spin)" : "$(sparkle)";
  if (!s) {
    return { text: `${icon} compilot`, tooltip: tooltip(state), warning: false };
  }
  const text = `${icon} ${adapterLabel(s)} · acc ${percent(s.today.acceptRate)} · comp ${percent(s.today.compileRate)}`;
  return { text, tooltip: tooltip(state), warning: false };
}

function tooltip(state: ClientState): string {
  const s = state.status;
  const lines = [state.paused ? "**compilot** (completions paused)" : "**compilot**", ""];
  if (s) {
    lines.push(
      `Serving adapter: \`${adapterLabel(s)}\` (server ${s.version})`,
      "",
      `Today: ${s.today.accepted} of ${s.today.shown} suggestions accepted (${percent(s.today.acceptRate)}), `
        + `${s.today.compiled} of ${s.today.checked} checked accepts compiled (${percent(s.today.compileRate)})`,
    );
    if (s.training.running) {
      lines.push("", "A training round is running.");
    }
  } else if (state.problem) {
    lines.push(state.problem);
  }
  lines.push("", "Click for the menu.");
  return lines.join("\n");
}

export type MenuAction = "pause" | "resume" | "stats" | "train" | "report" | "log" | "restart" | "settings";

export interface MenuEntry {
  action: MenuAction;
  label: string;
  description?: string;
}

/** The status item's quick pick, in order. */
export function menuEntries(state: ClientState): MenuEntry[] {
  const s = state.status;
  const running = state.phase === "running";
  const entries: MenuEntry[] = [
    state.paused
      ? { action: "resume", label: "$(play) Resume completions" }
      : { action: "pause", label: "$(debug-pause) Pause completions", description: "in this window" },
  ];
  if (running) {
    entries.push({
      action: "stats",
      label: "$(graph) Show today's statistics",
      description: s ? `${percent(s.today.acceptRate)} accepted, ${percent(s.today.compileRate)} compiled` : undefined,
    });
    entries.push({
      action: "train",
      label: "$(beaker) Run a training round now",
      description: s?.training.running ? "a round is running" : undefined,
    });
    if (s?.report) {
      entries.push({ action: "report", label: "$(file-code) Open the latest report", description: s.report });
    }
  }
  entries.push(
    { action: "log", label: "$(output) Show log" },
    { action: "restart", label: "$(debug-restart) Restart the server" },
    { action: "settings", label: "$(gear) Settings" },
  );
  return entries;
}

/** Today's figures as a markdown document (the menu's "Show today's statistics"). */
export function statsMarkdown(s: ServerStatus, stats?: unknown): string {
  const t = s.today;
  const out = [
    "# compilot today",
    "",
    "| | |",
    "| --- | ---: |",
    `| suggestions shown | ${t.shown} |`,
    `| accepted | ${t.accepted} (${percent(t.acceptRate)}) |`,
    `| accepted and compile-checked | ${t.checked} |`,
    `| of those, compiled | ${t.compiled} (${percent(t.compileRate)}) |`,
    "",
    `- serving adapter: \`${adapterLabel(s)}\``,
    `- server version: ${s.version}`,
    `- model: ${s.model ? `\`${s.model}\`` : "not loaded"}`,
    `- training: ${s.training.running ? "a round is running" : "idle"}${s.training.log ? ` (log: \`${s.training.log}\`)` : ""}`,
    `- latest report: ${s.report ? `\`${s.report}\`` : "none yet"}`,
  ];
  if (s.error) {
    out.push(`- problem: ${s.error}`);
  }
  if (stats !== undefined) {
    out.push("", "## Server counters (`compilot.stats`)", "", "```json", JSON.stringify(stats, null, 2), "```");
  }
  return out.join("\n") + "\n";
}
