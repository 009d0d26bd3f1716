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

import { openSession } from "../src/client.js";
import { caddyBinary, freePort, spawnChild, startMosquitto, stopChild, waitForListen } from "./support/env.js";

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
