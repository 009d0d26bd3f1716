// The TypeScript declarations (src/client.d.ts) against what TypeScript users do with
// them and against the implementation they describe: nothing type-checks them
// otherwise, since the client itself is plain JavaScript.

import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";

import ts from "typescript";

import * as client from "../src/client.js";
import { FrameType as F } from "../src/codec.js";
import { FakeGateway } from "./support/fake-gateway.js";

const here = (p) => fileURLToPath(new URL(p, import.meta.url));

/** tsc's diagnostics for a tsconfig, formatted as tsc prints them. */
function typeCheck(configPath) {
  const config = ts.getParsedCommandLineOfConfigFile(configPath, {}, {
    ...ts.sys,
    onUnRecoverableConfigFileDiagnostic: (d) => assert.fail(ts.flattenDiagnosticMessageText(d.messageText, "\n")),
  });
  const program = ts.createProgram(config.fileNames, config.options);
  const diagnostics = ts.getPreEmitDiagnostics(program);
  return ts.formatDiagnostics(diagnostics, {
    getCanonicalFileName: (f) => f,
    getCurrentDirectory: ts.sys.getCurrentDirectory,
    getNewLine: () => "\n",
  });
}

describe("TypeScript declarations", () => {
  // usage.ts imports the package by its name, as an application does, so these also
  // check that package.json's "exports" lead TypeScript to the declarations.
  test("a browser application type-checks (strict, bundler resolution, DOM)", () => {
    assert.equal(typeCheck(here("./types/tsconfig.browser.json")), "");
  });

  test("a Node.js application type-checks (strict, nodenext resolution, @types/node)", () => {
    assert.equal(typeCheck(here("./types/tsconfig.node.json")), "");
  });

  // openSession refuses options it does not know (a TypeError): its list must be the
  // declared one, or a declared option would type-check and then throw.
  test("openSession accepts every declared SessionOptions member and refuses others", async () => {
    const declared = interfaceMembers(here("../src/client.d.ts"), "SessionOptions");
    assert.ok(declared.length >= 10 && declared.includes("retry"), `SessionOptions: ${declared}`);
    const gw = new FakeGateway();
    gw.refuse = true;
    for (const name of declared) {
      await assert.rejects(client.openSession("http://127.0.0.1:1/mqtt", { [name]: undefined, transport: gw.factory }), (e) => e.errorCode === 1006, name);
    }
    await assert.rejects(client.openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory, undeclared: 1 }), TypeError);
  });

  test("every declared export and member exists at run time, and nothing public is undeclared", async () => {
    const declared = declarations(here("../src/client.d.ts"));
    assert.deepEqual(Object.keys(client).sort(), [...declared.values].sort(), "exports");

    const gw = new FakeGateway();
    const pending = client.openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory });
    const conn = await gw.connection(0);
    await conn.take(F.OPEN);
    conn.send({ type: F.OPENED, session: new Uint8Array(16), secret: new Uint8Array(16), heartbeat: 20000, sessionTimeout: 30000, maxFrame: 65536, info: [] });
    const session = await pending;
    try {
      const instances = {
        Message: new client.Message("x"),
        MqttGatewayError: new client.MqttGatewayError(4021, "no"),
        Session: session,
        BrokerClient: session.createClient("main"),
      };
      for (const [name, instance] of Object.entries(instances)) {
        const members = declared.classes.get(name);
        assert.ok(members, `${name} is declared as a class`);
        assert.ok(instance instanceof client[name], `${name} is the exported class`);
        const present = publicMembers(instance, name === "MqttGatewayError");
        const required = [...members].filter(([, m]) => !m.optional).map(([member]) => member);
        assert.deepEqual(present.filter((member) => !members.has(member)), [], `${name}'s undeclared members`);
        assert.deepEqual(required.filter((member) => !present.includes(member)), [], `${name}'s missing members`);
        for (const [member, { kind }] of members) {
          if (kind === "method") assert.equal(typeof instance[member], "function", `${name}.${member} is a method`);
        }
      }
    } finally {
      await session.close();
    }
  });
});

// A bundler resolves every literal import of the modules it bundles, a dynamic one a
// page never runs included: a literal import("ws") failed a Vite build where the client
// was a linked folder without node_modules. Only the client's own modules may be
// imported by a literal specifier; ws is imported by one bundlers leave alone.
describe("bundling", () => {
  test("the client's modules import nothing by a literal specifier but each other", async () => {
    const dir = here("../src/");
    for (const file of (await readdir(dir)).filter((f) => f.endsWith(".js"))) {
      const { importedFiles } = ts.preProcessFile(ts.sys.readFile(dir + file), true, true);
      const outside = importedFiles.map((f) => f.fileName).filter((name) => !name.startsWith("./"));
      assert.deepEqual(outside, [], `${file} imports ${outside.join(", ")}`);
    }
  });
});

/** The member names of an exported interface of a declaration file. */
function interfaceMembers(file, name) {
  const source = ts.createSourceFile(file, ts.sys.readFile(file), ts.ScriptTarget.Latest, true);
  const node = source.statements.find((n) => ts.isInterfaceDeclaration(n) && n.name.text === name);
  assert.ok(node, `interface ${name} is declared`);
  return node.members.map((m) => m.name.getText(source));
}

/**
 * The value exports of a declaration file, and each exported class's public members:
 * their kind ("method" or "property") and whether they are optional (`name?:`, which
 * an instance may lack). Constructors and private members are left out.
 */
function declarations(file) {
  const source = ts.createSourceFile(file, ts.sys.readFile(file), ts.ScriptTarget.Latest, true);
  const values = new Set();
  const classes = new Map();
  const exported = (node) => node.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword);
  for (const node of source.statements) {
    if (!exported(node)) continue;
    if (ts.isVariableStatement(node)) {
      for (const d of node.declarationList.declarations) values.add(d.name.getText(source));
    } else if (ts.isFunctionDeclaration(node)) {
      values.add(node.name.getText(source));
    } else if (ts.isClassDeclaration(node)) {
      const name = node.name.getText(source);
      values.add(name);
      const members = new Map();
      for (const m of node.members) {
        if (!m.name || ts.isConstructorDeclaration(m)) continue;
        if (m.modifiers?.some((x) => x.kind === ts.SyntaxKind.PrivateKeyword)) continue;
        members.set(m.name.getText(source), {
          kind: ts.isMethodDeclaration(m) ? "method" : "property",
          optional: m.questionToken !== undefined,
        });
      }
      classes.set(name, members);
    }
  }
  return { values, classes };
}

/**
 * The names an application can reach on an instance: its own and its prototypes'
 * properties, without the underscore-prefixed internals. For an Error, those every
 * Error has (message, stack) are left out: the declaration inherits them.
 */
function publicMembers(instance, isError) {
  const names = new Set();
  const stop = isError ? Error.prototype : Object.prototype;
  for (let p = instance; p && p !== stop; p = Object.getPrototypeOf(p)) {
    for (const k of Object.getOwnPropertyNames(p)) {
      if (k.startsWith("_") || k === "constructor") continue;
      if (isError && (k === "message" || k === "stack")) continue;
      names.add(k);
    }
  }
  return [...names].sort();
}
