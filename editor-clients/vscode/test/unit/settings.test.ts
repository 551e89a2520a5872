import assert from "node:assert/strict";
import { describe, test } from "node:test";
import {
  changeKind,
  deepMerge,
  expand,
  languageEnabled,
  readSettings,
  serverSettings,
} from "../../src/settings";
import { defaults, fakeConfig, manifest } from "../fakes";

const vars = { home: "/home/u", workspaceFolder: "/work/proj", env: { DATA: "/data", PATH: "/bin" } };

describe("readSettings", () => {
  test("reads every setting package.json declares (except the client's own trace.server)", () => {
    const config = fakeConfig();
    readSettings(config);
    const declared = [...defaults().keys()].filter((k) => k !== "trace.server").sort();
    assert.deepEqual([...config.read].sort(), declared);
  });

  test("package.json defaults give a typed object with those values and no problems", () => {
    const d = defaults();
    const { settings, problems } = readSettings(fakeConfig());
    assert.deepEqual(problems, []);
    assert.equal(settings.completion.maxTokens, d.get("completion.maxTokens"));
    assert.equal(settings.completion.candidates, d.get("completion.candidates"));
    assert.equal(settings.completion.predictMs, d.get("completion.predictMs"));
    assert.equal(settings.debounceMs, d.get("debounceMs"));
    assert.deepEqual(settings.languages, d.get("languages"));
    assert.deepEqual(settings.server.args, d.get("server.args"));
  });

  const wrong: [string, string, unknown][] = [
    ["negative-max-tokens", "completion.maxTokens", -1],
    ["string-debounce", "debounceMs", "fast"],
    ["fractional-candidates", "completion.candidates", 2.5],
    ["negative-predict-ms", "completion.predictMs", -1],
    ["string-predict-ms", "completion.predictMs", "250"],
    ["args-not-strings", "server.args", ["--x", 3]],
    ["env-not-strings", "server.env", { A: 1 }],
    ["languages-not-booleans", "languages", { python: "yes" }],
    ["null-command", "server.command", null],
  ];
  for (const [id, key, value] of wrong) {
    test(`a wrong value falls back to the default: ${id}`, () => {
      const { settings, problems } = readSettings(fakeConfig({ [key]: value }));
      assert.equal(problems.length, 1);
      assert.match(problems[0], new RegExp(`^compilot\\.${key.replace(".", "\\.")}: expected`));
      assert.deepEqual(settings, readSettings(fakeConfig()).settings);
    });
  }
});

describe("serverSettings", () => {
  test("defaults map to the server's tree, values read from package.json", () => {
    const d = defaults();
    const tree = serverSettings(readSettings(fakeConfig()).settings, vars);
    assert.deepEqual(tree, {
      completion: {
        maxTokens: d.get("completion.maxTokens"),
        candidates: d.get("completion.candidates"),
        predictMs: d.get("completion.predictMs"),
      },
      logging: { enabled: d.get("logging.enabled") },
    });
  });

  test("client-only settings never reach the server", () => {
    const tree = serverSettings(readSettings(fakeConfig({ debounceMs: 5, languages: { go: false } })).settings, vars);
    const text = JSON.stringify(tree);
    for (const word of ["debounce", "languages", "interpreter", "command", "args", "env"]) {
      assert.ok(!text.includes(word), `${word} in ${text}`);
    }
  });

  test("a model path is expanded; an empty one is left to the server", () => {
    const set = (path: string) => serverSettings(readSettings(fakeConfig({ "model.path": path })).settings, vars);
    assert.deepEqual(set("~/m.gguf").model, { path: "/home/u/m.gguf" });
    assert.deepEqual(set("${workspaceFolder}/m.gguf").model, { path: "/work/proj/m.gguf" });
    assert.equal(set("   ").model, undefined);
  });

  test("server.settings passes other keys through; the own settings win", () => {
    const tree = serverSettings(readSettings(fakeConfig({
      "completion.maxTokens": 16,
      "server.settings": { completion: { temperature: 0.2, maxTokens: 999 }, checks: { timeoutS: 5 } },
    })).settings, vars);
    assert.deepEqual(tree.completion, {
      temperature: 0.2,
      maxTokens: 16,
      candidates: defaults().get("completion.candidates"),
      predictMs: defaults().get("completion.predictMs"),
    });
    assert.deepEqual(tree.checks, { timeoutS: 5 });
  });

  test("completion.predictMs reaches the server, a fraction and 0 (no limit) included", () => {
    const set = (ms: unknown) => serverSettings(readSettings(fakeConfig({ "completion.predictMs": ms })).settings, vars);
    assert.equal((set(120.5).completion as Record<string, unknown>).predictMs, 120.5);
    assert.equal((set(0).completion as Record<string, unknown>).predictMs, 0);
  });
});

