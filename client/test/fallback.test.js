// Automatic transport choice through real proxies: a Caddy in front of the gateway that
// refuses WebSocket upgrades (the client ends up on HTTP streaming, in Node.js and in
// Chromium), and a proxy that holds responses until they end (long polling).

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";

import { openSession } from "../src/client.js";
import { recallTransport, rememberTransport } from "../src/transport-memory.js";
import { connectWebSocket } from "../src/transport-websocket.js";
import { findProgram, start, startBufferingProxy, startGateway, startMosquitto, startWebSocketBlocker } from "./support/env.js";
import { listeningClient, mosquittoPub, publishUntilSeen, unique } from "./support/mqtt.js";
import { waitFor } from "./support/wait.js";

const CHROMIUM = process.env.MQTTGW_CHROMIUM_BIN ?? "/usr/bin/chromium";

let mosquitto;
let gateway;
let blocker;
let buffering;
let browser;
const cleanups = [];

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium or set MQTTGW_CHROMIUM_BIN`);
  const { chromium } = await import("playwright-core");
  mosquitto = await startMosquitto();
  gateway = await startGateway({ brokerPort: mosquitto.port });
  [blocker, buffering, browser] = await Promise.all([
    startWebSocketBlocker(gateway.port),
    startBufferingProxy(gateway.port),
    chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] }),
  ]);
});

after(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => {});
  await browser?.close().catch(() => {});
  await buffering?.stop().catch(() => {});
  await blocker?.stop().catch(() => {});
  await gateway?.stop().catch(() => {});
  await mosquitto?.stop().catch(() => {});
});

async function session(base, options) {
  const s = await openSession(base, options);
  cleanups.push(() => s.close());
  return s;
}

/** Messages both ways: mosquitto_pub → client, client → mosquitto_sub. */
async function roundTrip(s) {
  const c = await listeningClient(s);
  const topic = unique("fallback");
  await c.subscribe(`${topic}/#`, { qos: 1 });
  await mosquittoPub(mosquitto.port, `${topic}/in`, ["-q", "1", "-m", "down"]);
  const m = await waitFor(() => c.received[0], { what: "the message from mosquitto_pub" });
  assert.equal(m.payloadString, "down");
  const seen = await publishUntilSeen(c, mosquitto.port, `${topic}/out`, "up");
  assert.equal(seen.toString(), "up");
}

test("WebSocket refused by a proxy: Node.js ends up on HTTP streaming", async () => {
  const s = await session(blocker.base);
  assert.equal(s.transport, "streaming");
  await roundTrip(s);
});

test("WebSocket refused by a proxy: a page in Chromium ends up on HTTP streaming", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(`http://127.0.0.1:${blocker.port}/`);
  const topic = unique("browser-fallback");
  const opened = await page.evaluate(async (topic) => {
    const { openSession } = await import("/mqtt/client.js");
    const s = await openSession("/mqtt");
    const c = s.createClient("main");
    window.got = [];
    c.onMessageArrived = (m) => window.got.push(m.payloadString);
    await c.connect();
    await c.subscribe(`${topic}/#`, { qos: 1 });
    window.mqtt = { s, c };
    return { transport: s.transport, remembered: localStorage.getItem(`mqttgw.transport:${location.origin}/mqtt`) };
  }, topic);
  assert.equal(opened.transport, "streaming");
  assert.equal(JSON.parse(opened.remembered).name, "streaming", "remembered for the next page");

  await mosquittoPub(mosquitto.port, `${topic}/in`, ["-q", "1", "-m", "to the page"]);
  await page.waitForFunction(() => window.got.length > 0, null, { timeout: 5000 });
  assert.deepEqual(await page.evaluate(() => window.got), ["to the page"]);

  // mosquitto_sub cannot say when it has subscribed: the page publishes until it has one.
  const sub = start(findProgram("mosquitto_sub"), ["-h", "127.0.0.1", "-p", String(mosquitto.port), "-t", `${topic}/out`, "-C", "1"]);
  cleanups.push(async () => sub.kill());
  await page.evaluate((topic) => {
    window.pub = setInterval(() => window.mqtt.c.publish(`${topic}/out`, "from the page", 1), 100);
  }, topic);
  const r = await Promise.race([sub.done, new Promise((_, reject) => setTimeout(() => reject(new Error("mosquitto_sub got nothing")), 10000))]);
  assert.equal(r.stdout.toString().trim(), "from the page");
  await page.evaluate(async () => {
    clearInterval(window.pub);
    await window.mqtt.s.close();
  });
  assert.deepEqual(errors, []);
  await page.close();
});

test("a proxy that holds responses until they end: long polling, remembered for the next session", async () => {
  const t0 = Date.now();
  const s = await session(buffering.base);
  assert.equal(s.transport, "polling");
  assert.ok(Date.now() - t0 >= 3000, "after the stream's first-byte deadline");
  await roundTrip(s);
  // The abandoned stream is not left hanging in the proxy: only the current poll is.
  await waitFor(() => buffering.held === 1, { what: "one request held by the proxy" });

  const t1 = Date.now();
  const again = await session(buffering.base);
  assert.equal(again.transport, "polling");
  assert.ok(Date.now() - t1 < 2000, "starts with what worked");
});

