// Publishes caught by the loss of their session. The gateway carried them out, but
// their RESULTs went with the session: the client cannot know whether the broker has
// them. Sending them all again (as the client did) delivered QoS 0 and QoS 2
// messages twice. Now QoS 1 goes again (at least once) and QoS 0 and 2 fail with
// 4012 "may or may not have been delivered". Real parts: Mosquitto, the gateway, a
// proxy that drops what the gateway sends, so that the session's replay window
// overflows and its BIND is answered 4012.

import assert from "node:assert/strict";
import { test } from "node:test";

import { findProgram, gatewayForFile, sessionThroughProxy, start } from "./support/env.js";
import { publishNumbered, unique } from "./support/mqtt.js";
import { waitFor } from "./support/wait.js";

const env = gatewayForFile({ extra: "replay_frames 4" });

test("a session lost with publishes unanswered: QoS 1 goes again, QoS 0 and 2 fail with 4012", async () => {
  const topic = unique("lost");
  const sub = start(findProgram("mosquitto_sub"), ["-h", "127.0.0.1", "-p", String(env.mosquitto.port), "-t", `${topic}/#`, "-q", "2"]);
  env.cleanups.push(async () => sub.kill());
  let seen = "";
  sub.child.stdout.on("data", (c) => (seen += c));
  const count = (payload) => seen.split("\n").filter((l) => l === payload).length;

  const completions = [];
  const { proxy, session: s } = await sessionThroughProxy(env, {
    transport: "websocket",
    onReconnectionComplete: (info) => completions.push(info),
  });
  const c = s.createClient("main");
  const notDelivered = [];
  c.onMessageNotDelivered = (m, err) => notDelivered.push([m.payloadString, err.errorCode]);
  await c.connect();
  await c.subscribe(`${topic}/busy`, { qos: 0 });
  await waitFor(
    async () => {
      await c.publish(`${topic}/ready`, "ready", 1);
      return count("ready") > 0;
    },
    { timeout: 10000, interval: 200, what: "mosquitto_sub to receive" },
  );

  // The gateway's answers go nowhere from here on.
  proxy.blackhole = true;
  const outcomes = [0, 1, 2].map((qos) =>
    c.publish(`${topic}/q${qos}`, `q${qos}`, qos).then(
      () => "delivered",
      (err) => err.errorCode,
    ),
  );
  await waitFor(() => count("q0") === 1 && count("q1") === 1 && count("q2") === 1, { timeout: 5000, what: "the broker to get all three" });
  // More frames than the replay window holds, so that the session cannot resume.
  await publishNumbered(env.mosquitto.port, `${topic}/busy`, { count: 8, rate: 1000 });
  await waitFor(() => proxy.discarded > 100, { timeout: 5000, what: "the messages sent into the blackhole" });
  proxy.cut();
  proxy.blackhole = false;

  await waitFor(() => completions.length === 1, { timeout: 10000, what: "a fresh session" });
  assert.equal(completions[0].messagesMayHaveBeenLost, true);
  assert.deepEqual(await Promise.all(outcomes), [4012, "delivered", 4012]);
  assert.deepEqual(notDelivered, [
    ["q0", 4012],
    ["q2", 4012],
  ]);
  await waitFor(() => count("q1") === 2, { timeout: 5000, what: "the QoS 1 publish again" });
  await new Promise((r) => setTimeout(r, 300)); // copies of the others would show up here
  assert.deepEqual([count("q0"), count("q1"), count("q2")], [1, 2, 1]);
});
