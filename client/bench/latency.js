// Latency the gateway adds, per transport: messages published with `mosquitto_pub -l`
// at a fixed rate carry the time they were written to its stdin; a Node.js client of
// the gateway and a plain `mosquitto_sub` (the direct MQTT path) receive each one,
// and the difference for the same message is what the gateway and the transport add.
//
//   node client/bench/latency.js [--rate 50] [--seconds 10] [--transports websocket,streaming,polling]
//
// Starts its own Mosquitto and gateway (the caddy of $MQTTGW_CADDY_BIN, or one built
// from ./examples/caddy), all on loopback: the figures are the software's, not a
// network's. Not a test: nothing is asserted.

import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";

import { openSession } from "../src/client.js";
import { findProgram, start, startGateway, startMosquitto } from "../test/support/env.js";

const { values: args } = parseArgs({
  options: {
    rate: { type: "string", default: "50" },
    seconds: { type: "string", default: "10" },
    transports: { type: "string", default: "websocket,streaming,polling" },
  },
});
const rate = Number(args.rate);
const count = Math.round(rate * Number(args.seconds));
const now = () => performance.timeOrigin + performance.now(); // ms, sub-ms precision

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const fmt = (ms) => `${ms.toFixed(2)} ms`;

/** Lines "<seq> <sent-at>" from stdout of a mosquitto_sub, as {seq: receivedAt}. */
function directSubscriber(port, topic) {
  const sub = start(findProgram("mosquitto_sub"), ["-h", "127.0.0.1", "-p", String(port), "-t", topic]);
  const at = new Map();
  let rest = "";
  sub.child.stdout.on("data", (chunk) => {
    const t = now();
    const lines = (rest + chunk).split("\n");
    rest = lines.pop();
    for (const line of lines) at.set(Number(line.split(" ")[0]), t);
  });
  return { at, sub };
}

async function measure(transport, mosquitto, gateway) {
  const topic = `bench/latency/${transport}`;
  const s = await openSession(gateway.base, { transport });
  const c = s.createClient("main");
  const viaGateway = new Map();
  const sentAt = new Map();
  c.onMessageArrived = (m) => {
    const t = now();
    const [seq, sent] = m.payloadString.split(" ").map(Number);
    viaGateway.set(seq, t);
    sentAt.set(seq, sent);
  };
  await c.connect();
  await c.subscribe(topic, { qos: 0 });
  const direct = directSubscriber(mosquitto.port, topic);
  await new Promise((r) => setTimeout(r, 500)); // mosquitto_sub subscribes

  const pub = start(findProgram("mosquitto_pub"), ["-h", "127.0.0.1", "-p", String(mosquitto.port), "-t", topic, "-l"], { stdin: true });
  const interval = 1000 / rate;
  const t0 = now();
  for (let i = 0; i < count; i++) {
    const due = t0 + i * interval;
    const wait = due - now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pub.child.stdin.write(`${i} ${now()}\n`);
  }
  pub.child.stdin.end();
  await pub.done;
  const deadline = Date.now() + 5000;
  while ((viaGateway.size < count || direct.at.size < count) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  direct.sub.kill();
  await s.close();

  const total = [];
  const added = [];
  for (const [seq, t] of viaGateway) {
    total.push(t - sentAt.get(seq));
    if (direct.at.has(seq)) added.push(t - direct.at.get(seq));
  }
  total.sort((a, b) => a - b);
  added.sort((a, b) => a - b);
  const directLatency = [...direct.at].filter(([seq]) => sentAt.has(seq)).map(([seq, t]) => t - sentAt.get(seq)).sort((a, b) => a - b);
  return { transport, received: viaGateway.size, total, added, direct: directLatency };
}

const mosquitto = await startMosquitto();
const gateway = await startGateway({ brokerPort: mosquitto.port });
try {
  console.log(`${count} messages at ${rate}/s per transport, QoS 0, loopback; node ${process.version}`);
  console.log("transport   received   added median   added p99   end-to-end median   end-to-end p99   (mosquitto_sub median / p99)");
  for (const transport of args.transports.split(",")) {
    const r = await measure(transport, mosquitto, gateway);
    console.log(
      [
        transport.padEnd(11),
        `${r.received}/${count}`.padEnd(10),
        fmt(quantile(r.added, 0.5)).padStart(12),
        fmt(quantile(r.added, 0.99)).padStart(11),
        fmt(quantile(r.total, 0.5)).padStart(19),
        fmt(quantile(r.total, 0.99)).padStart(16),
        `  (${fmt(quantile(r.direct, 0.5))} / ${fmt(quantile(r.direct, 0.99))})`,
      ].join(" "),
    );
  }
} finally {
  await gateway.stop();
  await mosquitto.stop();
}
