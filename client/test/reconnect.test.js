// Connect option `reconnect` (as in Paho): a dedicated client whose broker goes away
// (LOST 4041) connects again by itself and subscribes again, once the broker is back.
// Real parts only: a Caddy with the gateway and a Mosquitto that is stopped and
// started again on the same port. Ports come from 26000-26999 (Mosquitto must come
// back where the gateway expects it).

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, afterEach, before, describe, test } from "node:test";

import { ErrorCode, openSession } from "../src/client.js";
import { findProgram, freePortIn, run, startCaddy, startMosquitto } from "./support/env.js";
import { mosquittoPub, unique } from "./support/mqtt.js";
import { waitFor } from "./support/wait.js";

const PORTS = [26000, 26999];

let brokerPort;
let mosquitto; // null while the broker is down
let gateway;
let session;
let gatewayUrl;

async function startBroker(settings = "") {
  mosquitto = await startMosquitto({ port: brokerPort, settings });
}

async function stopBroker() {
  await mosquitto.stop();
  mosquitto = null;
}

/** Whether a client with this id connected to the running broker since it started (Mosquitto logs each one). */
const brokerSawClient = (id) => mosquitto.output().includes(` as ${id} (`);

before(async () => {
  brokerPort = await freePortIn(...PORTS);
  await startBroker();
  const port = await freePortIn(...PORTS);
  // A short connect timeout: a reconnection attempt to the stopped broker fails after
  // 2 s instead of the default 10 s.
  gateway = await startCaddy(
    `http://127.0.0.1:${port} {
\tmqtt_gateway /mqtt/* {
\t\tbroker main mqtt://127.0.0.1:${brokerPort} {
\t\t\tconnect_timeout 2s
\t\t}
\t}
}`,
    { port, probe: "/mqtt/client.js" },
  );
  gatewayUrl = `http://127.0.0.1:${port}/mqtt`;
  session = await openSession(gatewayUrl);
});

afterEach(async () => {
  if (!mosquitto) await startBroker();
});

after(async () => {
  await session?.close().catch(() => {});
  await gateway?.stop().catch(() => {});
  await mosquitto?.stop().catch(() => {});
});

/**
 * A dedicated client that records its callbacks in `events` and its messages in
 * `received`.
 */
function recordingClient() {
  const id = `rc-${randomBytes(4).toString("hex")}`;
  const c = session.createClient("main", id);
  c.events = [];
  c.received = [];
  c.onConnectionLost = (e) => c.events.push(["lost", e.errorCode]);
  c.onReconnectionStart = () => c.events.push(["start"]);
  c.onReconnectionComplete = (info) => c.events.push(["complete", info]);
  c.onMessageArrived = (m) => c.received.push(m);
  return c;
}

/** Stops the broker and waits for the client to hear of it. */
async function breakBroker(c) {
  await stopBroker();
  await waitFor(() => c.events.some(([k]) => k === "lost"), { timeout: 10000, what: "onConnectionLost" });
  assert.deepEqual(c.events[0], ["lost", ErrorCode.broker_unavailable]);
}

/**
 * Waits long enough for a reconnection to have happened if one were going to: the
 * first attempt comes at most 1 s after the loss and connects within a few ms to a
 * broker that is up.
 */
const longerThanFirstAttempt = () => new Promise((r) => setTimeout(r, 3000));

