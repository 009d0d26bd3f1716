// The client as a page uses it: imported from the gateway (/mqtt/client.js) in
// headless Chromium (Debian's, driven by playwright-core), against the real gateway;
// and from a page of another origin, over the HTTP transports (CORS, credentials).

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import http from "node:http";
import { after, before, test } from "node:test";

import { freePort, run, start, startGateway, startMosquitto, startProxy } from "./support/env.js";
import { publishNumbered } from "./support/mqtt.js";
import { waitFor } from "./support/wait.js";
import { openWatchedSession } from "./support/watched-session.js";
import os from "node:os";
import path from "node:path";

const CHROMIUM = process.env.MQTTGW_CHROMIUM_BIN ?? "/usr/bin/chromium";

let mosquitto;
let gateway;
let browser;
let site; // a site of another origin, serving an empty page and the client's files
let siteGateway; // a gateway that allows that origin

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium or set MQTTGW_CHROMIUM_BIN`);
  const { chromium } = await import("playwright-core");
  mosquitto = await startMosquitto();
  site = await startSite();
  [gateway, siteGateway, browser] = await Promise.all([
    startGateway({ brokerPort: mosquitto.port }),
    startGateway({ brokerPort: mosquitto.port, extra: `allow_origins ${site.origin}` }),
    chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] }),
  ]);
});

after(async () => {
  await browser?.close().catch(() => {});
  await gateway?.stop().catch(() => {});
  await siteGateway?.stop().catch(() => {});
  await site?.stop().catch(() => {});
  await mosquitto?.stop().catch(() => {});
});

/** Serves "/" (an empty page) and /client/* (client/src) on a free port. */
async function startSite() {
  const port = await freePort();
  const server = http.createServer(async (req, res) => {
    if (req.url === "/") {
      res.writeHead(200, { "Content-Type": "text/html" }).end("<!doctype html><title>site</title>");
      return;
    }
    const name = /^\/client\/([a-z-]+\.js)$/.exec(req.url)?.[1];
    const body = name && (await fs.readFile(new URL(`../src/${name}`, import.meta.url)).catch(() => null));
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": "text/javascript" }).end(body);
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    origin: `http://127.0.0.1:${port}`,
    stop: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

test("a page imports the client from the gateway and round-trips binary bytes", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  // Any page of the gateway's origin will do: the WebSocket is same-origin.
  await page.goto(`http://127.0.0.1:${gateway.port}/`);
  const r = await page.evaluate(async () => {
    const { openSession, Message } = await import("/mqtt/client.js");
    const s = await openSession("/mqtt"); // relative: resolved against the page
    const c = s.createClient("main");
    const got = [];
    c.onMessageArrived = (m) => got.push({ topic: m.destinationName, bytes: Array.from(m.payloadBytes), qos: m.qos });
    await c.connect();
    await c.subscribe("browser/#", { qos: 1 });
    const m = new Message(Uint8Array.from({ length: 256 }, (_, i) => i));
    m.destinationName = "browser/1";
    m.qos = 1;
    await c.send(m);
    const deadline = Date.now() + 5000;
    while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const out = { id: s.id, transport: s.transport, got };
    await s.close();
    // A page cannot set a handshake's headers: the Node.js-only option says so.
    out.headers = await openSession("/mqtt", { headers: { Authorization: "Bearer t" } }).then(
      () => "opened",
      (e) => `${e.name}: ${e.message}`,
    );
    return out;
  });
  assert.deepEqual(errors, []);
  assert.match(r.headers, /^TypeError: openSession option headers works outside browsers only/);
  assert.equal(r.transport, "websocket");
  assert.match(r.id, /^[0-9a-f]{32}$/);
  assert.equal(r.got.length, 1);
  assert.deepEqual(r.got[0], { topic: "browser/1", bytes: Array.from({ length: 256 }, (_, i) => i), qos: 1 });
  await page.close();
});

