// Session logic against an in-memory peer (see support/fake-gateway.js).

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { ErrorCode, Message, MqttGatewayError, openSession } from "../src/client.js";
import { FrameType as F, decodeUnit, encodeFrame, encodeUnit } from "../src/codec.js";
import { Heartbeat, STALL_MIN, backoffDelay } from "../src/timers.js";
import { forgetTransport } from "../src/transport-memory.js";
import { FakeGateway } from "./support/fake-gateway.js";
import { spyFetch } from "./support/fetch-spy.js";
import { waitFor } from "./support/wait.js";

const SID = Uint8Array.from({ length: 16 }, (_, i) => i);
const SECRET = Uint8Array.from({ length: 16 }, (_, i) => 100 + i);
const SID2 = Uint8Array.from({ length: 16 }, (_, i) => 200 + i);

const opened = (o = {}) => ({
  type: F.OPENED,
  session: SID,
  secret: SECRET,
  heartbeat: 20000,
  sessionTimeout: 30000,
  maxFrame: 65536,
  info: [["server", "fake"]],
  ...o,
});
const result = (req, value = 0, code = 0, message = "") => ({ type: F.RESULT, req, code, message, value });
const message = (o) => ({ type: F.MESSAGE, stream: 1, qos: 0, retain: false, duplicate: false, packetId: 0, topic: "t", props: {}, payload: new Uint8Array([1]), ...o });

/**
 * Opens a session on a fake gateway, whose transport the session knows by
 * `transportName` if given; returns the pieces a test needs.
 */
async function open(options = {}, transportName) {
  const gw = new FakeGateway(transportName);
  const pending = openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory, ...options });
  const conn = await gw.connection(0);
  const openFrame = await conn.take(F.OPEN);
  conn.send(opened());
  const session = await pending;
  return { gw, conn, session, openFrame };
}

/**
 * The gateway loses the session (CLOSE `code`) and the client's next connection opens
 * a fresh one, SID2: returns that connection, OPENED sent.
 */
async function replacedSession(gw, conn, { code = 4010, message = "unknown session" } = {}) {
  conn.send({ type: F.SERVER_CLOSE, code, message });
  const conn2 = await gw.connection(1);
  await conn2.take(F.OPEN);
  conn2.send(opened({ session: SID2 }));
  return conn2;
}

/** A connected client on a shared (or dedicated) stream. */
async function connected(session, conn, { stream = 1, clientId = "" } = {}) {
  const client = session.createClient("main", clientId);
  const p = client.connect();
  const c = await conn.take(F.CONNECT);
  conn.send(result(c.req, stream));
  await p;
  return { client, connect: c };
}

async function subscribed(client, conn, filter, qos = 0, granted = qos) {
  const p = client.subscribe(filter, { qos });
  const s = await conn.take(F.SUBSCRIBE);
  conn.send(result(s.req, granted));
  await p;
  return s;
}

describe("opening", () => {
  test("OPEN carries credentials and options; OPENED gives the session", async () => {
    const { session, openFrame } = await open({ user: "alice", password: "pw", maxBandwidth: 65536.7 });
    assert.equal(openFrame.version, 1);
    assert.equal(openFrame.user, "alice");
    assert.deepEqual(openFrame.password, new TextEncoder().encode("pw"));
    assert.deepEqual(openFrame.options, [
      ["addressed_retained", "1"],
      ["session_present", "1"],
      ["unsubscribed", "1"],
      ["max_bandwidth", "65536"],
    ]);
    assert.equal(session.id, "000102030405060708090a0b0c0d0e0f");
    assert.equal(session.transport, "fake");
    assert.equal(session.state, "open");
    assert.deepEqual(session.info, { server: "fake" });
    assert.equal(session.heartbeat, 20000);
    await session.close();
  });

  test("a CLOSE instead of OPENED rejects with its code", async () => {
    const gw = new FakeGateway();
    const pending = openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory });
    const conn = await gw.connection(0);
    await conn.take(F.OPEN);
    conn.send({ type: F.SERVER_CLOSE, code: 4020, message: "who are you" });
    await assert.rejects(pending, (e) => e instanceof MqttGatewayError && e.errorCode === 4020 && e.errorMessage === "who are you");
  });

  test("an unreachable gateway rejects with 1006", async () => {
    const gw = new FakeGateway();
    gw.refuse = true;
    await assert.rejects(openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory }), (e) => e.errorCode === 1006);
  });

  test("a real WebSocket to a closed port rejects with 1006", async () => {
    await assert.rejects(openSession("http://127.0.0.1:9/mqtt", { connectTimeout: 2000 }), (e) => e.errorCode === 1006);
  });

  test("an unknown option is a TypeError, as with the clients' methods", async () => {
    const gw = new FakeGateway();
    await assert.rejects(openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory, transprot: "polling" }), (e) => e instanceof TypeError && /transprot/.test(e.message));
    await assert.rejects(openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory, signal: {} }), TypeError);
    await assert.rejects(openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory, retry: 1 }), TypeError);
    assert.equal(gw.connections.length, 0, "nothing opened");
  });

  // A page loaded while its gateway restarts (a deploy) must not stay dead until reloaded.
  test("retry: an unreachable gateway, then one shutting down, then one that opens", { timeout: 15000 }, async (t) => {
    const warn = t.mock.method(console, "warn", () => {});
    const gw = new FakeGateway();
    gw.refuse = true;
    const pending = openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory, retry: true });
    await new Promise((r) => setTimeout(r, 400)); // an attempt or two refused
    gw.refuse = false;
    const conn = await gw.connection(0);
    await conn.take(F.OPEN);
    conn.send({ type: F.SERVER_CLOSE, code: 4090, message: "shutting down" });
    const conn2 = await gw.connection(1);
    await conn2.take(F.OPEN);
    conn2.send(opened());
    const session = await pending;
    assert.equal(session.state, "open");
    // Said once, with the first failure's reason (a wrong base path would retry for ever).
    assert.equal(warn.mock.callCount(), 1);
    assert.match(warn.mock.calls[0].arguments[0], /no session yet, trying again: connection_failed \(1006\): .*connection refused/);
    await session.close();
  });

  test("retry: a refusal still rejects", { timeout: 15000 }, async () => {
    const gw = new FakeGateway();
    const pending = openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory, retry: true });
    const conn = await gw.connection(0);
    await conn.take(F.OPEN);
    conn.send({ type: F.SERVER_CLOSE, code: 4020, message: "who are you" });
    await assert.rejects(pending, (e) => e.errorCode === 4020);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(gw.connections.length, 1, "not tried again");
  });

  test("signal: aborting a pending open (retrying) rejects with its reason and stops", { timeout: 15000 }, async () => {
    const gw = new FakeGateway();
    gw.refuse = true;
    let attempts = 0;
    const factory = async (...args) => {
      attempts++;
      return gw.factory(...args);
    };
    const ctrl = new AbortController();
    const pending = openSession("http://127.0.0.1:1/mqtt", { transport: factory, retry: true, signal: ctrl.signal });
    await waitFor(() => attempts >= 1, { what: "a first attempt" });
    ctrl.abort();
    await assert.rejects(pending, (e) => e.name === "AbortError");
    const after = attempts;
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(attempts, after, "no attempt after the abort");
  });

  test("signal: aborting while OPEN awaits its answer closes that transport; later, it closes the session", { timeout: 15000 }, async () => {
    const gw = new FakeGateway();
    const ctrl = new AbortController();
    const pending = openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory, signal: ctrl.signal });
    const conn = await gw.connection(0);
    await conn.take(F.OPEN);
    ctrl.abort(new Error("effect cleaned up"));
    await assert.rejects(pending, (e) => e.message === "effect cleaned up");
    await waitFor(() => conn.closed, { what: "the transport closed" });

    const ctrl2 = new AbortController();
    const closes = [];
    const { conn: conn2, session } = await open({ signal: ctrl2.signal, onClose: (e) => closes.push(e.errorCode) });
    ctrl2.abort();
    await conn2.take(F.CLOSE);
    assert.equal(session.state, "closed");
    assert.deepEqual(closes, [0]);
    await assert.rejects(openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory, signal: ctrl2.signal }), (e) => e.name === "AbortError");
  });
});