describe("connect({reconnect})", () => {
  test("reconnect: true connects again after a broker restart and subscribes again, with no help from the app", async () => {
    const c = recordingClient();
    // Paho's onConnected: after connect() (false, after onSuccess) and after each
    // reconnection (true, once the subscriptions are back).
    const connected = [];
    c.onConnected = (reconnect, uri) => connected.push([reconnect, uri, c.events.length]);
    const topic = unique("reconnect");
    let succeeded = false;
    await c.connect({ reconnect: true, cleanSession: true, keepAliveInterval: 30, onSuccess: () => (succeeded = connected.length === 0) });
    assert.ok(succeeded, "onSuccess before onConnected");
    assert.deepEqual(connected, [[false, gatewayUrl, 0]]);
    assert.equal(await c.subscribe(`${topic}/#`, { qos: 1 }), 1);
    await mosquittoPub(brokerPort, `${topic}/before`, ["-q", "1", "-m", "before"]);
    await waitFor(() => c.received.length === 1, { what: "the message before the outage" });

    await breakBroker(c);
    assert.deepEqual(c.events, [["lost", 4041], ["start"]]);
    assert.equal(c.isConnected, false);
    assert.equal(c.state, "connecting");
    // As for any client that is not connected (Paho throws "not connected").
    await assert.rejects(c.publish(`${topic}/x`, "while away"), { errorCode: ErrorCode.bad_request, errorMessage: "client not connected" });
    await assert.rejects(c.subscribe(`${topic}/other`), { errorCode: ErrorCode.bad_request });

    await startBroker();
    await waitFor(() => c.events.some(([k]) => k === "complete"), { timeout: 20000, what: "onReconnectionComplete" });
    assert.deepEqual(c.events, [["lost", 4041], ["start"], ["complete", { messagesMayHaveBeenLost: true }]]);
    assert.deepEqual(connected.at(-1), [true, gatewayUrl, 3], "onConnected(true), after onReconnectionComplete");
    assert.equal(connected.length, 2);
    assert.equal(c.isConnected, true);
    assert.ok(brokerSawClient(c.clientId), "the client connected to the restarted broker");

    // The subscription is back, at the QoS asked (a QoS 0 resubscription would
    // deliver this message at QoS 0).
    await mosquittoPub(brokerPort, `${topic}/after`, ["-q", "1", "-m", "after"]);
    const m = await waitFor(() => c.received[1], { timeout: 5000, what: "a message published after the restart" });
    assert.deepEqual([m.destinationName, m.payloadString, m.qos], [`${topic}/after`, "after", 1]);

    // And the client works as before.
    await c.publish(`${topic}/own`, "own", 1);
    await waitFor(() => c.received[2], { what: "its own publish" });
    await c.disconnect();
    assert.deepEqual(c.events.at(-1), ["lost", 0]);
  });

  test("reconnect: true goes on through the broker's refusals (4042) and connects once the password works again", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "mqttgw-passwords-"));
    await fs.chmod(dir, 0o755); // Mosquitto started as root reads it as its own user
    const file = path.join(dir, "passwords");
    const setPassword = async (password) => {
      const r = await run(findProgram("mosquitto_passwd"), ["-b", "-c", file, "rc-user", password]);
      assert.equal(r.code, 0, r.stderr);
      await fs.chmod(file, 0o644);
    };
    const withPasswords = `password_file ${file}\n`;
    try {
      await setPassword("right");
      await stopBroker();
      await startBroker(withPasswords);
      const c = recordingClient();
      const topic = unique("refused");
      await c.connect({ reconnect: true, cleanSession: true, userName: "rc-user", password: "right" });
      await c.subscribe(`${topic}/#`, { qos: 1 });

      // The broker comes back with another password for the client's user (rotated,
      // say, before the client's was), and refuses its attempts.
      await breakBroker(c);
      await setPassword("rotated");
      await startBroker(withPasswords);
      await waitFor(() => mosquitto.output().includes("not authorised"), { timeout: 20000, what: "an attempt refused" });
      await longerThanFirstAttempt();
      assert.equal(c.state, "connecting", "still reconnecting after the refusal");
      assert.deepEqual(c.events, [["lost", 4041], ["start"]], "no second onConnectionLost");

      // The client's password works again: it comes back by itself.
      await stopBroker();
      await setPassword("right");
      await startBroker(withPasswords);
      await waitFor(() => c.events.some(([k]) => k === "complete"), { timeout: 40000, what: "onReconnectionComplete" });
      assert.deepEqual(c.events, [["lost", 4041], ["start"], ["complete", { messagesMayHaveBeenLost: true }]]);
      await mosquittoPub(brokerPort, `${topic}/after`, ["-q", "1", "-m", "after"]);
      const m = await waitFor(() => c.received[0], { timeout: 5000, what: "a message after the refusals" });
      assert.equal(m.payloadString, "after");
      await c.disconnect();
    } finally {
      if (mosquitto) await stopBroker();
      await startBroker(); // as the other tests expect it
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  test("reconnect: true keeps trying while the broker is down (attempts fail after connect_timeout)", async () => {
    const c = recordingClient();
    const topic = unique("reconnect-late");
    await c.connect({ reconnect: true });
    await c.subscribe(topic, { maxFrequency: 5 });
    await breakBroker(c);
    // Past the first attempt (≤ 1 s) and its connect timeout (2 s): it failed, quietly.
    await new Promise((r) => setTimeout(r, 3500));
    assert.deepEqual(c.events, [["lost", 4041], ["start"]]);
    assert.equal(c.state, "connecting");
    await startBroker();
    await waitFor(() => c.isConnected && c.events.length === 3, { timeout: 20000, what: "the reconnection" });
    await mosquittoPub(brokerPort, topic, ["-m", "late"]);
    const m = await waitFor(() => c.received[0], { timeout: 5000, what: "a message after the late restart" });
    assert.equal(m.payloadString, "late");
    await c.disconnect();
  });

  test("without reconnect (the default) the client stays disconnected", async () => {
    const c = recordingClient();
    const topic = unique("no-reconnect");
    await c.connect();
    await c.subscribe(topic);
    await breakBroker(c);
    assert.equal(c.state, "disconnected");
    await startBroker();
    await longerThanFirstAttempt();
    await mosquittoPub(brokerPort, topic, ["-m", "unseen"]);
    await new Promise((r) => setTimeout(r, 300));
    assert.deepEqual(c.events, [["lost", 4041]]);
    assert.equal(c.state, "disconnected");
    assert.equal(c.received.length, 0);
    assert.equal(brokerSawClient(c.clientId), false, "the client must not connect to the restarted broker");
  });

  test("disconnect() during the backoff stops reconnecting", async () => {
    const c = recordingClient();
    await c.connect({ reconnect: true });
    await c.subscribe(unique("stopped"));
    await breakBroker(c);
    assert.equal(c.state, "connecting");
    await c.disconnect(); // the first attempt comes 0.5-1 s after the loss: this is before it
    assert.equal(c.state, "disconnected");
    await startBroker();
    await longerThanFirstAttempt();
    // No second onConnectionLost (the app heard of the loss already), no completion.
    assert.deepEqual(c.events, [["lost", 4041], ["start"]]);
    assert.equal(c.state, "disconnected");
    assert.equal(brokerSawClient(c.clientId), false, "the client must not connect to the restarted broker");
    // The application can connect again itself.
    await c.connect();
    assert.equal(c.isConnected, true);
    await c.disconnect();
  });

  test("disconnect() inside onConnectionLost stops it before it starts, as in Paho", async () => {
    const c = recordingClient();
    await c.connect({ reconnect: true });
    c.onConnectionLost = (e) => {
      c.events.push(["lost", e.errorCode]);
      c.disconnect();
    };
    await breakBroker(c);
    await startBroker();
    await longerThanFirstAttempt();
    assert.deepEqual(c.events, [["lost", 4041]]);
    assert.equal(c.state, "disconnected");
    assert.equal(brokerSawClient(c.clientId), false);
  });

  test("a shared client accepts reconnect and is restored by the gateway, as without it", async () => {
    const c = session.createClient("main");
    const topic = unique("shared");
    const events = [];
    c.onConnectionLost = (e) => events.push(["lost", e.errorCode]);
    c.onBrokerUnavailable = (e) => events.push(["unavailable", e.errorCode]);
    c.onBrokerAvailable = () => events.push(["available"]);
    const received = [];
    c.onMessageArrived = (m) => received.push(m);
    await c.connect({ reconnect: true });
    await c.subscribe(topic);
    await stopBroker();
    await waitFor(() => events.length === 1, { timeout: 10000, what: "onBrokerUnavailable" });
    await startBroker();
    await waitFor(() => events.length === 2, { timeout: 20000, what: "onBrokerAvailable" });
    assert.deepEqual(events, [["unavailable", 4041], ["available"]]);
    assert.equal(c.isConnected, true);
    await mosquittoPub(brokerPort, topic, ["-m", "shared"]);
    await waitFor(() => received[0], { timeout: 5000, what: "a message on the restored shared connection" });
    await c.disconnect();
  });

  test("reconnect must be a boolean", () => {
    const c = session.createClient("main", "rc-type");
    assert.throws(() => c.connect({ reconnect: "yes" }), TypeError);
  });
});
