// A dedicated client's QoS 1 stream goes on after its connection dies with an ACK in
// it. ACKs are not numbered requests, so nothing else would send a lost one again;
// the gateway must hand the broker its PUBACKs in order, so the broker's window of
// unacknowledged messages filled behind the lost one and the client got nothing more,
// while still "connected". The client now sends its recent ACKs again after it
// rebinds (PROTOCOL.md, Recovery). Real parts: Mosquitto, the gateway, a proxy that
// drops what the client sends and then cuts the connection.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";

import { gatewayForFile, sessionThroughProxy } from "./support/env.js";
import { mosquittoPub, publishNumbered, unique } from "./support/mqtt.js";
import { waitFor } from "./support/wait.js";

// More than the broker lets wait for acknowledgements (Mosquitto: 20; the gateway
// asks for at most 64), so a stream stuck behind a lost ACK cannot deliver them all.
const COUNT = 200;

const env = gatewayForFile();

for (const transport of ["websocket", "streaming", "polling"]) {
  test(`${transport}: an ACK lost with the connection does not stop a dedicated QoS 1 stream`, async () => {
    let rebinds = 0;
    const { proxy, session: s } = await sessionThroughProxy(env, {
      transport,
      onReconnectionComplete: (info) => {
        assert.equal(info.messagesMayHaveBeenLost, false, "the same session, resumed");
        rebinds++;
      },
    });
    const c = s.createClient("main", `acks-${randomBytes(4).toString("hex")}`);
    const received = [];
    c.onMessageArrived = (m) => {
      received.push(m.payloadString);
      // The client acknowledges once this returns: into a connection that drops it.
      if (m.payloadString === "first") proxy.deaf = true;
    };
    await c.connect();
    const topic = unique("acks");
    await c.subscribe(topic, { qos: 1 });

    await mosquittoPub(env.mosquitto.port, topic, ["-q", "1", "-m", "first"]);
    await waitFor(() => received.length === 1, { timeout: 5000, what: "the first message" });
    await waitFor(() => proxy.discarded > 0, { timeout: 2000, what: "the ACK sent and dropped" });
    proxy.cut();
    proxy.deaf = false;
    await waitFor(() => rebinds === 1 && s.state === "open", { timeout: 10000, what: "the session resumed" });

    await publishNumbered(env.mosquitto.port, topic, { count: COUNT, rate: 1000, qos: 1 });
    await waitFor(() => received.length >= COUNT + 1, {
      timeout: 10000,
      interval: 50,
      what: `${COUNT} more messages (got ${received.length - 1})`,
    });
    await new Promise((r) => setTimeout(r, 100)); // duplicates would show up here
    assert.deepEqual(received, ["first", ...Array.from({ length: COUNT }, (_, i) => String(i))]);
    assert.equal(c.state, "connected");
  });
}