describe("requests", () => {
  test("frames queued in the same tick go out as one unit", async () => {
    const { session, conn } = await open();
    const client = session.createClient("main");
    const before = conn.units.length;
    client.connect();
    client.subscribe("a/#");
    client.subscribe("b/+", { qos: 2, maxFrequency: 2.5 });
    await conn.take(F.SUBSCRIBE);
    assert.equal(conn.units.length, before + 1);
    const unit = conn.units.at(-1);
    assert.deepEqual(unit.map((f) => f.type), [F.CONNECT, F.SUBSCRIBE, F.SUBSCRIBE]);
    assert.equal(unit[0].handle, unit[1].handle);
    assert.equal(unit[2].qos, 2);
    assert.equal(unit[2].maxFrequency, 2500, "messages per 1000 s");
    assert.equal(new Set(unit.map((f) => f.req)).size, 3, "distinct request ids");
    await session.close();
  });

  test("rate limits: a positive value never becomes 0 (no limit); strings and values past the wire's range are TypeErrors", async () => {
    const { session, openFrame, conn } = await open({ maxBandwidth: 0.5 });
    assert.deepEqual(openFrame.options.at(-1), ["max_bandwidth", "1"], "half a byte per second is 1, not no cap");
    const client = session.createClient("main");
    client.connect();
    client.subscribe("a", { maxFrequency: 0.0001 });
    const sub = await conn.take(F.SUBSCRIBE);
    assert.equal(sub.maxFrequency, 1, "one message per 1000 s at least");
    for (const bad of ["2", 1e23, -1, NaN, Infinity]) {
      assert.throws(() => client.subscribe("b", { maxFrequency: bad }), (e) => e instanceof TypeError && /maxFrequency/.test(e.message), `maxFrequency ${String(bad)}`);
      assert.throws(() => client.setMaxFrequency("a", bad), (e) => e instanceof TypeError && /maxFrequency/.test(e.message), `setMaxFrequency ${String(bad)}`);
      assert.throws(() => session.setMaxBandwidth(bad), (e) => e instanceof TypeError && /bytesPerSecond/.test(e.message), `setMaxBandwidth ${String(bad)}`);
    }
    assert.throws(() => client.subscribe("b", { maxFrequency: 1e23 }), /1e\+23 is too large \(messages per second\)/, "says the value given, not the wire's");
    await assert.rejects(openSession("http://127.0.0.1:1/mqtt", { maxBandwidth: "64KiB" }), (e) => e instanceof TypeError && /maxBandwidth must be a non-negative number/.test(e.message));
    await session.close();
  });

  test("CONNECT carries the connect options and the will", async () => {
    const { session, conn } = await open();
    const client = session.createClient("sensors", "dev-1");
    const will = new Message("offline");
    will.destinationName = "dev/1/status";
    will.qos = 1;
    will.retained = true;
    will.contentType = "text/plain";
    client.connect({ cleanSession: false, userName: "u", password: "p", keepAliveInterval: 30, sessionExpiryInterval: 600, willMessage: will, willDelayInterval: 120 });
    const c = await conn.take(F.CONNECT);
    assert.equal(c.broker, "sensors");
    assert.equal(c.clientId, "dev-1");
    assert.equal(c.cleanStart, false);
    assert.equal(c.username, "u");
    assert.deepEqual(c.password, new TextEncoder().encode("p"));
    assert.equal(c.keepAlive, 30);
    assert.equal(c.sessionExpiry, 600);
    assert.deepEqual(c.will, { qos: 1, retain: true, topic: "dev/1/status", props: { contentType: "text/plain", willDelayInterval: 120 }, payload: will.payloadBytes });
    const other = session.createClient("sensors", "dev-2");
    assert.throws(() => other.connect({ willDelayInterval: 5 }), /willDelayInterval needs a willMessage/);
    assert.throws(() => other.connect({ willMessage: will, willDelayInterval: 1.5 }), /willDelayInterval must be a whole number/);
    await session.close();
  });

  test("cleanSession false alone asks for a session that never expires, as Paho's does; an explicit expiry wins", async () => {
    const { session, conn } = await open();
    const expiry = async (options) => {
      const client = session.createClient("main", `dev-${JSON.stringify(options)}`);
      const p = client.connect(options);
      const c = await conn.take(F.CONNECT);
      conn.send(result(c.req, 1));
      await p;
      return [c.cleanStart, c.sessionExpiry];
    };
    assert.deepEqual(await expiry({ cleanSession: false }), [false, 0xffffffff], "MQTT 5's largest expiry");
    assert.deepEqual(await expiry({ cleanSession: false, sessionExpiryInterval: 0 }), [false, 0]);
    assert.deepEqual(await expiry({ cleanSession: false, sessionExpiryInterval: 60 }), [false, 60]);
    assert.deepEqual(await expiry({}), [true, 0]);
    assert.deepEqual(await expiry({ cleanSession: true }), [true, 0]);
    assert.deepEqual(await expiry({ cleanSession: true, sessionExpiryInterval: 300 }), [true, 300]);
    await session.close();
  });

  test("results reach promises and callbacks; failures are MqttGatewayError", async () => {
    const { session, conn } = await open();
    const client = session.createClient("main");
    const calls = [];
    const p = client.connect({ onSuccess: (o) => calls.push(["connected", o.invocationContext]), invocationContext: 7 });
    conn.send(result((await conn.take(F.CONNECT)).req, 3));
    await p;
    assert.deepEqual(calls, [["connected", 7]]);
    assert.equal(client.isConnected, true);

    const s = client.subscribe("a/b", { qos: 2, onSuccess: (o) => calls.push(["granted", o.grantedQos]) });
    conn.send(result((await conn.take(F.SUBSCRIBE)).req, 1));
    assert.equal(await s, 1);
    assert.deepEqual(calls.at(-1), ["granted", 1]);

    // With onFailure the promise rejects but does not count as unhandled.
    const bad = client.subscribe("a/#/b", { onFailure: (e) => calls.push(["failed", e.errorCode, e.errorMessage]) });
    conn.send(result((await conn.take(F.SUBSCRIBE)).req, 0, 4031, "bad filter"));
    await assert.rejects(bad, (e) => e instanceof MqttGatewayError && e.errorCode === ErrorCode.invalid_filter);
    assert.deepEqual(calls.at(-1), ["failed", 4031, "bad filter"]);

    const u = client.unsubscribe("a/b");
    conn.send(result((await conn.take(F.UNSUBSCRIBE)).req));
    await u;
    await session.close();
  });

  test("publish(topic) without a payload is a TypeError, not an empty payload (which, retained, deletes the retained message)", async () => {
    const { session, conn } = await open();
    const { client } = await connected(session, conn);
    for (const payload of [undefined, null]) {
      assert.throws(() => client.publish("t", payload, 0, true), (err) => err instanceof TypeError && /needs a payload/.test(err.message));
    }
    const p = client.publish("t", "", 0, true); // an empty one, said so
    const pub = await conn.take(F.PUBLISH);
    assert.deepEqual([pub.topic, pub.payload.length, pub.retain], ["t", 0, true]);
    conn.send(result(pub.req));
    await p;
  });

  test("publish resolves after RESULT and fires onMessageDelivered; 4021 fires onMessageNotAuthorized", async () => {
    const { session, conn } = await open();
    const { client } = await connected(session, conn);
    const delivered = [];
    const denied = [];
    client.onMessageDelivered = (m) => delivered.push(m);
    client.onMessageNotAuthorized = (m, e) => denied.push([m, e.errorCode]);

    const m = new Message(new Uint8Array([0, 255]));
    m.destinationName = "x/y";
    m.qos = 1;
    m.userProperties = [["k", "v"]];
    const p = client.send(m);
    const pub = await conn.take(F.PUBLISH);
    assert.equal(pub.topic, "x/y");
    assert.equal(pub.qos, 1);
    assert.equal(pub.retain, false);
    assert.deepEqual(pub.payload, new Uint8Array([0, 255]));
    assert.deepEqual(pub.props, { userProperties: [["k", "v"]] });
    assert.equal(delivered.length, 0, "not before the RESULT");
    conn.send(result(pub.req));
    assert.equal(await p, m);
    assert.deepEqual(delivered, [m]);

    const q = client.publish("secret/x", "s", 0, true);
    const pub2 = await conn.take(F.PUBLISH);
    assert.equal(pub2.retain, true);
    conn.send(result(pub2.req, 0, 4021, "no"));
    await assert.rejects(q, (e) => e.errorCode === 4021);
    assert.equal(denied.length, 1);
    assert.equal(denied[0][0].destinationName, "secret/x");
    assert.equal(delivered.length, 1);
    await session.close();
  });

  test("a failed publish nobody awaits is no unhandled rejection; onMessageNotDelivered hears every failure", async () => {
    // Node.js ends a process on an unhandled rejection: a fire-and-forget publish
    // (Paho's send()) that failed in a broker outage took the application down.
    const unhandled = [];
    const onUnhandled = (reason) => unhandled.push(reason);
    process.on("unhandledRejection", onUnhandled);
    try {
      const { session, conn } = await open();
      const { client } = await connected(session, conn);
      const failed = [];
      client.onMessageNotDelivered = (m, e) => failed.push([m.destinationName, e.errorCode]);

      client.publish("sensor/temp", "21.5"); // not awaited
      const pub = await conn.take(F.PUBLISH);
      conn.send(result(pub.req, 0, 4041, "broker unavailable"));
      client.publish("a/+", "x"); // refused by the gateway: not awaited either
      const bad = await conn.take(F.PUBLISH);
      conn.send(result(bad.req, 0, 4030, "invalid topic"));
      await waitFor(() => failed.length === 2);
      // Unhandled rejections are reported after the microtasks of a macrotask.
      await new Promise((r) => setTimeout(r, 20));
      assert.deepEqual(unhandled, []);
      assert.deepEqual(failed, [["sensor/temp", 4041], ["a/+", 4030]]);

      // Awaiting still gives the error.
      const q = client.publish("sensor/temp", "22");
      const pub3 = await conn.take(F.PUBLISH);
      conn.send(result(pub3.req, 0, 4041, "broker unavailable"));
      await assert.rejects(q, (e) => e.errorCode === 4041);
      await session.close();
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });

  // A topic with a lone surrogate cannot be encoded: send() threw a TypeError at the
  // call, which a fire-and-forget caller does not expect (an MQTT 5 parity trial).
  // It is refused as the gateway refuses a bad topic, and nothing is sent.
  test("a topic or filter with a lone surrogate is refused with 4030 / 4031, not thrown", async () => {
    const { session, conn } = await open();
    const { client } = await connected(session, conn);
    const failed = [];
    client.onMessageNotDelivered = (m, e) => failed.push(e.errorCode);
    const pub = client.publish("room/\uD800", "x");
    await assert.rejects(pub, (e) => e.errorCode === 4030 && /lone surrogate/.test(e.errorMessage));
    assert.deepEqual(failed, [4030]);
    await assert.rejects(client.subscribe("room/\uDC00/#"), (e) => e.errorCode === 4031 && /filter holds a lone surrogate/.test(e.errorMessage));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(conn.all(F.PUBLISH).length + conn.all(F.SUBSCRIBE).length, 0, "nothing sent");
    await session.close();
  });

  test("unknown options are a TypeError naming them, as Paho refuses unknown properties", async () => {
    const { session, conn } = await open();
    const { client } = await connected(session, conn);
    // A misspelt option was ignored: subscribe(f, { qso: 1 }) subscribed at QoS 0.
    assert.throws(() => client.subscribe("a", { qso: 1 }), (e) => e instanceof TypeError && /unknown subscribe option "qso"; known: qos, maxFrequency/.test(e.message));
    assert.throws(() => client.unsubscribe("a", { qos: 1 }), (e) => e instanceof TypeError && /unknown unsubscribe option "qos"/.test(e.message));
    assert.throws(() => client.setMaxFrequency("a", 1, { qos: 1 }), (e) => e instanceof TypeError && /unknown setMaxFrequency option "qos"/.test(e.message));
    const other = session.createClient("main", "c1");
    assert.throws(() => other.connect({ cleansession: false }), (e) => e instanceof TypeError && /unknown connect option "cleansession"/.test(e.message));
    assert.throws(() => other.connect({ useSSL: true }), (e) => e instanceof TypeError && /Paho's useSSL has no equivalent here \(the session's URL says TLS/.test(e.message));
    assert.equal(other.state, "disconnected", "a refused connect leaves the client as it was");
    // Every documented option, and Paho's callbacks, are taken.
    const p = client.subscribe("a", { qos: 1, maxFrequency: 1, noLocal: true, retainAsPublished: true, retainHandling: 1, onSuccess() {}, onFailure() {}, invocationContext: 1 });
    const sub = await conn.take(F.SUBSCRIBE);
    conn.send(result(sub.req, 1));
    assert.equal(await p, 1);
    await session.close();
  });

  test("local refusals: bad QoS (4033), not connected (4003), frame over max_frame (4002)", async () => {
    const { session, conn } = await open();
    const client = session.createClient("main");
    await assert.rejects(client.subscribe("a", { qos: 0 }), (e) => e.errorCode === 4003);
    await assert.rejects(client.publish("a", "x"), (e) => e.errorCode === 4003);
    await connected(session, conn).then(({ client: c }) => Promise.all([
      assert.rejects(c.subscribe("a", { qos: 3 }), (e) => e.errorCode === 4033),
      assert.rejects(c.publish("a", "x", 5), (e) => e.errorCode === 4033),
      assert.rejects(c.publish("a", new Uint8Array(70000)), (e) => e.errorCode === 4002),
    ]));
    // A property the wire cannot carry is a mistake in the arguments: a TypeError at
    // the call, naming it, and nothing sent.
    const { client: c2 } = await connected(session, conn, { stream: 2 });
    const m = new Message("x");
    m.destinationName = "a";
    m.messageExpiryInterval = -1;
    assert.throws(() => c2.send(m), { name: "TypeError", message: "message.messageExpiryInterval must be a whole number of seconds from 0 to 4294967295, got -1 (number)" });
    assert.equal(conn.all(F.PUBLISH).length, 0);
    await session.close();
  });

  test("a QoS that is not the number 0, 1 or 2 (the string \"1\") is refused locally, saying what it got", async () => {
    const { session, conn } = await open();
    const { client } = await connected(session, conn);
    const refused = (name, got) => (e) =>
      e instanceof MqttGatewayError && e.errorCode === ErrorCode.invalid_qos && e.errorMessage === `${name} must be 0, 1 or 2, got ${got}`;
    await assert.rejects(client.publish("a", "x", "1"), refused("qos", '"1" (string)'));
    await assert.rejects(client.send("a", "x", 1.5), refused("qos", "1.5 (number)"));
    const m = new Message("x");
    m.destinationName = "a";
    m.qos = "2";
    await assert.rejects(client.send(m), refused("qos", '"2" (string)'));
    const failures = [];
    await assert.rejects(client.subscribe("a", { qos: "1", onFailure: (e) => failures.push(e) }), refused("qos", '"1" (string)'));
    assert.equal(failures.length, 1);
    await assert.rejects(client.subscribe("a", { qos: [1] }), refused("qos", "an array"));
    const will = new Message("bye");
    will.destinationName = "w";
    will.qos = "1";
    const other = session.createClient("main");
    await assert.rejects(other.connect({ willMessage: will }), refused("willMessage.qos", '"1" (string)'));
    assert.equal(other.state, "disconnected");
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(
      [F.PUBLISH, F.SUBSCRIBE, F.CONNECT].map((t) => conn.all(t).length),
      [0, 0, 1],
      "nothing sent but the first client's CONNECT",
    );
    await session.close();
  });

  test("the client's own messages repeat at most 200 characters of a topic, filter, value or URL", async () => {
    const { session, conn } = await open();
    const { client } = await connected(session, conn);
    // 70,001 UTF-16 code units; the 200th is the first half of an emoji, which is not cut in two.
    const filter = `a${"\u{1F600}".repeat(35000)}`;
    await assert.rejects(client.setMaxFrequency(filter, 1), (e) => e.errorCode === 4003 && e.errorMessage === `not subscribed to ${filter.slice(0, 199)}…`);
    await assert.rejects(
      client.publish("t", "x", "1".repeat(70000)),
      (e) => e.errorCode === 4033 && e.errorMessage === `qos must be 0, 1 or 2, got "${"1".repeat(200)}…" (string)`,
    );
    await session.close();

    const gw = new FakeGateway();
    gw.refuse = true;
    const base = `http://127.0.0.1:1/${"p".repeat(70000)}`;
    await assert.rejects(
      openSession(base, { transport: gw.factory }),
      (e) => e.errorCode === 1006 && e.errorMessage === `cannot reach the gateway at ${base.slice(0, 200)}… (fake: connection refused)`,
    );
  });
});

describe("dispatch", () => {
  // The operator's admin API ended the user's subscriptions under a filter (a member
  // removed from a room): the client hears which, dispatches nothing more to it, and a
  // fresh session does not make it again; the others go on.
  test("UNSUBSCRIBED: onSubscriptionLost, no more messages for it, not made again in a fresh session", async () => {
    const { gw, conn, session } = await open();
    const { client, connect } = await connected(session, conn);
    await subscribed(client, conn, "room/42/#");
    await subscribed(client, conn, "room/43/#");
    const lost = [];
    const got = [];
    client.onSubscriptionLost = (info) => lost.push(info);
    client.onMessageArrived = (m) => got.push(m.destinationName);
    conn.send({ type: F.UNSUBSCRIBED, handle: connect.handle, filter: "room/42/#", code: 4021, message: "removed from room 42" });
    assert.deepEqual(lost, [{ filter: "room/42/#", errorCode: 4021, errorMessage: "removed from room 42" }]);
    conn.send(message({ topic: "room/42/msg" }), message({ topic: "room/43/msg" }));
    assert.deepEqual(got, ["room/43/msg"]);
    await assert.rejects(client.setMaxFrequency("room/42/#", 1), /not subscribed to room\/42\/#/);

    const conn2 = await replacedSession(gw, conn);
    const c = await conn2.take(F.CONNECT);
    conn2.send(result(c.req, 1));
    const sub = await conn2.take(F.SUBSCRIBE);
    assert.equal(sub.filter, "room/43/#");
    conn2.send(result(sub.req, 0));
    await waitFor(() => session.state === "open" && client.isConnected, { what: "the re-created client" });
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(conn2.all(F.SUBSCRIBE).map((s) => s.filter), ["room/43/#"]);
    await session.close();
  });

  test("UNSUBSCRIBED before the RESULT of a SUBSCRIBE sent after it: the RESULT decides", async () => {
    const { conn, session } = await open();
    const { client, connect } = await connected(session, conn);
    await subscribed(client, conn, "room/42/#");
    const again = client.subscribe("room/42/#");
    const s = await conn.take(F.SUBSCRIBE);
    conn.send({ type: F.UNSUBSCRIBED, handle: connect.handle, filter: "room/42/#", code: 4021, message: "removed" });
    conn.send(result(s.req, 0)); // the policy let the member back in meanwhile
    assert.equal(await again, 0);
    const got = [];
    client.onMessageArrived = (m) => got.push(m.destinationName);
    conn.send(message({ topic: "room/42/msg" }));
    assert.deepEqual(got, ["room/42/msg"]);
    await session.close();
  });

  test("a shared-stream MESSAGE reaches each matching client once, at the lower QoS", async () => {
    const { session, conn } = await open();
    const a = await connected(session, conn, { stream: 7 });
    const b = await connected(session, conn, { stream: 7 });
    const c = await connected(session, conn, { stream: 7 });
    const other = await connected(session, conn, { stream: 8 });
    await subscribed(a.client, conn, "s/+/temp", 1);
    await subscribed(b.client, conn, "x/#", 2);
    await subscribed(c.client, conn, "s/#", 0);
    await subscribed(c.client, conn, "s/a/temp", 2, 1); // granted 1: that is what counts
    await subscribed(other.client, conn, "#", 2);
    const got = { a: [], b: [], c: [], other: [] };
    for (const [k, v] of Object.entries({ a, b, c, other })) v.client.onMessageArrived = (m) => got[k].push(m);

    conn.send(message({ stream: 7, qos: 2, topic: "s/a/temp", retain: true, payload: new Uint8Array([9]) }));
    assert.equal(got.a.length, 1);
    assert.equal(got.a[0].qos, 1);
    assert.equal(got.a[0].retained, true);
    assert.deepEqual(got.a[0].payloadBytes, new Uint8Array([9]));
    assert.equal(got.b.length, 0);
    assert.equal(got.c.length, 1, "two matching subscriptions, one delivery");
    assert.equal(got.c[0].qos, 1);
    assert.equal(got.other.length, 0, "another stream");

    conn.send(message({ stream: 7, qos: 0, topic: "s/b/temp" }));
    assert.equal(got.a.at(-1).qos, 0);
    assert.equal(got.c.length, 2);
    assert.equal(got.c.at(-1).qos, 0);
    await session.close();
  });

  // The session lends each Message a view into the unit while onMessageArrived runs
  // (Message#_settle): what the application keeps must still be its own exact bytes
  // once the unit's buffer is gone or reused, however it read the payload.
  test("payloads kept after onMessageArrived are exact and their own, however they were read", async () => {
    const { session, conn } = await open();
    const a = await connected(session, conn);
    const b = await connected(session, conn);
    await subscribed(a.client, conn, "p/#");
    await subscribed(b.client, conn, "p/#");
    const utf8 = (s) => new TextEncoder().encode(s);
    const payloads = {
      text: utf8("température 21.5 °C, plus a long enough tail to be over 64 bytes long"),
      replacement: utf8("a real U+FFFD: \uFFFD"),
      invalid: Uint8Array.from([0x61, 0xff, 0xfe, 0x62]),
      empty: new Uint8Array(0),
      binary: Uint8Array.from({ length: 300 }, (_, i) => i % 256),
    };
    const reads = { string: (m) => m.payloadString, bytes: (m) => m.payloadBytes, both: (m) => [m.payloadString, m.payloadBytes], none: () => {} };
    const got = { a: [], b: [] };
    b.client.onMessageArrived = (m) => got.b.push(m); // reads nothing while it runs
    for (const how of Object.keys(reads)) {
      a.client.onMessageArrived = (m) => {
        got.a.push(m);
        reads[how](m);
      };
      const frames = Object.entries(payloads).map(([name, payload]) => encodeFrame(message({ topic: `p/${how}/${name}`, payload })));
      const unit = encodeUnit(frames);
      conn.transport.onunit(unit);
      unit.fill(0); // the transport's buffer, reused or gone
    }
    const names = Object.keys(payloads);
    assert.equal(got.a.length, names.length * Object.keys(reads).length);
    assert.equal(got.b.length, got.a.length);
    for (const m of [...got.a, ...got.b]) {
      const want = payloads[m.destinationName.split("/")[2]];
      const bytes = m.payloadBytes;
      assert.deepEqual(bytes, want, m.destinationName);
      assert.equal(bytes.constructor, Uint8Array, m.destinationName);
      assert.equal(bytes.buffer.byteLength, want.length, `${m.destinationName}: the payload pins no more than itself`);
      assert.equal(m.payloadBytes, bytes, "the same array each time");
      assert.equal(m.payloadString, new TextDecoder().decode(want), m.destinationName);
    }
    await session.close();
  });

  test("a subscription receives retained messages that overtake its RESULT", async () => {
    const { session, conn } = await open();
    const { client } = await connected(session, conn);
    const got = [];
    client.onMessageArrived = (m) => got.push(m.destinationName);
    const p = client.subscribe("r/#", { qos: 1 });
    const s = await conn.take(F.SUBSCRIBE);
    conn.send(message({ topic: "r/1", retain: true, qos: 1 }), result(s.req, 1));
    await p;
    assert.deepEqual(got, ["r/1"]);
    await session.close();
  });

  test("after unsubscribe, messages for that filter stop at once", async () => {
    const { session, conn } = await open();
    const { client } = await connected(session, conn);
    await subscribed(client, conn, "u/#");
    const got = [];
    client.onMessageArrived = (m) => got.push(m);
    client.unsubscribe("u/#");
    conn.send(message({ topic: "u/1" }));
    assert.equal(got.length, 0);
    await session.close();
  });

  test("dedicated stream: ACK after onMessageArrived returns, only for packet ids", async () => {
    const { session, conn } = await open();
    const { client } = await connected(session, conn, { stream: 5, clientId: "dev" });
    const acksSeenInCallback = [];
    const got = [];
    client.onMessageArrived = (m) => {
      got.push(m);
      acksSeenInCallback.push(conn.all(F.ACK).length);
    };
    // No subscription made in this page: a persistent session's messages still arrive.
    conn.send(message({ stream: 5, qos: 1, packetId: 42, topic: "queued/while/offline" }));
    conn.send(message({ stream: 5, qos: 0, packetId: 0, topic: "q0" }));
    const ack = await conn.take(F.ACK);
    assert.deepEqual(ack, { type: F.ACK, stream: 5, packetId: 42 });
    assert.deepEqual(acksSeenInCallback, [0, 0]);
    assert.equal(got[0].qos, 1);
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(conn.all(F.ACK).length, 1);
    await session.close();
  });

  test("a throwing onMessageArrived does not stop other clients nor the ACK", async () => {
    const { session, conn } = await open();
    const a = await connected(session, conn, { stream: 5, clientId: "dev" });
    const errors = [];
    globalThis.reportError = (e) => errors.push(e); // as in browsers
    try {
      a.client.onMessageArrived = () => {
        throw new Error("app bug");
      };
      conn.send(message({ stream: 5, qos: 1, packetId: 1 }));
      await conn.take(F.ACK);
      await waitFor(() => errors.length === 1, { what: "the rethrown error" });
      assert.equal(errors[0].message, "app bug");
    } finally {
      delete globalThis.reportError;
    }
    await session.close();
  });

  test("LOST detaches the client with its code", async () => {
    const { session, conn } = await open();
    const { client, connect } = await connected(session, conn);
    const lost = [];
    client.onConnectionLost = (e) => lost.push(e);
    conn.send({ type: F.LOST, handle: connect.handle, code: 4041, message: "broker gone" });
    assert.deepEqual(lost, [{ errorCode: 4041, errorMessage: "broker gone" }]);
    assert.equal(client.isConnected, false);
    await session.close();
  });

  test("reconnect: true subscribes again with each subscription's options", async () => {
    const { session, conn } = await open();
    const client = session.createClient("main", "dev-1");
    const connecting = client.connect({ reconnect: true });
    const first = await conn.take(F.CONNECT);
    conn.send(result(first.req, 1));
    await connecting;
    const options = { qos: 1, maxFrequency: 2, noLocal: true, retainAsPublished: true, retainHandling: 2 };
    const subscribing = client.subscribe("a/#", options);
    const s = await conn.take(F.SUBSCRIBE);
    conn.send(result(s.req, 1));
    await subscribing;
    const asked = (f) => [f.filter, f.qos, f.maxFrequency, f.noLocal, f.retainAsPublished, f.retainHandling];
    assert.deepEqual(asked(s), ["a/#", 1, 2000, true, true, 2]);

    conn.send({ type: F.LOST, handle: first.handle, code: 4041, message: "broker gone" });
    const again = await conn.take(F.CONNECT); // after the first backoff, 0.5-1 s
    conn.send(result(again.req, 2));
    assert.deepEqual(asked(await conn.take(F.SUBSCRIBE)), asked(s));
    await session.close();
  });

  test("NOTICE reaches session.onNotice", async () => {
    const notices = [];
    const { session, conn } = await open({ onNotice: (n) => notices.push(n) });
    conn.send({ type: F.NOTICE, code: 4050, message: "overflow", value: 3 });
    assert.deepEqual(notices, [{ errorCode: 4050, errorMessage: "overflow", value: 3 }]);
    await session.close();
  });
});

describe("recovery", () => {
  test("a drop resumes with BIND; replayed duplicates are dropped by count; queued requests follow", async () => {
    const events = [];
    const { gw, conn, session } = await open({
      onReconnectionStart: () => events.push("start"),
      onReconnectionComplete: (i) => events.push(["complete", i.messagesMayHaveBeenLost]),
    });
    const { client } = await connected(session, conn); // data frame 1
    await subscribed(client, conn, "t/#"); // 2
    const got = [];
    client.onMessageArrived = (m) => got.push(m.payloadBytes[0]);
    client.onReconnectionStart = () => events.push("client start");
    client.onReconnectionComplete = (i) => events.push(["client complete", i.messagesMayHaveBeenLost]);
    client.onConnected = (reconnect) => events.push(["client connected", reconnect]); // Paho's
    conn.send(message({ topic: "t/1", payload: new Uint8Array([3]) })); // 3
    assert.deepEqual(got, [3]);

    conn.drop();
    const conn2 = await gw.connection(1);
    assert.deepEqual(events, ["start", "client start"]);
    const bind = await conn2.take(F.BIND);
    assert.deepEqual(bind.session, SID);
    assert.deepEqual(bind.secret, SECRET);
    assert.equal(bind.received, 3);

    // Issued while reconnecting: must wait for BOUND, then go out.
    const pub = client.publish("t/out", "x");
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(conn2.all(F.PUBLISH).length, 0);

    // The server replays from 3 (one we already have), then 4.
    conn2.send(
      { type: F.BOUND, replayFrom: 3, requests: 2 },
      message({ topic: "t/1", payload: new Uint8Array([3]) }),
      message({ topic: "t/1", payload: new Uint8Array([4]) }),
    );
    assert.deepEqual(got, [3, 4]);
    const p = await conn2.take(F.PUBLISH);
    conn2.send(result(p.req));
    await pub;
    await waitFor(() => events.length === 5, { what: "completion events" });
    assert.deepEqual(events.slice(2), [["complete", false], ["client complete", false], ["client connected", true]]);
    assert.equal(session.id, "000102030405060708090a0b0c0d0e0f");

    // And the count keeps going: PUBLISH's RESULT was 5, this is 6.
    conn2.send(message({ topic: "t/2" }));
    conn2.drop();
    const conn3 = await gw.connection(2);
    assert.equal((await conn3.take(F.BIND)).received, 6);
    await session.close();
  });

  test("a request whose RESULT was sent before the drop resolves from the replay", async () => {
    const { gw, conn, session } = await open();
    const { client } = await connected(session, conn);
    const p = client.subscribe("a", { qos: 1 });
    const s = await conn.take(F.SUBSCRIBE);
    conn.drop(); // the RESULT is lost in transit
    const conn2 = await gw.connection(1);
    assert.equal((await conn2.take(F.BIND)).received, 1);
    conn2.send({ type: F.BOUND, replayFrom: 2, requests: 2 }, result(s.req, 1));
    assert.equal(await p, 1);
    assert.equal(conn2.all(F.SUBSCRIBE).length, 0, "not sent twice");
    await session.close();
  });

  test("CLOSE 4010 on BIND: a fresh session re-creates clients and subscriptions", async () => {
    const events = [];
    const { gw, conn, session } = await open({ onReconnectionComplete: (i) => events.push(["complete", i.messagesMayHaveBeenLost]) });
    const { client } = await connected(session, conn, { stream: 1 });
    await subscribed(client, conn, "a/+", 1);
    await subscribed(client, conn, "b/#", 2);
    client.onReconnectionComplete = (i) => events.push(["client complete", i.messagesMayHaveBeenLost]);
    const got = [];
    client.onMessageArrived = (m) => got.push(m.destinationName);

    conn.drop();
    const conn2 = await gw.connection(1);
    await conn2.take(F.BIND);
    // A publish issued meanwhile must survive the change of session.
    const pub = client.publish("c/1", "x", 1);
    conn2.send({ type: F.SERVER_CLOSE, code: 4010, message: "unknown session" });

    const conn3 = await gw.connection(2);
    await conn3.take(F.OPEN);
    conn3.send(opened({ session: SID2 }));
    const c = await conn3.take(F.CONNECT);
    const s1 = await conn3.take(F.SUBSCRIBE);
    const s2 = await conn3.take(F.SUBSCRIBE);
    const p = await conn3.take(F.PUBLISH);
    assert.equal(conn3.units.length, 2, "OPEN, then everything else in one unit");
    assert.deepEqual([s1.filter, s1.qos, s2.filter, s2.qos], ["a/+", 1, "b/#", 2]);
    assert.equal(s1.handle, c.handle);
    assert.equal(p.handle, c.handle);
    assert.equal(session.id, "c8c9cacbcccdcecfd0d1d2d3d4d5d6d7");
    assert.deepEqual(events, []);

    conn3.send(result(c.req, 9), result(s1.req, 1), result(s2.req, 2), result(p.req));
    await pub;
    await waitFor(() => events.length === 2, { what: "completion" });
    assert.deepEqual(events, [["complete", true], ["client complete", true]]);
    // The new stream id is used for dispatch; the old one is forgotten.
    conn3.send(message({ stream: 1, topic: "a/x" }), message({ stream: 9, topic: "a/y" }));
    assert.deepEqual(got, ["a/y"]);
    await session.close();
  });

  // A dedicated client without `reconnect` stays disconnected after its broker went
  // away (README, Broker outages), in a fresh session too. (A shared client waits for
  // its broker: see "a shared client's re-creation refused for now".)
  test("a failed re-CONNECT in the fresh session reports onConnectionLost", async () => {
    const { gw, conn, session } = await open();
    const { client } = await connected(session, conn, { clientId: "dev-1" });
    const lost = [];
    client.onConnectionLost = (e) => lost.push(e.errorCode);
    const conn2 = await replacedSession(gw, conn, { code: 4012, message: "gap" });
    const c = await conn2.take(F.CONNECT);
    conn2.send(result(c.req, 0, 4041, "broker down"));
    assert.deepEqual(lost, [4041]);
    assert.equal(client.isConnected, false);
    await session.close();
  });

  // A rolling deploy with an overloaded authenticate hook: the gateway refuses the
  // fresh session for now (4022, fail closed). An open session waits that out with or
  // without `retry`, as it does a restart.
  test("a recovery whose fresh OPEN is refused 4022 twice, then accepted, keeps the session and re-creates its clients", { timeout: 15000 }, async (t) => {
    const warn = t.mock.method(console, "warn", () => {});
    const events = [];
    const { gw, conn, session } = await open({
      onClose: (e) => events.push(["close", e.errorCode]),
      onReconnectionComplete: (i) => events.push(["complete", i.messagesMayHaveBeenLost]),
    });
    t.after(() => session.close());
    const { client } = await connected(session, conn);
    await subscribed(client, conn, "a/+", 1);
    client.onConnectionLost = (e) => events.push(["lost", e.errorCode]);

    conn.send({ type: F.SERVER_CLOSE, code: 4010, message: "unknown session" });
    for (const n of [1, 2]) {
      const refused = await gw.connection(n);
      await refused.take(F.OPEN);
      refused.send({ type: F.SERVER_CLOSE, code: 4022, message: "authenticate hook unavailable" });
    }
    const conn3 = await gw.connection(3);
    await conn3.take(F.OPEN);
    assert.equal(session.state, "reconnecting");
    assert.deepEqual(events, [], "no onClose, no onConnectionLost for a refusal tried again");
    conn3.send(opened({ session: SID2 }));
    const c = await conn3.take(F.CONNECT);
    const sub = await conn3.take(F.SUBSCRIBE);
    assert.deepEqual([sub.filter, sub.qos], ["a/+", 1]);
    conn3.send(result(c.req, 4), result(sub.req, 1));
    await waitFor(() => events.length === 1, { what: "completion" });
    assert.deepEqual(events, [["complete", true]]);
    assert.equal(session.state, "open");
    assert.equal(client.isConnected, true);
    assert.equal(warn.mock.callCount(), 0, "nothing for the console: the application heard onReconnectionStart");
    await session.close();
  });

  // A Node.js service whose token expires: the fresh session that replaces a lost one
  // (a gateway restart) must go with the token of now, not the first one.
  test("a password function is asked at each OPEN: a fresh session goes with the refreshed token", { timeout: 15000 }, async (t) => {
    let token = "token-1";
    const { gw, conn, session, openFrame } = await open({ user: "svc", password: () => token });
    t.after(() => session.close());
    assert.equal(new TextDecoder().decode(openFrame.password), "token-1");
    token = "token-2";
    conn.send({ type: F.SERVER_CLOSE, code: 4010, message: "unknown session" });
    const conn2 = await gw.connection(1);
    const again = await conn2.take(F.OPEN);
    assert.equal(new TextDecoder().decode(again.password), "token-2");
    assert.equal(again.user, "svc");
    conn2.send(opened({ session: SID2 }));
    await waitFor(() => session.state === "open", { what: "the fresh session" });
  });

  // close() while reconnecting sends CLOSE by a /send of its own, with the session's
  // headers: a headers function that fails then must not make close() throw, nor keep
  // the CLOSE from going (the gateway would hold the session, and fire its wills).
  test("close() while reconnecting sends CLOSE even when the headers function throws", { timeout: 15000 }, async (t) => {
    const spy = spyFetch();
    t.after(() => spy.restore());
    spy.intercept = () => Promise.resolve(new Response(null, { status: 200 }));
    let failing = false;
    const { gw, conn, session } = await open({
      headers: () => {
        if (failing) throw new Error("token store down");
        return { Authorization: "Bearer t" };
      },
    });
    gw.refuse = true;
    failing = true;
    conn.drop();
    await waitFor(() => session.state === "reconnecting", { what: "the reconnection" });
    await session.close();
    assert.equal(spy.count("send"), 1);
    assert.deepEqual(spy.calls[0].frames.map((f) => f.type), [F.SEND, F.CLOSE]);
  });

  test("a password function that throws or returns a Promise fails the opening with 4003, saying why", async () => {
    const cases = [
      [() => { throw new Error("token store down"); }, /password\(\) threw: token store down/],
      [async () => "late", /password\(\) returned a Promise/],
      [() => 42, /password\(\) must return a string, ArrayBuffer or ArrayBufferView, got number/],
    ];
    for (const [password, message] of cases) {
      const gw = new FakeGateway();
      await assert.rejects(openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory, password }), (err) => {
        assert.equal(err.errorCode, ErrorCode.bad_request);
        assert.match(err.errorMessage, message);
        return true;
      });
      assert.ok(gw.connections.length <= 1, "not tried again");
    }
  });

  test("a recovery refused for good (4020: the user was revoked meanwhile) ends the session", { timeout: 15000 }, async (t) => {
    const closes = [];
    const lost = [];
    const { gw, conn, session } = await open({ onClose: (e) => closes.push(e.errorCode) });
    t.after(() => session.close()); // a regression would retry for ever
    const { client } = await connected(session, conn);
    client.onConnectionLost = (e) => lost.push(e.errorCode);
    conn.send({ type: F.SERVER_CLOSE, code: 4010, message: "unknown session" });
    const conn2 = await gw.connection(1);
    await conn2.take(F.OPEN);
    conn2.send({ type: F.SERVER_CLOSE, code: 4020, message: "who are you" });
    await waitFor(() => session.state === "closed", { what: "the session to end" });
    assert.deepEqual(closes, [4020]);
    assert.deepEqual(lost, [4020]);
    await new Promise((r) => setTimeout(r, 600));
    assert.equal(gw.connections.length, 2, "not tried again");
  });

  // HTTP answers from something else in the gateway's place, read as openSession's
  // retry reads them: a proxy's 503 may pass, a 401 from an auth handler will not.
  test("a recovery waits out a proxy's 503 and 404 and ends on a foreign HTTP 401", { timeout: 15000 }, async (t) => {
    const closes = [];
    const answers = [];
    const gw2 = new FakeGateway("streaming");
    const answering = Object.assign(
      async (...args) => {
        const tr = await gw2.factory(...args);
        const http = answers.shift();
        if (http) tr.send = () => gw2.connections.at(-1).end({ code: 1006, reason: `stream refused: HTTP ${http.status}`, http });
        return tr;
      },
      { transportName: "streaming" },
    );
    const pending = openSession("http://127.0.0.1:1/mqtt", { transport: answering, onClose: (e) => closes.push(e) });
    const first = await gw2.connection(0);
    await first.take(F.OPEN);
    first.send(opened());
    const s2 = await pending;
    t.after(() => s2.close());
    answers.push({ status: 503, statusText: "Service Unavailable" }, { status: 404, statusText: "Not Found" }, { status: 401, statusText: "Unauthorized" });
    first.drop();
    await waitFor(() => s2.state === "closed", { what: "the session to end on the 401", timeout: 12000 });
    assert.equal(gw2.connections.length, 4, "BIND answered 503, then 404, each tried again, then answered 401");
    assert.equal(closes.length, 1);
    assert.equal(closes[0].errorCode, 1006);
    assert.match(closes[0].errorMessage, /HTTP 401 Unauthorized/);
  });

  // A shared client is never reconnected later (README, Broker outages): a re-creation
  // refused for now must be tried again, or the client is gone for good.
  test("a shared client's re-creation refused for now (4022) comes back; the session's onReconnectionComplete waits for it", { timeout: 15000 }, async (t) => {
    const events = [];
    const { gw, conn, session } = await open({ onReconnectionComplete: (i) => events.push(["complete", i.messagesMayHaveBeenLost]) });
    t.after(() => session.close());
    const { client } = await connected(session, conn);
    await subscribed(client, conn, "a/+", 1);
    client.onConnectionLost = (e) => events.push(["lost", e.errorCode]);
    client.onReconnectionComplete = (i) => events.push(["client complete", i.messagesMayHaveBeenLost, i.failedSubscriptions]);
    const got = [];
    client.onMessageArrived = (m) => got.push(m.destinationName);

    const conn2 = await replacedSession(gw, conn);
    const c = await conn2.take(F.CONNECT);
    const sub = await conn2.take(F.SUBSCRIBE);
    // The SUBSCRIBE that followed the refused CONNECT has no connection to go to.
    conn2.send(result(c.req, 0, 4022, "authorize hook unavailable"), result(sub.req, 0, 4003, "unknown handle"));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(events, [], "no onConnectionLost; the recovery is not complete");
    assert.equal(client.state, "connecting");

    const again = await conn2.take(F.CONNECT); // after 0.5-1 s
    conn2.send(result(again.req, 7));
    const sub2 = await conn2.take(F.SUBSCRIBE);
    assert.deepEqual([sub2.filter, sub2.qos, sub2.handle], ["a/+", 1, again.handle]);
    assert.deepEqual(events, [], "complete once the subscriptions are back too");
    conn2.send(result(sub2.req, 1));
    await waitFor(() => events.length === 2, { what: "completion" });
    assert.deepEqual(events, [
      ["complete", true],
      ["client complete", true, undefined],
    ]);
    assert.equal(client.isConnected, true);
    conn2.send(message({ stream: 7, topic: "a/x" }));
    assert.deepEqual(got, ["a/x"]);
    await session.close();
  });

  test("disconnect() while a re-creation waits to be tried again ends it, and the session's recovery completes", { timeout: 15000 }, async (t) => {
    const events = [];
    const { gw, conn, session } = await open({ onReconnectionComplete: (i) => events.push(["complete", i.messagesMayHaveBeenLost]) });
    t.after(() => session.close());
    const { client } = await connected(session, conn);
    client.onConnectionLost = (e) => events.push(["lost", e.errorCode]);
    const conn2 = await replacedSession(gw, conn);
    const c = await conn2.take(F.CONNECT);
    conn2.send(result(c.req, 0, 4022, "authorize hook unavailable"));
    await waitFor(() => client.state === "connecting", { what: "the client waiting to try again" });
    await client.disconnect();
    assert.equal(client.state, "disconnected");
    assert.deepEqual(events, [["complete", true]]);
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(conn2.all(F.CONNECT).length, 1, "not tried again");
  });

  test("a re-creation refused for good (4021: the user was revoked) ends that client only", { timeout: 15000 }, async (t) => {
    const events = [];
    const { gw, conn, session } = await open({ onReconnectionComplete: (i) => events.push(["complete", i.messagesMayHaveBeenLost]) });
    t.after(() => session.close());
    const { client } = await connected(session, conn);
    await subscribed(client, conn, "a/+");
    client.onConnectionLost = (e) => events.push(["lost", e.errorCode]);
    const conn2 = await replacedSession(gw, conn);
    const c = await conn2.take(F.CONNECT);
    const sub = await conn2.take(F.SUBSCRIBE);
    conn2.send(result(c.req, 0, 4021, "not authorized"), result(sub.req, 0, 4003, "unknown handle"));
    await waitFor(() => events.length === 2, { what: "the loss and the completion" });
    assert.deepEqual(events, [
      ["lost", 4021],
      ["complete", true],
    ]);
    assert.equal(client.state, "disconnected");
    assert.equal(session.state, "open");
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(conn2.all(F.CONNECT).length, 1, "not tried again");
    await session.close();
  });

  test("a subscription whose re-creation is refused for now (4022) goes again; the recovery completes once it is back", { timeout: 15000 }, async (t) => {
    const events = [];
    const { gw, conn, session } = await open({ onReconnectionComplete: (i) => events.push(["complete", i.messagesMayHaveBeenLost]) });
    t.after(() => session.close());
    const { client } = await connected(session, conn);
    await subscribed(client, conn, "a/+", 1);
    await subscribed(client, conn, "b/#");
    client.onReconnectionComplete = (i) => events.push(["client complete", i.failedSubscriptions]);
    const conn2 = await replacedSession(gw, conn);
    const c = await conn2.take(F.CONNECT);
    const s1 = await conn2.take(F.SUBSCRIBE);
    const s2 = await conn2.take(F.SUBSCRIBE);
    conn2.send(result(c.req, 3), result(s1.req, 0, 4022, "authorize hook unavailable"), result(s2.req, 0));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(events, [], "not complete while a subscription is missing");
    const again = await conn2.take(F.SUBSCRIBE); // after 0.5-1 s
    assert.deepEqual([again.filter, again.qos], ["a/+", 1]);
    conn2.send(result(again.req, 1));
    await waitFor(() => events.length === 2, { what: "completion" });
    assert.deepEqual(events, [
      ["complete", true],
      ["client complete", undefined],
    ]);
    await session.close();
  });

  // Two gateway restarts in a row lose the session twice soon after it opened, as a
  // balancer without affinity does; but each loss comes in answer to a BIND after the
  // connection dropped, and the console must not blame a load balancer that is not
  // there. A 4010 on a connection that works (a /send or poll reaching another
  // instance) is the balancer's mark.
  test("quick losses: a console warning about the balancer only when a working connection was told 4010", { timeout: 15000 }, async (t) => {
    const warn = t.mock.method(console, "warn", () => {});
    const restarts = await open();
    let conn = restarts.conn;
    for (let n = 1; n <= 4; n += 2) {
      conn.drop(); // the gateway went away
      const rebind = await restarts.gw.connection(n);
      await rebind.take(F.BIND);
      rebind.send({ type: F.SERVER_CLOSE, code: 4010, message: "unknown session" });
      conn = await restarts.gw.connection(n + 1);
      await conn.take(F.OPEN);
      conn.send(opened({ session: n === 1 ? SID2 : SID }));
      await waitFor(() => restarts.session.state === "open", { what: "the fresh session" });
    }
    assert.equal(warn.mock.callCount(), 0, "no warning after restarts");
    await restarts.session.close();

    const balanced = await open();
    conn = balanced.conn;
    for (let n = 1; n <= 2; n++) {
      conn.send({ type: F.SERVER_CLOSE, code: 4010, message: "unknown session" }); // another instance answered
      conn = await balanced.gw.connection(n);
      await conn.take(F.OPEN);
      conn.send(opened({ session: n === 1 ? SID2 : SID }));
      await waitFor(() => balanced.session.state === "open", { timeout: 5000, what: "the fresh session" });
    }
    assert.equal(warn.mock.callCount(), 1);
    assert.match(warn.mock.calls[0].arguments[0], /is the load balancer sticky\?/);
    await balanced.session.close();
  });

  test("BOUND that skips frames is treated as a gap", async () => {
    const { gw, conn, session } = await open();
    await connected(session, conn);
    conn.drop();
    const conn2 = await gw.connection(1);
    await conn2.take(F.BIND);
    conn2.send({ type: F.BOUND, replayFrom: 5 }); // we have 1
    await conn2.take(F.CLOSE);
    const conn3 = await gw.connection(2);
    await conn3.take(F.OPEN);
    await session.close();
  });

  test("connection attempts back off while the gateway is unreachable", async () => {
    const { gw, conn, session } = await open();
    gw.refuse = true;
    conn.drop();
    await new Promise((r) => setTimeout(r, 400));
    gw.refuse = false;
    const conn2 = await gw.connection(1);
    await conn2.take(F.BIND);
    assert.equal(session.state, "reconnecting");
    await session.close();
    assert.equal(session.state, "closed");
  });

  test("backoff: jittered, exponential, capped", () => {
    assert.equal(backoffDelay(0, () => 1), 250);
    assert.equal(backoffDelay(0, () => 0), 125);
    assert.equal(backoffDelay(3, () => 1), 2000);
    assert.equal(backoffDelay(10, () => 1), 5000);
    assert.equal(backoffDelay(1000, () => 0), 2500);
  });
});

