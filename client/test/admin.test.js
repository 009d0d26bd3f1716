// The operator's admin API against a real gateway: a member removed from a room has
// their subscriptions to it ended (POST /mqtt_gateway/unsubscribe), hears so through
// onSubscriptionLost, and keeps everything else; another member keeps the room.
// Users are told apart by a header the Node.js sessions send (openSession's headers),
// which the authenticate hook makes the session's user.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { openSession } from "../src/client.js";
import { freePort, startCaddy, startMosquitto } from "./support/env.js";
import { listeningClient, mosquittoPub } from "./support/mqtt.js";
import { waitFor } from "./support/wait.js";

let mosquitto;
let gateway;
let base;
let adminPort;

before(async () => {
  mosquitto = await startMosquitto();
  const port = await freePort();
  adminPort = await freePort();
  gateway = await startCaddy(
    `http://127.0.0.1:${port} {
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:${mosquitto.port}
		authenticate {
			header X-Mqtt-User {http.request.header.X-Test-User}
			respond 204
		}
	}
}`,
    { port, probe: "/mqtt/client.js", adminPort },
  );
  base = `http://127.0.0.1:${port}/mqtt`;
});

after(async () => {
  await gateway?.stop();
  await mosquitto?.stop();
});

/** POSTs to the admin API as a Node.js service would (fetch needs the Origin header). */
async function admin(path, body) {
  const origin = `http://127.0.0.1:${adminPort}`;
  const res = await fetch(`${origin}/mqtt_gateway/${path}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Origin: origin },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: await res.text() };
}

test("a member removed from a room loses that subscription only, and hears which", async () => {
  const carol = await openSession(base, { headers: { "X-Test-User": "carol" } });
  const dave = await openSession(base, { headers: { "X-Test-User": "dave" } });
  try {
    const c = await listeningClient(carol);
    const d = await listeningClient(dave);
    const lost = [];
    c.onSubscriptionLost = (info) => lost.push(info);
    await c.subscribe("room/42/#");
    await c.subscribe("room/43/#");
    await d.subscribe("room/42/#");

    const answer = await admin("unsubscribe", { user: "carol", filter: "room/42/#", message: "removed from room 42" });
    assert.equal(answer.status, 200, answer.body);
    assert.deepEqual(JSON.parse(answer.body), { sessions: 1, unsubscribed: 1 });
    await waitFor(() => lost.length === 1, { what: "onSubscriptionLost" });
    assert.deepEqual(lost, [{ filter: "room/42/#", errorCode: 4021, errorMessage: "removed from room 42" }]);

    await mosquittoPub(mosquitto.port, "room/42/msg", ["-m", "secret plans"]);
    await mosquittoPub(mosquitto.port, "room/43/msg", ["-m", "still a member"]);
    await waitFor(() => c.received.length >= 1 && d.received.length >= 1, { what: "the messages" });
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(c.received.map((m) => m.destinationName), ["room/43/msg"]);
    assert.deepEqual(d.received.map((m) => m.destinationName), ["room/42/msg"]);
  } finally {
    await carol.close();
    await dave.close();
  }
});

test("a bad request is a 400 that says why", async () => {
  for (const [body, why] of [
    [{ user: "carol" }, /name a "filter"/],
    [{ user: "carol", filter: "room/#/x" }, /filter "room\/#\/x"/],
    [{ filter: "room/42/#" }, /name a "user" or a "session"/],
  ]) {
    const answer = await admin("unsubscribe", body);
    assert.equal(answer.status, 400, JSON.stringify(body));
    assert.match(JSON.parse(answer.body).error, why);
  }
});