test("a page whose network comes back online tries the transports from the best again", async () => {
  // Through the proxy that refuses WebSocket, with long polling remembered: the check
  // of WebSocket alone (_checkUpgrade) leaves the session where it is; the network
  // coming back makes it try from the top, and it moves up to HTTP streaming.
  const context = await browser.newContext();
  cleanups.push(() => context.close());
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  await page.goto(`http://127.0.0.1:${blocker.port}/`);
  const topic = unique("online");
  const before = await page.evaluate(async (topic) => {
    window.key = "mqttgw.transport:" + new URL("/mqtt", location.href).href;
    localStorage.setItem(window.key, JSON.stringify({ name: "polling", at: Date.now() }));
    const { openSession } = await import("/mqtt/client.js");
    const s = await openSession("/mqtt");
    window.s = s;
    window.changes = [];
    s.onTransportChange = (c) => window.changes.push(c);
    const c = s.createClient("main");
    window.got = [];
    c.onMessageArrived = (m) => window.got.push(m.payloadString);
    await c.connect();
    await c.subscribe(`${topic}/#`, { qos: 1 });
    return s.transport;
  }, topic);
  assert.equal(before, "polling");

  await context.setOffline(true);
  await context.setOffline(false); // online: the device may be on another network now
  // Settled: the change made, and a transport in use. Chromium's offline toggle can
  // fail a request a moment after the move, and the session then rebinds on the
  // same transport (seen once: s.transport read as null in between).
  const after = await page.evaluate(async () => {
    const deadline = Date.now() + 10000;
    while ((window.changes.length === 0 || window.s.transport === null) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    return { transport: window.s.transport, changes: window.changes, remembered: JSON.parse(localStorage.getItem(window.key))?.name };
  });
  assert.deepEqual(after, { transport: "streaming", changes: [{ transport: "streaming", previous: "polling" }], remembered: "streaming" });
  await mosquittoPub(mosquitto.port, `${topic}/x`, ["-q", "1", "-m", "over streaming"]);
  const got = await page.evaluate(async () => {
    const deadline = Date.now() + 5000;
    while (window.got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const out = window.got;
    await window.s.close();
    return out;
  });
  assert.deepEqual(got, ["over streaming"]);
  assert.deepEqual(errors, []);
});

test("a session started on a remembered lesser transport moves to WebSocket once it gets through", async () => {
  rememberTransport(gateway.base, "polling"); // as a network that blocked WebSocket left it
  const s = await session(gateway.base);
  assert.equal(s.transport, "polling");
  const changes = [];
  s.onTransportChange = (c) => changes.push(c);
  await waitFor(() => changes.length > 0, { timeout: 10000, what: "the move to WebSocket" });
  assert.equal(s.transport, "websocket");
  assert.equal(s.state, "open");
  assert.deepEqual(changes, [{ transport: "websocket", previous: "polling" }]);
  assert.equal(recallTransport(gateway.base), "websocket");
  await roundTrip(s);
});

/**
 * The real WebSocket transport, watched: each connection attempt is recorded with how
 * it settled ("opened" or "refused") and whether the client closed it since.
 */
function watchedWebSocket(probes) {
  return Object.assign(
    (base, o) => {
      const probe = { settled: false, closed: false };
      probes.push(probe);
      return connectWebSocket(base, o).then(
        (t) => {
          probe.settled = "opened";
          const close = t.close;
          t.close = (...args) => {
            probe.closed = true;
            return close.apply(t, args);
          };
          return t;
        },
        (err) => {
          probe.settled = "refused";
          throw err;
        },
      );
    },
    { transportName: "websocket" },
  );
}

/**
 * A session opened at `base` with `remembered` as the transport that worked there, its
 * WebSocket attempts watched (watchedWebSocket) and its reconnections counted.
 */
async function startedOnRemembered(base, remembered) {
  rememberTransport(base, remembered);
  const probes = [];
  const counted = { reconnections: 0 };
  const s = await session(base, {
    transport: [watchedWebSocket(probes), "streaming", "polling"],
    onReconnectionStart: () => counted.reconnections++,
  });
  assert.equal(s.transport, remembered);
  assert.equal(probes.length, 0, "started where the memory said");
  return { s, probes, counted };
}

/** After the one check of WebSocket: the session is where it was, never having reconnected. */
async function stayedWhereItWas({ s, counted }, base, transport) {
  await new Promise((r) => setImmediate(r));
  assert.equal(s.transport, transport);
  assert.equal(s.state, "open");
  assert.equal(counted.reconnections, 0);
  assert.equal(recallTransport(base), transport);
  await roundTrip(s);
}

test("a session started on a remembered lesser transport stays there while WebSocket is refused", async () => {
  const started = await startedOnRemembered(blocker.base, "streaming");
  await waitFor(() => started.probes[0]?.settled, { timeout: 10000, what: "the check of WebSocket" });
  assert.equal(started.probes[0].settled, "refused");
  await stayedWhereItWas(started, blocker.base, "streaming");
});

test("a session started on a remembered lesser transport stays there when WebSocket opens but carries nothing", async () => {
  const swallowing = await startBufferingProxy(gateway.port, { swallowUpgrades: true });
  cleanups.push(() => swallowing.stop());
  const started = await startedOnRemembered(swallowing.base, "polling");
  // The upgrade succeeds; the PING the check sends gets no answer, so the check gives
  // up after the probe deadline, closes its connection and leaves the session alone.
  await waitFor(() => started.probes[0]?.closed, { timeout: 15000, what: "the end of the check of WebSocket" });
  assert.equal(started.probes[0].settled, "opened");
  assert.equal(started.probes.length, 1);
  await stayedWhereItWas(started, swallowing.base, "polling");
});
