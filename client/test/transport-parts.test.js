// The pieces of the transport layer that need no network: frame reassembly, the
// transport memory, the order of attempts, sleep-tolerant deadlines, HTTP error bodies,
// the cookie jar.

import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { FrameType as F, decodeUnit, encodeFrame, encodeUnit } from "../src/codec.js";
import { FrameReader } from "../src/frame-reader.js";
import { CookieJar } from "../src/cookie-jar.js";
import { deadline, freshSessionDelay } from "../src/timers.js";
import { closeFromErrorAnswer, credentialsMode, endpoint } from "../src/transport-http.js";
import { connectPolling } from "../src/transport-polling.js";
import { forgetTransport, recallTransport, rememberTransport } from "../src/transport-memory.js";
import { AUTO_ORDER, resolveTransports, startingAt } from "../src/transports.js";
import { run } from "./support/env.js";

const msg = (n, size) =>
  encodeFrame({ type: F.MESSAGE, stream: 1, qos: 0, packetId: 0, topic: `t/${n}`, props: {}, payload: new Uint8Array(size).fill(n) });

describe("FrameReader", () => {
  // Frames of 1 byte to 300 KB, so that length prefixes take 1 to 3 bytes.
  const frames = [msg(1, 0), msg(2, 100), msg(3, 200), msg(4, 20000), msg(5, 300000), encodeFrame({ type: F.PING })];
  const stream = encodeUnit(frames);
  const topics = (units) => units.flatMap((u) => [...decodeUnit(u)]).map((f) => f.topic ?? "ping");
  const want = ["t/1", "t/2", "t/3", "t/4", "t/5", "ping"];

  test("reassembles frames split at every possible place, including inside length prefixes", () => {
    for (const size of [1, 2, 3, 7, 64, 1000, 16384, stream.length]) {
      const r = new FrameReader();
      const units = [];
      for (let at = 0; at < stream.length; at += size) {
        const u = r.push(stream.slice(at, at + size));
        if (u) units.push(u.slice());
      }
      assert.deepEqual(topics(units), want, `chunks of ${size}`);
      assert.equal(r.pending, 0);
    }
  });

  test("emits only whole frames and keeps the rest", () => {
    const r = new FrameReader();
    const first = encodeUnit([frames[0]]);
    const u = r.push(stream.subarray(0, first.length + 2));
    assert.deepEqual(u, first);
    assert.equal(r.pending, 2);
    assert.equal(r.push(new Uint8Array(0)), null);
  });

  test("a malformed length prefix is code 4000", () => {
    const r = new FrameReader();
    assert.throws(() => r.push(new Uint8Array(9).fill(0xff)), (e) => e.errorCode === 4000);
    assert.throws(() => new FrameReader().push(new Uint8Array([0])), (e) => e.errorCode === 4000);
  });
});

describe("transport memory and order", () => {
  test("remembers per base URL, for a day", () => {
    const base = `http://127.0.0.1:1/memory-${process.pid}`;
    assert.equal(recallTransport(base), null);
    rememberTransport(base, "polling", () => 1000);
    assert.equal(recallTransport(base, () => 2000), "polling");
    assert.equal(recallTransport(`${base}/other`, () => 2000), null);
    assert.equal(recallTransport(base, () => 1000 + 25 * 3600 * 1000), null, "expired");
    forgetTransport(base);
    assert.equal(recallTransport(base), null);
  });

  test("the same transport again does not make the memory last longer", () => {
    // A page opened every day, starting from the memory: the day counts from the probe
    // that found the transport, so a fallback is probed again after a day.
    const base = `http://127.0.0.1:1/daily-${process.pid}`;
    const hour = 3600 * 1000;
    rememberTransport(base, "polling", () => 0);
    rememberTransport(base, "polling", () => 20 * hour);
    assert.equal(recallTransport(base, () => 23 * hour), "polling");
    assert.equal(recallTransport(base, () => 25 * hour), null, "a day after the probe");
    rememberTransport(base, "streaming", () => 20 * hour); // another transport starts anew
    assert.equal(recallTransport(base, () => 30 * hour), "streaming");
    forgetTransport(base);
  });

  test("auto is WebSocket, then streaming, then long polling; attempts start at what worked", () => {
    assert.deepEqual(AUTO_ORDER, ["websocket", "streaming", "polling"]);
    assert.deepEqual(resolveTransports(undefined).map(([n]) => n), AUTO_ORDER);
    assert.deepEqual(resolveTransports("auto").map(([n]) => n), AUTO_ORDER);
    assert.deepEqual(resolveTransports("polling").map(([n]) => n), ["polling"]);
    assert.throws(() => resolveTransports("carrier-pigeon"), TypeError);
    const list = resolveTransports(undefined);
    assert.deepEqual(startingAt(list, "streaming").map(([n]) => n), ["streaming", "polling", "websocket"]);
    assert.deepEqual(startingAt(list, null).map(([n]) => n), AUTO_ORDER);
    assert.deepEqual(startingAt(list, "gone").map(([n]) => n), AUTO_ORDER);
  });
});