for (const transport of ["streaming", "polling"]) {
  test(`a page of another origin allowed by the gateway: ${transport} round-trips binary bytes`, async () => {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e));
    await page.goto(`${site.origin}/`);
    const r = await page.evaluate(
      async ({ base, transport }) => {
        const { openSession, Message } = await import("/client/client.js");
        const s = await openSession(base, { transport });
        const c = s.createClient("main");
        const got = [];
        c.onMessageArrived = (m) => got.push({ topic: m.destinationName, bytes: Array.from(m.payloadBytes) });
        await c.connect();
        await c.subscribe(`cors/${transport}/#`, { qos: 1 });
        const m = new Message(Uint8Array.from({ length: 256 }, (_, i) => i));
        m.destinationName = `cors/${transport}/1`;
        m.qos = 1;
        await c.send(m);
        const deadline = Date.now() + 5000;
        while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        const out = { transport: s.transport, got };
        await s.close();
        return out;
      },
      { base: siteGateway.base, transport },
    );
    assert.deepEqual(errors, []);
    assert.equal(r.transport, transport);
    assert.deepEqual(r.got, [{ topic: `cors/${transport}/1`, bytes: Array.from({ length: 256 }, (_, i) => i) }]);
    await page.close();
  });
}

// The same page of another origin against a gateway that does not list it: no
// transport gets through (the WebSocket upgrade and the HTTP requests are refused).
test("a page given a wrong base path is told the HTTP answer, which the HTTP transports see where WebSocket cannot", async () => {
  const page = await browser.newPage();
  const wrongPath = async (client) => {
    const { openSession } = await import(client);
    try {
      await openSession("/wrongpath");
      return "opened";
    } catch (err) {
      return `${err.errorCode} ${err.errorMessage}`;
    }
  };
  // A site that answers 404 for what it does not have (the client is served from it).
  await page.goto(`${site.origin}/`);
  assert.equal(
    await page.evaluate(wrongPath, "/client/client.js"),
    `1006 cannot reach the gateway at ${site.origin}/wrongpath: HTTP 404 Not Found (is the base path right?)`,
  );
  // The gateway's own site answers other paths with an empty 200.
  await page.goto(`http://127.0.0.1:${gateway.port}/`);
  assert.equal(
    await page.evaluate(wrongPath, "/mqtt/client.js"),
    `1006 cannot reach the gateway at http://127.0.0.1:${gateway.port}/wrongpath: HTTP 200 OK with no content type, not the gateway's answer (is the base path right? does another handler, such as try_files or file_server, answer the gateway's requests?)`,
  );
  await page.close();
});

test("a page of another origin not allowed by the gateway can neither open a WebSocket nor drive the HTTP transports", async () => {
  const page = await browser.newPage();
  await page.goto(`${site.origin}/`);
  const results = await page.evaluate(async (base) => {
    const { openSession } = await import("/client/client.js");
    const out = {};
    for (const transport of ["websocket", "streaming", "polling"]) {
      try {
        const s = await openSession(base, { transport, connectTimeout: 3000 });
        out[transport] = `opened ${s.id}`;
        await s.close();
      } catch (err) {
        out[transport] = `refused ${err.errorCode ?? err.message}`;
      }
    }
    // And the raw endpoints, as a hostile page would call them.
    const ws = await new Promise((resolve) => {
      const w = new WebSocket(`${base.replace("http", "ws")}/ws`, "mqttgw.v1");
      w.onopen = () => resolve("open");
      w.onerror = () => resolve("error");
    });
    const post = await fetch(`${base}/poll`, { method: "POST", body: new Uint8Array([2, 1, 1]) }).then(
      (r) => `status ${r.status}`,
      () => "blocked",
    );
    return { ...out, ws, post };
  }, gateway.base);
  for (const transport of ["websocket", "streaming", "polling"]) {
    assert.match(results[transport], /^refused/, `${transport}: ${results[transport]}`);
  }
  // The page may read why it was refused (PROTOCOL.md, Origins and CORS): its HTTP
  // transports get 4021, a raw request a 403; a refused WebSocket says nothing.
  assert.equal(results.streaming, "refused 4021");
  assert.equal(results.polling, "refused 4021");
  assert.equal(results.ws, "error");
  assert.equal(results.post, "status 403");
  await page.close();
});

