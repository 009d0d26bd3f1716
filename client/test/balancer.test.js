// Load balancers in front of several gateway instances, as an operator's trial set
// them up: two instances (separate Caddy processes) and one Mosquitto, behind
//
// - a round-robin balancer without affinity (a misconfiguration: HTTP streaming and
//   long polling need it): each /send or poll may reach an instance that does not hold
//   the session (4010). The client must not turn that into a storm of fresh sessions.
// - the cookie-affinity balancer of examples/cluster, its fallback made round robin
//   (instead of random) so that a request without the cookie deterministically lands on
//   the other instance than the last one did: a Node.js WebSocket that rebinds without
//   the session's cookie, or two sessions sharing one process-wide cookie, then fail
//   every time rather than half the time.
//
// Sessions are counted on the gateways (their Prometheus metrics), not in the client.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { openSession } from "../src/client.js";
import { freePort, startCaddy, startMosquitto, startProxy } from "./support/env.js";
import { waitFor } from "./support/wait.js";

let mosquitto;
let instances;
let roundRobin; // no affinity
let sticky; // lb_policy cookie

function gatewaySite(port, brokerPort, metricsPort) {
  return `http://127.0.0.1:${port} {\n\tmqtt_gateway /mqtt/* {\n\t\tbroker main mqtt://127.0.0.1:${brokerPort}\n\t}\n}\n` +
    `http://127.0.0.1:${metricsPort} {\n\tmetrics\n}`;
}

async function metrics(instance) {
  return (await fetch(`http://127.0.0.1:${instance.metricsPort}/metrics`)).text();
}

/** The sum of a metric's samples (every label set) in a metrics text. */
function sum(text, name) {
  let total = 0;
  for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))) total += Number(m[1]);
  return total;
}

/** Sessions ever opened by each instance. */
async function openedPerInstance() {
  return Promise.all(instances.map(async (i) => sum(await metrics(i), "mqtt_gateway_sessions_opened_total")));
}

/** Sessions ever opened, on all instances. */
async function sessionsOpened() {
  return (await openedPerInstance()).reduce((a, b) => a + b, 0);
}

function balancerSite(port, policy) {
  return `http://127.0.0.1:${port} {
	reverse_proxy /mqtt/* ${instances.map((i) => `127.0.0.1:${i.port}`).join(" ")} {
		${policy}
		flush_interval -1
	}
}`;
}

before(async () => {
  mosquitto = await startMosquitto();
  instances = [];
  for (let i = 0; i < 2; i++) {
    const [port, metricsPort] = [await freePort(), await freePort()];
    const instance = await startCaddy(gatewaySite(port, mosquitto.port, metricsPort), { port, probe: "/mqtt/client.js" });
    instance.metricsPort = metricsPort;
    instances.push(instance);
  }
  const [rr, ck] = [await freePort(), await freePort()];
  roundRobin = await startCaddy(balancerSite(rr, "lb_policy round_robin"), { port: rr, probe: "/mqtt/client.js" });
  roundRobin.base = `http://127.0.0.1:${rr}/mqtt`;
  sticky = await startCaddy(balancerSite(ck, "lb_policy cookie mqttgw_instance {\n\t\t\tfallback round_robin\n\t\t}"), {
    port: ck,
    probe: "/mqtt/client.js",
  });
  sticky.base = `http://127.0.0.1:${ck}/mqtt`;
});

after(async () => {
  for (const c of [roundRobin, sticky, ...(instances ?? [])]) await c?.stop().catch(() => {});
  await mosquitto?.stop().catch(() => {});
});

/** Runs fn with console.warn captured; returns what it warned. */
async function capturingWarnings(fn) {
  const warned = [];
  const original = console.warn;
  console.warn = (...args) => warned.push(args.join(" "));
  try {
    await fn();
  } finally {
    console.warn = original;
  }
  return warned;
}

const WATCH_MS = 8000;
const MOST_SESSIONS = 6;

