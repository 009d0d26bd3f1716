// Nothing lost, nothing twice: 2,000 numbered QoS 0 messages at 200/s while a proxy
// between the client and the gateway cuts every connection every 2 s, on each
// transport. (About 10 s per transport, by nature; keep this file to these.)

import assert from "node:assert/strict";
import { test } from "node:test";

import { gatewayForFile, watchedSessionThroughProxy } from "./support/env.js";
import { listeningClient, publishNumbered, unique } from "./support/mqtt.js";
import { waitFor } from "./support/wait.js";

const COUNT = 2000;
const RATE = 200;

// All messages share one topic: by default the gateway conflates QoS 0 per topic
// once 64 frames wait for a client (PROTOCOL.md, Throttling), which a slow reconnection
// may do. This test is about recovery without loss, so conflation starts far later.
// A short heartbeat: a long poll that rebinds after the last cut, when nothing is
// published any more, gets its BOUND after a heartbeat (20 s by default).
const env = gatewayForFile({ extra: "conflate_after 5000\nheartbeat 2s" });

for (const transport of ["websocket", "streaming", "polling"]) {
  test(`${transport}: ${COUNT} messages through a cut every 2 s arrive all, in order, once`, async () => {
    const { proxy, session: s, events } = await watchedSessionThroughProxy(env, { transport });
    const firstId = s.id;
    const c = await listeningClient(s);
    const topic = unique("cuts");
    await c.subscribe(topic, { qos: 0 });

    let cuts = 0;
    const cutter = setInterval(() => {
      proxy.cut();
      cuts++;
    }, 2000);
    try {
      await publishNumbered(env.mosquitto.port, topic, { count: COUNT, rate: RATE });
      await waitFor(() => c.received.length >= COUNT, { timeout: 20000, interval: 50, what: `${COUNT} messages (got ${c.received.length})` });
    } finally {
      clearInterval(cutter);
    }
    await new Promise((r) => setTimeout(r, 100)); // duplicates would show up here
    const got = c.received.map((m) => Number(m.payloadString));
    const want = Array.from({ length: COUNT }, (_, i) => i);
    assert.deepEqual(got, want);
    assert.ok(cuts >= 4, `${cuts} cuts`);
    assert.ok(events.filter((e) => e === "start").length >= 4, "each cut was noticed and recovered");
    assert.ok(events.every((e) => e === "start" || e.messagesMayHaveBeenLost === false));
    assert.equal(s.id, firstId, "the same session all along");
    await waitFor(() => s.state === "open", { timeout: 5000, what: "the session back after the last cut" });
    assert.equal(s.transport, transport);
  });
}
