// The client against the real gateway (Caddy + mqtt_gateway) and a real Mosquitto,
// with Mosquitto's own command-line clients on the other side.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { ErrorCode, Message, openSession } from "../src/client.js";
import { FrameType } from "../src/codec.js";
import { spyFetch } from "./support/fetch-spy.js";
import { tappedWebSocket } from "./support/tap.js";
import { findProgram, freePort, run, start, startCaddy, startGateway, startMosquitto, startProxy } from "./support/env.js";
import { waitFor } from "./support/wait.js";

const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i); // incl. invalid UTF-8

let mosquitto;
let gateway;
let tmp;
const cleanups = [];

const MOSQUITTO_PUB = () => findProgram("mosquitto_pub");
const MOSQUITTO_SUB = () => findProgram("mosquitto_sub");

before(async () => {
  tmp = await fs.mkdtemp(path.join(os.tmpdir(), "mqttgw-it-"));
  mosquitto = await startMosquitto();
  gateway = await startGateway({ brokerPort: mosquitto.port });
});

after(async () => {
  // Each step on its own: a failure in one must not leave the others running.
  for (const fn of cleanups.reverse()) await fn().catch(() => {});
  await gateway?.stop().catch(() => {});
  await mosquitto?.stop().catch(() => {});
  if (tmp) await fs.rm(tmp, { recursive: true, force: true });
});

/** A session that is closed when the file ends, whatever happens in the test. */
async function session(base = gateway.base, options = {}) {
  const s = await openSession(base, options);
  cleanups.push(() => s.close());
  return s;
}

/** A connected shared-connection client that records what it receives. */
async function client(s, broker = "main") {
  const c = s.createClient(broker);
  c.received = [];
  c.onMessageArrived = (m) => c.received.push(m);
  await c.connect();
  return c;
}

const unique = (prefix) => `${prefix}/${randomBytes(4).toString("hex")}`;

async function pub(topic, args) {
  const r = await run(MOSQUITTO_PUB(), ["-h", "127.0.0.1", "-p", String(mosquitto.port), "-t", topic, ...args]);
  assert.equal(r.code, 0, `mosquitto_pub failed: ${r.stderr}`);
}