describe("requests lost with a connection (BOUND's requests)", () => {
  test("after BOUND, requests the gateway did not count go again, in order, before newer ones", async () => {
    const { gw, conn, session } = await open();
    const { client } = await connected(session, conn); // request 1, data frame 1
    const sub = client.subscribe("a", { qos: 1 }); // request 2
    const pub = client.publish("t/x", "payload", 1); // request 3
    const s = await conn.take(F.SUBSCRIBE);
    const p = await conn.take(F.PUBLISH);
    conn.drop();
    const conn2 = await gw.connection(1);
    await conn2.take(F.BIND);
    const later = client.subscribe("b"); // request 4, queued while reconnecting
    // The gateway got CONNECT and SUBSCRIBE; the PUBLISH was lost with the connection.
    conn2.send({ type: F.BOUND, replayFrom: 2, requests: 2 });
    const again = await conn2.take(F.PUBLISH);
    assert.equal(again.req, p.req);
    assert.deepEqual(again.payload, p.payload);
    const s2 = await conn2.take(F.SUBSCRIBE);
    assert.equal(s2.filter, "b");
    assert.deepEqual(
      conn2.frames.filter((f) => f.type === F.PUBLISH || f.type === F.SUBSCRIBE).map((f) => f.req),
      [p.req, s2.req],
      "the counted SUBSCRIBE is not sent again; the lost PUBLISH goes before the newer SUBSCRIBE",
    );
    conn2.send(result(s.req, 1), result(p.req), result(s2.req, 0));
    assert.equal(await sub, 1);
    await pub;
    await later;
    await session.close();
  });

  test("a BOUND on a bound transport (a poll's answer, a renewed stream) continues it", async () => {
    const { gw, conn, session } = await open();
    const { client } = await connected(session, conn); // data frame 1
    await subscribed(client, conn, "t/#"); // 2
    const got = [];
    client.onMessageArrived = (m) => got.push(m.payloadBytes[0]);
    const pub = client.publish("t/x", "y", 1);
    const p = await conn.take(F.PUBLISH);
    // The PUBLISH may still be on its way (a /send in flight): requests: 2 is no loss.
    conn.send({ type: F.BOUND, replayFrom: 3, requests: 2 }, message({ topic: "t/1", payload: new Uint8Array([1]) }));
    conn.send(
      { type: F.BOUND, replayFrom: 3, requests: 2 }, // the previous answer "was lost": replayed
      message({ topic: "t/1", payload: new Uint8Array([1]) }),
      message({ topic: "t/2", payload: new Uint8Array([2]) }),
    );
    assert.deepEqual(got, [1, 2], "the replayed frame is dropped by its number");
    await new Promise((r) => setTimeout(r, 10));
    assert.equal(conn.all(F.PUBLISH).length, 1, "not sent again");
    conn.send({ type: F.BOUND, replayFrom: 5, requests: 3 }, result(p.req));
    await pub;
    assert.equal(session.state, "open");
    assert.equal(gw.connections.length, 1);

    // Skipping frames is a gap on a continuing transport too.
    conn.send({ type: F.BOUND, replayFrom: 9, requests: 3 });
    await conn.take(F.CLOSE);
    const conn2 = await gw.connection(1);
    await conn2.take(F.OPEN);
    await session.close();
  });

  test("numbering starts again in a fresh session", async () => {
    const { gw, conn, session } = await open();
    const { client } = await connected(session, conn);
    await subscribed(client, conn, "a/#");
    await subscribed(client, conn, "b/#"); // requests 1-3 of the first session
    const conn2 = await replacedSession(gw, conn);
    const c = await conn2.take(F.CONNECT); // request 1 of the fresh session
    await conn2.take(F.SUBSCRIBE); // 2
    const sb = await conn2.take(F.SUBSCRIBE); // 3
    conn2.drop();
    const conn3 = await gw.connection(2);
    await conn3.take(F.BIND);
    conn3.send({ type: F.BOUND, replayFrom: 1, requests: 2 }, result(c.req, 1));
    const again = await conn3.take(F.SUBSCRIBE);
    assert.equal(again.req, sb.req);
    assert.equal(again.filter, "b/#");
    assert.equal(conn3.all(F.CONNECT).length, 0);
    await session.close();
  });
});

