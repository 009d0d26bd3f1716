// The demo page: everything here is what an application writes. The client
// library comes from the gateway itself.
import { openSession, Message } from "/mqtt/client.js";

const status = document.getElementById("status");
const transportLabel = document.getElementById("transport");
const rows = new Map(); // sensor name → { value, spark, count, history, n }

function setStatus(text, up) {
  status.textContent = text;
  status.className = up ? "up" : "down";
}

function sensorRow(name) {
  let row = rows.get(name);
  if (row) return row;
  const tr = document.createElement("tr");
  tr.dataset.sensor = name;
  tr.innerHTML = `<td class="name"></td><td class="value"></td>
    <td><svg class="spark" viewBox="0 0 120 20" preserveAspectRatio="none"><polyline points=""/></svg></td>
    <td class="count">0</td>`;
  tr.querySelector(".name").textContent = name;
  document.querySelector("#sensors tbody").append(tr);
  row = { value: tr.querySelector(".value"), line: tr.querySelector("polyline"), count: tr.querySelector(".count"), history: [], n: 0 };
  rows.set(name, row);
  return row;
}

function showSensor(name, value) {
  const row = sensorRow(name);
  row.n++;
  row.value.textContent = value.toFixed(2);
  row.count.textContent = String(row.n);
  row.history.push(value);
  if (row.history.length > 120) row.history.shift();
  const lo = Math.min(...row.history), hi = Math.max(...row.history), span = hi - lo || 1;
  row.line.setAttribute("points", row.history.map((v, i) => `${i},${(20 - ((v - lo) / span) * 18 - 1).toFixed(1)}`).join(" "));
}

function showChat(text) {
  const li = document.createElement("li");
  const time = document.createElement("time");
  time.textContent = new Date().toLocaleTimeString();
  li.append(time, document.createTextNode(text));
  document.getElementById("chat").prepend(li);
}

// One session for the page (throttling.js uses it too): a session carries any
// number of clients, and over HTTP/1.1 streaming each session holds one of the six
// connections a browser opens to a host. retry: a page loaded while the demo
// restarts opens once it is back.
export const session = await openSession("/mqtt", {
  retry: true,
  onReconnectionStart: () => setStatus("reconnecting…", false),
  onReconnectionComplete: () => setStatus("connected", true),
});
transportLabel.textContent = `(${session.transport})`;

const client = session.createClient("demo");
client.onMessageArrived = (message) => {
  const parts = message.destinationName.split("/");
  if (parts[1] === "sensors") showSensor(parts[2], Number(message.payloadString));
  else showChat(message.payloadString);
};
client.onConnectionLost = (err) => setStatus(`lost: ${err.errorMessage}`, false);

await client.connect();
await client.subscribe("demo/sensors/+/temperature", { qos: 0 });
await client.subscribe("demo/chat", { qos: 1 });
setStatus("connected", true);

document.getElementById("publish").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = document.getElementById("message");
  const message = new Message(input.value);
  message.destinationName = "demo/chat";
  message.qos = 1;
  input.value = "";
  try {
    await client.send(message);
  } catch (err) {
    showChat(`(not delivered: ${err.errorMessage})`);
  }
});