describe("helpers", () => {
  const langs: [string, Record<string, boolean>, string, boolean][] = [
    ["listed-on", { "*": false, python: true }, "python", true],
    ["listed-off", { "*": true, plaintext: false }, "plaintext", false],
    ["star", { "*": false }, "go", false],
    ["no-star", {}, "go", true],
  ];
  for (const [id, map, lang, want] of langs) {
    test(`languageEnabled: ${id}`, () => assert.equal(languageEnabled(map, lang), want));
  }

  test("languageEnabled with package.json's default map", () => {
    const map = defaults().get("languages") as Record<string, boolean>;
    assert.equal(languageEnabled(map, "python"), true);
    assert.equal(languageEnabled(map, "markdown"), false);
  });

  const expansions: [string, string, string][] = [
    ["tilde", "~/x", "/home/u/x"],
    ["tilde-alone", "~", "/home/u"],
    ["tilde-inside-kept", "a~/x", "a~/x"],
    ["user-home", "${userHome}/x", "/home/u/x"],
    ["env", "${env:DATA}/db", "/data/db"],
    ["env-missing", "${env:NOPE}/db", "/db"],
    ["workspace", "${workspaceFolder}/.venv/bin/python", "/work/proj/.venv/bin/python"],
    ["plain", "/usr/bin/python3", "/usr/bin/python3"],
  ];
  for (const [id, input, want] of expansions) {
    test(`expand: ${id}`, () => assert.equal(expand(input, vars), want));
  }

  test("expand keeps ${workspaceFolder} when there is no folder", () => {
    assert.equal(expand("${workspaceFolder}/x", { home: "/h", env: {} }), "${workspaceFolder}/x");
  });

  test("deepMerge merges objects and leaves its inputs alone", () => {
    const a = { x: { y: 1, z: 2 }, k: [1] };
    const b = { x: { y: 3 }, k: [2] };
    assert.deepEqual(deepMerge(a, b), { x: { y: 3, z: 2 }, k: [2] });
    assert.deepEqual(a, { x: { y: 1, z: 2 }, k: [1] });
  });

  const changes: [string, string[], { restart: boolean; server: boolean }][] = [
    ["command", ["compilot.server.command"], { restart: true, server: false }],
    ["env", ["compilot.server.env"], { restart: true, server: false }],
    ["max-tokens", ["compilot.completion", "compilot.completion.maxTokens"], { restart: false, server: true }],
    ["server-settings", ["compilot.server.settings"], { restart: false, server: true }],
    ["debounce", ["compilot.debounceMs"], { restart: false, server: false }],
  ];
  for (const [id, affected, want] of changes) {
    test(`changeKind: ${id}`, () => assert.deepEqual(changeKind((s) => affected.includes(s)), want));
  }

  test("every setting changeKind names exists in package.json", () => {
    const props = Object.keys(manifest().contributes.configuration.properties);
    const asked: string[] = [];
    changeKind((s) => (asked.push(s), false));
    for (const s of asked) {
      assert.ok(props.some((p) => p === s || p.startsWith(`${s}.`)), s);
    }
  });
});
