// HTTP streaming and long polling against the real gateway and Mosquitto: messages
// both ways, the stream the gateway renews after ~4 MiB, heartbeats, requests lost
// with a failed /send, a session that expired during a long cut, and what the
// application sees when the gateway answers with an error code.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";

import { ErrorCode, Message, openSession } from "../src/client.js";
import { FrameType } from "../src/codec.js";
import { freePort, run, startCaddy, startGateway, startMosquitto, startProxy } from "./support/env.js";
import { spyFetch } from "./support/fetch-spy.js";
import { listeningClient, mosquittoPub, publishNumbered, publishUntilSeen, unique } from "./support/mqtt.js";
import { tapped } from "./support/tap.js";
import { waitFor } from "./support/wait.js";

const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);

let mosquitto;
let gateway;
let shortLived; // a gateway that forgets sessions after 1 s without a connection
// A gateway with a short heartbeat: a long poll that rebinds gets BOUND when the
// gateway has something to send or after a heartbeat, and the tests should not wait 20 s.
let quick;
const cleanups = [];

before(async () => {
  mosquitto = await startMosquitto();
  [gateway, shortLived, quick] = await Promise.all([
    startGateway({ brokerPort: mosquitto.port }),
    startGateway({ brokerPort: mosquitto.port, extra: "session_timeout 1s\nheartbeat 1s" }),
    startGateway({ brokerPort: mosquitto.port, extra: "heartbeat 1s" }),
  ]);
});

after(async () => {
  for (const fn of cleanups.reverse()) await fn().catch(() => {});
  await gateway?.stop().catch(() => {});
  await shortLived?.stop().catch(() => {});
  await quick?.stop().catch(() => {});
  await mosquitto?.stop().catch(() => {});
});

/** A session that is closed when the file ends, whatever happens in the test. */
async function session(base, options) {
  const s = await openSession(base, options);
  cleanups.push(() => s.close());
  return s;
}

async function proxyTo(gw) {
  const proxy = await startProxy(gw.port);
  cleanups.push(() => proxy.stop());
  return { proxy, base: `http://127.0.0.1:${proxy.port}/mqtt` };
}

/** A fetch spy removed at the end of the test, even a failed one. */
function spy(t) {
  const s = spyFetch();
  t.after(() => s.restore());
  return s;
}