// Authorization decided by an external hook service (a real HTTP server behind
// reverse_proxy): its code and message reach the page's callbacks.
test("a hook service's denial reaches the page's onFailure with its code and message", async () => {
  const hookPort = await freePort();
  const hooks = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const facts = JSON.parse(Buffer.concat(chunks).toString() || "{}");
    const action = req.url.slice(1);
    if (action === "open") {
      if (facts.username === "alice" && facts.password === "alice-pw") {
        res.writeHead(204, { "X-Mqtt-User": "alice" }).end();
      } else {
        res.writeHead(403, { "X-Mqtt-Error-Message": "who are you?" }).end();
      }
      return;
    }
    if ((action === "subscribe" || action === "publish") && !facts.topic.startsWith(`users/${facts.user}/`)) {
      res.writeHead(403, { "X-Mqtt-Error-Code": "4021", "X-Mqtt-Error-Message": `not your topic: ${facts.topic}` }).end();
      return;
    }
    res.writeHead(204).end();
  });
  await new Promise((resolve) => hooks.listen(hookPort, "127.0.0.1", resolve));
  const guarded = await startGateway({
    brokerPort: mosquitto.port,
    extra: `authenticate {\n reverse_proxy 127.0.0.1:${hookPort}\n}\nauthorize {\n reverse_proxy 127.0.0.1:${hookPort}\n}`,
  });
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${guarded.port}/`);
    const r = await page.evaluate(async () => {
      const { openSession } = await import("/mqtt/client.js");
      const out = {};
      try {
        await openSession("/mqtt", { user: "mallory", password: "x" });
        out.open = "opened";
      } catch (err) {
        out.open = { errorCode: err.errorCode, errorMessage: err.errorMessage };
      }
      const s = await openSession("/mqtt", { user: "alice", password: "alice-pw" });
      const c = s.createClient("main");
      await c.connect();
      out.own = await c.subscribe("users/alice/#", { qos: 1 }).then(() => "granted", (e) => e.errorCode);
      out.other = await new Promise((resolve) =>
        c.subscribe("users/bob/#", { onSuccess: () => resolve("granted"), onFailure: (e) => resolve({ errorCode: e.errorCode, errorMessage: e.errorMessage }) }),
      );
      out.all = await c.subscribe("#").then(() => "granted", (e) => ({ errorCode: e.errorCode, errorMessage: e.errorMessage }));
      out.notAuthorized = await new Promise((resolve) => {
        c.onMessageNotAuthorized = (m, e) => resolve({ topic: m.destinationName, errorCode: e.errorCode });
        c.publish("users/bob/inbox", "hi", 1).catch(() => {});
      });
      await s.close();
      return out;
    });
    assert.deepEqual(r.open, { errorCode: 4020, errorMessage: "who are you?" });
    assert.equal(r.own, "granted");
    assert.deepEqual(r.other, { errorCode: 4021, errorMessage: "not your topic: users/bob/#" });
    assert.deepEqual(r.all, { errorCode: 4021, errorMessage: "not your topic: #" });
    assert.deepEqual(r.notAuthorized, { topic: "users/bob/inbox", errorCode: 4021 });
    await page.close();
  } finally {
    await guarded.stop().catch(() => {});
    await new Promise((resolve) => hooks.close(resolve));
  }
});

// Bytes end to end with the broker's own tools: a binary payload published by
// mosquitto_pub -f arrives byte-identical in the page, and what the page publishes
// reaches mosquitto_sub byte-identical.
test("binary payloads between mosquitto_pub/mosquitto_sub and a page are byte-identical", async () => {
  const bytes = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
  const file = path.join(await fs.mkdtemp(path.join(os.tmpdir(), "mqttgw-bytes-")), "payload.bin");
  await fs.writeFile(file, bytes);
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${gateway.port}/`);
  await page.evaluate(async () => {
    const { openSession } = await import("/mqtt/client.js");
    const s = await openSession("/mqtt");
    const c = s.createClient("main");
    window.received = [];
    c.onMessageArrived = (m) => window.received.push({ topic: m.destinationName, bytes: Array.from(m.payloadBytes), qos: m.qos, retained: m.retained });
    await c.connect();
    await c.subscribe("tools/in", { qos: 1 });
    window.gatewayClient = c;
  });
  const pub = await run("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(mosquitto.port), "-t", "tools/in", "-q", "1", "-f", file]);
  assert.equal(pub.code, 0, pub.stderr);
  await page.waitForFunction(() => window.received.length === 1, null, { timeout: 5000 });
  assert.deepEqual(await page.evaluate(() => window.received[0]), { topic: "tools/in", bytes: [...bytes], qos: 1, retained: false });

  const sub = start("mosquitto_sub", ["-h", "127.0.0.1", "-p", String(mosquitto.port), "-t", "tools/out", "-C", "1", "-N"]);
  await new Promise((r) => setTimeout(r, 300)); // mosquitto_sub has no "subscribed" signal
  await page.evaluate((b) => window.gatewayClient.publish("tools/out", Uint8Array.from(b), 1), [...bytes]);
  const out = await sub.done;
  assert.ok(Buffer.compare(out.stdout, bytes) === 0, `mosquitto_sub got ${out.stdout.length} bytes`);
  await fs.rm(path.dirname(file), { recursive: true, force: true });
  await page.close();
});