describe("deadline", () => {
  test("fires after its time, unless cancelled", async () => {
    let fired = 0;
    deadline(20, () => fired++);
    const cancel = deadline(20, () => fired++);
    cancel();
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(fired, 1);
  });

  test("a timer that fires late (the page slept) grants the full time once more", async () => {
    let now = 0;
    let fired = 0;
    deadline(30, () => fired++, () => now);
    now = 60_000; // the clock jumped while the timer waited: asleep
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(fired, 0, "not at wake-up");
    now = 120_000; // and again: a hidden tab, throttled for good
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(fired, 1, "only one extension");
  });
});

describe("HTTP helpers", () => {
  test("endpoints under the base URL", () => {
    assert.equal(endpoint("http://h:1/mqtt", "stream"), "http://h:1/mqtt/stream");
    assert.equal(endpoint("https://h/mqtt/", "send"), "https://h/mqtt/send");
    assert.equal(endpoint("wss://h/mqtt", "poll"), "https://h/mqtt/poll");
    assert.throws(() => endpoint("ftp://h/mqtt", "poll"), TypeError);
    assert.equal(credentialsMode("http://h/mqtt/send"), "same-origin", "Node.js: no page origin");
  });

  test("an HTTP error answer's CLOSE frame is the server's CLOSE; a proxy's page is not", async () => {
    const body = encodeUnit([encodeFrame({ type: F.SERVER_CLOSE, code: 4011, message: "wrong secret" })]);
    const close = await closeFromErrorAnswer(new Response(body, { status: 403, headers: { "Content-Type": "application/octet-stream" } }));
    assert.equal(close.code, 4011);
    assert.equal(close.message, "wrong secret");
    assert.deepEqual(close.unit, body);
    assert.equal(await closeFromErrorAnswer(new Response("<html>denied</html>", { status: 403, headers: { "Content-Type": "text/html" } })), null);
    assert.equal(await closeFromErrorAnswer(new Response(new Uint8Array([5, 1, 2]), { status: 502, headers: { "Content-Type": "application/octet-stream" } })), null);
  });
});