describe("transport choice", () => {
  let n = 0;
  const uniqueBase = () => `http://127.0.0.1:1/choice-${process.pid}-${n++}`;

  test("a transport that does not answer within probeTimeout gives way to the next, which is remembered", async () => {
    const base = uniqueBase();
    const a = new FakeGateway("a");
    const b = new FakeGateway("b");
    const pending = openSession(base, { transport: [a.factory, b.factory], probeTimeout: 150 });
    const ca = await a.connection(0);
    await ca.take(F.OPEN); // and never answers (a proxy that holds the response)
    const cb = await b.connection(0);
    assert.equal(ca.closed?.code, 4004, "the silent attempt is closed, not leaked");
    await cb.take(F.OPEN);
    cb.send(opened());
    const session = await pending;
    assert.equal(session.transport, "b");
    await session.close();

    // The next session on this gateway starts where the last one succeeded.
    const next = openSession(base, { transport: [a.factory, b.factory], probeTimeout: 150 });
    const cb2 = await b.connection(1);
    await cb2.take(F.OPEN);
    cb2.send(opened());
    const s2 = await next;
    assert.equal(a.connections.length, 1, "the failing transport is not tried first again");
    assert.equal(s2.transport, "b");
    await s2.close();
    forgetTransport(base);
  });

  test("a CLOSE is the gateway's answer: no other transport is tried", async () => {
    const a = new FakeGateway("a");
    const b = new FakeGateway("b");
    const pending = openSession(uniqueBase(), { transport: [a.factory, b.factory], probeTimeout: 150 });
    const ca = await a.connection(0);
    await ca.take(F.OPEN);
    ca.send({ type: F.SERVER_CLOSE, code: 4020, message: "no" });
    await assert.rejects(pending, (e) => e.errorCode === 4020);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(b.connections.length, 0);
  });

  test("a resumed session starts with its transport; a fresh one probes from the top", async () => {
    const base = uniqueBase();
    const a = new FakeGateway("a");
    const b = new FakeGateway("b");
    const changes = [];
    a.refuse = true; // e.g. a WebSocket upgrade refused by a proxy
    const pending = openSession(base, {
      transport: [a.factory, b.factory],
      probeTimeout: 150,
      onTransportChange: (c) => changes.push(c),
    });
    const cb = await b.connection(0);
    await cb.take(F.OPEN);
    cb.send(opened());
    const session = await pending;
    assert.equal(session.transport, "b");
    a.refuse = false;

    cb.drop();
    const cb2 = await b.connection(1);
    await cb2.take(F.BIND);
    assert.equal(a.connections.length, 0, "resuming goes straight to the transport that works");
    cb2.send({ type: F.BOUND, replayFrom: 1, requests: 0 });
    await waitFor(() => session.state === "open", { what: "the resumed session" });

    // The gateway lost the session: the fresh one tries the best transport again.
    cb2.send({ type: F.SERVER_CLOSE, code: 4010, message: "unknown session" });
    const ca = await a.connection(0);
    await ca.take(F.OPEN);
    ca.send(opened({ session: SID2 }));
    await waitFor(() => session.transport === "a", { what: "the move to a" });
    assert.deepEqual(changes, [{ transport: "a", previous: "b" }]);
    await session.close();
    forgetTransport(base);
  });
});