describe("with a real gateway and mosquitto", () => {
  test("the gateway serves this client's files", async () => {
    const r = await fetch(`${gateway.base}/client.js`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get("content-type"), /javascript/);
    const served = await r.text();
    const local = await fs.readFile(new URL("../src/client.js", import.meta.url), "utf8");
    assert.equal(served, local);
  });

  test("opens a WebSocket session", async () => {
    const s = await session();
    assert.equal(s.transport, "websocket");
    assert.match(s.id, /^[0-9a-f]{32}$/);
    assert.ok(s.heartbeat > 0 && s.heartbeat < 30000, "server heartbeats under 30 s");
    assert.ok(s.maxFrame > 0);
  });

  test("a binary payload from mosquitto_pub arrives byte-identical", async () => {
    const s = await session();
    const c = await client(s);
    assert.equal(await c.subscribe("sensors/+/temp", { qos: 1 }), 1);
    const file = path.join(tmp, "payload.bin");
    await fs.writeFile(file, ALL_BYTES);
    await pub("sensors/a/temp", ["-q", "1", "-f", file]);
    const m = await waitFor(() => c.received[0], { what: "the message" });
    assert.equal(m.destinationName, "sensors/a/temp");
    assert.deepEqual(m.payloadBytes, ALL_BYTES);
    assert.equal(m.qos, 1);
    assert.equal(m.retained, false);
    assert.equal(c.received.length, 1);
  });

  test("QoS is the lower of the message's and the subscription's", async () => {
    const s = await session();
    const c = await client(s);
    const topic = unique("qos");
    await c.subscribe(`${topic}/#`, { qos: 0 });
    await pub(`${topic}/x`, ["-q", "2", "-m", "q2"]);
    const m = await waitFor(() => c.received[0], { what: "the message" });
    assert.equal(m.qos, 0);
    assert.equal(m.payloadString, "q2");
  });

  test("a retained message published before subscribing arrives with retained=true", async () => {
    const topic = unique("retained");
    await pub(topic, ["-q", "1", "-r", "-m", "kept"]);
    cleanups.push(() => pub(topic, ["-q", "1", "-r", "-n"])); // clear it
    const s = await session();
    const c = await client(s);
    await c.subscribe(topic, { qos: 1 });
    const m = await waitFor(() => c.received[0], { what: "the retained message" });
    assert.equal(m.destinationName, topic);
    assert.equal(m.payloadString, "kept");
    assert.equal(m.retained, true);
  });

  /** `${topic}/x` retained as "kept" (cleared when the file ends), and two clients of one session. */
  async function keptAndTwoClients(prefix) {
    const topic = unique(prefix);
    await pub(`${topic}/x`, ["-q", "1", "-r", "-m", "kept"]);
    cleanups.push(() => pub(`${topic}/x`, ["-q", "1", "-r", "-n"]));
    const s = await session();
    return { topic, a: await client(s), b: await client(s) };
  }

  test("each SUBSCRIBE of a session's clients gets the retained messages, and only its client", async () => {
    const { topic, a, b } = await keptAndTwoClients("retained-each");
    const retained = (c, n) => {
      assert.equal(c.received.length, n);
      const m = c.received[n - 1];
      assert.equal(m.payloadString, "kept");
      assert.equal(m.retained, true);
    };
    await a.subscribe(`${topic}/#`, { qos: 1 });
    await waitFor(() => a.received[0], { what: "the retained message for a" });
    retained(a, 1);
    // The gateway holds the filter now: b's copy comes from it, before b's RESULT,
    // so a copy for a would have come by then too.
    await b.subscribe(`${topic}/#`, { qos: 1 });
    retained(b, 1);
    retained(a, 1);
    await a.subscribe(`${topic}/#`, { qos: 1 }); // again, as an MQTT client may
    retained(a, 2);
    retained(b, 1);
  });

  test("the broker's retained answer to a client's new filter is not given again to another client", async () => {
    const { topic, a, b } = await keptAndTwoClients("retained-overlap");
    await a.subscribe(`${topic}/#`, { qos: 1 });
    await waitFor(() => a.received[0], { what: "the retained message for a" });
    await b.subscribe(`${topic}/x`, { qos: 1 }); // new to the gateway: the broker answers
    const m = await waitFor(() => b.received[0], { what: "the retained message for b" });
    assert.equal(m.retained, true);
    // The broker sends a later publish after its answer: once a has it, a copy of
    // the answer for a would have come before.
    await pub(`${topic}/x`, ["-q", "1", "-m", "marker"]);
    await waitFor(() => a.received[1], { what: "the marker" });
    assert.deepEqual(
      a.received.map((m) => [m.payloadString, m.retained]),
      [
        ["kept", true],
        ["marker", false],
      ],
    );
  });

  test("retainHandling: 2 gets no retained message, 1 only for a new subscription", async () => {
    const { topic, a, b } = await keptAndTwoClients("retain-handling");
    let markers = 0;
    // A live message after each SUBSCRIBE: a retained message that should not come
    // would arrive before it.
    const marker = async (c, n) => {
      await pub(`${topic}/marker`, ["-q", "1", "-m", `m${++markers}`]);
      await waitFor(() => c.received[n - 1], { what: `marker ${markers}` });
    };
    const seen = (c) => c.received.map((m) => [m.payloadString, m.retained]);
    await a.subscribe(`${topic}/#`, { qos: 1, retainHandling: 2 }); // new to the gateway: the broker answers
    await marker(a, 1);
    await b.subscribe(`${topic}/#`, { qos: 1, retainHandling: 1 });
    await waitFor(() => b.received[0], { what: "b's retained message" });
    await b.subscribe(`${topic}/#`, { qos: 1, retainHandling: 1 }); // held already
    await marker(b, 2);
    assert.deepEqual(seen(a), [["m1", false], ["m2", false]]);
    assert.deepEqual(seen(b), [["kept", true], ["m2", false]]);
    assert.throws(() => a.subscribe(topic, { retainHandling: 3 }), /retainHandling must be 0/);
  });

  test("noLocal and retainAsPublished with a client id: the broker applies them", async () => {
    const s = await session();
    const topic = unique("options");
    const c = s.createClient("main", `options-${randomBytes(4).toString("hex")}`);
    c.received = [];
    c.onMessageArrived = (m) => c.received.push(m);
    await c.connect({ cleanSession: true });
    await c.subscribe(`${topic}/#`, { qos: 1, noLocal: true, retainAsPublished: true });
    await c.publish(`${topic}/own`, "own", 1);
    await pub(`${topic}/live`, ["-q", "1", "-r", "-m", "live"]);
    cleanups.push(() => pub(`${topic}/live`, ["-q", "1", "-r", "-n"]));
    await waitFor(() => c.received[0], { what: "the live retained message" });
    await pub(`${topic}/end`, ["-q", "1", "-m", "end"]);
    await waitFor(() => c.received[1], { what: "the end marker" });
    assert.deepEqual(
      c.received.map((m) => [m.payloadString, m.retained]),
      [
        ["live", true],
        ["end", false],
      ],
      "no copy of the client's own publish; the live retained message keeps its flag",
    );
    await c.disconnect();
  });

  test("noLocal and retainAsPublished on the shared connection, for the client that asked only", async () => {
    const s = await session();
    const topic = unique("shared-options");
    const [asked, sibling] = [await client(s), await client(s)];
    await asked.subscribe(`${topic}/#`, { qos: 1, noLocal: true, retainAsPublished: true });
    await sibling.subscribe(`${topic}/#`, { qos: 1 });
    await asked.publish(`${topic}/own`, "own", 1);
    await waitFor(() => sibling.received[0], { what: "the sibling's copy of the publish" });
    // The gateway takes a retained message within 2 s of a new filter's SUBACK for the
    // broker's answer to it; from then on it is live.
    await new Promise((resolve) => setTimeout(resolve, 2100));
    await pub(`${topic}/live`, ["-q", "1", "-r", "-m", "live"]);
    cleanups.push(() => pub(`${topic}/live`, ["-q", "1", "-r", "-n"]));
    await waitFor(() => sibling.received[1], { what: "the live retained message" });
    const seen = (c) => c.received.map((m) => [m.payloadString, m.retained]);
    assert.deepEqual(seen(asked), [["live", true]], "no copy of its own publish; the flag as published");
    assert.deepEqual(seen(sibling), [
      ["own", false],
      ["live", false],
    ]);
  });

  test("connect() says whether the broker kept the client id's session", async () => {
    const id = `present-${randomBytes(4).toString("hex")}`;
    const connect = async (options) => {
      const c = (await session()).createClient("main", id);
      let info;
      const result = await c.connect({ ...options, onSuccess: (o) => (info = o) });
      assert.equal(info.sessionPresent, result.sessionPresent, "onSuccess gets it too");
      await c.disconnect();
      return result;
    };
    assert.deepEqual(await connect({ cleanSession: false }), { sessionPresent: false });
    assert.deepEqual(await connect({ cleanSession: false }), { sessionPresent: true });
    assert.deepEqual(await connect({ cleanSession: true }), { sessionPresent: false });
    const shared = (await session()).createClient("main");
    assert.deepEqual(await shared.connect(), { sessionPresent: false });
  });

  test("a client publish reaches mosquitto_sub byte-identical", async () => {
    const s = await session();
    const c = await client(s);
    const delivered = [];
    c.onMessageDelivered = (m) => delivered.push(m);
    const sub = start(MOSQUITTO_SUB(), ["-h", "127.0.0.1", "-p", String(mosquitto.port), "-t", "x/y", "-C", "1", "-N"]);
    cleanups.push(async () => sub.kill());
    // mosquitto_sub cannot tell when it has subscribed, so publish until it has one
    // message (it exits then); every publish carries the same bytes.
    await waitFor(
      async () => {
        if (sub.exited()) return true;
        const m = new Message(ALL_BYTES);
        m.destinationName = "x/y";
        m.qos = 1;
        assert.equal(await c.send(m), m);
        return sub.exited();
      },
      { timeout: 10000, interval: 100, what: "mosquitto_sub to receive" },
    );
    const r = await sub.done;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(new Uint8Array(r.stdout), ALL_BYTES);
    assert.ok(delivered.length >= 1);
  });

  test("an invalid filter fails with 4031", async () => {
    const s = await session();
    const c = await client(s);
    const failures = [];
    const p = c.subscribe("a/#/b", { onFailure: (e) => failures.push(e) });
    await assert.rejects(p, (e) => e.errorCode === ErrorCode.invalid_filter);
    assert.equal(failures.length, 1);
    assert.equal(failures[0].errorCode, 4031);
    assert.equal(typeof failures[0].errorMessage, "string");
  });

  test("a wildcard in a publish topic fails with 4030", async () => {
    const s = await session();
    const c = await client(s);
    let notAuthorized = 0;
    c.onMessageNotAuthorized = () => notAuthorized++;
    await assert.rejects(c.publish("a/+", "x"), (e) => e.errorCode === ErrorCode.invalid_topic);
    await assert.rejects(c.publish("a/#", "x", 1), (e) => e.errorCode === ErrorCode.invalid_topic);
    assert.equal(notAuthorized, 0);
  });

  test("a QoS given as a string is refused by the client (4033, saying so); nothing reaches the gateway", async () => {
    const tap = tappedWebSocket();
    const s = await session(gateway.base, { transport: tap.factory });
    const c = await client(s);
    const failures = [];
    await assert.rejects(
      c.subscribe("a/#", { qos: "1", onFailure: (e) => failures.push(e) }),
      (e) => e.errorCode === ErrorCode.invalid_qos && e.errorMessage === 'qos must be 0, 1 or 2, got "1" (string)',
    );
    await assert.rejects(
      c.publish("a/b", "x", "1"),
      (e) => e.errorCode === ErrorCode.invalid_qos && e.errorMessage === 'qos must be 0, 1 or 2, got "1" (string)',
    );
    assert.equal(failures.length, 1);
    // A request that does reach the gateway after them: nothing was sent before it.
    await c.publish("a/b", "x", 1);
    assert.deepEqual(
      tap.sent.filter((f) => f.type === FrameType.PUBLISH || f.type === FrameType.SUBSCRIBE).map((f) => f.qos),
      [1],
    );
  });

  test("an unknown broker name fails with 4040", async () => {
    const s = await session();
    const c = s.createClient("nope");
    const failures = [];
    await assert.rejects(c.connect({ onFailure: (e) => failures.push(e) }), (e) => e.errorCode === ErrorCode.unknown_broker);
    assert.equal(failures[0]?.errorCode, 4040);
    assert.equal(c.isConnected, false);
  });

  test("an abrupt transport drop is resumed: the subscription keeps delivering", async () => {
    const proxy = await startProxy(gateway.port);
    cleanups.push(() => proxy.stop());
    const events = [];
    const tap = tappedWebSocket();
    const s = await session(`http://127.0.0.1:${proxy.port}/mqtt`, {
      transport: tap.factory,
      onReconnectionStart: () => events.push("start"),
      onReconnectionComplete: (i) => events.push(i),
    });
    const firstId = s.id;
    const c = await client(s);
    const topic = unique("resume");
    await c.subscribe(`${topic}/+`, { qos: 1 });
    await pub(`${topic}/before`, ["-q", "1", "-m", "1"]);
    await waitFor(() => c.received.length === 1, { what: "the first message" });

    // Cut, and keep the way back closed while a message is published: the gateway
    // must keep it for the session and hand it over after BIND.
    proxy.blocked = true;
    proxy.cut();
    await waitFor(() => events.includes("start"), { what: "onReconnectionStart" });
    await pub(`${topic}/during`, ["-q", "1", "-m", "2"]);
    proxy.blocked = false;

    await waitFor(() => events.length === 2, { timeout: 10000, what: "onReconnectionComplete" });
    assert.deepEqual(events[1], { messagesMayHaveBeenLost: false });
    assert.equal(s.id, firstId, "the same session");
    await waitFor(() => c.received.length === 2, { timeout: 10000, what: "the message published during the cut" });
    assert.equal(c.received[1].destinationName, `${topic}/during`);

    await pub(`${topic}/after`, ["-q", "1", "-m", "3"]);
    await waitFor(() => c.received.length === 3, { what: "a message after the resume" });
    assert.deepEqual(c.received.map((m) => m.payloadString), ["1", "2", "3"], "each once, in order");
    const binds = tap.sent.filter((f) => f.type === FrameType.BIND);
    const bound = tap.received.filter((f) => f.type === FrameType.BOUND);
    assert.equal(bound.length, 1);
    assert.equal(bound[0].replayFrom, binds.at(-1).received + 1);
  });

  test("a gateway restart: a fresh session re-creates the client and its subscription", async () => {
    const gw1 = await startGateway({ brokerPort: mosquitto.port });
    cleanups.push(() => gw1.stop());
    const proxy = await startProxy(gw1.port);
    cleanups.push(() => proxy.stop());
    const events = [];
    const s = await session(`http://127.0.0.1:${proxy.port}/mqtt`, {
      onReconnectionComplete: (i) => events.push(i),
    });
    const firstId = s.id;
    const c = await client(s);
    const clientEvents = [];
    c.onReconnectionComplete = (i) => clientEvents.push(i);
    const topic = unique("fresh");
    await c.subscribe(`${topic}/#`, { qos: 1 });

    await gw1.stop("SIGKILL");
    const gw2 = await startGateway({ brokerPort: mosquitto.port });
    cleanups.push(() => gw2.stop());
    proxy.target = gw2.port;
    proxy.cut();

    await waitFor(() => events.length === 1, { timeout: 15000, what: "onReconnectionComplete" });
    assert.deepEqual(events[0], { messagesMayHaveBeenLost: true });
    assert.deepEqual(clientEvents, [{ messagesMayHaveBeenLost: true }]);
    assert.notEqual(s.id, firstId, "a new session");
    assert.equal(c.isConnected, true);

    await pub(`${topic}/x`, ["-q", "1", "-m", "after restart"]);
    const m = await waitFor(() => c.received[0], { what: "a message in the fresh session" });
    assert.equal(m.payloadString, "after restart");
  });

  test("heartbeats flow both ways on an idle session", async () => {
    const gw = await startGateway({ brokerPort: mosquitto.port, extra: "heartbeat 100ms" });
    cleanups.push(() => gw.stop());
    const tap = tappedWebSocket();
    const restarts = [];
    const s = await session(gw.base, { transport: tap.factory, onReconnectionStart: () => restarts.push(1) });
    assert.equal(s.heartbeat, 100);
    const pings = (frames) => frames.filter((f) => f.type === FrameType.PING).length;
    await waitFor(() => pings(tap.sent) >= 5 && pings(tap.received) >= 5, { timeout: 5000, what: "5 PINGs each way" });
    assert.equal(s.state, "open");
    assert.deepEqual(restarts, []);
  });

  for (const transport of ["websocket", "streaming"]) {
    test(`${transport}: a client whose timers are held back (a background tab) answers the gateway's PINGs and keeps its connection`, async (t) => {
      const gw = await startGateway({ brokerPort: mosquitto.port, extra: "heartbeat 500ms" });
      cleanups.push(() => gw.stop());
      // Browsers may run a hidden page's intervals once a minute: here they never run.
      t.mock.timers.enable({ apis: ["setInterval"] });
      const fetches = spyFetch();
      t.after(() => fetches.restore());
      const restarts = [];
      const s = await session(gw.base, { transport, onReconnectionStart: () => restarts.push(1) });
      // The gateway drops a connection it hears nothing on for 2 × 500 + 5000 ms (a
      // stream it ends is taken up again by a new /stream, without a reconnection).
      await new Promise((r) => setTimeout(r, 2 * 500 + 5000 + 1500));
      assert.equal(s.state, "open");
      assert.deepEqual(restarts, [], "the connection was never lost");
      assert.ok(fetches.count("stream") <= 1, `${fetches.count("stream")} /stream requests: the first one was ended`);
    });
  }

  test(
    "frames lost in transit beyond the replay window: CLOSE 4012, then a fresh session",
    async () => {
      const gw = await startGateway({ brokerPort: mosquitto.port, extra: "replay_frames 1" });
      cleanups.push(() => gw.stop());
      const proxy = await startProxy(gw.port);
      cleanups.push(() => proxy.stop());
      const events = [];
      const tap = tappedWebSocket();
      const s = await session(`http://127.0.0.1:${proxy.port}/mqtt`, { transport: tap.factory, onReconnectionComplete: (i) => events.push(i) });
      const firstId = s.id;
      const c = await client(s);
      const topic = unique("gap");
      await c.subscribe(`${topic}/#`, { qos: 1 });

      // The gateway writes three messages that never arrive, and keeps only one.
      proxy.blackhole = true;
      const big = path.join(tmp, "big.bin");
      await fs.writeFile(big, new Uint8Array(2000));
      for (let i = 0; i < 3; i++) await pub(`${topic}/${i}`, ["-q", "1", "-f", big]);
      await waitFor(() => proxy.discarded >= 3 * 2000, { what: "the gateway to write the messages" });
      proxy.blackhole = false;
      proxy.cut();

      await waitFor(() => events.length >= 1 && events.at(-1).messagesMayHaveBeenLost, { timeout: 10000, what: "onReconnectionComplete" });
      assert.ok(tap.sent.some((f) => f.type === FrameType.BIND), "tried to resume first");
      assert.deepEqual(
        tap.received.filter((f) => f.type === FrameType.SERVER_CLOSE).map((f) => f.code),
        [ErrorCode.session_gap],
      );
      // PROTOCOL.md, Recovery: BIND is answered by BOUND *or* CLOSE 4012, never both.
      assert.equal(tap.received.filter((f) => f.type === FrameType.BOUND).length, 0, "BOUND sent before CLOSE 4012");
      assert.deepEqual(events, [{ messagesMayHaveBeenLost: true }]);
      assert.equal(tap.sent.filter((f) => f.type === FrameType.OPEN).length, 2);
      assert.notEqual(s.id, firstId);
      assert.equal(c.received.length, 0);
      await pub(`${topic}/after`, ["-q", "1", "-m", "x"]);
      const m = await waitFor(() => c.received[0], { what: "a message in the fresh session" });
      assert.equal(m.destinationName, `${topic}/after`);
    },
  );

  test("dedicated connection: QoS 1 end to end, ACK after delivery", async () => {
    const tap = tappedWebSocket();
    const s = await session(gateway.base, { transport: tap.factory });
    const id = `it-${randomBytes(4).toString("hex")}`;
    const topic = unique("dedicated");
    const first = s.createClient("main", id);
    first.received = [];
    first.onMessageArrived = (m) => first.received.push(m);
    await first.connect({ cleanSession: true });
    assert.equal(await first.subscribe(`${topic}/#`, { qos: 1 }), 1);
    await pub(`${topic}/live`, ["-q", "1", "-m", "live"]);
    const live = await waitFor(() => first.received[0], { what: "the live message" });
    assert.equal(live.qos, 1);
    const msg = tap.received.find((f) => f.type === FrameType.MESSAGE && f.topic === `${topic}/live`);
    assert.ok(msg.packetId > 0, "a dedicated QoS 1 message must be acknowledged");
    await waitFor(() => tap.sent.some((f) => f.type === FrameType.ACK && f.packetId === msg.packetId && f.stream === msg.stream), {
      what: "the ACK",
    });

    await first.disconnect();
  });

  test(
    "dedicated connection: messages the broker kept for a persistent session arrive before any new subscribe",
    async () => {
      const s = await session();
      const id = `it-${randomBytes(4).toString("hex")}`;
      const topic = unique("persistent");
      const first = s.createClient("main", id);
      await first.connect({ cleanSession: true, sessionExpiryInterval: 300 });
      await first.subscribe(`${topic}/#`, { qos: 1 });
      // Offline: the broker keeps the message for the persistent session.
      await first.disconnect();
      await pub(`${topic}/offline`, ["-q", "1", "-m", "kept"]);
      const second = s.createClient("main", id);
      second.received = [];
      second.onMessageArrived = (m) => second.received.push(m);
      await second.connect({ cleanSession: false, sessionExpiryInterval: 300 });
      const kept = await waitFor(() => second.received[0], { timeout: 3000, what: "the message kept by the broker" });
      assert.equal(kept.destinationName, `${topic}/offline`);
      assert.equal(kept.payloadString, "kept");
      assert.equal(kept.qos, 1);
      // Leave no session behind on the broker.
      await second.disconnect();
      const cleaner = s.createClient("main", id);
      await cleaner.connect({ cleanSession: true, sessionExpiryInterval: 0 });
      await cleaner.disconnect();
    },
  );

  // Paho's cleanSession false (MQTT 3.1.1) keeps the broker session until the broker
  // expires it. Sent as MQTT 5 clean start 0 with session expiry 0, the broker would
  // drop it at disconnect, and the messages published while the client is away with it.
  test("dedicated connection: cleanSession false alone keeps the broker session, as in Paho", async () => {
    const id = `it-${randomBytes(4).toString("hex")}`;
    const topic = unique("paho-persistent");
    const reconnect = async (s) => {
      const c = s.createClient("main", id);
      c.received = [];
      c.onMessageArrived = (m) => c.received.push(m);
      await c.connect({ cleanSession: false });
      return c;
    };
    const first = await session();
    const c1 = await reconnect(first);
    assert.equal(await c1.subscribe(`${topic}/#`, { qos: 1 }), 1);

    // The client disconnects; a message is published while it is away.
    await c1.disconnect();
    await pub(`${topic}/a`, ["-q", "1", "-m", "while disconnected"]);
    const c2 = await reconnect(first);
    const a = await waitFor(() => c2.received[0], { timeout: 3000, what: "the message kept while disconnected" });
    assert.deepEqual([a.destinationName, a.payloadString, a.qos], [`${topic}/a`, "while disconnected", 1]);

    // The process ends (its session closes); a new one finds the broker session, and
    // nothing twice: "a"'s acknowledgement reached the broker before the gateway's
    // DISCONNECT, though the session closed right after it.
    await first.close();
    await pub(`${topic}/b`, ["-q", "1", "-m", "while closed"]);
    const second = await session();
    const c3 = await reconnect(second);
    const b = await waitFor(() => c3.received.find((m) => m.destinationName === `${topic}/b`), {
      timeout: 3000,
      what: "the message kept while the session was closed",
    });
    assert.deepEqual([b.payloadString, b.qos], ["while closed", 1]);
    assert.deepEqual(c3.received.map((m) => m.payloadString), ["while closed"], "a kept message comes once");

    // Leave no session behind on the broker.
    await c3.disconnect();
    const cleaner = second.createClient("main", id);
    await cleaner.connect({ cleanSession: true });
    await cleaner.disconnect();
  });
});

