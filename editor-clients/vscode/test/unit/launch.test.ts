import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { describeLaunch, findExecutable, launchProblem, serverLaunch, startFailureMessage } from "../../src/launch";
import { ServerLaunchSettings, readSettings } from "../../src/settings";
import { fakeConfig } from "../fakes";

const vars = { home: "/home/u", workspaceFolder: "/w", env: { PATH: "/bin", HOME: "/home/u", DROP: undefined } };

function server(user: Record<string, unknown>): ServerLaunchSettings {
  return readSettings(fakeConfig(user)).settings.server;
}

describe("serverLaunch", () => {
  const cases: [string, Record<string, unknown>, string, string[], string][] = [
    ["defaults-path", {}, "compilot", ["serve"], "PATH"],
    ["command", { "server.command": "/opt/c/bin/compilot" }, "/opt/c/bin/compilot", ["serve"], "compilot.server.command"],
    ["interpreter", { "server.interpreter": "~/venv/bin/python" }, "/home/u/venv/bin/python", ["-m", "compilot", "serve"], "compilot.server.interpreter"],
    ["command-wins", { "server.command": "compilot-dev", "server.interpreter": "/usr/bin/python3" }, "compilot-dev", ["serve"], "compilot.server.command"],
    ["blank-command", { "server.command": "  ", "server.interpreter": "python3" }, "python3", ["-m", "compilot", "serve"], "compilot.server.interpreter"],
    ["args", { "server.interpreter": "py", "server.args": ["--tcp", "${workspaceFolder}/x"] }, "py", ["-m", "compilot", "serve", "--tcp", "/w/x"], "compilot.server.interpreter"],
    ["workspace-venv", { "server.command": "${workspaceFolder}/.venv/bin/compilot" }, "/w/.venv/bin/compilot", ["serve"], "compilot.server.command"],
  ];
  for (const [id, user, command, args, source] of cases) {
    test(id, () => {
      const launch = serverLaunch(server(user), vars);
      assert.equal(launch.command, command);
      assert.deepEqual(launch.args, args);
      assert.equal(launch.source, source);
    });
  }

  test("env: VS Code's plus compilot.server.env, expanded", () => {
    const launch = serverLaunch(server({ "server.env": { COMPILOT_DATA_DIR: "~/d", P: "${env:PATH}:/x" } }), vars);
    assert.equal(launch.env.COMPILOT_DATA_DIR, "/home/u/d");
    assert.equal(launch.env.P, "/bin:/x");
    assert.equal(launch.env.HOME, "/home/u");
    assert.ok(!("DROP" in launch.env));
  });

  test("describeLaunch quotes what a shell would split", () => {
    const launch = serverLaunch(server({ "server.command": "/my tools/compilot", "server.args": ["it's"] }), vars);
    assert.equal(describeLaunch(launch), "'/my tools/compilot' serve 'it'\\''s'");
  });

  test("a start failure names the setting to fix", () => {
    const fromPath = startFailureMessage(serverLaunch(server({}), vars), new Error("spawn compilot ENOENT"));
    assert.match(fromPath, /spawn compilot ENOENT/);
    assert.match(fromPath, /compilot\.server\.command/);
    const fromSetting = startFailureMessage(serverLaunch(server({ "server.interpreter": "/nope" }), vars), "boom");
    assert.match(fromSetting, /Check the setting compilot\.server\.interpreter/);
  });
});