describe("when no transport gets through", () => {
  const BASE = "http://127.0.0.1:1/wrongpath";
  const AT = `cannot reach the gateway at ${BASE}`;
  /** A transport that fails to open, as a WebSocket does (`http` from Node.js's "ws" only). */
  const refusing = (name, message, http) =>
    Object.assign(
      async () => {
        throw Object.assign(new Error(message), http ? { http } : {});
      },
      { transportName: name },
    );
  /** A transport that opens, then ends on OPEN, as the HTTP transports do on an error answer. */
  const ending = (name, ev) => {
    const gw = new FakeGateway(name);
    return Object.assign(
      async (...args) => {
        const t = await gw.factory(...args);
        const conn = gw.connections.at(-1);
        t.send = () => conn.end(ev);
        return t;
      },
      { transportName: name },
    );
  };
  const failure = (transports) =>
    openSession(BASE, { transport: transports }).then(
      () => assert.fail("opened"),
      (e) => {
        assert.equal(e.errorCode, 1006);
        return e.errorMessage;
      },
    );
  const answer = (status, statusText, contentType = null) => ({
    code: 1006,
    reason: `stream refused: HTTP ${status} ${statusText}`,
    http: { status, statusText, contentType },
  });

  test("an HTTP answer that is not the gateway's is the message: a 404 asks about the base path", async () => {
    // A WebSocket in Node.js knows the status only; the HTTP transports know the rest.
    assert.equal(
      await failure([
        refusing("websocket", "websocket ws://127.0.0.1:1/wrongpath/ws failed (1006 Unexpected server response: 404)", { status: 404 }),
        ending("streaming", answer(404, "Not Found", "text/html")),
        ending("polling", answer(404, "Not Found", "text/html")),
      ]),
      `${AT}: HTTP 404 Not Found (is the base path right?)`,
    );
    // A browser's WebSocket tells nothing; a server without that path may answer 200.
    assert.equal(
      await failure([refusing("websocket", "websocket ws://127.0.0.1:1/wrongpath/ws failed (1006)"), ending("streaming", answer(200, "OK"))]),
      `${AT}: HTTP 200 OK with no content type, not the gateway's answer (is the base path right? does another handler, such as try_files or file_server, answer the gateway's requests?)`,
    );
    assert.equal(
      await failure([ending("streaming", answer(200, "OK", "text/html; charset=utf-8"))]),
      `${AT}: HTTP 200 OK with text/html; charset=utf-8, not the gateway's answer (is the base path right? does another handler, such as try_files or file_server, answer the gateway's requests?)`,
    );
    // A site's file_server refusing the transports' POSTs: something else answers there.
    assert.equal(
      await failure([refusing("websocket", "websocket ws://127.0.0.1:1/wrongpath/ws failed (1006)"), ending("streaming", answer(405, "Method Not Allowed"))]),
      `${AT}: HTTP 405 Method Not Allowed (is the base path right? does another handler, such as try_files or file_server, answer the gateway's requests?)`,
    );
    // Different answers: each transport's.
    assert.equal(
      await failure([refusing("websocket", "refused", { status: 403 }), ending("streaming", answer(502, "Bad Gateway"))]),
      `${AT}: websocket: HTTP 403; streaming: HTTP 502 Bad Gateway`,
    );
  });

  // What answers in the gateway's place says whether waiting can help: a proxy's 502,
  // 503 or 504 (the gateway away behind it) can pass; an auth handler's 401 or 403, a
  // wrong base path's 404, a file server's 405 will not.
  test("retry: a proxy's 502/503/504 is waited out; another HTTP answer rejects at once", { timeout: 15000 }, async (t) => {
    t.mock.method(console, "warn", () => {});
    const stop = new AbortController(); // a regression retries for ever: end it with the test
    t.after(() => stop.abort());
    for (const [status, text] of [
      [401, "Unauthorized"],
      [404, "Not Found"],
      [405, "Method Not Allowed"],
    ]) {
      let attempts = 0;
      const counted = Object.assign(async (...args) => (attempts++, ending("streaming", answer(status, text))(...args)), { transportName: "streaming" });
      await assert.rejects(openSession(BASE, { transport: counted, retry: true, signal: stop.signal }), (e) => e.errorCode === 1006 && e.errorMessage.includes(`HTTP ${status}`));
      assert.equal(attempts, 1, `HTTP ${status}: not tried again`);
    }
    let attempts = 0;
    const gw = new FakeGateway("streaming");
    const flaky = Object.assign(
      async (...args) => (++attempts <= 2 ? ending("streaming", answer(attempts === 1 ? 502 : 503, "Bad Gateway"))(...args) : gw.factory(...args)),
      { transportName: "streaming" },
    );
    const pending = openSession(BASE, { transport: flaky, retry: true, signal: stop.signal });
    const conn = await gw.connection(0);
    await conn.take(F.OPEN);
    conn.send({ type: F.OPENED, session: new Uint8Array(16), secret: new Uint8Array(16), heartbeat: 20000, sessionTimeout: 30000, maxFrame: 65536, info: [] });
    const session = await pending;
    assert.equal(attempts, 3);
    await session.close();
  });

  test("signal: an abort does not wait for a connection under way, which is closed when it comes", { timeout: 15000 }, async () => {
    const gw = new FakeGateway();
    const slow = async (...args) => {
      await new Promise((r) => setTimeout(r, 1500));
      return gw.factory(...args);
    };
    const ctrl = new AbortController();
    const pending = openSession(BASE, { transport: slow, signal: ctrl.signal });
    await new Promise((r) => setTimeout(r, 100));
    const aborted = Date.now();
    ctrl.abort();
    await assert.rejects(pending, (e) => e.name === "AbortError");
    assert.ok(Date.now() - aborted < 500, `rejected ${Date.now() - aborted} ms after the abort`);
    const late = await gw.connection(0);
    await waitFor(() => late.closed, { what: "the late connection closed" });
    assert.equal(late.frames.length, 0, "nothing sent on it");
  });

  test("without an HTTP answer, each transport's reason", async () => {
    assert.equal(
      await failure([
        refusing("websocket", "websocket ws://127.0.0.1:1/wrongpath/ws failed (1006)"),
        ending("streaming", { code: 1006, reason: "stream request failed: fetch failed (ECONNREFUSED)" }),
        ending("polling", { code: 1006, reason: "" }),
        ending("custom", { code: 4004, reason: "open timed out" }),
      ]),
      `${AT} (websocket: websocket ws://127.0.0.1:1/wrongpath/ws failed (1006); streaming: stream request failed: fetch failed (ECONNREFUSED); polling: transport closed (1006); custom: open timed out (4004))`,
    );
  });
});

