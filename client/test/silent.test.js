// A connection a network switch left silent (a phone that moved from Wi-Fi to
// cellular: the old path just stops, nothing is closed) is found out by a connection
// check in seconds, not by the heartbeat deadline (2 × 20 s + 5 s here), and the
// session rebinds on a new connection with nothing lost, on each transport: a check
// the application asks for, or, with nobody to report the switch, the one the client
// makes itself when steady traffic stops.

import assert from "node:assert/strict";
import { test } from "node:test";

import { openSession } from "../src/client.js";
import { gatewayForFile, watchedSessionThroughProxy } from "./support/env.js";
import { listeningClient, mosquittoPub, unique } from "./support/mqtt.js";
import { waitFor } from "./support/wait.js";

const env = gatewayForFile(); // the default heartbeat, 20 s

for (const transport of ["websocket", "streaming", "polling"]) {
  test(`${transport}: a check finds a silent connection dead and the session rebinds, nothing lost`, async () => {
    const { proxy, session: s, events } = await watchedSessionThroughProxy(env, { transport });
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

for (const transport of ["websocket", "streaming", "polling"]) {
  test(`${transport}: steady traffic that stops, with nothing reported, is checked, and the session rebinds, nothing lost`, async (t) => {
    const { proxy, session: s, events } = await watchedSessionThroughProxy(env, { transport });
    const firstId = s.id;
    const c = await listeningClient(s);
    const topic = unique("stall");
    await c.subscribe(`${topic}/#`, { qos: 1 });

    // A sensor's steady values, from a session of its own straight to the gateway.
    const sensor = await openSession(`http://127.0.0.1:${env.gateway.port}/mqtt`, { transport: "websocket" });
    env.cleanups.push(() => sensor.close());
    const pub = sensor.createClient("main");
    await pub.connect();
    const ticker = setInterval(() => pub.send(`${topic}/value`, "21.5", 0), 100);
    try {
      await waitFor(() => c.received.length >= 40, { timeout: 10000, what: "4 s of steady values" });
      proxy.silence();
      const silentAt = Date.now();
      await pub.publish(`${topic}/during`, "sent while silent", 1);
      // The stall is 5 s of silence, its check 5 s more; the heartbeat deadline is 45 s.
      await waitFor(() => events.length === 2, { timeout: 25000, what: "the session back" });
      const took = Date.now() - silentAt;
      t.diagnostic(`rebound ${took} ms after the path went silent`);
      assert.deepEqual(events, ["start", { messagesMayHaveBeenLost: false }]);
      assert.equal(s.id, firstId, "the same session, rebound");
      const m = await waitFor(() => c.received.find((r) => r.topic === `${topic}/during`), { what: "the message published while silent" });
      assert.equal(m.payloadString, "sent while silent");
      const before = c.received.length;
      await waitFor(() => c.received.length > before + 10, { what: "steady values again" });
      assert.ok(took < 20000, `rebound ${took} ms after the path went silent`);
    } finally {
      clearInterval(ticker);
    }
  });
}