for (const transport of ["streaming", "polling"]) {
  describe(transport, () => {
    test("messages both ways, byte-identical", async () => {
      const s = await session(gateway.base, { transport });
      assert.equal(s.transport, transport);
      assert.match(s.id, /^[0-9a-f]{32}$/);
      const c = await listeningClient(s);
      const topic = unique(transport);
      assert.equal(await c.subscribe(`${topic}/#`, { qos: 1 }), 1);
      await mosquittoPub(mosquitto.port, `${topic}/in`, ["-q", "1", "-m", "from mosquitto"]);
      const m = await waitFor(() => c.received[0], { what: "the message from mosquitto_pub" });
      assert.equal(m.payloadString, "from mosquitto");
      assert.equal(m.qos, 1);

      const seen = await publishUntilSeen(c, mosquitto.port, `${topic}/out`, ALL_BYTES);
      assert.deepEqual(new Uint8Array(seen), ALL_BYTES);
    });

    test("heartbeats both ways on an idle session; the client's PING goes by /send", async (t) => {
      const gw = await startGateway({ brokerPort: mosquitto.port, extra: "heartbeat 100ms" });
      cleanups.push(() => gw.stop());
      const fetches = spy(t);
      const tap = tapped(transport);
      const restarts = [];
      const s = await session(gw.base, { transport: tap.factory, onReconnectionStart: () => restarts.push(1) });
      assert.equal(s.heartbeat, 100);
      const pings = (frames) => frames.filter((f) => f.type === FrameType.PING).length;
      const sentPings = () => fetches.calls.filter((c) => c.endpoint === "send" && c.frames.some((f) => f.type === FrameType.PING)).length;
      const opened = Date.now();
      await waitFor(() => pings(tap.received) >= 5 && sentPings() >= 5, { timeout: 5000, what: "5 PINGs each way" });
      if (transport === "streaming") {
        // The gateway ends a stream whose client it has not heard (by /send) for
        // 2 × heartbeat + 5 s: the client's PINGs keep an idle stream, the same one.
        const before = fetches.count("stream");
        await new Promise((r) => setTimeout(r, opened + 2 * 100 + 5000 + 1000 - Date.now()));
        assert.equal(fetches.count("stream"), before, "no new /stream: the first one was kept");
      }
      assert.equal(s.state, "open");
      assert.deepEqual(restarts, []);
    });

    test("a /send that fails: the session rebinds and BOUND's requests decides what goes again", async (t) => {
      const { base } = await proxyTo(quick);
      const fetches = spy(t);
      const events = [];
      const s = await session(base, { transport, onReconnectionStart: () => events.push("start"), onReconnectionComplete: (i) => events.push(i) });
      const firstId = s.id;
      const c = await listeningClient(s);
      const topic = unique("lost-send");
      await c.subscribe(`${topic}/#`, { qos: 1 });
      const hasPublish = (call) => call.endpoint === "send" && call.frames.some((f) => f.type === FrameType.PUBLISH);

      // 1. The gateway gets the PUBLISH, its answer is lost: it must not go again.
      fetches.intercept = (call, go) => {
        if (!hasPublish(call)) return null;
        fetches.intercept = null;
        return go().then(() => Promise.reject(new TypeError("fetch failed (answer lost)")));
      };
      await c.publish(`${topic}/a`, "a", 1);
      // Its RESULT may come by the stream before the client has handled the lost
      // answer: the second failure must not fall into the first rebind.
      await waitFor(() => events.some((e) => e !== "start"), { what: "the first rebind complete" });
      // 2. The PUBLISH never reaches the gateway: it must go again.
      fetches.intercept = (call) => {
        if (!hasPublish(call)) return null;
        fetches.intercept = null;
        return Promise.reject(new TypeError("fetch failed (request lost)"));
      };
      await c.publish(`${topic}/b`, "b", 1);

      await waitFor(() => c.received.length >= 2, { what: "both messages back from the broker" });
      await mosquittoPub(mosquitto.port, `${topic}/end`, ["-q", "1", "-m", "end"]);
      await waitFor(() => c.received.length >= 3, { what: "the closing message" });
      assert.deepEqual(c.received.map((m) => m.payloadString), ["a", "b", "end"], "each exactly once");
      assert.equal(s.id, firstId, "the same session");
      assert.equal(events.filter((e) => e === "start").length, 2);
      assert.ok(events.filter((e) => e !== "start").every((e) => e.messagesMayHaveBeenLost === false));
      assert.equal(fetches.calls.filter(hasPublish).length, 3, "a once, b twice");
    });

    test("a /send that arrives after the session sent its requests again: each runs once", async (t) => {
      const fetches = spy(t);
      const s = await session(quick.base, { transport });
      const c = await listeningClient(s);
      const topic = unique("late-send");
      await c.subscribe(`${topic}/#`, { qos: 1 });
      const hasPublish = (call) => call.endpoint === "send" && call.frames.some((f) => f.type === FrameType.PUBLISH);

      // The client gives up on the /send at once (as after a timeout), but the request
      // is still on its way: it reaches the gateway only after the session has rebound
      // and sent the PUBLISH again. An aborted fetch is not a recalled one.
      let release;
      const held = new Promise((resolve) => (release = resolve));
      let late;
      fetches.intercept = (call, _go, sent) => {
        if (!hasPublish(call)) return null;
        fetches.intercept = null;
        late = held.then(sent);
        return Promise.reject(new TypeError("fetch failed (timed out)"));
      };
      await c.publish(`${topic}/a`, "a", 1);
      assert.equal(fetches.calls.filter(hasPublish).length, 2, "sent again after the rebind");
      release();
      const answer = await late;
      assert.equal(answer.status, 204, "the late copy is answered, its PUBLISH skipped");

      await mosquittoPub(mosquitto.port, `${topic}/end`, ["-q", "1", "-m", "end"]);
      await waitFor(() => c.received.some((m) => m.payloadString === "end"), { what: "the closing message" });
      assert.deepEqual(c.received.map((m) => m.payloadString), ["a", "end"], "a exactly once");
    });
  });
}