describe("when the gateway cannot be reached, openSession's error (1006) says what was learned", () => {
  const failure = (base, options) =>
    openSession(base, options).then(
      () => assert.fail(`opened a session at ${base}`),
      (e) => {
        assert.equal(e.errorCode, 1006);
        return e.errorMessage;
      },
    );

  test("a wrong base path on a site that answers 404: HTTP 404 Not Found", async () => {
    const port = await freePort();
    const site = await startCaddy(
      `http://127.0.0.1:${port} {
\troot * ${tmp}
\tmqtt_gateway /mqtt/* {
\t\tbroker main mqtt://127.0.0.1:${mosquitto.port}
\t}
\tfile_server
}`,
      { port },
    );
    cleanups.push(() => site.stop());
    const base = `http://127.0.0.1:${port}/wrongpath`;
    const expected = `cannot reach the gateway at ${base}: HTTP 404 Not Found (is the base path right?)`;
    assert.equal(await failure(base), expected);
    assert.equal(await failure(base, { transport: "streaming" }), expected);
    assert.equal(await failure(base, { transport: "polling" }), expected);
    // The "ws" package (Node.js 20) says the status; a global WebSocket (Node.js 22+,
    // browsers) does not, as the WebSocket API hides it.
    const ws = await failure(base, { transport: "websocket" });
    if (!globalThis.WebSocket) assert.equal(ws, `cannot reach the gateway at ${base}: HTTP 404 (is the base path right?)`);
    // The right path works.
    const s = await session(`http://127.0.0.1:${port}/mqtt`);
    assert.equal(s.state, "open");
  });

  test("a wrong base path on the gateway's site, which answers 200 with nothing: not the gateway's answer", async () => {
    const base = `http://127.0.0.1:${gateway.port}/wrongpath`;
    assert.equal(
      await failure(base),
      `cannot reach the gateway at ${base}: HTTP 200 OK with no content type, not the gateway's answer (is the base path right? does another handler, such as try_files or file_server, answer the gateway's requests?)`,
    );
  });

  test("nothing listening: each transport's reason, not a bare 1006", async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}/mqtt`;
    const message = await failure(base);
    assert.ok(message.startsWith(`cannot reach the gateway at ${base} (websocket: `), message);
    assert.ok(
      message.endsWith("; streaming: stream request failed: fetch failed (ECONNREFUSED); polling: poll failed: fetch failed (ECONNREFUSED))"),
      message,
    );
  });

  // A page loaded while its gateway is being restarted (a deploy) opens once it is up,
  // instead of staying dead until the user reloads it.
  test("with retry, openSession waits for a gateway that starts later", async () => {
    const port = await freePort();
    const pending = openSession(`http://127.0.0.1:${port}/mqtt`, { retry: true });
    let settled = false;
    pending.finally(() => (settled = true)).catch(() => {});
    await new Promise((r) => setTimeout(r, 1500)); // several attempts refused
    assert.equal(settled, false, "still trying");
    const late = await startGateway({ brokerPort: mosquitto.port, port });
    try {
      const s = await pending;
      const c = s.createClient("main");
      await c.connect();
      const got = new Promise((resolve) => (c.onMessageArrived = (m) => resolve(m.payloadString)));
      await c.subscribe("retry/open");
      await c.publish("retry/open", "up", 1);
      assert.equal(await got, "up");
      await s.close();
    } finally {
      await late.stop();
    }
  });
});
