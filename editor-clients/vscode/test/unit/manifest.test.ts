// package.json is the single source of truth for settings: check that it is complete, and that
// the extension's modules keep `vscode` to the thin wrapper.

import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import { describe, test } from "node:test";
import { ServerCommands } from "../../src/client";
import { ROOT, manifest } from "../fakes";

describe("package.json", () => {
  const m = manifest();
  const props = m.contributes.configuration.properties;

  for (const [name, schema] of Object.entries(props)) {
    test(`setting ${name} has a default, a markdownDescription and a scope`, () => {
      assert.ok(name.startsWith("compilot."), name);
      assert.ok("default" in schema, "default");
      assert.equal(typeof schema.markdownDescription, "string");
      assert.ok((schema.markdownDescription as string).length > 20);
      assert.ok(["window", "resource", "machine", "machine-overridable", "application", "language-overridable"].includes(schema.scope as string));
      if (Array.isArray(schema.enum)) {
        assert.equal((schema.enumDescriptions as unknown[])?.length, schema.enum.length, "enumDescriptions");
      }
    });
  }

  test("executable and file settings are restricted in untrusted workspaces", () => {
    const restricted = m.capabilities.untrustedWorkspaces.restrictedConfigurations;
    for (const key of ["compilot.server.command", "compilot.server.interpreter", "compilot.server.args", "compilot.server.env", "compilot.model.path"]) {
      assert.ok(restricted.includes(key), key);
    }
    for (const key of restricted) {
      assert.ok(key in props, `${key} is not a setting`);
    }
  });

  test("the extension's commands do not collide with the server's (the language client registers those)", () => {
    const server = new Set<string>(Object.values(ServerCommands));
    for (const c of m.contributes.commands) {
      assert.ok(!server.has(c.command), c.command);
      assert.ok(c.title.length > 0);
    }
  });

  test("every command the extension registers is contributed, and the other way round", () => {
    const source = fs.readFileSync(path.join(ROOT, "src", "extension.ts"), "utf8");
    const registered = new Set([...source.matchAll(/command\("(compilot\.[A-Za-z]+)"/g)].map((x) => x[1]));
    const contributed = new Set(m.contributes.commands.map((c) => c.command));
    assert.deepEqual([...registered].sort(), [...contributed].sort());
    for (const k of m.contributes.keybindings) {
      assert.ok(contributed.has(k.command), k.command);
    }
  });

  test("the Escape binding only applies while a compilot suggestion is on screen", () => {
    const escape = m.contributes.keybindings.find((k) => k.key === "escape");
    assert.ok(escape?.when.includes("inlineSuggestionVisible"));
    assert.ok(escape?.when.includes("compilot.suggestionShown"));
  });

  test("main is the compiled entry point; engines.vscode matches @types/vscode (vsce checks this)", () => {
    assert.equal(m.main, "./out/src/extension.js");
    assert.ok(fs.existsSync(path.join(ROOT, m.main)));
    const engine = m.engines.vscode.replace(/^[\^~]/, "").split(".").map(Number);
    const types = m.devDependencies["@types/vscode"].replace(/^[\^~]/, "").split(".").map(Number);
    assert.ok(types[0] === engine[0] && types[1] <= engine[1], `${m.devDependencies["@types/vscode"]} vs ${m.engines.vscode}`);
    assert.ok(fs.existsSync(path.join(ROOT, "LICENSE")));
  });
});

describe("module boundaries", () => {
  const compiled = path.join(ROOT, "out", "src");
  for (const file of fs.readdirSync(compiled).filter((f) => f.endsWith(".js"))) {
    const usesVscode = /require\("vscode"\)|require\("vscode-languageclient(\/node)?"\)/.test(fs.readFileSync(path.join(compiled, file), "utf8"));
    const wrapper = file === "extension.js" || file === "vscodeapi.js";
    test(`${file} ${wrapper ? "may" : "does not"} load vscode at run time`, () => {
      if (!wrapper) {
        assert.equal(usesVscode, false);
      }
    });
  }
});
