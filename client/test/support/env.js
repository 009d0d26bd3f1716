// The real parts the integration tests run against: a Mosquitto broker, a Caddy with
// the mqtt_gateway module, and a TCP proxy that can cut connections. Everything
// listens on 127.0.0.1 on free ports; every child process is killed when its test
// file ends (stop() in after() hooks, and a last-resort kill on process exit).

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import http from "node:http";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { after, before } from "node:test";
import { fileURLToPath } from "node:url";

import { openSession } from "../../src/client.js";
import { waitFor } from "./wait.js";

/** The repository root (client/..). */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

const children = new Set();
process.on("exit", () => {
  for (const c of children) kill(c, "SIGKILL");
});

/**
 * Kills a child, and its whole process group when it leads one (`go run` starts the
 * program as its own child, which a signal to `go run` alone would leave running).
 */
function kill(child, signal) {
  try {
    if (child.group) process.kill(-child.pid, signal);
    else child.kill(signal);
  } catch {
    // already gone
  }
}

// MQTTGW_TEST_PORTS=27000-27999 keeps every port the tests listen on within that
// range (a machine shared with others); unset, the system picks free ports.
const PORT_RANGE = /^(\d+)-(\d+)$/.exec(process.env.MQTTGW_TEST_PORTS ?? "")?.slice(1).map(Number) ?? null;

/**
 * A free TCP port on 127.0.0.1: within MQTTGW_TEST_PORTS when set, else listen on
 * port 0, note the port, close.
 */
export function freePort() {
  if (PORT_RANGE) return freePortIn(...PORT_RANGE);
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * A free TCP port on 127.0.0.1 within [low, high], for tests that must restart a server
 * on the same port or keep to a range: tries the range from a random start.
 */
export async function freePortIn(low, high) {
  const span = high - low + 1;
  const first = Math.floor(Math.random() * span);
  for (let i = 0; i < span; i++) {
    const port = low + ((first + i) % span);
    // A port handed out is not free for this process any more, even if nothing listens
    // on it yet (Promise.all of several freePort calls).
    if (handedOut.has(port)) continue;
    if (await isFree(port)) {
      if (handedOut.has(port)) continue;
      handedOut.add(port);
      return port;
    }
  }
  throw new Error(`no free port in ${low}-${high}`);
}

const handedOut = new Set();

function isFree(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once("error", () => resolve(false));
    srv.listen(port, "127.0.0.1", () => srv.close(() => resolve(true)));
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: "127.0.0.1" });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Finds a program in PATH (and in the sbin directories, where Debian puts mosquitto). */
export function findProgram(name, envVar) {
  if (envVar && process.env[envVar]) return process.env[envVar];
  const dirs = (process.env.PATH ?? "").split(path.delimiter).concat(["/usr/sbin", "/usr/local/sbin", "/sbin"]);
  for (const d of dirs) {
    const p = path.join(d, name);
    if (d && existsSync(p)) return p;
  }
  throw new Error(`${name} not found in PATH${envVar ? ` (or set ${envVar})` : ""}`);
}

/**
 * Spawns a child whose output is kept (the last 64 KiB) for error messages.
 * @returns {import("node:child_process").ChildProcess & {output: () => string, exited: Promise<number | null>}}
 */
export function spawnChild(cmd, args, options = {}) {
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...options });
  let out = "";
  const keep = (chunk) => {
    out += chunk.toString();
    if (out.length > 65536) out = out.slice(-65536);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  children.add(child);
  child.exited = new Promise((resolve) => {
    child.once("exit", (code, signal) => {
      children.delete(child);
      resolve(code ?? signal);
    });
    child.once("error", (err) => {
      children.delete(child);
      keep(`spawn error: ${err.message}\n`);
      resolve(null);
    });
  });
  child.output = () => out;
  return child;
}

/** Stops a child: SIGTERM (or `signal`), then SIGKILL if it lingers. */
export async function stopChild(child, signal = "SIGTERM", grace = 5000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill(signal);
  const timer = setTimeout(() => child.kill("SIGKILL"), grace);
  await child.exited;
  clearTimeout(timer);
}

