// The pluggable transport layer. A transport carries transport units (one or more
// length-prefixed frames) both ways; the session does not care how. WebSocket, HTTP
// streaming and HTTP long polling register here; so can an application's own.

import { echo } from "./errors.js";
import { connectPolling } from "./transport-polling.js";
import { connectStreaming } from "./transport-streaming.js";
import { connectWebSocket } from "./transport-websocket.js";

/**
 * An HTTP answer that is not the gateway's, which a transport reports with its end or
 * its failure to open (Transport#onclose's `http`, or an `http` property of the
 * factory's rejection): the session puts it in openSession's error, as a wrong base
 * path shows as a 404 (or a 200 that is some other page).
 * @typedef {import("./transport-http.js").HttpAnswer} HttpAnswer
 */

/**
 * A connected transport.
 * @typedef {object} Transport
 * @property {string} name
 * @property {(unit: Uint8Array) => void} send sends one unit; the first one the session
 *   sends is OPEN or BIND
 * @property {(code?: number, reason?: string, o?: {flush?: boolean, unloading?: boolean}) => void} close
 *   closes it; onclose is still called once. flush: the session is ending, units
 *   already handed over should still go out (transports that send asynchronously);
 *   without it the connection is suspect and they are dropped. unloading (with
 *   flush): the page is being unloaded, they must go out before anything asynchronous
 * @property {((unit: Uint8Array) => void) | null} onunit set by the session
 * @property {((ev: {code: number, reason: string, http?: HttpAnswer}) => void) | null} onclose
 *   set by the session; called once when the transport ends, whichever side ended it
 * @property {number} [bindHold] ms the server may take by design to answer BIND (a long
 *   poll waits for something to send), added to the session's handshake deadline
 */

/**
 * Opens a transport to a gateway base URL; resolves when units can be sent.
 * `timeout` bounds the connection step (ms); `link` gives transports that rebind on
 * their own (HTTP) what they need from the session. A rejection may carry `http`
 * (HttpAnswer).
 * @typedef {(base: string, options: {timeout?: number, link?: import("./transport-http.js").SessionLink}) => Promise<Transport>} TransportFactory
 */

/** @type {Map<string, TransportFactory>} */
const registry = new Map([
  ["websocket", connectWebSocket],
  ["streaming", connectStreaming],
  ["polling", connectPolling],
]);

/**
 * The order tried when the application does not choose: the fastest first, then what
 * gets through proxies that block WebSocket, then what gets through proxies that also
 * hold responses until they end.
 */
export const AUTO_ORDER = Object.freeze(["websocket", "streaming", "polling"]);

/**
 * Registers (or replaces) a transport under a name usable in openSession's `transport`.
 * @param {string} name
 * @param {TransportFactory} factory
 */
export function registerTransport(name, factory) {
  if (typeof factory !== "function") throw new TypeError("transport factory must be a function");
  registry.set(name, factory);
}

/**
 * Resolves openSession's `transport` option to an ordered list of [name, factory].
 * @param {string | TransportFactory | Array<string | TransportFactory> | undefined} choice
 *   undefined or "auto": every built-in transport, in AUTO_ORDER; a name or a factory:
 *   that one only; a list: those, in that order
 * @returns {Array<[string, TransportFactory]>}
 */
export function resolveTransports(choice) {
  const items = choice === undefined || choice === "auto" ? AUTO_ORDER : Array.isArray(choice) ? choice : [choice];
  if (items.length === 0) throw new TypeError("no transport given");
  return items.map((n) => {
    if (typeof n === "function") return [n.transportName ?? n.name ?? "custom", n];
    const f = registry.get(n);
    if (!f) throw new TypeError(`unknown transport ${JSON.stringify(typeof n === "string" ? echo(n) : n)} (known: auto, ${[...registry.keys()].join(", ")})`);
    return [n, f];
  });
}

/**
 * The list rotated to start at `first` (when it is in the list): what worked last is
 * tried first, then the transports after it in preference order, then those before it,
 * which failed then but may work now.
 * @template T
 * @param {Array<[string, T]>} list
 * @param {string | null} first
 * @returns {Array<[string, T]>}
 */
export function startingAt(list, first) {
  const i = first === null ? -1 : list.findIndex(([n]) => n === first);
  return i <= 0 ? list : [...list.slice(i), ...list.slice(0, i)];
}