for (const transport of ["streaming", "polling"]) {
  test(`${transport} behind a balancer without affinity: fresh sessions back off instead of looping, with a warning naming the cause`, async (t) => {
    const before = await sessionsOpened();
    let session;
    const warned = await capturingWarnings(async () => {
      session = await openSession(roundRobin.base, { transport });
      // Streaming needs a request to reach the other instance (a /send); polling
      // reaches it with its next poll anyway.
      const client = session.createClient("main");
      client.connect().catch(() => {});
      await new Promise((r) => setTimeout(r, WATCH_MS));
    });
    const opened = (await sessionsOpened()) - before;
    await session.close();
    t.diagnostic(`${opened} sessions opened in ${WATCH_MS} ms`);
    assert.ok(opened >= 2, `the balancer did lose sessions (${opened} opened)`);
    assert.ok(opened <= MOST_SESSIONS, `${opened} sessions opened in ${WATCH_MS} ms`);
    const sticky = warned.filter((w) => w.includes("is the load balancer sticky?"));
    assert.equal(sticky.length, 1, `warnings: ${JSON.stringify(warned)}`);
  });
}

test("a Node.js WebSocket through the cookie balancer rebinds to its own session after the connection is cut", async () => {
  const cutter = await startProxy(sticky.port);
  const before = await sessionsOpened();
  const session = await openSession(`http://127.0.0.1:${cutter.port}/mqtt`, { transport: "websocket" });
  const recoveries = [];
  session.onReconnectionComplete = (info) => recoveries.push(info);
  const client = session.createClient("main");
  const got = [];
  client.onMessageArrived = (m) => got.push(m.payloadString);
  await client.connect();
  await client.subscribe("affinity/ws", { qos: 1 });
  const id = session.id;
  try {
    // Several cuts: without the cookie each rebind would reach the other instance.
    for (let cut = 1; cut <= 3; cut++) {
      cutter.cut();
      await waitFor(() => recoveries.length === cut, { timeout: 5000, what: `the recovery after cut ${cut}` });
      assert.deepEqual(recoveries[cut - 1], { messagesMayHaveBeenLost: false }, `cut ${cut}`);
      assert.equal(session.id, id, `cut ${cut}: the same session`);
    }
    await client.publish("affinity/ws", "after the cuts", 1);
    await waitFor(() => got.includes("after the cuts"), { what: "a message after the cuts" });
    assert.equal((await sessionsOpened()) - before, 1, "one session opened");
  } finally {
    await session.close();
    await cutter.stop();
  }
});

test("two sessions in one Node.js process through the cookie balancer each keep their own instance", async () => {
  const before = await openedPerInstance();
  // Opened at once: a cookie shared by the process would either pin both to the
  // instance that answered first or, answers crossing, send one of them to the other
  // instance's cookie (4010 and a fresh session).
  const sessions = await Promise.all([0, 1].map(() => openSession(sticky.base, { transport: "polling" })));
  try {
    const ids = sessions.map((s) => s.id);
    const recoveries = [];
    const clients = [];
    for (const [i, s] of sessions.entries()) {
      s.onReconnectionComplete = (info) => recoveries.push({ i, ...info });
      const c = s.createClient("main");
      c.got = [];
      c.onMessageArrived = (m) => c.got.push(m.payloadString);
      clients.push(c);
    }
    await Promise.all(clients.map((c) => c.connect()));
    await Promise.all(clients.map((c) => c.subscribe("affinity/two", { qos: 1 })));
    // Requests of both sessions in turn, polls between them: every one reaches its
    // session's instance.
    for (let round = 0; round < 5; round++) {
      for (const [i, c] of clients.entries()) await c.publish("affinity/two", `${round}/${i}`, 1);
    }
    await waitFor(() => clients.every((c) => c.got.length === 10), { what: "every message on both sessions" });
    assert.deepEqual(recoveries, []);
    assert.deepEqual(sessions.map((s) => s.id), ids);
    const opened = (await openedPerInstance()).map((n, i) => n - before[i]);
    assert.deepEqual(opened, [1, 1], "one session opened on each instance, no replacements");
  } finally {
    await Promise.all(sessions.map((s) => s.close()));
  }
});