/** Waits until `port` accepts TCP connections, failing early if the child died. */
export async function waitForListen(port, child, what, timeout = 20000) {
  let dead = false;
  child.exited.then(() => (dead = true));
  await waitFor(
    async () => {
      if (dead) throw new Error(`${what} exited before listening:\n${child.output()}`);
      return canConnect(port);
    },
    { timeout, interval: 20, what: `${what} on port ${port}` },
  ).catch((err) => {
    throw new Error(`${err.message}\n${child.output()}`);
  });
}

/**
 * Starts Mosquitto on a free loopback port (or `port`, to restart a broker where its
 * clients expect it), anonymous access allowed; `settings` are added to its
 * configuration.
 * @param {{port?: number, settings?: string}} [o]
 * @returns {Promise<{port: number, stop: () => Promise<void>, output: () => string}>}
 */
export async function startMosquitto({ port, settings = "" } = {}) {
  const bin = findProgram("mosquitto", "MQTTGW_MOSQUITTO_BIN");
  port ??= await freePort();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "mqttgw-mosquitto-"));
  const conf = path.join(dir, "mosquitto.conf");
  await fs.writeFile(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n${settings}`);
  const child = spawnChild(bin, ["-c", conf]);
  try {
    await waitForListen(port, child, "mosquitto");
  } catch (err) {
    await stopChild(child, "SIGKILL");
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    port,
    output: child.output,
    async stop() {
      await stopChild(child);
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

// ------------------------------------------------------------------ caddy

let caddyBin;

/**
 * The Caddy binary with the module: $MQTTGW_CADDY_BIN, or one built once per test run
 * from ./examples/caddy. `node --test` runs each file in its own process, all children
 * of the runner, so the build lives in a directory named after the runner's pid and a
 * lock directory makes the other files wait for the first build instead of repeating
 * it. Directories of runs that have ended are removed.
 * @returns {Promise<string>}
 */
export function caddyBinary() {
  if (process.env.MQTTGW_CADDY_BIN) return Promise.resolve(process.env.MQTTGW_CADDY_BIN);
  caddyBin ??= buildCaddy();
  return caddyBin;
}

const BUILD_PREFIX = "mqttgw-client-caddy-";

async function removeStaleBuilds() {
  for (const name of await fs.readdir(os.tmpdir()).catch(() => [])) {
    if (!name.startsWith(BUILD_PREFIX)) continue;
    const pid = Number(name.slice(BUILD_PREFIX.length));
    if (!Number.isInteger(pid) || pid === process.ppid || isAlive(pid)) continue;
    await fs.rm(path.join(os.tmpdir(), name), { recursive: true, force: true });
  }
}

function isAlive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === "EPERM";
  }
}

async function buildCaddy() {
  await removeStaleBuilds();
  const dir = path.join(os.tmpdir(), `${BUILD_PREFIX}${process.ppid}`);
  const bin = path.join(dir, "caddy");
  const lock = path.join(dir, "lock");
  await fs.mkdir(dir, { recursive: true });
  for (;;) {
    if (existsSync(bin)) return bin;
    try {
      await fs.mkdir(lock);
      break; // ours to build
    } catch (err) {
      if (err.code !== "EEXIST") throw err;
      // Another test file is building: wait for it (a cold build of Caddy takes minutes).
      await waitFor(() => existsSync(bin) || !existsSync(lock), { timeout: 15 * 60_000, interval: 200, what: "the caddy build of another test file" });
    }
  }
  try {
    const go = findGo();
    const tmp = `${bin}.${process.pid}.tmp`;
    const child = spawnChild(go, ["build", "-o", tmp, "./examples/caddy"], { cwd: REPO_ROOT });
    const code = await child.exited;
    if (code !== 0) throw new Error(`go build ./examples/caddy failed (${code}):\n${child.output()}`);
    await fs.rename(tmp, bin); // atomic: other files never see a half-written binary
    return bin;
  } finally {
    await fs.rm(lock, { recursive: true, force: true });
  }
}

function findGo() {
  try {
    return findProgram("go", "MQTTGW_GO_BIN");
  } catch {
    if (existsSync("/usr/local/go/bin/go")) return "/usr/local/go/bin/go";
    throw new Error("go not found: set MQTTGW_CADDY_BIN to a caddy binary with the mqtt_gateway module");
  }
}

/**
 * Starts a Caddy (the one with the module) with the given Caddyfile site blocks, under
 * global options that keep it off the admin port and away from HTTPS. Resolves once
 * `port` answers HTTP.
 * @param {string} sites Caddyfile site blocks
 * @param {object} o
 * @param {number} o.port the port the sites listen on (to wait for)
 * @param {string} [o.probe] a path to fetch to see it serving (any status will do)
 * @param {number} [o.adminPort] Caddy's admin API on this port (else off)
 * @returns {Promise<{port: number, stop: (signal?: string) => Promise<void>, output: () => string}>}
 */
export async function startCaddy(sites, { port, probe = "/", adminPort }) {
  const bin = await caddyBinary();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "mqttgw-caddy-"));
  const file = path.join(dir, "Caddyfile");
  const admin = adminPort ? `admin 127.0.0.1:${adminPort}` : "admin off";
  await fs.writeFile(file, `{\n\t${admin}\n\tauto_https off\n\tdefault_bind 127.0.0.1\n}\n${sites}\n`);
  // Caddy keeps data and autosaved config under XDG dirs; keep them out of $HOME.
  const env = { ...process.env, XDG_DATA_HOME: dir, XDG_CONFIG_HOME: dir, HOME: dir };
  const child = spawnChild(bin, ["run", "--config", file, "--adapter", "caddyfile"], { env, cwd: dir });
  const stop = async (signal = "SIGTERM") => {
    await stopChild(child, signal);
    await fs.rm(dir, { recursive: true, force: true });
  };
  try {
    await waitForListen(port, child, "caddy");
    // Listening is not serving yet: wait for an HTTP answer, whatever its status.
    await waitFor(
      () => fetch(`http://127.0.0.1:${port}${probe}`, { signal: AbortSignal.timeout(1000) }).then((r) => r.arrayBuffer().then(() => true), () => false),
      { timeout: 20000, interval: 20, what: "caddy to answer HTTP" },
    );
  } catch (err) {
    await stop("SIGKILL");
    throw new Error(`${err.message}\n${child.output()}`);
  }
  return { port, stop, output: child.output };
}