describe("findExecutable", () => {
  const files = new Set(["/usr/bin/python3", "/opt/c/bin/compilot", "/w/.venv/bin/compilot"]);
  const exists = (f: string) => files.has(f);
  const env = { PATH: "/usr/local/bin:/usr/bin" };
  const cases: [string, string, string | undefined, string | undefined][] = [
    ["on-path", "python3", undefined, "/usr/bin/python3"],
    ["not-on-path", "compilot", undefined, undefined],
    ["absolute", "/opt/c/bin/compilot", undefined, "/opt/c/bin/compilot"],
    ["absolute-missing", "/nope/compilot", undefined, undefined],
    ["relative-to-workspace", ".venv/bin/compilot", "/w", "/w/.venv/bin/compilot"],
  ];
  for (const [id, command, cwd, want] of cases) {
    test(id, () => assert.equal(findExecutable(command, env, cwd, exists), want));
  }

  test("launchProblem: one message that says what is missing and which setting to fix", () => {
    const missing = serverLaunch(server({}), { ...vars, env: { PATH: "/nowhere" } });
    assert.match(launchProblem(missing, undefined, () => false) ?? "", /compilot was not found on PATH\. Set compilot\.server\.command/);
    const bad = serverLaunch(server({ "server.interpreter": "/nope/python" }), vars);
    assert.match(launchProblem(bad, undefined, () => false) ?? "", /\/nope\/python is not an executable file\. Check the setting compilot\.server\.interpreter/);
    assert.equal(launchProblem(bad, undefined, () => true), undefined);
  });
});

describe("the workspace's own compilot, and remote windows", () => {
  const venv = "/w/.venv/bin/compilot";
  const noPath = { ...vars, env: { PATH: "/nowhere" } };
  const only = (...files: string[]) => (f: string) => files.includes(f);

  test("a trusted workspace: compilot from its .venv when PATH has none", () => {
    const launch = serverLaunch(server({}), noPath, { trusted: true }, only(venv));
    assert.equal(launch.command, venv);
    assert.equal(launch.source, "workspace venv");
    assert.deepEqual(launch.args, ["serve"]);
    assert.equal(launchProblem(launch, undefined, only(venv)), undefined);
  });

  test("an untrusted workspace: its .venv is never run, and the message says why", () => {
    const launch = serverLaunch(server({}), noPath, { trusted: false }, only(venv));
    assert.equal(launch.command, "compilot");
    assert.equal(launch.source, "PATH");
    assert.equal(launch.untrustedVenv, venv);
    const message = launchProblem(launch, undefined, only(venv)) ?? "";
    assert.match(message, /compilot was not found on PATH/);
    assert.match(message, /The workspace has \/w\/\.venv\/bin\/compilot, which compilot starts only in a trusted workspace/);
  });

  test("untrusted is the default", () => {
    assert.equal(serverLaunch(server({}), noPath, undefined, only(venv)).source, "PATH");
  });

  test("compilot on PATH comes before the workspace's", () => {
    const launch = serverLaunch(server({}), { ...vars, env: { PATH: "/usr/bin" } }, { trusted: true },
      only("/usr/bin/compilot", venv));
    assert.equal(launch.command, "compilot");
    assert.equal(launch.source, "PATH");
  });

  test("a setting comes before both", () => {
    const launch = serverLaunch(server({ "server.command": "/opt/c/bin/compilot" }), noPath, { trusted: true }, only(venv));
    assert.equal(launch.command, "/opt/c/bin/compilot");
  });

  test("no workspace folder: PATH only", () => {
    const launch = serverLaunch(server({}), { ...noPath, workspaceFolder: undefined }, { trusted: true }, only(venv));
    assert.equal(launch.source, "PATH");
    assert.equal(launch.untrustedVenv, undefined);
  });

  test("in a remote window the message says the settings go in the Remote settings", () => {
    const launch = serverLaunch(server({}), noPath, { trusted: true, remoteName: "ssh-remote" }, () => false);
    const message = launchProblem(launch, undefined, () => false) ?? "";
    assert.match(message, /Set compilot\.server\.command in your Remote settings \(Preferences: Open Remote Settings\)/);
    assert.match(message, /This is a remote window \(ssh-remote\)/);
    assert.match(message, /from the Remote settings only, not from the User settings/);
    const local = launchProblem(serverLaunch(server({}), noPath, { trusted: true }, () => false), undefined, () => false) ?? "";
    assert.doesNotMatch(local, /remote/i);
    const set = serverLaunch(server({ "server.command": "/nope/compilot" }), noPath, { trusted: true, remoteName: "wsl" });
    assert.match(launchProblem(set, undefined, () => false) ?? "", /Check the setting compilot\.server\.command in your Remote settings/);
  });
});