test("streaming: the gateway ends a stream after ~4 MiB; the client renews it unnoticed", async (t) => {
  const fetches = spy(t);
  const events = [];
  const s = await session(gateway.base, { transport: "streaming", onReconnectionStart: () => events.push("start") });
  const c = await listeningClient(s);
  const topic = unique("big");
  await c.subscribe(topic, { qos: 0 });
  // 48 numbered messages of 100 KiB: 4.8 MiB, more than one stream carries.
  const count = 48;
  await publishNumbered(mosquitto.port, topic, { count, rate: 400, line: (i) => `${i}:`.padEnd(100 * 1024, "x") });
  await waitFor(() => c.received.length >= count, { timeout: 15000, what: `${count} messages` });
  assert.deepEqual(
    c.received.map((m) => Number(m.payloadString.split(":")[0])),
    Array.from({ length: count }, (_, i) => i),
    "all, in order, once",
  );
  assert.ok(fetches.count("stream") >= 2, `renewed (${fetches.count("stream")} streams)`);
  const binds = fetches.calls.filter((x) => x.endpoint === "stream" && x.frames[0]?.type === FrameType.BIND);
  assert.ok(binds.length >= 1, "the renewed stream starts with BIND");
  assert.deepEqual(events, [], "the application was not told");
  assert.equal(s.transport, "streaming");
});

describe("a cut longer than session_timeout", () => {
  for (const transport of ["websocket", "streaming", "polling"]) {
    test(`${transport}: a fresh session, its subscriptions back without application code`, async () => {
      const { proxy, base } = await proxyTo(shortLived);
      const events = [];
      const s = await session(base, { transport, onReconnectionComplete: (i) => events.push(i) });
      const firstId = s.id;
      const c = await listeningClient(s);
      const topic = unique("expired");
      await c.subscribe(`${topic}/#`, { qos: 1 });

      proxy.blocked = true;
      proxy.cut();
      // The gateway forgets the session: session_timeout (1 s) after it counts the
      // connection lost, which for long polling is 2 × heartbeat + 5 s after the last
      // poll (a next poll could have been lost on its way).
      await new Promise((r) => setTimeout(r, transport === "polling" ? 8600 : 1600));
      proxy.blocked = false;

      await waitFor(() => events.length === 1, { timeout: 10000, what: "onReconnectionComplete" });
      assert.deepEqual(events, [{ messagesMayHaveBeenLost: true }]);
      assert.notEqual(s.id, firstId, "a new session");
      assert.equal(s.transport, transport);
      await mosquittoPub(mosquitto.port, `${topic}/after`, ["-q", "1", "-m", "restored"]);
      const m = await waitFor(() => c.received[0], { what: "a message in the fresh session" });
      assert.equal(m.payloadString, "restored");
    });
  }
});