/**
 * The set-up of a test file that runs its tests against one Mosquitto and one gateway
 * in front of it: registers the file's before and after hooks, and returns `env`, whose
 * `mosquitto` and `gateway` are set before the tests run. Functions the tests push on
 * `env.cleanups` run after them, last first, each on its own (a failure in one must
 * not leave the others running), then the gateway and the broker stop.
 * @param {{extra?: string}} [gatewayOptions] as startGateway's
 */
export function gatewayForFile(gatewayOptions = {}) {
  const env = { mosquitto: null, gateway: null, cleanups: [] };
  before(async () => {
    env.mosquitto = await startMosquitto();
    env.gateway = await startGateway({ brokerPort: env.mosquitto.port, ...gatewayOptions });
  });
  after(async () => {
    for (const fn of env.cleanups.reverse()) await fn().catch(() => {});
    await env.gateway?.stop().catch(() => {});
    await env.mosquitto?.stop().catch(() => {});
  });
  return env;
}

/**
 * A session with `env`'s gateway through a proxy of its own (startProxy), to cut or
 * silence its connections; both go with the file's cleanups, the session first.
 * @param {{gateway: {port: number}, cleanups: Array<() => Promise<unknown>>}} env gatewayForFile's
 * @param {object} options openSession's
 */
export async function sessionThroughProxy(env, options) {
  const proxy = await startProxy(env.gateway.port);
  env.cleanups.push(() => proxy.stop());
  const session = await openSession(`http://127.0.0.1:${proxy.port}/mqtt`, options);
  env.cleanups.push(() => session.close());
  return { proxy, session };
}

/**
 * sessionThroughProxy that records the session's reconnections in `events`: "start"
 * for each onReconnectionStart, then onReconnectionComplete's info.
 * @param {{gateway: {port: number}, cleanups: Array<() => Promise<unknown>>}} env gatewayForFile's
 * @param {object} options openSession's, but its reconnection callbacks
 */
export async function watchedSessionThroughProxy(env, options) {
  const events = [];
  const opened = await sessionThroughProxy(env, {
    ...options,
    onReconnectionStart: () => events.push("start"),
    onReconnectionComplete: (info) => events.push(info),
  });
  return { ...opened, events };
}

