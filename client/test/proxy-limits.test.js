// A proxy in front of the gateway that limits request sizes, as corporate proxies and
// nginx do (client_max_body_size, 1 MB by default). Here it is a Caddy with
// `request_body { max_size 64KB }` before `reverse_proxy` to the gateway: it answers
// 413 to a larger body. A burst of publishes over HTTP goes out in /send bodies the
// proxy takes (it used to be one body of up to max_frame, refused again after every
// rebind, for ever, with nothing reaching the gateway); a single publish larger than
// the limit ends the session saying why, instead of the same endless loop.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { Message, openSession } from "../src/client.js";
import { freePort, startCaddy, startMosquitto } from "./support/env.js";
import { listeningClient, unique } from "./support/mqtt.js";
import { waitFor } from "./support/wait.js";

let mosquitto;
let caddy;
let base;

before(async () => {
  mosquitto = await startMosquitto();
  const [gatewayPort, proxyPort] = [await freePort(), await freePort()];
  caddy = await startCaddy(
    `http://127.0.0.1:${gatewayPort} {
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:${mosquitto.port}
	}
}
http://127.0.0.1:${proxyPort} {
	request_body {
		max_size 64KB
	}
	reverse_proxy 127.0.0.1:${gatewayPort} {
		flush_interval -1
	}
}`,
    { port: proxyPort, probe: "/mqtt/client.js" },
  );
  base = `http://127.0.0.1:${proxyPort}/mqtt`;
});

after(async () => {
  await caddy?.stop();
  await mosquitto?.stop();
});

for (const transport of ["streaming", "polling"]) {
  test(`${transport}: a burst larger than the proxy's request limit gets through`, async () => {
    const session = await openSession(base, { transport });
    let reconnections = 0;
    try {
      const topic = unique("burst");
      const client = await listeningClient(session);
      client.onReconnectionStart = () => reconnections++;
      await client.subscribe(`${topic}/#`);
      // 2,000 messages of 300 bytes in one tick: 600 KB, in bodies of up to max_frame
      // (1 MiB and more) before.
      const payload = "x".repeat(300);
      const sent = [];
      for (let i = 0; i < 2000; i++) sent.push(client.send(Object.assign(new Message(payload), { destinationName: `${topic}/${i % 10}` })));
      await waitFor(() => client.received.length >= 2000, { timeout: 20000, what: "the burst back" });
      await Promise.all(sent);
      assert.equal(client.received.length, 2000);
      assert.equal(reconnections, 0, "the session did not rebind");
    } finally {
      await session.close();
    }
  });

  test(`${transport}: a publish larger than the proxy's limit ends the session saying why`, async () => {
    const session = await openSession(base, { transport });
    const closed = new Promise((resolve) => {
      session.onClose = resolve;
    });
    const client = await listeningClient(session);
    const failed = client.send(Object.assign(new Message("y".repeat(100 * 1024)), { destinationName: unique("large") })).then(
      () => null,
      (err) => err,
    );
    const info = await closed;
    assert.equal(info.errorCode, 4002);
    assert.match(info.errorMessage, /a proxy between this client and the gateway refused a request of \d+ bytes \(HTTP 413/);
    assert.ok(await failed, "the publish failed");
  });
}
