// The client as a page uses it: imported from the gateway (/mqtt/client.js) in
// headless Chromium (Debian's, driven by playwright-core), against the real gateway;
// and from a page of another origin, over the HTTP transports (CORS, credentials).

import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import http from "node:http";
import { after, before, test } from "node:test";

import { freePort, startGateway, startMosquitto } from "./support/env.js";

const CHROMIUM = process.env.MQTTGW_CHROMIUM_BIN ?? "/usr/bin/chromium";

let mosquitto;
let gateway;
let browser;
let site; // a site of another origin, serving an empty page and the client's files
let siteGateway; // a gateway that allows that origin

before(async () => {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium or set MQTTGW_CHROMIUM_BIN`);
  const { chromium } = await import("playwright-core");
  mosquitto = await startMosquitto();
  site = await startSite();
  [gateway, siteGateway, browser] = await Promise.all([
    startGateway({ brokerPort: mosquitto.port }),
    startGateway({ brokerPort: mosquitto.port, extra: `allow_origins ${site.origin}` }),
    chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] }),
  ]);
});

after(async () => {
  await browser?.close().catch(() => {});
  await gateway?.stop().catch(() => {});
  await siteGateway?.stop().catch(() => {});
  await site?.stop().catch(() => {});
  await mosquitto?.stop().catch(() => {});
});

/** Serves "/" (an empty page) and /client/* (client/src) on a free port. */
async function startSite() {
  const port = await freePort();
  const server = http.createServer(async (req, res) => {
    if (req.url === "/") {
      res.writeHead(200, { "Content-Type": "text/html" }).end("<!doctype html><title>site</title>");
      return;
    }
    const name = /^\/client\/([a-z-]+\.js)$/.exec(req.url)?.[1];
    const body = name && (await fs.readFile(new URL(`../src/${name}`, import.meta.url)).catch(() => null));
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": "text/javascript" }).end(body);
  });
  await new Promise((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    origin: `http://127.0.0.1:${port}`,
    stop: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

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

for (const transport of ["streaming", "polling"]) {
  test(`a page of another origin allowed by the gateway: ${transport} round-trips binary bytes`, async () => {
    const page = await browser.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(e));
    await page.goto(`${site.origin}/`);
    const r = await page.evaluate(
      async ({ base, transport }) => {
        const { openSession, Message } = await import("/client/client.js");
        const s = await openSession(base, { transport });
        const c = s.createClient("main");
        const got = [];
        c.onMessageArrived = (m) => got.push({ topic: m.destinationName, bytes: Array.from(m.payloadBytes) });
        await c.connect();
        await c.subscribe(`cors/${transport}/#`, { qos: 1 });
        const m = new Message(Uint8Array.from({ length: 256 }, (_, i) => i));
        m.destinationName = `cors/${transport}/1`;
        m.qos = 1;
        await c.send(m);
        const deadline = Date.now() + 5000;
        while (got.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        const out = { transport: s.transport, got };
        await s.close();
        return out;
      },
      { base: siteGateway.base, transport },
    );
    assert.deepEqual(errors, []);
    assert.equal(r.transport, transport);
    assert.deepEqual(r.got, [{ topic: `cors/${transport}/1`, bytes: Array.from({ length: 256 }, (_, i) => i) }]);
    await page.close();
  });
}