describe("a page being unloaded", () => {
  test("an HTTP transport sends the /send in flight, the queue and the CLOSE at once, in one keepalive request", async () => {
    const original = globalThis.fetch;
    const calls = [];
    globalThis.fetch = (url, init) => {
      calls.push({ endpoint: new URL(url).pathname.split("/").pop(), init, frames: [...decodeUnit(init.body)] });
      return new Promise(() => {}); // nothing is answered: the page is going
    };
    try {
      const link = {
        bindUnit: () => encodeUnit([encodeFrame({ type: F.PING })]),
        credentials: () => ({ session: new Uint8Array(16), secret: new Uint8Array(16).fill(1) }),
        maxFrame: () => 65536,
        heartbeat: () => 20000,
      };
      const t = await connectPolling("http://127.0.0.1:1/mqtt", { link });
      t.send(encodeUnit([encodeFrame({ type: F.OPEN, version: 1, user: "", password: new Uint8Array(0), options: [] })]));
      const pub = (n) => encodeFrame({ type: F.PUBLISH, req: n, handle: 1, topic: "t", qos: 1, retain: false, props: {}, payload: new Uint8Array([n]) });
      t.send(encodeUnit([pub(3)]), 2); // in flight
      t.send(encodeUnit([pub(4)]), 3); // waits for it
      t.send(encodeUnit([encodeFrame({ type: F.CLOSE })]));
      assert.deepEqual(calls.map((c) => c.endpoint), ["poll", "send"]);
      t.close(1000, "", { flush: true, unloading: true });
      assert.equal(calls.length, 3);
      const last = calls[2];
      assert.equal(last.endpoint, "send");
      assert.equal(last.init.keepalive, true);
      assert.deepEqual(last.frames.map((f) => [f.type, f.req ?? f.requests]), [[F.SEND, 2], [F.PUBLISH, 3], [F.PUBLISH, 4], [F.CLOSE, undefined]]);
    } finally {
      globalThis.fetch = original;
    }
  });
});

describe("CookieJar", () => {
  test("sends back the name=value of what the answers set, one jar per session", () => {
    const a = new CookieJar();
    const b = new CookieJar();
    assert.deepEqual(a.header(), {});
    a.store(["mqttgw_instance=abc; Path=/; HttpOnly; SameSite=Lax", "other=1"]);
    a.store("other=2; Max-Age=60");
    assert.deepEqual(a.header(), { Cookie: "mqttgw_instance=abc; other=2" });
    assert.deepEqual(b.header(), {}, "another session's jar is its own");
    a.store(["other=; Max-Age=0", "garbage"]);
    assert.deepEqual(a.header(), { Cookie: "mqttgw_instance=abc" });
    a.storeFrom(new Response(null, { headers: [["set-cookie", "mqttgw_instance=def"]] }));
    assert.deepEqual(a.header(), { Cookie: "mqttgw_instance=def" });
  });
});

describe("freshSessionDelay", () => {
  test("1 s doubling up to 30 s, drawn between half and all of the step", () => {
    assert.equal(freshSessionDelay(0, () => 1), 1000);
    assert.equal(freshSessionDelay(0, () => 0), 500);
    assert.equal(freshSessionDelay(3, () => 1), 8000);
    assert.equal(freshSessionDelay(5, () => 1), 30000);
    assert.equal(freshSessionDelay(1000, () => 0), 15000);
  });
});

describe("connectWebSocket without the ws package", () => {
  // A copy of the client outside any node_modules, as a linked install whose folder
  // never had `npm install` leaves it: the client must say so, once, instead of
  // quietly running without WebSocket (or without cookies on Node.js 22+).
  test("warns once that ws cannot be loaded, and what that costs", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "mqttgw-nows-"));
    try {
      await fs.cp(fileURLToPath(new URL("../src", import.meta.url)), path.join(dir, "src"), { recursive: true });
      const script = `
        import { connectWebSocket } from "./src/transport-websocket.js";
        for (let i = 0; i < 2; i++) {
          await connectWebSocket("http://127.0.0.1:9/mqtt", { timeout: 2000 }).then(
            () => console.log("opened"),
            (err) => console.log("failed:", err.message),
          );
        }`;
      const { code, stdout, stderr } = await run(process.execPath, ["--input-type=module", "-e", script], { cwd: dir });
      assert.equal(code, 0, stderr);
      const warnings = stderr.split("\n").filter((l) => l.includes("the ws package cannot be loaded"));
      assert.equal(warnings.length, 1, stderr);
      assert.match(warnings[0], globalThis.WebSocket ? /cannot carry cookies/ : /sessions use HTTP streaming/);
      assert.equal(String(stdout).split("\n").filter((l) => l.startsWith("failed:")).length, 2, String(stdout));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