describe("ending", () => {
  // PROTOCOL.md, Close: a BIND from elsewhere takes the session, and the server closes
  // the connection it was on with WebSocket close code 4003 and no CLOSE frame. That
  // client must not take the session back (two holders would take it from each other
  // for ever); a close outside 4000-4999 is a dropped connection, rebound.
  test("a close code in 4000-4999 without CLOSE ends the session; another code rebinds", async () => {
    const closes = [];
    const { gw, conn, session } = await open({ onClose: (e) => closes.push(e) });
    try {
      conn.drop(1001);
      const conn2 = await gw.connection(1);
      await conn2.take(F.BIND);
      conn2.send({ type: F.BOUND, replayFrom: 1, requests: 0 });
      await waitFor(() => session.state === "open", { what: "the rebound session" });
      conn2.end({ code: 4003, reason: "session resumed on another connection" });
      await waitFor(() => session.state === "closed", { what: "the session to end" });
      assert.deepEqual(closes, [{ errorCode: 4003, errorMessage: "session resumed on another connection" }]);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(gw.connections.length, 2, "no BIND to take the session back");
    } finally {
      await session.close();
    }
  });

  test("session.close() sends CLOSE, fails pending requests, reports errorCode 0", async () => {
    const closes = [];
    const { conn, session } = await open({ onClose: (e) => closes.push(e) });
    const { client } = await connected(session, conn);
    const lost = [];
    client.onConnectionLost = (e) => lost.push(e);
    const pending = client.subscribe("a");
    await session.close();
    await conn.take(F.CLOSE);
    assert.ok(conn.closed);
    // Sent before the CLOSE, so the gateway carries it out: the message says so, as
    // a 4003 "not connected" means it was not sent.
    await assert.rejects(pending, (e) => e.errorCode === 4003 && /still carries out what was sent before the close/.test(e.errorMessage));
    assert.deepEqual(lost, [{ errorCode: 0, errorMessage: "session closed" }]);
    assert.deepEqual(closes, [{ errorCode: 0, errorMessage: "session closed" }]);
    await assert.rejects(client.publish("a", "b"), (e) => e.errorCode === 4003);
    assert.throws(() => session.createClient("main"), (e) => e.errorCode === 4003);
  });

  test("session.close() is closed at once and resolves when the transport has handed CLOSE over", async () => {
    const { conn, session } = await open();
    const { client } = await connected(session, conn);
    const lost = [];
    client.onConnectionLost = (e) => lost.push(e.errorCode);
    // An HTTP transport's close() returns a Promise settled when its last /send is answered.
    let handOver;
    conn.transport.close = () => new Promise((resolve) => (handOver = resolve));
    let resolved = false;
    const p = session.close().then(() => (resolved = true));
    assert.equal(session.state, "closed", "closed synchronously");
    assert.deepEqual(lost, [0]);
    assert.equal(conn.all(F.CLOSE).length, 1, "CLOSE handed to the transport");
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(resolved, false, "waits for the transport");
    const second = await Promise.race([session.close().then(() => "resolved"), new Promise((r) => setTimeout(() => r("waits"), 20))]);
    assert.equal(second, "waits", "a second close() waits as well");
    handOver();
    await p;
    assert.equal(resolved, true);
  });

  test("session.close() waits 5 s at most for a transport that never says it is done", async (t) => {
    const { conn, session } = await open();
    conn.transport.close = () => new Promise(() => {});
    t.mock.timers.enable({ apis: ["setTimeout"] });
    let resolved = false;
    const p = session.close().then(() => (resolved = true));
    t.mock.timers.tick(4900);
    await Promise.resolve();
    assert.equal(resolved, false);
    t.mock.timers.tick(200);
    await p;
    assert.equal(resolved, true);
  });

  test("a final server CLOSE ends the session without reconnecting", async () => {
    const closes = [];
    const { gw, conn, session } = await open({ onClose: (e) => closes.push(e) });
    const { client } = await connected(session, conn);
    const lost = [];
    client.onConnectionLost = (e) => lost.push(e.errorCode);
    conn.send({ type: F.SERVER_CLOSE, code: 4011, message: "bad secret" });
    assert.deepEqual(closes, [{ errorCode: 4011, errorMessage: "bad secret" }]);
    assert.deepEqual(lost, [4011]);
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(gw.connections.length, 1);
  });

  test("client.disconnect() fires onConnectionLost with 0, as Paho does", async () => {
    const { conn, session } = await open();
    const { client } = await connected(session, conn);
    const lost = [];
    client.onConnectionLost = (e) => lost.push(e.errorCode);
    const p = client.disconnect();
    conn.send(result((await conn.take(F.DISCONNECT)).req));
    await p;
    assert.deepEqual(lost, [0]);
    assert.equal(client.state, "disconnected");
    // It can connect again, with a new handle.
    const c2 = client.connect();
    conn.send(result((await conn.take(F.CONNECT)).req, 4));
    await c2;
    await session.close();
  });

  test("a malformed frame from the gateway ends the session with 4000", async () => {
    const closes = [];
    const { conn, session } = await open({ onClose: (e) => closes.push(e.errorCode) });
    conn.transport.onunit(new Uint8Array([2, 0x7f, 0]));
    assert.deepEqual(closes, [4000]);
    await conn.take(F.CLOSE);
    assert.equal(session.state, "closed");
  });
});

