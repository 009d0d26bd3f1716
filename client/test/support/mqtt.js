// Helpers the integration tests share: clients that record what they receive, and
// Mosquitto's command-line tools on the other side.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";

import { Message } from "../../src/client.js";
import { findProgram, run, start } from "./env.js";
import { waitFor } from "./wait.js";

/** A topic no other test uses. */
export const unique = (prefix) => `${prefix}/${randomBytes(4).toString("hex")}`;

/** A connected shared-connection client that records what it receives in `received`. */
export async function listeningClient(session, broker = "main") {
  const c = session.createClient(broker);
  c.received = [];
  c.onMessageArrived = (m) => c.received.push(m);
  await c.connect();
  return c;
}

/** Publishes with mosquitto_pub to the broker on `port`. */
export async function mosquittoPub(port, topic, args) {
  const r = await run(findProgram("mosquitto_pub"), ["-h", "127.0.0.1", "-p", String(port), "-t", topic, ...args]);
  assert.equal(r.code, 0, `mosquitto_pub failed: ${r.stderr}`);
}

/**
 * Publishes `payload` from `client` until a mosquitto_sub on the broker has received
 * it (mosquitto_sub cannot say when its subscription is in place); returns what
 * mosquitto_sub printed.
 * @returns {Promise<Buffer>}
 */
export async function publishUntilSeen(client, port, topic, payload) {
  const sub = start(findProgram("mosquitto_sub"), ["-h", "127.0.0.1", "-p", String(port), "-t", topic, "-C", "1", "-N"]);
  try {
    await waitFor(
      async () => {
        if (sub.exited()) return true;
        const m = new Message(payload);
        m.destinationName = topic;
        m.qos = 1;
        await client.send(m);
        return sub.exited();
      },
      { timeout: 10000, interval: 100, what: "mosquitto_sub to receive" },
    );
    const r = await sub.done;
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  } finally {
    sub.kill();
  }
}

/**
 * Publishes `count` numbered messages ("0", "1", ...) on `topic` at `rate` per second
 * (QoS `qos`, 0 by default) through one `mosquitto_pub -l` (one process per message
 * would be too slow); `line(i)` may give each line another content. Resolves when
 * mosquitto_pub has sent them all and exited.
 */
export async function publishNumbered(port, topic, { count, rate, line = String, qos = 0 }) {
  const pub = start(findProgram("mosquitto_pub"), ["-h", "127.0.0.1", "-p", String(port), "-t", topic, "-l", "-q", String(qos)], {
    stdin: true,
  });
  try {
    const tick = 20; // ms
    const perTick = (rate * tick) / 1000;
    const t0 = Date.now();
    let sent = 0;
    while (sent < count) {
      // Catch up with the schedule (timers run late on a busy machine), in order.
      const due = Math.min(count, Math.floor(((Date.now() - t0) / tick + 1) * perTick));
      let chunk = "";
      for (; sent < due; sent++) chunk += `${line(sent)}\n`;
      if (chunk) pub.child.stdin.write(chunk);
      await new Promise((r) => setTimeout(r, tick));
    }
    pub.child.stdin.end();
    const r = await pub.done;
    assert.equal(r.code, 0, `mosquitto_pub -l failed: ${r.stderr}`);
  } finally {
    pub.kill();
  }
}
