// The WebSocket transport (PROTOCOL.md, Transports/WebSocket): `GET <base>/ws` with
// subprotocol "mqttgw.v1"; each binary WebSocket message is one transport unit.

import { echo } from "./errors.js";
import { browserManagesCookies } from "./cookie-jar.js";
import { gatewayUrl } from "./gateway-url.js";

/** The WebSocket subprotocol of protocol version 1. */
export const SUBPROTOCOL = "mqttgw.v1";

const WS_SCHEMES = new Map([
  ["http:", "ws:"],
  ["https:", "wss:"],
  ["ws:", "ws:"],
  ["wss:", "wss:"],
]);

/**
 * The WebSocket endpoint for a gateway base URL: http→ws, https→wss, path + "/ws".
 * A relative base ("/mqtt") resolves against the page's location in a browser.
 * @param {string | URL} base
 * @returns {string}
 */
export function webSocketUrl(base) {
  return gatewayUrl(base, "ws", WS_SCHEMES);
}

let wsPackage;

// The package's name is a variable, and marked for bundlers to leave alone, so that a
// page's bundle neither carries ws nor needs it installed: a bundler resolves a literal
// import("ws") even though a browser never runs it, and fails where the client is a
// linked folder without node_modules of its own. Only Node.js loads it.
const WS_PACKAGE = "ws";

// Browsers send their cookies with the upgrade themselves. Elsewhere the "ws" package
// is preferred even where a global WebSocket exists (Node.js 22+): only it can send the
// session's cookies with the upgrade and read those the upgrade's answer sets, which a
// cookie-affinity load balancer needs to bring a rebinding WebSocket back to the
// instance holding the session. It is loaded with a dynamic import so that a browser
// never requests it; where it cannot be loaded, the global WebSocket does without
// cookies, or, where there is none (Node.js 20), sessions fall back to HTTP streaming.
// Either is a setup mistake that would otherwise go unseen (a linked copy of the
// client whose folder never had `npm install`), so it is said once.
async function webSocketClass() {
  if (browserManagesCookies && globalThis.WebSocket) return globalThis.WebSocket;
  wsPackage ??= import(/* webpackIgnore: true */ /* @vite-ignore */ WS_PACKAGE).then(
    (m) => m.WebSocket ?? m.default,
    (err) => {
      const instead = globalThis.WebSocket
        ? "the global WebSocket is used, which cannot carry cookies (load balancers with cookie affinity)"
        : "there is no WebSocket, and sessions use HTTP streaming";
      console.warn(`mqttgateway-client: the ws package cannot be loaded (${err?.code ?? err}): ${instead}; install it`);
      return null;
    },
  );
  const WS = (await wsPackage) ?? globalThis.WebSocket;
  if (!WS) throw new Error("no WebSocket here (install the ws package)");
  return WS;
}

/**
 * Creates the socket; with the "ws" package, the session's headers and cookies go with
 * the upgrade request and the cookies its answer sets are kept.
 * @param {any} WS
 * @param {string} url
 * @param {import("./transport-http.js").SessionLink | undefined} link
 */
function createSocket(WS, url, link) {
  const cookies = link?.cookies;
  if (browserManagesCookies || !cookies) return new WS(url, SUBPROTOCOL);
  if (WS === globalThis.WebSocket) {
    // Without the headers, an auth handler in front of the gateway would refuse the
    // upgrade; HTTP streaming, next, sends them.
    if (link.ownHeaders) throw new Error("openSession's headers need the ws package for WebSocket (install it)");
    return new WS(url, SUBPROTOCOL);
  }
  const ws = new WS(url, SUBPROTOCOL, { headers: link.headers ? link.headers() : cookies.header() });
  ws.on("upgrade", (res) => cookies.store(res.headers["set-cookie"]));
  return ws;
}

/**
 * Opens a WebSocket transport. Resolves once the connection is open and the server has
 * accepted the subprotocol; rejects if it fails or takes longer than `timeout` ms (a
 * proxy that swallows the upgrade would otherwise hang the session forever).
 *
 * @param {string | URL} base gateway base URL
 * @param {{timeout?: number, link?: import("./transport-http.js").SessionLink}} [options]
 *   link: its `headers` and `cookies` go with the upgrade outside browsers
 * @returns {Promise<import("./transports.js").Transport>}
 */
export async function connectWebSocket(base, { timeout = 10000, link } = {}) {
  const url = webSocketUrl(base);
  const WS = await webSocketClass();
  return new Promise((resolve, reject) => {
    const ws = createSocket(WS, url, link);
    ws.binaryType = "arraybuffer";
    let open = false;
    let closed = false;
    // What the error event said, when it says anything: browsers say nothing, the "ws"
    // package of Node.js says why ("Unexpected server response: 404", "connect
    // ECONNREFUSED ...").
    let problem = "";

    const transport = {
      name: "websocket",
      /** @type {((unit: Uint8Array) => void) | null} */
      onunit: null,
      /** @type {((ev: {code: number, reason: string}) => void) | null} */
      onclose: null,
      send(unit) {
        // A closing socket drops the data: its close event follows and the session
        // takes it from there, as for any other drop.
        if (ws.readyState === 1) ws.send(unit);
      },
      close(code = 1000, reason = "") {
        finish({ code, reason });
        try {
          ws.close(code, reason);
        } catch {
          ws.close();
        }
      },
    };

    // Reports the end of the transport exactly once, whoever noticed first.
    function finish(ev) {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      if (!open) {
        const why = ev.reason || problem;
        const err = new Error(`websocket ${echo(url)} failed (${ev.code}${why ? ` ${why}` : ""})`);
        // A server answered the upgrade with a plain HTTP answer: not the gateway.
        const status = /^Unexpected server response: (\d{3})$/.exec(problem)?.[1];
        if (status) err.http = { status: Number(status) };
        reject(err);
        return;
      }
      const cb = transport.onclose;
      transport.onclose = null;
      transport.onunit = null;
      cb?.(ev);
    }

    const timer = setTimeout(() => transport.close(4004, "open timed out"), timeout);

    ws.onopen = () => {
      if (ws.protocol !== SUBPROTOCOL) {
        transport.close(1002, "subprotocol not accepted");
        return;
      }
      open = true;
      clearTimeout(timer);
      resolve(transport);
    };
    ws.onmessage = (ev) => {
      if (closed) return;
      if (typeof ev.data === "string") {
        // Version 1 speaks binary messages only on WebSocket.
        transport.close(4000, "text message");
        return;
      }
      transport.onunit?.(new Uint8Array(ev.data));
    };
    // A close event always follows; it carries the code.
    ws.onerror = (ev) => {
      problem = String(ev?.message || ev?.error?.message || "");
    };
    ws.onclose = (ev) => finish({ code: ev.code, reason: ev.reason });
  });
}
