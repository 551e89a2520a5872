import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CompilotApi, ServerStatus, Transport, parseStatus } from "../../src/client";
import { RestartPolicy } from "../../src/restart";
import { ClientState, menuEntries, percent, statsMarkdown, statusView } from "../../src/status";

const status = (over: Partial<ServerStatus> = {}): ServerStatus => ({
  ...parseStatus({
    version: "0.1.0",
    adapter: "v3",
    model: "/m.gguf",
    error: null,
    today: { shown: 20, accepted: 5, acceptRate: 0.25, checked: 4, compiled: 3, compileRate: 0.75 },
    training: { running: false, log: "/d/trainer.log" },
    report: null,
  }),
  ...over,
});
const running = (over: Partial<ClientState> = {}): ClientState => ({ phase: "running", paused: false, busy: 0, status: status(), ...over });

describe("status item", () => {
  const rates: [string, number | null, string][] = [["none", null, "–"], ["zero", 0, "0%"], ["rounded", 0.4251, "43%"], ["all", 1, "100%"]];
  for (const [id, rate, want] of rates) {
    test(`percent: ${id}`, () => assert.equal(percent(rate), want));
  }

  test("running: adapter and today's rates", () => {
    const view = statusView(running());
    assert.equal(view.text, "$(sparkle) v3 · acc 25% · comp 75%");
    assert.match(view.tooltip, /5 of 20 suggestions accepted \(25%\)/);
    assert.match(view.tooltip, /3 of 4 checked accepts compiled \(75%\)/);
    assert.equal(view.warning, false);
  });

  test("the base model when no adapter is promoted", () => {
    assert.match(statusView(running({ status: status({ adapter: "base" }) })).text, /^\$\(sparkle\) base /);
  });

  const icons: [string, Partial<ClientState>, RegExp][] = [
    ["paused", { paused: true }, /^\$\(circle-slash\) v3/],
    ["busy", { busy: 1 }, /^\$\(loading~spin\) v3/],
    ["starting", { phase: "starting", status: undefined }, /^\$\(loading~spin\) compilot$/],
    ["no-status-yet", { status: undefined }, /^\$\(sparkle\) compilot$/],
  ];
  for (const [id, over, want] of icons) {
    test(`icon: ${id}`, () => assert.match(statusView(running(over)).text, want));
  }

  test("a stopped or failed server is a warning with the reason", () => {
    const view = statusView({ phase: "failed", paused: false, busy: 0, problem: "spawn compilot ENOENT" });
    assert.equal(view.warning, true);
    assert.match(view.tooltip, /ENOENT/);
  });

  test("a model error from the server is a warning", () => {
    const view = statusView(running({ status: status({ error: "cannot load the model: /x.gguf" }) }));
    assert.equal(view.warning, true);
    assert.match(view.tooltip, /\/x\.gguf/);
  });

  test("menu: pause, stats, train; the report only when there is one", () => {
    assert.deepEqual(menuEntries(running()).map((e) => e.action), ["pause", "stats", "train", "log", "restart", "settings"]);
    const withReport = menuEntries(running({ paused: true, status: status({ report: "/d/reports/r.html" }) }));
    assert.deepEqual(withReport.map((e) => e.action), ["resume", "stats", "train", "report", "log", "restart", "settings"]);
  });

  test("menu of a server that is not running", () => {
    assert.deepEqual(menuEntries({ phase: "failed", paused: false, busy: 0 }).map((e) => e.action), ["pause", "log", "restart", "settings"]);
  });

  test("statistics document", () => {
    const md = statsMarkdown(status({ training: { running: true, log: "/d/trainer.log" } }), { service: { requests: 3 } });
    assert.match(md, /\| accepted \| 5 \(25%\) \|/);
    assert.match(md, /a round is running/);
    assert.match(md, /"requests": 3/);
  });
});

describe("parseStatus", () => {
  test("an older or partial answer gets every field", () => {
    const s = parseStatus({ version: "0.0.9", today: { shown: 2 } });
    assert.equal(s.today.shown, 2);
    assert.equal(s.today.acceptRate, null);
    assert.equal(s.adapter, null);
    assert.deepEqual(s.training, { running: false, log: "" });
  });

  test("garbage", () => assert.equal(parseStatus(null).version, "?"));
});

describe("CompilotApi", () => {
  function recording(answer: unknown = true) {
    const sent: [string, string, unknown][] = [];
    const transport: Transport = {
      request: async (method, params) => (sent.push(["request", method, params]), answer),
      notify: async (method, params) => void sent.push(["notify", method, params]),
    };
    return { sent, api: new CompilotApi(transport) };
  }

  test("reports as workspace/executeCommand with the server's argument shapes", async () => {
    const { sent, api } = recording();
    await api.accepted("c1");
    await api.rejected("c2");
    await api.partiallyAccepted("c3", 7, "line");
    await api.shown({ insertText: "x" });
    assert.deepEqual(sent, [
      ["request", "workspace/executeCommand", { command: "compilot.accepted", arguments: ["c1"] }],
      ["request", "workspace/executeCommand", { command: "compilot.rejected", arguments: ["c2"] }],
      ["request", "workspace/executeCommand", { command: "compilot.partiallyAccepted", arguments: ["c3", { length: 7, kind: "line" }] }],
      ["notify", "textDocument/didShowCompletion", { item: { insertText: "x" }, inferred: false }],
    ]);
  });

  test("settings changes go under the compilot key", async () => {
    const { sent, api } = recording();
    await api.configure({ completion: { maxTokens: 8 } });
    assert.deepEqual(sent, [["notify", "workspace/didChangeConfiguration", { settings: { compilot: { completion: { maxTokens: 8 } } } }]]);
  });

  test("train", async () => {
    const { api } = recording({ started: false, message: "a round is already running", log: "/d/t.log" });
    assert.deepEqual(await api.train(), { started: false, message: "a round is already running", log: "/d/t.log" });
  });
});

describe("RestartPolicy", () => {
  test("restarts up to max times within the window, then stops", () => {
    let t = 0;
    const policy = new RestartPolicy(3, 60_000, () => t);
    const decisions = [1, 2, 3, 4].map(() => ((t += 1000), policy.closed()));
    assert.deepEqual(decisions.map((d) => d.restart), [true, true, true, false]);
    assert.match(decisions[0].message, /restarting it \(1 of 3\)/);
    assert.match(decisions[3].message, /not restarted again/);
  });

  test("deaths older than the window are forgotten", () => {
    let t = 0;
    const policy = new RestartPolicy(2, 60_000, () => t);
    policy.closed();
    policy.closed();
    t = 61_000;
    assert.equal(policy.closed().restart, true);
  });

  test("a restart the user asks for starts the count afresh", () => {
    const policy = new RestartPolicy(1, 60_000, () => 0);
    policy.closed();
    assert.equal(policy.closed().restart, false);
    policy.reset();
    assert.equal(policy.closed().restart, true);
  });
});