/**
 * Starts Caddy with mqtt_gateway at /mqtt/*, its broker "main" pointing at
 * 127.0.0.1:brokerPort.
 * @param {object} o
 * @param {number} o.brokerPort
 * @param {string} [o.extra] more lines inside the mqtt_gateway block
 * @param {number} [o.port] the HTTP port (default: a free one)
 * @returns {Promise<{base: string, port: number, stop: (signal?: string) => Promise<void>, output: () => string}>}
 */
export async function startGateway({ brokerPort, extra = "", port } = {}) {
  if (!brokerPort) throw new TypeError("startGateway needs brokerPort");
  port ??= await freePort();
  const lines = extra
    .split("\n")
    .filter((l) => l.trim())
    .map((l) => `\t\t${l.trim()}\n`)
    .join("");
  const caddy = await startCaddy(
    `http://127.0.0.1:${port} {
\tmqtt_gateway /mqtt/* {
\t\tbroker main mqtt://127.0.0.1:${brokerPort}
${lines}\t}
}`,
    { port, probe: "/mqtt/client.js" },
  );
  return { ...caddy, base: `http://127.0.0.1:${port}/mqtt` };
}

/**
 * A Caddy in front of a gateway that refuses WebSocket upgrades (as some corporate
 * proxies do) and passes everything else on, flushing responses as they come.
 * @param {number} target the gateway's port
 * @returns {Promise<{base: string, port: number, stop: () => Promise<void>}>}
 */
export async function startWebSocketBlocker(target) {
  const port = await freePort();
  const caddy = await startCaddy(
    `http://127.0.0.1:${port} {
\t@ws header Connection *Upgrade*
\trespond @ws 403
\treverse_proxy 127.0.0.1:${target} {
\t\tflush_interval -1
\t}
}`,
    { port },
  );
  return { ...caddy, base: `http://127.0.0.1:${port}/mqtt` };
}

/**
 * An HTTP proxy that holds every response until it has all of it, as some antivirus
 * and corporate proxies do, and refuses WebSocket upgrades: HTTP streaming cannot get
 * through it (its responses never end), long polling can. `held` counts the requests
 * it is holding (waiting for their upstream response to end). With `swallowUpgrades`
 * it accepts WebSocket upgrades itself (101, the gateway's subprotocol) and then
 * carries nothing either way, as some proxies do.
 * @param {number} target the gateway's port
 * @param {{swallowUpgrades?: boolean}} [options]
 * @returns {Promise<{base: string, port: number, held: number, stop: () => Promise<void>}>}
 */
