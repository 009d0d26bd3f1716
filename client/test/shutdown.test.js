// Stopping the gateway's Caddy with SIGTERM (a restart, `docker stop`, systemd)
// while HTTP streaming and long-polling clients are connected: Caddy shuts down
// gracefully, waiting for requests in flight with no end by default, and a stream or a
// waiting poll is one. The gateway ends them as the shutdown starts, so Caddy exits at
// once and cleanly, instead of when a supervisor kills it (which fires the dedicated
// clients' wills).

import assert from "node:assert/strict";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { Message, openSession } from "../src/client.js";
import { FrameType } from "../src/codec.js";
import { caddyBinary, findProgram, freePort, spawnChild, start, startMosquitto, stopChild, waitForListen } from "./support/env.js";
import { publishNumbered, unique } from "./support/mqtt.js";
import { tapped } from "./support/tap.js";
import { waitFor } from "./support/wait.js";

let mosquitto;

before(async () => {
  mosquitto = await startMosquitto();
});

after(async () => {
  await mosquitto?.stop().catch(() => {});
});

/** A gateway whose Caddy process the test stops itself. */
async function gatewayProcess() {
  const port = await freePort();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "mqttgw-shutdown-"));
  const file = path.join(dir, "Caddyfile");
  await fs.writeFile(
    file,
    `{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n}\nhttp://127.0.0.1:${port} {\n\tmqtt_gateway /mqtt/* {\n\t\tbroker main mqtt://127.0.0.1:${mosquitto.port}\n\t\theartbeat 60s\n\t}\n}\n`,
  );
  const env = { ...process.env, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir, HOME: dir };
  const child = spawnChild(await caddyBinary(), ["run", "--config", file, "--adapter", "caddyfile"], { env, cwd: dir });
  await waitForListen(port, child, "caddy");
  return { child, base: `http://127.0.0.1:${port}/mqtt`, dir };
}

for (const transport of ["streaming", "polling"]) {
  test(`${transport}: SIGTERM stops the gateway at once, not when the held response ends`, async () => {
    const gw = await gatewayProcess();
    const s = await openSession(gw.base, { transport });
    try {
      await s.createClient("main").connect();
      // The stream, or a poll waiting up to the 60 s heartbeat, is held in the gateway.
      await new Promise((r) => setTimeout(r, 300));
      gw.child.kill("SIGTERM");
      const outcome = await Promise.race([
        gw.child.exited.then((code) => ({ code })),
        new Promise((r) => setTimeout(() => r({ code: "still running after 10 s" }), 10000)),
      ]);
      assert.equal(outcome.code, 0, `caddy: ${outcome.code}\n${gw.child.output().slice(-2000)}`);
    } finally {
      await s.close().catch(() => {});
      await stopChild(gw.child, "SIGKILL");
      await fs.rm(gw.dir, { recursive: true, force: true });
    }
  });
}

// A stopping Caddy exits as soon as the gateway's cleanup returns. The gateway used to
// return with CLOSE frames still queued, so WebSocket sessions were cut without one (up
// to 140 of 200 in a review), and with dedicated connections not yet disconnected, so
// the broker published their wills. Now the dedicated connections end first, with a
// clean DISCONNECT, and the CLOSE frames are written before the gateway lets Caddy go.
test("websocket: SIGTERM under traffic ends every session with CLOSE 4090 and fires no will", async () => {
  const gw = await gatewayProcess();
  const busy = unique("busy");
  const wills = unique("wills");
  const sessions = [];
  const taps = [];
  let watcher, traffic;
  try {
    for (let i = 0; i < 60; i++) {
      const tap = tapped("websocket");
      const s = await openSession(gw.base, { transport: tap.factory });
      sessions.push(s);
      taps.push(tap);
      const c = s.createClient("main", `${wills.replace("/", "-")}-${i}`);
      const will = new Message("gone");
      will.destinationName = `${wills}/${i}`;
      will.qos = 1;
      await c.connect({ willMessage: will });
      await c.subscribe(busy);
    }
    watcher = start(findProgram("mosquitto_sub"), ["-h", "127.0.0.1", "-p", String(mosquitto.port), "-t", `${wills}/#`, "-v"]);
    traffic = publishNumbered(mosquitto.port, busy, { count: 3000, rate: 3000, line: () => "x".repeat(500) });
    await new Promise((r) => setTimeout(r, 400)); // mosquitto_sub subscribed, the writers busy
    gw.child.kill("SIGTERM");
    assert.equal(await gw.child.exited, 0, gw.child.output().slice(-2000));
    // Caddy is gone: a CLOSE frame written before it went is in the client's socket,
    // and arrives as the client reads what came before it; one never written never does.
    const ended = (tap) => tap.received.find((f) => f.type === FrameType.SERVER_CLOSE);
    await waitFor(() => taps.every(ended), { timeout: 5000 }).catch(() => {});
    taps.forEach((tap, i) => {
      const end = ended(tap);
      assert.equal(end?.code, 4090, `session ${i} got ${end ? `CLOSE ${end.code}` : "no CLOSE frame"} before Caddy exited`);
    });
    await traffic;
    await new Promise((r) => setTimeout(r, 2000)); // a will would come within this
    watcher.child.kill("SIGTERM");
    const { stdout } = await watcher.done;
    assert.equal(stdout.toString(), "", "wills published at a clean shutdown");
  } finally {
    watcher?.kill();
    await traffic?.catch(() => {});
    await Promise.all(sessions.map((s) => s.close().catch(() => {})));
    await stopChild(gw.child, "SIGKILL");
    await fs.rm(gw.dir, { recursive: true, force: true });
  }
});