describe("error answers on HTTP transports reach the application as codes", () => {
  test("a /send with a wrong secret: 4011 ends the session", async () => {
    const closes = [];
    const s = await session(gateway.base, { transport: "polling", onClose: (e) => closes.push(e) });
    const c = await listeningClient(s);
    const lost = [];
    c.onConnectionLost = (e) => lost.push(e.errorCode);
    s._secret = randomBytes(16); // what a tampered or confused client would send
    await assert.rejects(c.publish("x/y", "z"), (e) => e.errorCode === ErrorCode.session_secret);
    assert.equal(closes.length, 1);
    assert.equal(closes[0].errorCode, ErrorCode.session_secret);
    assert.deepEqual(lost, [ErrorCode.session_secret]);
    assert.equal(s.state, "closed");
  });

  test("a BIND for a session the gateway does not know: 4010, then a fresh session", async (t) => {
    const { proxy, base } = await proxyTo(gateway);
    const fetches = spy(t);
    const events = [];
    const s = await session(base, { transport: "streaming", onReconnectionComplete: (i) => events.push(i) });
    const c = await listeningClient(s);
    const topic = unique("unknown");
    await c.subscribe(`${topic}/#`, { qos: 1 });
    s._sessionId = randomBytes(16); // a session of another gateway instance, say
    proxy.cut();
    await waitFor(() => events.length === 1, { timeout: 10000, what: "onReconnectionComplete" });
    assert.deepEqual(events, [{ messagesMayHaveBeenLost: true }]);
    const streams = fetches.calls.filter((x) => x.endpoint === "stream").map((x) => x.frames[0].type);
    assert.deepEqual(streams.slice(-2), [FrameType.BIND, FrameType.OPEN], "BIND refused, then OPEN");
    await mosquittoPub(mosquitto.port, `${topic}/after`, ["-q", "1", "-m", "fresh"]);
    const m = await waitFor(() => c.received[0], { what: "a message in the fresh session" });
    assert.equal(m.payloadString, "fresh");
  });

  test("a BIND claiming frames the gateway never sent: 4014 ends the session", async () => {
    const { proxy, base } = await proxyTo(gateway);
    const closes = [];
    const s = await session(base, { transport: "polling", onClose: (e) => closes.push(e.errorCode) });
    const c = await listeningClient(s);
    const lost = [];
    c.onConnectionLost = (e) => lost.push(e.errorCode);
    s._received += 5; // a count from the future
    proxy.cut();
    await waitFor(() => closes.length === 1, { timeout: 10000, what: "onClose" });
    assert.deepEqual(closes, [ErrorCode.session_count]);
    assert.deepEqual(lost, [ErrorCode.session_count]);
  });
});