export async function startBufferingProxy(target, { swallowUpgrades = false } = {}) {
  const agent = new http.Agent({ keepAlive: false });
  const server = http.createServer((req, res) => {
    proxy.held++;
    res.on("close", () => proxy.held--);
    const body = [];
    req.on("data", (c) => body.push(c));
    req.on("end", () => {
      const headers = { ...req.headers, host: `127.0.0.1:${target}` };
      delete headers.connection;
      const up = http.request({ host: "127.0.0.1", port: target, method: req.method, path: req.url, headers, agent }, (upRes) => {
        const chunks = [];
        upRes.on("data", (c) => chunks.push(c));
        upRes.on("end", () => {
          const all = Buffer.concat(chunks);
          const h = { ...upRes.headers, "content-length": String(all.length) };
          delete h["transfer-encoding"];
          delete h.connection;
          res.writeHead(upRes.statusCode, h);
          res.end(all);
        });
        upRes.on("error", () => res.destroy());
      });
      up.on("error", () => res.destroy());
      // The client gave up: so does the proxy, as real ones do.
      res.on("close", () => up.destroy());
      up.end(Buffer.concat(body));
    });
  });
  const swallowed = new Set();
  server.on("upgrade", (req, socket) => {
    if (!swallowUpgrades) {
      socket.end("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
      return;
    }
    const accept = createHash("sha1")
      .update(`${req.headers["sec-websocket-key"]}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`)
      .digest("base64");
    swallowed.add(socket);
    socket.on("close", () => swallowed.delete(socket));
    socket.on("error", () => {});
    socket.resume(); // read and drop
    socket.write(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: ${req.headers["sec-websocket-protocol"]}\r\n\r\n`,
    );
  });
  const proxy = {
    port: 0,
    base: "",
    held: 0,
    stop() {
      for (const socket of swallowed) socket.destroy();
      server.closeAllConnections();
      agent.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  await listenOnFreePort(server);
  proxy.port = server.address().port;
  proxy.base = `http://127.0.0.1:${proxy.port}/mqtt`;
  return proxy;
}

// ------------------------------------------------------------------ proxy

/**
 * A TCP proxy on a free loopback port, to cut connections the way networks do.
 * `cut()` destroys every proxied connection abruptly (RST); while `blocked` is true,
 * new connections are refused the same way; while `blackhole` is true, bytes from the
 * target are counted in `discarded` and dropped (the sender believes they were
 * delivered); `silence()` leaves the connections of now silent for good, both ways,
 * while new ones work (a network switch: the old path just stops); `target` can be changed to point at another gateway (a restart).
 * @param {number} target
 */
export async function startProxy(target) {
  const pairs = new Set();
  const proxy = {
    port: 0,
    target,
    blocked: false,
    blackhole: false, // gateway → client bytes are dropped
    deaf: false, // client → gateway bytes are dropped
    discarded: 0,
    connections: 0,
    silence() {
      for (const pair of pairs) pair.silent = true;
    },
    cut() {
      for (const [a, b] of pairs) {
        reset(a);
        reset(b);
      }
      pairs.clear();
    },
    stop() {
      proxy.cut();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  const server = net.createServer((client) => {
    if (proxy.blocked) {
      reset(client);
      return;
    }
    proxy.connections++;
    const upstream = net.connect({ port: proxy.target, host: "127.0.0.1" });
    const pair = [client, upstream];
    pairs.add(pair);
    const end = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on("error", end).on("close", end);
    upstream.on("error", end).on("close", end);
    client.on("data", (chunk) => {
      if (proxy.deaf || pair.silent) proxy.discarded += chunk.length;
      else upstream.write(chunk);
    });
    upstream.on("data", (chunk) => {
      if (proxy.blackhole || pair.silent) proxy.discarded += chunk.length;
      else client.write(chunk);
    });
  });
  await listenOnFreePort(server);
  proxy.port = server.address().port;
  return proxy;
}

/** Listens on a free loopback port (within MQTTGW_TEST_PORTS when set). */
async function listenOnFreePort(server) {
  const port = PORT_RANGE ? await freePort() : 0;
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function reset(socket) {
  if (typeof socket.resetAndDestroy === "function" && socket.readyState !== "opening") socket.resetAndDestroy();
  else socket.destroy();
}

// ------------------------------------------------------------------ mosquitto tools

/**
 * Runs a program to completion; resolves with {code, stdout (Buffer), stderr}.
 * @param {string} cmd
 * @param {string[]} args
 * @param {{timeout?: number, env?: object, cwd?: string}} [o]
 */
export function run(cmd, args, { timeout = 10000, env, cwd } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], ...(env ? { env } : {}), ...(cwd ? { cwd } : {}) });
    children.add(child);
    const out = [];
    let err = "";
    child.stdout.on("data", (c) => out.push(c));
    child.stderr.on("data", (c) => (err += c));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeout);
    child.once("error", (e) => {
      clearTimeout(timer);
      children.delete(child);
      reject(e);
    });
    child.once("close", (code, signal) => {
      clearTimeout(timer);
      children.delete(child);
      resolve({ code: code ?? signal, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

/**
 * Starts a long-running program (mosquitto_sub, `mosquitto_pub -l`, `go run`) in its
 * own process group; returns it with `done`, which resolves like run() when it exits,
 * and `kill()`, which kills the group.
 * @param {string} cmd
 * @param {string[]} args
 * @param {{stdin?: boolean}} [o] stdin: a pipe to write to (child.stdin), else ignored
 */
export function start(cmd, args, { stdin = false } = {}) {
  const child = spawn(cmd, args, { stdio: [stdin ? "pipe" : "ignore", "pipe", "pipe"], detached: true });
  child.group = true;
  children.add(child);
  const out = [];
  let err = "";
  child.stdout.on("data", (c) => out.push(c));
  child.stderr.on("data", (c) => (err += c));
  const done = new Promise((resolve) => {
    child.once("close", (code, signal) => {
      children.delete(child);
      resolve({ code: code ?? signal, stdout: Buffer.concat(out), stderr: err });
    });
  });
  return { child, done, exited: () => child.exitCode !== null || child.signalCode !== null, kill: () => kill(child, "SIGKILL") };
}