// A page's unload, with a stand-in for the browser's window (Node.js has none, and
// the session then registers nothing) and for fetch.
describe("page unload (pagehide)", () => {
  /** Installs a window that counts pagehide listeners; returns it and a restore(). */
  function fakeWindow() {
    const win = new EventTarget();
    win.listeners = 0;
    const add = win.addEventListener.bind(win);
    const remove = win.removeEventListener.bind(win);
    win.addEventListener = (type, l) => {
      if (type === "pagehide") win.listeners++;
      add(type, l);
    };
    win.removeEventListener = (type, l) => {
      if (type === "pagehide") win.listeners--;
      remove(type, l);
    };
    win.hide = (persisted) => win.dispatchEvent(Object.assign(new Event("pagehide"), { persisted }));
    globalThis.window = win;
    return win;
  }

  /** Records fetch calls instead of making them. */
  function fakeFetch() {
    const original = globalThis.fetch;
    const calls = [];
    globalThis.fetch = (url, init) => {
      calls.push({ url: String(url), init, frames: [...decodeUnit(init.body)] });
      return new Promise(() => {});
    };
    calls.restore = () => (globalThis.fetch = original);
    return calls;
  }

  test("a page unloaded for good closes its session as close() does, at once", async () => {
    const win = fakeWindow();
    try {
      const closes = [];
      const { conn, session } = await open({ onClose: (e) => closes.push(e) });
      const { client } = await connected(session, conn);
      assert.equal(win.listeners, 1, "one listener per session");
      client.publish("a", "bye", 1).catch(() => {});
      win.hide(false);
      // Synchronously: nothing asynchronous runs once the page is gone.
      assert.equal(session.state, "closed");
      assert.deepEqual(conn.frames.slice(-2).map((f) => f.type), [F.PUBLISH, F.CLOSE], "what was queued, then CLOSE");
      assert.ok(conn.closed);
      assert.deepEqual(closes, [{ errorCode: 0, errorMessage: "session closed: the page was unloaded" }]);
      assert.equal(win.listeners, 0, "removed with the session");
    } finally {
      delete globalThis.window;
    }
  });

  test("a page put in the back/forward cache keeps its session; close() removes the listener", async () => {
    const win = fakeWindow();
    try {
      const { conn, session } = await open();
      win.hide(true);
      assert.equal(session.state, "open");
      assert.equal(conn.all(F.CLOSE).length, 0);
      await session.close();
      assert.equal(win.listeners, 0);
    } finally {
      delete globalThis.window;
    }
  });

  test("closeOnPageHide: false registers nothing", async () => {
    const win = fakeWindow();
    try {
      const { conn, session } = await open({ closeOnPageHide: false });
      assert.equal(win.listeners, 0);
      win.hide(false);
      assert.equal(session.state, "open");
      assert.equal(conn.all(F.CLOSE).length, 0);
      await session.close();
    } finally {
      delete globalThis.window;
    }
  });

  test("while reconnecting, CLOSE and the requests queued since go by a keepalive /send", async () => {
    const win = fakeWindow();
    const calls = fakeFetch();
    try {
      const { gw, conn, session } = await open();
      const { client } = await connected(session, conn);
      gw.refuse = true;
      conn.drop();
      await waitFor(() => session.state === "reconnecting");
      client.publish("a", "bye", 1).catch(() => {});
      await new Promise((r) => setTimeout(r, 0));
      win.hide(false);
      assert.equal(session.state, "closed");
      assert.equal(calls.length, 1);
      const [{ url, init, frames }] = calls;
      assert.equal(url, "http://127.0.0.1:1/mqtt/send");
      assert.equal(init.keepalive, true);
      // The session and its secret travel in the body's SEND frame, never in a header
      // (access logs record headers).
      assert.deepEqual(Object.keys(init.headers), ["Content-Type"]);
      const [send, ...rest] = frames;
      assert.equal(send.type, F.SEND);
      assert.deepEqual([...send.session], [...Array(16).keys()]);
      assert.deepEqual([...send.secret], Array.from({ length: 16 }, (_, i) => 100 + i));
      assert.equal(send.requests, 1, "the CONNECT came before");
      assert.deepEqual(rest.map((f) => f.type), [F.PUBLISH, F.CLOSE]);
    } finally {
      calls.restore();
      delete globalThis.window;
    }
  });

  test("close() while reconnecting sends CLOSE by a /send of its own, so the gateway frees the session", async () => {
    const calls = fakeFetch();
    try {
      const { gw, conn, session } = await open();
      await connected(session, conn);
      gw.refuse = true;
      conn.drop();
      await waitFor(() => session.state === "reconnecting");
      session.close();
      assert.equal(session.state, "closed");
      assert.equal(calls.length, 1);
      const [{ url, frames }] = calls;
      assert.equal(url, "http://127.0.0.1:1/mqtt/send");
      assert.deepEqual(frames.map((f) => f.type), [F.SEND, F.CLOSE]);
    } finally {
      calls.restore();
    }
  });

  test("requests lost with the connection go again with the CLOSE, from the first unanswered one", async () => {
    const win = fakeWindow();
    const calls = fakeFetch();
    try {
      const { gw, conn, session } = await open();
      const { client } = await connected(session, conn); // request 1, answered
      const p2 = client.subscribe("a").catch(() => {}); // 2: answered
      const p3 = client.subscribe("b").catch(() => {}); // 3: arrived, not answered yet
      client.publish("a", "x", 1).catch(() => {}); // 4: fate unknown
      conn.send(result((await conn.take(F.SUBSCRIBE)).req));
      await p2;
      await conn.take(F.PUBLISH);
      gw.refuse = true;
      conn.drop();
      await waitFor(() => session.state === "reconnecting");
      client.publish("a", "y", 1).catch(() => {}); // 5: queued since
      await new Promise((r) => setTimeout(r, 0));
      win.hide(false);
      assert.equal(calls.length, 1);
      const [{ frames }] = calls;
      // 3 and 4 are sent again (the gateway skips what it has, by SEND's count).
      assert.equal(frames[0].type, F.SEND);
      assert.equal(frames[0].requests, 2);
      assert.deepEqual(
        frames.slice(1).map((f) => [f.type, f.filter ?? f.payload?.[0]]),
        [[F.SUBSCRIBE, "b"], [F.PUBLISH, 120], [F.PUBLISH, 121], [F.CLOSE, undefined]],
      );
      await p3;
    } finally {
      calls.restore();
      delete globalThis.window;
    }
  });
});

