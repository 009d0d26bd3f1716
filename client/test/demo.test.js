// The newcomer's first command, checked as a newcomer would: the demo
// (go run ./examples/demo) serves a page that, in a real browser, shows live
// sensor values and echoes what the visitor publishes.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";

import { REPO_ROOT, freePort, start } from "./support/env.js";
import { waitFor } from "./support/wait.js";

const CHROMIUM = process.env.MQTTGW_CHROMIUM_BIN ?? "/usr/bin/chromium";

let demo;
let browser;
let base;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium or set MQTTGW_CHROMIUM_BIN`);
  const port = await freePort();
  const args = ["-listen", `127.0.0.1:${port}`, "-mqtt", "127.0.0.1:0"];
  // MQTTGW_DEMO_BIN is the demo prebuilt by .ci/test; otherwise `go run`, as the README says.
  demo = process.env.MQTTGW_DEMO_BIN
    ? start(process.env.MQTTGW_DEMO_BIN, args)
    : start("go", ["-C", REPO_ROOT, "run", "./examples/demo", ...args]);
  base = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(base).catch(() => null))?.ok, { timeout: 5 * 60_000, interval: 100, what: "the demo to serve" });
  const { chromium } = await import("playwright-core");
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close().catch(() => {});
  demo?.kill();
});

test("the demo page shows live sensor values and echoes a published message", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(base + "/");
  await page.waitForFunction(() => document.getElementById("status").textContent === "connected", null, { timeout: 10_000 });

  // Live values: a sensor row appears and its message count keeps rising.
  const count = () => page.evaluate(() => Number(document.querySelector("[data-sensor=kitchen] .count")?.textContent ?? 0));
  await waitFor(async () => (await count()) > 0, { timeout: 10_000, what: "a first sensor value" });
  const first = await count();
  await waitFor(async () => (await count()) > first + 3, { timeout: 10_000, what: "more sensor values" });
  const value = await page.textContent("[data-sensor=kitchen] .value");
  assert.match(value, /^-?\d+\.\d\d$/);

  // Publish through the form; it comes back through the broker.
  await page.fill("#message", "hello from the test");
  await page.click("#publish button");
  await page.waitForFunction(() => document.getElementById("chat").textContent.includes("hello from the test"), null, { timeout: 10_000 });
  assert.deepEqual(errors, []);
  await page.close();
});
