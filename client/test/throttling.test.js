// Throttling as an application uses it, against the real gateway: a
// subscription's maximum frequency changed at run time, a bandwidth cap, and
// the overflow event; and the demo's throttling view in Chromium.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";

import { openSession } from "../src/client.js";
import { REPO_ROOT, freePort, start, startGateway, startMosquitto } from "./support/env.js";
import { waitFor } from "./support/wait.js";

let mosquitto;
let gateway;
let publisher;

before(async () => {
  mosquitto = await startMosquitto();
  gateway = await startGateway({ brokerPort: mosquitto.port });
  // One mosquitto_pub fed line by line: 50 msg/s on one topic.
  publisher = start("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(mosquitto.port), "-t", "fast/signal", "-l"], { stdin: true });
});

after(async () => {
  publisher?.kill();
  await gateway?.stop().catch(() => {});
  await mosquitto?.stop().catch(() => {});
});

let published = 0;

/** Publishes increasing numbers for ms at rate; returns the last one published. */
async function publishFor(ms, rate) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    publisher.child.stdin.write(`${published++}\n`);
    await new Promise((r) => setTimeout(r, 1000 / rate));
  }
  return published - 1;
}

test("maxFrequency changes at run time without resubscribing, and the last value arrives", async () => {
  const s = await openSession(gateway.base);
  const c = s.createClient("main");
  const got = [];
  c.onMessageArrived = (m) => got.push({ at: Date.now(), v: Number(m.payloadString) });
  await c.connect();
  await c.subscribe("fast/signal", { maxFrequency: 2 });
  await publishFor(3000, 50);
  const slow = got.length;
  assert.ok(slow >= 4 && slow <= 8, `${slow} messages in 3 s at maxFrequency 2`);
  await c.setMaxFrequency("fast/signal", 20);
  const before = got.length;
  const last = await publishFor(3000, 50);
  const fast = got.length - before;
  assert.ok(fast > 30, `${fast} messages in 3 s at maxFrequency 20`);
  await waitFor(() => got.at(-1)?.v === last, { timeout: 3000, what: "the last value published" });
  await s.close();
});

test("setMaxBandwidth caps a session and resolves with the cap in force", async () => {
  const s = await openSession(gateway.base);
  const c = s.createClient("main");
  let bytes = 0;
  const last = { v: -1 };
  c.onMessageArrived = (m) => {
    bytes += m.payloadBytes.length + m.destinationName.length + 8;
    last.v = Number(m.payloadString);
  };
  await c.connect();
  await c.subscribe("fast/signal");
  assert.equal(await s.setMaxBandwidth(200), 200);
  await new Promise((r) => setTimeout(r, 500)); // let the burst go
  bytes = 0;
  const lastPublished = await publishFor(4000, 50);
  // 50 msg/s of ~25 bytes is ~1,250 B/s; capped at 200 B/s, with conflation.
  assert.ok(bytes < 200 * 4 * 1.5, `${bytes} bytes in 4 s under a 200 B/s cap`);
  await waitFor(() => last.v === lastPublished, { timeout: 5000, what: "the latest value under the cap" });
  await s.close();
});

test("the demo's throttling view: both panels update, the throttled one at its rate", async () => {
  const chromiumPath = process.env.MQTTGW_CHROMIUM_BIN ?? "/usr/bin/chromium";
  assert.ok(existsSync(chromiumPath), `${chromiumPath} not found`);
  const port = await freePort();
  const args = ["-listen", `127.0.0.1:${port}`, "-mqtt", "127.0.0.1:0"];
  const demo = process.env.MQTTGW_DEMO_BIN
    ? start(process.env.MQTTGW_DEMO_BIN, args)
    : start("go", ["-C", REPO_ROOT, "run", "./examples/demo", ...args]);
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
  try {
    const base = `http://127.0.0.1:${port}`;
    await waitFor(async () => (await fetch(base).catch(() => null))?.ok, { timeout: 5 * 60_000, interval: 100, what: "the demo" });
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    await page.goto(base + "/");
    await page.waitForSelector("#throttling[data-ready=true]", { timeout: 10_000 });
    const counts = () =>
      page.evaluate(() => ({
        raw: Number(document.querySelector("[data-panel=raw]").dataset.count ?? 0),
        throttled: Number(document.querySelector("[data-panel=throttled]").dataset.count ?? 0),
      }));
    const c0 = await counts();
    await new Promise((r) => setTimeout(r, 3000));
    const c1 = await counts();
    const raw = c1.raw - c0.raw;
    const throttled = c1.throttled - c0.throttled;
    assert.ok(raw >= 100, `raw panel: ${raw} updates in 3 s of a 50 msg/s signal`);
    assert.ok(throttled >= 3 && throttled <= 8, `throttled panel at 2/s: ${throttled} updates in 3 s`);
    // Raise the frequency with the slider: the throttled panel speeds up.
    await page.evaluate(() => {
      const input = document.getElementById("frequency");
      input.value = "10";
      input.dispatchEvent(new Event("input"));
    });
    await new Promise((r) => setTimeout(r, 500));
    const c2 = await counts();
    await new Promise((r) => setTimeout(r, 3000));
    const c3 = await counts();
    const faster = c3.throttled - c2.throttled;
    assert.ok(faster >= 20 && faster <= 32, `throttled panel at 10/s: ${faster} updates in 3 s`);
    await page.screenshot({ path: `${process.env.MQTTGW_SCREENSHOTS ?? "/tmp"}/demo-throttling.png`, fullPage: true });
    assert.deepEqual(errors, []);
  } finally {
    await browser.close().catch(() => {});
    demo.kill();
  }
});