describe("connection checks", () => {
  /** A session on a gateway whose OPENED says it answers checks (or not). */
  async function openAnswering({ answers = true, ...options } = {}) {
    const gw = new FakeGateway();
    const pending = openSession("http://127.0.0.1:1/mqtt", { transport: gw.factory, ...options });
    const conn = await gw.connection(0);
    await conn.take(F.OPEN);
    conn.send(opened({ info: answers ? [["ping_answer", "1"]] : [["server", "old"]] }));
    return { gw, conn, session: await pending };
  }

  test("an answer keeps the connection; silence hands the session to a new one, as a heartbeat timeout does", async () => {
    const events = [];
    const { gw, conn, session } = await openAnswering({ onReconnectionStart: () => events.push("start") });
    const p = session.checkConnection();
    assert.equal(session.checkConnection(), p, "one check at a time");
    assert.equal((await conn.take(F.PING)).answer, true);
    conn.send({ type: F.PING });
    assert.equal(await p, true);
    assert.deepEqual(events, []);

    const q = session.checkConnection({ timeout: 100 });
    assert.equal((await conn.take(F.PING)).answer, true);
    assert.equal(await q, false);
    assert.deepEqual(events, ["start"]);
    await waitFor(() => conn.closed, { what: "the silent connection closed" });
    assert.equal(conn.closed.code, ErrorCode.heartbeat_timeout);
    const conn2 = await gw.connection(1);
    assert.deepEqual((await conn2.take(F.BIND)).session, SID, "resumed, not replaced");
    await session.close();
  });

  test("a connection that ends during the check is reported dead; a closed session checks nothing", async () => {
    const { gw, conn, session } = await openAnswering();
    const p = session.checkConnection();
    await conn.take(F.PING);
    conn.drop();
    assert.equal(await p, false);
    const conn2 = await gw.connection(1);
    await conn2.take(F.BIND);
    assert.equal(await session.checkConnection(), null, "reconnecting: nothing to check");
    conn2.send({ type: F.BOUND, replayFrom: 1, requests: 0 });
    await waitFor(() => session.state === "open", { what: "the session back" });
    await session.close();
    assert.equal(await session.checkConnection(), null);
    assert.throws(() => session.checkConnection({ timout: 1000 }), TypeError, "a misspelt option");
    assert.throws(() => session.checkConnection({ timeout: "1s" }), TypeError);
    assert.throws(() => session.checkConnection({ timeout: 0 }), TypeError);
  });

  test("a gateway whose OPENED lacks ping_answer is never asked: an older one ends a session on the flag (4000)", async () => {
    const { conn, session } = await openAnswering({ answers: false });
    assert.equal(await session.checkConnection(), null);
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(conn.all(F.PING).filter((f) => f.answer), []);
    await session.close();
  });

  test("in a browser: the network back online, another kind of network, the page back in the foreground each check", async () => {
    const win = new EventTarget();
    const doc = Object.assign(new EventTarget(), { visibilityState: "visible" });
    const connection = new EventTarget();
    const navigatorWas = Object.getOwnPropertyDescriptor(globalThis, "navigator");
    globalThis.window = win;
    globalThis.document = doc;
    Object.defineProperty(globalThis, "navigator", { value: { connection }, configurable: true, writable: true });
    try {
      const { conn, session } = await openAnswering();
      const checked = async (what) => {
        const ping = await conn.take(F.PING, `the check on ${what}`);
        assert.equal(ping.answer, true, what);
        conn.send({ type: F.PING });
        await waitFor(() => session._check === null, { what: `the check on ${what} answered` });
      };
      win.dispatchEvent(new Event("online"));
      await checked("online");
      connection.dispatchEvent(new Event("change"));
      await checked("a change of network");
      doc.visibilityState = "hidden";
      doc.dispatchEvent(new Event("visibilitychange"));
      doc.visibilityState = "visible";
      doc.dispatchEvent(new Event("visibilitychange"));
      await checked("the page back in the foreground");
      assert.equal(conn.all(F.PING).length, 3, "hiding the page checks nothing");
      await session.close();
      win.dispatchEvent(new Event("online"));
      connection.dispatchEvent(new Event("change"));
      doc.dispatchEvent(new Event("visibilitychange"));
      await new Promise((r) => setTimeout(r, 10));
      assert.equal(conn.all(F.PING).length, 3, "listeners removed with the session");
    } finally {
      delete globalThis.window;
      delete globalThis.document;
      if (navigatorWas) Object.defineProperty(globalThis, "navigator", navigatorWas);
      else delete globalThis.navigator;
    }
  });
});

// In a browser, a connection lost over HTTP/2 leaves the page's one connection to the
// gateway, maybe silent, which only the browser can close, after a request it sends
// once that connection has brought nothing for a while (_nudgeSilentConnection; the
// behaviour is tested in Chromium in tls.test.js). Here: how many HEADs go.
describe("kept connections while reconnecting over HTTP in a browser", () => {
  /**
   * Loses a streaming session's connection with the gateway refusing new ones, and
   * answers HEADs with `answer(n)` for the n-th (0-based): "silent" never answers
   * (until the probe ends it), "answered" resolves, "refused" rejects at once.
   * Returns the HEADs sent within 600 ms (probeTimeout 50 ms), then closes.
   */
  async function headsWhileReconnecting(answer) {
    const heads = [];
    const original = globalThis.fetch;
    globalThis.fetch = (url, init) => {
      // close() while reconnecting sends its CLOSE by a /send of its own.
      if (init.method !== "HEAD") return Promise.resolve(new Response(null, { status: 204 }));
      const n = heads.push({ url: String(url), init }) - 1;
      const how = answer(n);
      if (how === "answered") return Promise.resolve(new Response(null, { status: 200 }));
      if (how === "refused") return Promise.reject(new TypeError("Failed to fetch"));
      return new Promise((_, reject) => init.signal.addEventListener("abort", () => reject(init.signal.reason)));
    };
    globalThis.window = new EventTarget();
    try {
      const { gw, conn, session } = await open({ probeTimeout: 50 }, "streaming");
      gw.refuse = true;
      conn.drop();
      await new Promise((r) => setTimeout(r, 600));
      await session.close();
      return heads;
    } finally {
      globalThis.fetch = original;
      delete globalThis.window;
    }
  }

  test("six HEADs drop the kept connections, then one at a time while they go unanswered", async () => {
    const heads = await headsWhileReconnecting(() => "silent");
    // 6 at once (50 ms), then one every 50 ms: about 10 more in the rest of 600 ms.
    assert.ok(heads.length >= 6 + 6, `${heads.length} HEADs`);
    assert.equal(heads[0].url, "http://127.0.0.1:1/mqtt/client.js");
    assert.equal(heads[0].init.mode, "no-cors", "an answer a page of another origin may not read still counts");
    assert.equal(heads[0].init.cache, "no-store");
  });

  test("a HEAD answered ends them", async () => {
    const heads = await headsWhileReconnecting((n) => (n < 6 + 2 ? "silent" : "answered"));
    assert.equal(heads.length, 6 + 3);
  });

  test("a HEAD that fails at once ends them: no silent connection took it", async () => {
    const heads = await headsWhileReconnecting((n) => (n < 6 + 1 ? "silent" : "refused"));
    assert.equal(heads.length, 6 + 2);
  });
});

describe("heartbeat", () => {
  function clocked(heartbeat) {
    let now = 1_000_000;
    const log = [];
    const hb = new Heartbeat({ ping: () => log.push(["ping", now]), dead: () => log.push(["dead", now]), now: () => now });
    hb.start(heartbeat);
    hb.stop(); // ticks are driven by hand below
    const advance = (ms, step = hb.tickMs) => {
      for (let left = ms; left > 0; left -= step) {
        now += Math.min(step, left);
        hb.tick();
      }
    };
    return { hb, log, advance, setNow: (n) => (now = n), get now() { return now; } };
  }

  test("PING when nothing was sent for a heartbeat period", () => {
    const c = clocked(1000);
    c.advance(900);
    assert.deepEqual(c.log, []);
    c.advance(100);
    assert.equal(c.log.length, 1);
    assert.equal(c.log[0][0], "ping");
    c.hb.sent();
    c.advance(500);
    assert.equal(c.log.length, 1);
  });

  test("dead after 2 × heartbeat + 5000 ms without receiving", () => {
    const c = clocked(1000);
    c.advance(6750);
    assert.ok(!c.log.some(([k]) => k === "dead"));
    c.advance(250);
    assert.ok(c.log.some(([k]) => k === "dead"));
  });

  test("receiving keeps it alive", () => {
    const c = clocked(1000);
    for (let i = 0; i < 20; i++) {
      c.advance(1000);
      c.hb.received();
    }
    assert.ok(!c.log.some(([k]) => k === "dead"));
  });

  test("a late tick (throttled tab, sleeping laptop) gives the peer a grace period", () => {
    const c = clocked(1000);
    c.advance(500);
    c.setNow(c.now + 60_000); // the page slept a minute
    c.hb.tick();
    assert.ok(!c.log.some(([k]) => k === "dead"), "not dead on wake-up");
    assert.equal(c.log.at(-1)[0], "ping", "probes at once");
    c.advance(5750);
    assert.ok(!c.log.some(([k]) => k === "dead"));
    c.advance(500);
    assert.ok(c.log.some(([k]) => k === "dead"), "dead if nothing comes after the grace period");
  });

  test("a late tick lets the session check the connection, whose PING stands for the tick's", () => {
    let now = 1_000_000;
    const log = [];
    let checks = true;
    const hb = new Heartbeat({
      ping: () => log.push("ping"),
      dead: () => log.push("dead"),
      woke: () => (log.push("woke"), checks),
      now: () => now,
    });
    hb.start(1000);
    hb.stop();
    now += 250;
    hb.tick();
    assert.deepEqual(log, [], "on time: no wake-up");
    now += 60_000;
    hb.tick();
    assert.deepEqual(log, ["woke"], "the check pings");
    checks = false; // no check (an older gateway): the tick probes itself
    now += 60_000;
    hb.tick();
    assert.deepEqual(log, ["woke", "woke", "ping"]);
  });

  describe("stalls: steady traffic that stops", () => {
    function stallClock() {
      let now = 1_000_000;
      const stalls = [];
      const hb = new Heartbeat({ ping: () => {}, dead: () => stalls.push(["dead", now]), stalled: () => stalls.push(now), now: () => now });
      hb.start(20000); // ticks every second
      hb.stop();
      const run = (ms, every = 0) => {
        for (let t = 0; t < ms; t += 100) {
          now += 100;
          if (every && t % every === 0) hb.received();
          if (t % 1000 === 900) hb.tick();
        }
      };
      return { hb, stalls, run, get now() { return now; } };
    }

    test("a silence of STALL_MIN after units every 100 ms is a stall, signalled once", () => {
      const c = stallClock();
      c.run(10000, 100); // 10 s of traffic
      const silent = c.hb.lastReceived;
      c.run(4000);
      assert.deepEqual(c.stalls, [], "4 s of silence is no stall");
      c.run(15000);
      assert.equal(c.stalls.length, 1, "once for one silence");
      assert.ok(c.stalls[0] - silent >= STALL_MIN && c.stalls[0] - silent <= STALL_MIN + 1000, `at ${c.stalls[0] - silent} ms`);
    });

    test("sparser traffic waits four of its gaps; an idle session, the deadline alone", () => {
      const c = stallClock();
      c.run(60000, 3000); // a unit every 3 s
      const silent = c.hb.lastReceived;
      c.run(8000);
      assert.deepEqual(c.stalls, [], "11 s is less than four gaps of 3 s");
      c.run(2000);
      assert.equal(c.stalls.length, 1);
      assert.ok(c.stalls[0] - silent >= 12000, `at ${c.stalls[0] - silent} ms`);

      const idle = stallClock();
      idle.run(120000, 20000); // the gateway's PINGs only
      idle.run(45000);
      assert.ok(idle.stalls.length > 0 && idle.stalls.every((x) => x[0] === "dead"), "an idle session never stalls: the deadline comes first");
    });

    test("a burst (a subscription's answers and retained messages) then quiet is no stall", () => {
      const c = stallClock();
      c.run(200, 100);
      for (let i = 0; i < 10; i++) c.hb.received();
      c.run(30000);
      assert.deepEqual(c.stalls, []);
      c.run(5000, 100); // then steady traffic, which stops
      c.run(6000);
      assert.equal(c.stalls.length, 1);
    });

    test("a failed check doubles the wait for the next, up to 8 times, until one is answered or traffic is steady again", () => {
      const c = stallClock();
      c.run(10000, 100);
      for (const [ok, want] of [[false, 2], [false, 4], [false, 8], [false, 8], [true, 1]]) {
        c.hb.stallChecked(ok);
        assert.equal(c.hb.stallAfter / Math.max(STALL_MIN, 4 * c.hb.gap), want);
      }
      c.hb.stallChecked(false);
      const silent = c.hb.lastReceived;
      c.run(12000);
      assert.equal(c.stalls.length, 1);
      assert.ok(c.stalls[0] - silent >= 2 * STALL_MIN, `the second waits twice as long: ${c.stalls[0] - silent} ms`);
      c.hb.stallChecked(false);
      c.run(1500, 100); // a burst after the rebind is not steady traffic
      assert.equal(c.hb.stallBackoff, 4);
      c.run(3000, 100); // steady again: the cause is mended
      assert.equal(c.hb.stallBackoff, 1);
    });

    test("a late tick (the process slept) is no stall: the wake-up check covers it", () => {
      const c = stallClock();
      c.run(10000, 100);
      let now = c.now;
      c.hb.now = () => now;
      now += 60_000;
      c.hb.tick();
      assert.deepEqual(c.stalls, []);
    });
  });
});

test("a relative URL outside a page is a TypeError at the call, not an unreachable gateway", async () => {
  await assert.rejects(openSession("/mqtt"), (err) => err instanceof TypeError && /absolute one, such as https:\/\/host\/mqtt/.test(err.message));
});
