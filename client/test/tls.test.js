// TLS on both sides: the gateway served over HTTPS by Caddy (`tls internal`), the
// client in Node.js and in Chromium over wss:// and HTTPS streaming (HTTP/2), in
// Chromium over HTTP/3 too, and the gateway reaching Mosquitto over mqtts:// with
// certificate verification on (a test CA). A broker certificate for another host is
// refused with an error naming the cause.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createHash, X509Certificate } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { after, before, test } from "node:test";

import { caddyBinary, freePort, run, spawnChild, startProxy, stopChild, waitForListen } from "./support/env.js";
import { waitFor } from "./support/wait.js";
import { openWatchedSession } from "./support/watched-session.js";

const CHROMIUM = process.env.MQTTGW_CHROMIUM_BIN ?? "/usr/bin/chromium";
let dir;
let brokers = [];
let caddy;
let httpsPort;
let h2Port; // a site of HTTP/1.1 and HTTP/2 only: a proxy in front sees all of a page's requests
let good; // the broker the gateway verifies
let caddyRoot; // Caddy's internal CA, which clients must trust

/** A CA and a server certificate for `name` (an IP or a DNS name), with openssl. */
function pki(sub, name) {
  const d = path.join(dir, sub);
  execFileSync("mkdir", ["-p", d]);
  const o = (...args) => execFileSync("openssl", args, { cwd: d, stdio: "pipe" });
  o("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
    "-subj", "/CN=mqtt_gateway test CA", "-keyout", "ca.key", "-out", "ca.pem");
  o("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${name}`,
    "-keyout", "broker.key", "-out", "broker.csr");
  const san = /^[\d.]+$/.test(name) ? `IP:${name}` : `DNS:${name}`;
  execFileSync("sh", ["-c", `printf 'subjectAltName=${san}\\n' > ext.cnf`], { cwd: d });
  o("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
    "-extfile", "ext.cnf", "-out", "broker.pem");
  execFileSync("chmod", ["-R", "a+rX", d]); // mosquitto drops to its own user
  return { ca: path.join(d, "ca.pem"), cert: path.join(d, "broker.pem"), key: path.join(d, "broker.key") };
}

