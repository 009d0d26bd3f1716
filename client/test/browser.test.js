// The client as a page uses it: imported from the gateway (/mqtt/client.js) in
// headless Chromium (Debian's, driven by playwright-core), against the real gateway.

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { after, before, test } from "node:test";

import { startGateway, startMosquitto } from "./support/env.js";

const CHROMIUM = process.env.MQTTGW_CHROMIUM_BIN ?? "/usr/bin/chromium";

let mosquitto;
let gateway;
let browser;

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium or set MQTTGW_CHROMIUM_BIN`);
  const { chromium } = await import("playwright-core");
  mosquitto = await startMosquitto();
  gateway = await startGateway({ brokerPort: mosquitto.port });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
});

after(async () => {
  await browser?.close().catch(() => {});
  await gateway?.stop().catch(() => {});
  await mosquitto?.stop().catch(() => {});
});

test("a page imports the client from the gateway and round-trips binary bytes", async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(e));
  // Any page of the gateway's origin will do: the WebSocket is same-origin.
  await page.goto(`http://127.0.0.1:${gateway.port}/`);
  const r = await page.evaluate(async () => {
    const { openSession, Message } = await import("/mqtt/client.js");
    const s = await openSession("/mqtt"); // relative: resolved against the page
    const c = s.createClient("main");
    const got = [];
    c.onMessageArrived = (m) => got.push({ topic: m.destinationName, bytes: Array.from(m.payloadBytes), qos: m.qos });
    await c.connect();
    await c.subscribe("browser/#", { qos: 1 });
    const m = new Message(Uint8Array.from({ length: 256 }, (_, i) => i));
    m.destinationName = "browser/1";
    m.qos = 1;
    await c.send(m);
    const deadline = Date.now() + 5000;
    while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    const out = { id: s.id, transport: s.transport, got };
    await s.close();
    return out;
  });
  assert.deepEqual(errors, []);
  assert.equal(r.transport, "websocket");
  assert.match(r.id, /^[0-9a-f]{32}$/);
  assert.equal(r.got.length, 1);
  assert.deepEqual(r.got[0], { topic: "browser/1", bytes: Array.from({ length: 256 }, (_, i) => i), qos: 1 });
  await page.close();
});
