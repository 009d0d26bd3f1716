// The throttling view: a client of the page's session (app.js) takes
// demo/fast/signal as published; a session of its own asks the gateway for a
// maximum frequency and a bandwidth cap, changeable while it runs (the cap is
// per session, so it must not slow the page's other messages).
import { openSession } from "/mqtt/client.js";
import { session } from "./app.js";

const TOPIC = "demo/fast/signal";
const WINDOW_MS = 10_000;

function panel(name) {
  const root = document.querySelector(`[data-panel=${name}]`);
  return { root, canvas: root.querySelector("canvas"), rate: root.querySelector(".rate"), points: [] };
}

const raw = panel("raw");
const throttled = panel("throttled");

function record(p, message) {
  p.points.push({ t: performance.now(), v: Number(message.payloadString) });
  p.root.dataset.count = String(Number(p.root.dataset.count ?? 0) + 1);
}

function draw(p) {
  const now = performance.now();
  while (p.points.length && p.points[0].t < now - WINDOW_MS) p.points.shift();
  const second = p.points.filter((pt) => pt.t >= now - 1000).length;
  p.rate.textContent = String(second);
  p.root.dataset.rate = String(second);
  const ctx = p.canvas.getContext("2d");
  const { width: w, height: h } = p.canvas;
  ctx.clearRect(0, 0, w, h);
  ctx.strokeStyle = "#3467d6";
  ctx.fillStyle = "#3467d6";
  ctx.lineWidth = 1.5;
  const x = (t) => w - ((now - t) / WINDOW_MS) * w;
  const y = (v) => h / 2 - (v / 1.5) * (h / 2 - 6);
  ctx.beginPath();
  p.points.forEach((pt, i) => (i ? ctx.lineTo(x(pt.t), y(pt.v)) : ctx.moveTo(x(pt.t), y(pt.v))));
  ctx.stroke();
  if (p.points.length < 200) for (const pt of p.points) ctx.fillRect(x(pt.t) - 2, y(pt.v) - 2, 4, 4);
}

function frame() {
  draw(raw);
  draw(throttled);
  requestAnimationFrame(frame);
}

const frequencyInput = document.getElementById("frequency");
const bandwidthInput = document.getElementById("bandwidth");

const rawClient = session.createClient("demo");
rawClient.onMessageArrived = (m) => record(raw, m);
await rawClient.connect();
await rawClient.subscribe(TOPIC, { qos: 0 });

const slowSession = await openSession("/mqtt");
const slowClient = slowSession.createClient("demo");
slowClient.onMessageArrived = (m) => record(throttled, m);
await slowClient.connect();
await slowClient.subscribe(TOPIC, { qos: 0, maxFrequency: Number(frequencyInput.value) });
document.getElementById("throttling").dataset.ready = "true";

frequencyInput.addEventListener("input", async () => {
  document.getElementById("frequency-value").textContent = frequencyInput.value;
  await slowClient.setMaxFrequency(TOPIC, Number(frequencyInput.value));
});
bandwidthInput.addEventListener("change", async () => {
  await slowSession.setMaxBandwidth(Number(bandwidthInput.value));
});

requestAnimationFrame(frame);