async function startTLSMosquitto(files) {
  const port = await freePort();
  const conf = path.join(path.dirname(files.ca), "mosquitto.conf");
  await fs.writeFile(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\ncertfile ${files.cert}\nkeyfile ${files.key}\n`);
  const child = spawnChild("/usr/sbin/mosquitto", ["-c", conf]);
  await waitForListen(port, child, "mosquitto (tls)");
  const broker = { port, child, ca: files.ca };
  brokers.push(broker);
  return broker;
}

before(async () => {
  dir = await fs.mkdtemp(path.join(os.tmpdir(), "mqttgw-tls-"));
  await fs.chmod(dir, 0o755);
  good = await startTLSMosquitto(pki("good", "127.0.0.1"));
  const wrong = await startTLSMosquitto(pki("wrong", "broker.elsewhere.test"));
  httpsPort = await freePort();
  h2Port = await freePort();
  const caddyfile = path.join(dir, "Caddyfile");
  // The broker both sites reach, verifying its certificate.
  const secure = `broker secure mqtts://127.0.0.1:${good.port} {
			tls {
				ca ${good.ca}
			}
		}`;
  await fs.writeFile(
    caddyfile,
    `{
	admin off
	auto_https disable_redirects
	skip_install_trust
	servers :${h2Port} {
		protocols h1 h2
	}
}
https://127.0.0.1:${h2Port} {
	tls internal
	mqtt_gateway /mqtt/* {
		${secure}
	}
	respond "tls site, HTTP/2"
}
https://127.0.0.1:${httpsPort} {
	tls internal
	mqtt_gateway /mqtt/* {
		${secure}
		broker misnamed mqtts://127.0.0.1:${wrong.port} {
			connect_timeout 2s
			tls {
				ca ${wrong.ca}
			}
		}
	}
	respond "tls site"
}
`,
  );
  const env = { ...process.env, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir, HOME: dir };
  caddy = spawnChild(await caddyBinary(), ["run", "--config", caddyfile, "--adapter", "caddyfile"], { env, cwd: dir });
  await waitForListen(httpsPort, caddy, "caddy (https)");
  caddyRoot = path.join(dir, "caddy", "pki", "authorities", "local", "root.crt");
  await waitFor(() => existsSync(caddyRoot), { timeout: 10000, what: "Caddy's internal CA" });
});

after(async () => {
  if (caddy) await stopChild(caddy);
  for (const b of brokers) await stopChild(b.child);
  if (dir) await fs.rm(dir, { recursive: true, force: true });
});

// The Node side runs in a child process that trusts Caddy's CA the standard way
// (NODE_EXTRA_CA_CERTS): verification stays on.
const nodeScript = (base, transport, broker) => `
import { openSession } from ${JSON.stringify(new URL("../src/client.js", import.meta.url).href)};
const out = {};
try {
  const s = await openSession(${JSON.stringify(base)}, { transport: ${JSON.stringify(transport)} });
  out.transport = s.transport;
  const c = s.createClient(${JSON.stringify(broker)});
  const got = [];
  c.onMessageArrived = (m) => got.push(m.payloadString);
  await c.connect();
  await c.subscribe("tls/#", { qos: 1 });
  await c.publish("tls/node", "over tls", 1);
  const until = Date.now() + 5000;
  while (!got.length && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
  out.got = got;
  await s.close();
} catch (err) {
  out.error = { errorCode: err.errorCode, errorMessage: err.errorMessage ?? err.message };
}
console.log(JSON.stringify(out));
process.exit(0);
`;

async function inNode(transport, broker) {
  const file = path.join(dir, `client-${transport}-${broker}.mjs`);
  await fs.writeFile(file, nodeScript(`https://127.0.0.1:${httpsPort}/mqtt`, transport, broker));
  const r = await run(process.execPath, [file], { timeout: 20000, env: { ...process.env, NODE_EXTRA_CA_CERTS: caddyRoot } });
  return JSON.parse(r.stdout.toString().trim().split("\n").at(-1));
}

for (const transport of ["websocket", "streaming"]) {
  test(`Node.js over ${transport === "websocket" ? "wss://" : "HTTPS streaming"} to a broker over mqtts://`, async () => {
    const r = await inNode(transport, "secure");
    assert.deepEqual(r, { transport, got: ["over tls"] });
  });
}

test("a broker certificate for another host is refused with a clear error", async () => {
  const r = await inNode("websocket", "misnamed");
  assert.equal(r.error?.errorCode, 4041);
  assert.match(r.error.errorMessage, /certificate not valid for the broker's name/);
  // Why, not where: the gateway keeps the broker's address to its log.
  assert.doesNotMatch(r.error.errorMessage, /127\.0\.0\.1/);
});

/**
 * A Chromium that trusts Caddy's internal CA (args are extra flags). Chromium trusts
 * the system store only; --ignore-certificate-errors-spki-list accepts exactly the
 * chains that contain these keys, so every other certificate error still fails.
 */
async function chromiumTrustingCaddy(args = []) {
  const spkiHash = async (file) => {
    const cert = new X509Certificate(await fs.readFile(file));
    return createHash("sha256").update(cert.publicKey.export({ type: "spki", format: "der" })).digest("base64");
  };
  // The chain Caddy serves is the leaf and its intermediate: Chromium matches those.
  const spki = [await spkiHash(caddyRoot), await spkiHash(path.join(path.dirname(caddyRoot), "intermediate.crt"))].join(",");
  const { chromium } = await import("playwright-core");
  return chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", `--ignore-certificate-errors-spki-list=${spki}`, ...args] });
}

/**
 * Runs each transport in a Chromium page served over HTTPS (args are Chromium's
 * extra flags): a session subscribes, publishes at QoS 1 and gets its message.
 * Returns, per transport, the session's transport, the messages, and the HTTP
 * versions of the page's requests to the gateway's endpoints.
 */
async function inChromium(transports, args = []) {
  const browser = await chromiumTrustingCaddy(args);
  try {
    const page = await browser.newPage();
    await page.goto(`https://127.0.0.1:${httpsPort}/`);
    return await page.evaluate(async (transports) => {
      const { openSession } = await import("/mqtt/client.js");
      const out = {};
      for (const transport of transports) {
        performance.clearResourceTimings();
        const s = await openSession("/mqtt", { transport });
        const c = s.createClient("secure");
        const got = [];
        c.onMessageArrived = (m) => got.push(m.payloadString);
        await c.connect();
        await c.subscribe(`tls/browser/${transport}`, { qos: 1 });
        await c.publish(`tls/browser/${transport}`, `from ${transport}`, 1);
        const until = Date.now() + 5000;
        while (!got.length && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
        out[transport] = { transport: s.transport, got, protocols: endpointProtocols() };
        await s.close();
      }
      return out;

      // The HTTP versions of the requests to the gateway's endpoints (a WebSocket's
      // handshake is not a resource timing entry).
      function endpointProtocols() {
        const entries = performance.getEntriesByType("resource").filter((e) => /\/mqtt\/(stream|poll|send)/.test(e.name));
        return [...new Set(entries.map((e) => e.nextHopProtocol))];
      }
    }, transports);
  } finally {
    await browser.close();
  }
}

test("Chromium over wss:// and HTTPS streaming, trusting Caddy's CA by its key", async () => {
  // Over TLS, Chromium speaks HTTP/2 to the gateway, as to any HTTPS site.
  assert.deepEqual(await inChromium(["websocket", "streaming"]), {
    websocket: { transport: "websocket", got: ["from websocket"], protocols: [] },
    streaming: { transport: "streaming", got: ["from streaming"], protocols: ["h2"] },
  });
});

test("Chromium over HTTP/3, which Caddy offers an HTTPS site: streaming and long polling", async () => {
  // Chromium takes HTTP/3 after Caddy's Alt-Svc answer; forcing QUIC for the
  // origin makes every request use it from the first.
  const r = await inChromium(["streaming", "polling"], ["--enable-quic", `--origin-to-force-quic-on=127.0.0.1:${httpsPort}`]);
  assert.deepEqual(r, {
    streaming: { transport: "streaming", got: ["from streaming"], protocols: ["h3"] },
    polling: { transport: "polling", got: ["from polling"], protocols: ["h3"] },
  });
});

// Over HTTP/2 a page has one connection to the gateway, which the session cannot end
// as it ends HTTP/1.1 ones (dropSilentConnections): ending a request ends only the
// request. Chromium ends a silent HTTP/2 connection itself, 10 s after a PING it sends
// with a new request once the connection has brought nothing for 10 s. The session's
// HEADs while it reconnects start that check (_nudgeSilentConnection); without them the
// rebind's request waited on the silent connection for its 45 s deadline, and the page
// rebound about 60 s after the network came back. A proxy in front silences the
// page's connection, as a network switch leaves it; Chromium's offline mode, then
// online, is the switch the browser hears of.
for (const transport of ["streaming", "polling"]) {
  test(`Chromium over HTTP/2, ${transport}: a connection a network switch left silent is left within 40 s`, async () => {
    const proxy = await startProxy(h2Port);
    const browser = await chromiumTrustingCaddy();
    try {
      const page = await browser.newPage();
      await page.goto(`https://127.0.0.1:${proxy.port}/`);
      const topic = `tls/silent/${transport}-${process.pid}`;
      const first = await page.evaluate(openWatchedSession, { transport, broker: "secure", filter: topic });
      assert.deepEqual(first.protocols, ["h2"], "every request of the page over HTTP/2, through the proxy");

      proxy.silence();
      const pub = await run("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(good.port), "--cafile", good.ca, "-t", topic, "-q", "1", "-m", "while silent"]);
      assert.equal(pub.code, 0, pub.stderr);
      await page.context().setOffline(true);
      await new Promise((r) => setTimeout(r, 1000));
      await page.context().setOffline(false);
      await page.waitForFunction(() => window.events.length === 2 && window.got.length === 1, null, { timeout: 40000 });
      const now = await page.evaluate(() => ({ id: window.s.id, transport: window.s.transport, events: window.events, got: window.got }));
      assert.deepEqual(now, { id: first.id, transport, events: ["start", { messagesMayHaveBeenLost: false }], got: ["while silent"] });
      await page.evaluate(() => window.s.close());
    } finally {
      await browser.close();
      await proxy.stop();
    }
  });
}
