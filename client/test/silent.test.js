// A connection a network switch left silent (a phone that moved from Wi-Fi to
// cellular: the old path just stops, nothing is closed) is found out by a connection
// check in seconds, not by the heartbeat deadline (2 × 20 s + 5 s here), and the
// session rebinds on a new connection with nothing lost, on each transport.

import assert from "node:assert/strict";
import { test } from "node:test";

import { gatewayForFile, sessionThroughProxy } from "./support/env.js";
import { listeningClient, mosquittoPub, unique } from "./support/mqtt.js";
import { waitFor } from "./support/wait.js";

const env = gatewayForFile(); // the default heartbeat, 20 s

for (const transport of ["websocket", "streaming", "polling"]) {
  test(`${transport}: a check finds a silent connection dead and the session rebinds, nothing lost`, async () => {
    const events = [];
    const { proxy, session: s } = await sessionThroughProxy(env, {
      transport,
      onReconnectionStart: () => events.push("start"),
      onReconnectionComplete: (i) => events.push(i),
    });
    assert.equal(s.info.ping_answer, "1", "the gateway says it answers a check");
    const firstId = s.id;
    const c = await listeningClient(s);
    const topic = unique("silent");
    await c.subscribe(`${topic}/#`, { qos: 1 });

    // A working connection answers, and stays.
    assert.equal(await s.checkConnection({ timeout: 3000 }), true);
    assert.deepEqual(events, []);

    proxy.silence();
    await mosquittoPub(env.mosquitto.port, `${topic}/during`, ["-q", "1", "-m", "sent while silent"]);
    const connections = proxy.connections;
    assert.equal(await s.checkConnection({ timeout: 1000 }), false);
    // Within 30 s: the heartbeat alone would take 45 s to notice.
    await waitFor(() => events.length === 2, { timeout: 30000, what: "the session back" });
    assert.deepEqual(events, ["start", { messagesMayHaveBeenLost: false }]);
    assert.equal(s.id, firstId, "the same session, rebound");
    assert.ok(proxy.connections > connections, "on a new connection");
    const m = await waitFor(() => c.received[0], { what: "the message published while silent" });
    assert.equal(m.payloadString, "sent while silent");
    assert.equal(await s.checkConnection({ timeout: 3000 }), true);
  });
}