// session.close() on an HTTP transport sends its CLOSE by a /send: the Promise must not
// resolve before that /send is answered, or a Node.js process that closes its session
// and exits leaves it on the gateway until session_timeout, and the gateway then ends
// it as expired: the wills of its dedicated clients fire, although the application
// closed it on purpose.
describe("close(): the gateway has freed the session when the Promise resolves", () => {
  // A gateway with a short session_timeout (an abandoned session expires soon, and its
  // wills fire then) and its metrics, which count the live sessions.
  let metered;
  const CLIENT_JS = new URL("../src/client.js", import.meta.url).href;

  before(async () => {
    const [port, metricsPort] = await Promise.all([freePort(), freePort()]);
    const caddy = await startCaddy(
      `http://127.0.0.1:${port} {
\tmqtt_gateway /mqtt/* {
\t\tbroker main mqtt://127.0.0.1:${mosquitto.port}
\t\tsession_timeout 2s
\t}
}
http://127.0.0.1:${metricsPort} {
\tmetrics
}`,
      { port, probe: "/mqtt/client.js" },
    );
    metered = {
      ...caddy,
      base: `http://127.0.0.1:${port}/mqtt`,
      /** Live sessions, from the metrics. */
      sessions: async () => {
        const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
        return Number(/^mqtt_gateway_sessions\{[^}]*\} (\d+)/m.exec(text)?.[1] ?? 0);
      },
    };
  });

  after(() => metered?.stop().catch(() => {}));

  /** Waits for the sessions of earlier tests to be gone (they expire after 2 s). */
  const noSessions = () => waitFor(async () => (await metered.sessions()) === 0, { timeout: 5000, interval: 50, what: "no session on the gateway" });

  /** A client of the other gateway subscribed to the will topic: what fires arrives here. */
  async function willWatcher(topic) {
    const w = await listeningClient(await session(gateway.base));
    await w.subscribe(topic, { qos: 1 });
    return w;
  }

  /**
   * Runs a Node.js process that opens a session on `transport`, connects a dedicated
   * client with a will on `willTopic`, then closes the session (or not) and exits at
   * once, as a script or a service being stopped does.
   */
  async function shortLivedProcess({ transport, willTopic, close }) {
    const script = `
      import { Message, openSession } from ${JSON.stringify(CLIENT_JS)};
      const [base, transport, id, willTopic, close] = process.argv.slice(1);
      const s = await openSession(base, { transport });
      const c = s.createClient("main", id);
      const will = new Message("will");
      will.destinationName = willTopic;
      will.qos = 1;
      await c.connect({ willMessage: will });
      if (close === "close") await s.close();
      console.log(s.state);
      process.exit(0);
    `;
    const id = `close-${randomBytes(4).toString("hex")}`;
    const r = await run(process.execPath, ["--input-type=module", "-e", script, metered.base, transport, id, willTopic, close ? "close" : ""], {
      timeout: 20000,
    });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.toString().trim();
  }

  for (const transport of ["streaming", "polling"]) {
    test(`${transport}: close() resolves once the /send carrying CLOSE is answered; the session is closed at once`, async (t) => {
      await noSessions();
      const fetches = spy(t);
      const s = await session(metered.base, { transport });
      const c = s.createClient("main", `close-${randomBytes(4).toString("hex")}`);
      const will = new Message("will");
      will.destinationName = unique("close-will");
      await c.connect({ willMessage: will });
      assert.equal(await metered.sessions(), 1);
      const lost = [];
      c.onConnectionLost = (e) => lost.push(e.errorCode);
      // The /send with CLOSE takes its time (a slow network): close() waits for it.
      let answered = false;
      fetches.intercept = (call, go) => {
        if (call.endpoint !== "send" || !call.frames.some((f) => f.type === FrameType.CLOSE)) return null;
        return new Promise((r) => setTimeout(r, 300))
          .then(go)
          .then((res) => {
            answered = true;
            return res;
          });
      };
      const closing = s.close();
      assert.equal(s.state, "closed", "closed at the call");
      assert.deepEqual(lost, [0], "onConnectionLost at the call");
      await closing;
      assert.equal(answered, true, "the /send carrying CLOSE was answered");
      assert.equal(await metered.sessions(), 0, "the gateway has freed the session");
    });

    test(`${transport}: a process that exits right after await close() leaves no session behind, and no will fires`, async () => {
      await noSessions();
      const willTopic = unique("exit-will");
      const watcher = await willWatcher(willTopic);
      assert.equal(await shortLivedProcess({ transport, willTopic, close: true }), "closed");
      assert.equal(await metered.sessions(), 0, "the gateway has freed the session");
      // Past session_timeout (2 s): an abandoned session has expired, and its will fired.
      await new Promise((r) => setTimeout(r, 2000 + 1500));
      assert.deepEqual(watcher.received.map((m) => m.payloadString), [], "no will");
    });
  }

  test("control: a process that exits without close() leaves its session to expire, and its will fires", async () => {
    await noSessions();
    const willTopic = unique("exit-will");
    const watcher = await willWatcher(willTopic);
    assert.equal(await shortLivedProcess({ transport: "streaming", willTopic, close: false }), "open");
    assert.equal(await metered.sessions(), 1, "the session waits for its client");
    await waitFor(() => watcher.received.length > 0, { timeout: 2000 + 3000, what: "the will of the expired session" });
    assert.deepEqual(watcher.received.map((m) => m.payloadString), ["will"]);
    assert.equal(await metered.sessions(), 0);
  });
});
