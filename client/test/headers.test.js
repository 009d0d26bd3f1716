// openSession's `headers` (Node.js): a service behind an auth handler in front of the
// gateway shows its token with every request and handshake, on every transport, as a
// page shows its login cookie. The handler is Caddy's forward_auth to a small auth
// service (a second site here) that answers 200 to "Bearer good-<n>" and 401 to
// anything else, the way an OAuth2 proxy does.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { openSession } from "../src/client.js";
import { freePort, startCaddy, startMosquitto } from "./support/env.js";
import { listeningClient, mosquittoPub, unique } from "./support/mqtt.js";
import { waitFor } from "./support/wait.js";

let mosquitto;
let gateway;
let base;

before(async () => {
  mosquitto = await startMosquitto();
  const [port, authPort] = [await freePort(), await freePort()];
  gateway = await startCaddy(
    `http://127.0.0.1:${authPort} {
	@good header_regexp Authorization "^Bearer good-[0-9]+$"
	respond @good 200
	respond "token needed" 401
}
http://127.0.0.1:${port} {
	forward_auth /mqtt/* 127.0.0.1:${authPort} {
		uri /check
	}
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:${mosquitto.port}
	}
}`,
    { port, probe: "/mqtt/client.js" },
  );
  base = `http://127.0.0.1:${port}/mqtt`;
});

after(async () => {
  await gateway?.stop();
  await mosquitto?.stop();
});

for (const transport of ["websocket", "streaming", "polling"]) {
  test(`${transport}: a session with the auth handler's token receives and publishes`, async () => {
    const session = await openSession(base, { transport, headers: { Authorization: "Bearer good-1" } });
    try {
      assert.equal(session.transport, transport);
      const topic = unique("headers");
      const client = await listeningClient(session);
      const messages = client.received;
      await client.subscribe(`${topic}/#`);
      // Both ways: a message from the broker, and a publish of the session's own
      // (on the HTTP transports, a /send request, which needs the token too).
      await mosquittoPub(mosquitto.port, `${topic}/in`, ["-m", "from broker"]);
      await client.publish(`${topic}/out`, "from service", 1);
      await waitFor(() => messages.length >= 2, { what: "both messages" });
      assert.deepEqual(messages.map((m) => m.payloadString).sort(), ["from broker", "from service"]);
    } finally {
      await session.close();
    }
  });
}

test("without the token every transport is refused, and openSession says so", async () => {
  await assert.rejects(openSession(base, { connectTimeout: 5000 }), (err) => {
    assert.match(err.message, /401/);
    return true;
  });
});

test("a headers function is asked again for each request: a refreshed token goes with the next", async () => {
  let n = 0;
    const session = await openSession(base, {
    transport: "polling",
    headers: () => {
      n += 1;
      return { Authorization: `Bearer good-${n}` };
    },
  });
  try {
    const client = await listeningClient(session);
    const messages = client.received;
    const topic = unique("refresh");
    await client.subscribe(topic);
    const before = n;
    await mosquittoPub(mosquitto.port, topic, ["-m", "after refresh"]);
    await waitFor(() => messages.length === 1, { what: "the message" });
    // Each poll asked for the headers again (a poll is answered per delivery).
    await waitFor(() => n > before, { what: "a later request to ask for headers" });
    assert.equal(messages[0].payloadString, "after refresh");
  } finally {
    await session.close();
  }
});

test("a token the auth handler stops accepting ends the session with its answer", async () => {
  let token = "Bearer good-7";
  const session = await openSession(base, { transport: "polling", headers: () => ({ Authorization: token }) });
  const closed = new Promise((resolve) => (session.onClose = resolve));
  const client = await listeningClient(session);
  await client.subscribe(unique("revoked"));
  token = "Bearer revoked";
  // The next poll is refused (401): as for a page whose login expired, no waiting
  // brings the session back, so it ends and says why.
  const info = await closed;
  assert.notEqual(info.errorCode, 0);
  assert.match(info.errorMessage, /401/);
  assert.equal(session.state, "closed");
});

test("headers the client cannot send are a TypeError naming them", async () => {
  const cases = [
    [{ Host: "evil" }, /Host is set by the client itself/],
    [{ "Sec-WebSocket-Protocol": "x" }, /Sec-WebSocket-Protocol is set by the client itself/],
    [{ "X-Mqtt-User": "admin" }, /X-Mqtt-User: the gateway drops X-Mqtt-\* headers/],
    [{ Authorization: 42 }, /value of Authorization must be a string, got number/],
    [{ Authorization: "Bearer a\r\nX-Evil: 1" }, /line break/],
    [{ "Bad Name": "x" }, /"Bad Name" is not a header name/],
    [[["Authorization", "x"]], /got an array/],
    ["Authorization: x", /got string/],
  ];
  for (const [headers, message] of cases) {
    await assert.rejects(openSession(base, { headers }), (err) => err instanceof TypeError && message.test(err.message), JSON.stringify(headers));
  }
});