// A phone that moves from Wi-Fi to cellular often leaves its old connection silent,
// not broken: only the heartbeat deadline (2 × 20 s + 5 s here) would tell. The page
// checks its connection when the network comes back online and when it returns to the
// foreground, and rebinds on a new connection in seconds, nothing lost. Over HTTP the
// browser's kept-alive connections went silent too (the proxy silences every
// connection of the moment: the page loaded its modules over six), and the rebind's
// request, handed to one of them, waited for its deadline until the session dropped
// them first (dropSilentConnections).
for (const transport of ["websocket", "streaming", "polling"]) {
test(`${transport}: a page whose connection a network switch left silent rebinds in seconds when it comes online or to the foreground, or its steady traffic stops`, async () => {
  const proxy = await startProxy(gateway.port);
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  try {
    await page.goto(`http://127.0.0.1:${proxy.port}/`);
    const topic = `silent/${process.pid}-${Date.now()}`;
    const first = await page.evaluate(openWatchedSession, { transport, broker: "main", filter: `${topic}/#` });
    assert.deepEqual(first.transport, transport);
    assert.equal(first.visibility, "visible");

    const triggers = {
      // Chromium's offline mode fails the requests under way and keeps its idle
      // connections, silent here: over HTTP the session reconnects while offline (a
      // WebSocket lives on), its attempts fail at once, and once online the rebind's
      // request must not go on those. First: the page's six module connections are
      // among them.
      "offline, then online": async () => {
        await page.context().setOffline(true);
        await new Promise((r) => setTimeout(r, 1000));
        await page.context().setOffline(false);
      },
      online: () => page.evaluate(() => window.dispatchEvent(new Event("online"))),
      "the foreground": () => page.evaluate(() => document.dispatchEvent(new Event("visibilitychange"))),
      // Nothing reported: the page's steady traffic stops, which the session checks.
      "nothing, after steady traffic": null,
    };
    let round = 0;
    for (const [what, trigger] of Object.entries(triggers)) {
      round++;
      if (!trigger) {
        // 4 s of values, 10 a second, before the path goes silent.
        await publishNumbered(mosquitto.port, `${topic}/steady`, { count: 40, rate: 10, line: () => "steady" });
        await page.waitForFunction(() => window.got.filter((v) => v === "steady").length === 40, null, { timeout: 10000 });
      }
      proxy.silence();
      const pub = await run("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(mosquitto.port), "-t", `${topic}/${round}`, "-q", "1", "-m", what]);
      assert.equal(pub.code, 0, pub.stderr);
      await trigger?.();
      // Within 30 s (5 s for the check, after 5 s of silence when nothing reported it,
      // and over HTTP up to 3 s to drop the browser's kept-alive connections, silent
      // too): the heartbeat alone would take 45 s.
      await page.waitForFunction((what) => window.got.at(-1) === what, what, { timeout: 30000 });
      const now = await page.evaluate(() => ({ id: window.s.id, transport: window.s.transport, events: window.events, got: window.got }));
      assert.equal(now.events.length, 2 * round, `${what}: one rebind a round`);
      assert.deepEqual(now.events.slice(-2), ["start", { messagesMayHaveBeenLost: false }], what);
      assert.deepEqual(now.got.filter((v) => v !== "steady"), Object.keys(triggers).slice(0, round), `${what}: every round's message, once`);
      assert.deepEqual([now.id, now.transport], [first.id, transport], `${what}: the same session, rebound`);
    }
    await page.evaluate(() => window.s.close());
    assert.deepEqual(errors, []);
  } finally {
    await page.close();
    await proxy.stop();
  }
});
}

// A page that is closed, reloaded or left closes its session (on pagehide), so the
// gateway frees it at once instead of keeping it for session_timeout, waiting for a
// client that will not come back, while it counts against max_sessions_per_ip: with a
// limit of 1, each new page gets the place at once. What the page published in its own
// pagehide listener still goes out, and then, as with a page's own MQTT connection, its
// dedicated client's will fires at once: the page did not disconnect it. A client the
// listener disconnects has no will. closeOnPageHide: false leaves the session to
// expire, and the will fires then.
test("a page that is reloaded, left or closed closes its session at once, on every transport", async () => {
  const limited = await startGateway({ brokerPort: mosquitto.port, extra: "max_sessions_per_ip 1\nsession_timeout 5s" });
  const topic = `pagehide/${process.pid}-${Date.now()}`;
  const sub = start("mosquitto_sub", ["-h", "127.0.0.1", "-p", String(mosquitto.port), "-t", `${topic}/#`, "-v", "-q", "1"]);
  const seen = [];
  let partial = "";
  sub.child.stdout.on("data", (chunk) => {
    const lines = (partial + chunk).split("\n");
    partial = lines.pop();
    seen.push(...lines);
  });
  // Opens a session and a dedicated client with a will; the page's own pagehide
  // listener, added first, publishes a goodbye. A session that is still on the gateway
  // holds the one place for 127.0.0.1 (4013): tried for 1.5 s, far less than the
  // 5 s session_timeout.
  const openTab = async ({ transport, topic, closeOnPageHide }) => {
    const { openSession, Message } = await import("/mqtt/client.js");
    addEventListener("pagehide", () => {
      const c = window.tabClient;
      c?.publish(`${topic}/bye`, transport, 1).catch(() => {});
      if (window.disconnectOnHide) c?.disconnect();
    });
    const deadline = Date.now() + 1500;
    for (;;) {
      try {
        const s = await openSession("/mqtt", { transport, closeOnPageHide });
        const c = s.createClient("main", `tab-${transport}`);
        const will = new Message(transport);
        will.destinationName = `${topic}/will`;
        will.qos = 1;
        await c.connect({ willMessage: will });
        window.tabClient = c;
        return `opened ${s.transport}`;
      } catch (err) {
        if (err.errorCode !== 4013 || Date.now() > deadline) return `${err.errorCode} ${err.errorMessage}`;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  };
  try {
    await new Promise((r) => setTimeout(r, 300)); // mosquitto_sub has no "subscribed" signal
    const origin = `http://127.0.0.1:${limited.port}`;
    let page = await browser.newPage();
    const byes = [];
    for (const transport of ["websocket", "streaming", "polling"]) {
      await page.goto(`${origin}/`);
      assert.equal(await page.evaluate(openTab, { transport, topic }), `opened ${transport}`, `${transport}, first page`);
      await page.reload();
      assert.equal(await page.evaluate(openTab, { transport, topic }), `opened ${transport}`, `${transport}, after a reload`);
      await page.goto(`${origin}/elsewhere`); // the next round's first page finds the place free
      byes.push(`${topic}/bye ${transport}`, `${topic}/bye ${transport}`);
    }
    // A closed tab.
    await page.goto(`${origin}/`);
    assert.equal(await page.evaluate(openTab, { transport: "websocket", topic }), "opened websocket");
    await page.close({ runBeforeUnload: true });
    byes.push(`${topic}/bye websocket`);
    page = await browser.newPage();
    await page.goto(`${origin}/`);
    assert.equal(await page.evaluate(openTab, { transport: "streaming", topic }), "opened streaming", "after a closed tab");
    await page.goto(`${origin}/elsewhere`);
    byes.push(`${topic}/bye streaming`);
    // Each page that went had its goodbye, then its will.
    const wills = byes.map((bye) => bye.replace("/bye ", "/will "));
    await waitFor(() => seen.length >= 2 * byes.length, { timeout: 5000, what: "the goodbyes and wills" }).catch(() => {});
    assert.deepEqual(seen.toSorted(), [...byes, ...wills].toSorted(), "goodbyes and wills");

    // A page that disconnects its client as it goes has no will.
    seen.length = 0;
    await page.goto(`${origin}/`);
    assert.equal(await page.evaluate(openTab, { transport: "websocket", topic }), "opened websocket");
    await page.evaluate(() => (window.disconnectOnHide = true));
    await page.goto(`${origin}/elsewhere`);
    await waitFor(() => seen.length >= 1, { timeout: 5000, what: "the goodbye" });
    await new Promise((r) => setTimeout(r, 500)); // a will, if sent, would be here by now
    assert.deepEqual(seen, [`${topic}/bye websocket`], "a goodbye, and no will");

    // Opted out: the reloaded page's session waits for its client until it expires,
    // and its will fires then.
    await page.goto(`${origin}/`);
    assert.equal(await page.evaluate(openTab, { transport: "websocket", topic, closeOnPageHide: false }), "opened websocket");
    seen.length = 0;
    await page.reload();
    assert.match(await page.evaluate(openTab, { transport: "websocket", topic }), /^4013 too many sessions/);
    await waitFor(() => seen.includes(`${topic}/will websocket`), { timeout: 10000, what: "the will of the expired session" });
    await page.close();
  } finally {
    sub.kill();
    await limited.stop().catch(() => {});
  }
});

// A page put in the back/forward cache (pagehide with persisted true) may come back:
// its session is left alone. When the gateway dropped it meanwhile (long polling: it
// expires 2 × heartbeat + 5 s + session_timeout after the last poll, 8 s here), the
// page that comes back recovers with
// a fresh session, its subscriptions re-created. Playwright turns the cache off; this
// test's own browser turns it back on.
test("a page kept in the back/forward cache keeps its session, or gets a fresh one when it expired meanwhile", async (t) => {
  const { chromium } = await import("playwright-core");
  const cached = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"], ignoreDefaultArgs: ["--disable-back-forward-cache"] });
  const short = await startGateway({ brokerPort: mosquitto.port, extra: "heartbeat 1s\nsession_timeout 1s" });
  try {
    const page = await cached.newPage();
    const origin = `http://127.0.0.1:${short.port}`;
    await page.goto(`${origin}/a`);
    const topic = `bfcache/${process.pid}-${Date.now()}`;
    await page.evaluate(async (topic) => {
      window.events = [];
      addEventListener("pagehide", (e) => window.events.push(`pagehide ${e.persisted}`));
      addEventListener("pageshow", (e) => window.events.push(`pageshow ${e.persisted}`));
      const { openSession } = await import("/mqtt/client.js");
      window.session = await openSession("/mqtt", {
        transport: "polling",
        onReconnectionComplete: (i) => window.events.push(`recovered ${i.messagesMayHaveBeenLost}`),
      });
      window.firstId = window.session.id;
      const c = window.session.createClient("main");
      window.got = [];
      c.onMessageArrived = (m) => window.got.push(m.payloadString);
      await c.connect();
      await c.subscribe(topic, { qos: 1 });
    }, topic);
    await page.goto(`${origin}/b`);
    await new Promise((r) => setTimeout(r, 9500)); // the session expires on the gateway
    await page.goBack({ waitUntil: "commit" }); // no load event for a page from the cache
    if (!(await page.evaluate(() => window.session !== undefined))) {
      t.skip("Chromium did not keep the page in its back/forward cache");
      return;
    }
    await page.waitForFunction(() => window.session.state === "open" && window.events.some((e) => e.startsWith("recovered")), null, { timeout: 10000 });
    const r = await page.evaluate(() => ({ events: window.events, fresh: window.session.id !== window.firstId }));
    assert.deepEqual(r, { events: ["pagehide true", "pageshow true", "recovered true"], fresh: true });
    // The subscription is back (recovery completes once it is re-created).
    const pub = await run("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(mosquitto.port), "-t", topic, "-q", "1", "-m", "back"]);
    assert.equal(pub.code, 0, pub.stderr);
    await page.waitForFunction(() => window.got.includes("back"), null, { timeout: 5000 });
  } finally {
    await cached.close().catch(() => {});
    await short.stop().catch(() => {});
  }
});
