// The pluggable transport layer. A transport carries transport units (one or more
// length-prefixed frames) both ways; the session does not care how. HTTP streaming and
// long polling will register here with the same contract.

import { connectWebSocket } from "./transport-websocket.js";

/**
 * A connected transport.
 * @typedef {object} Transport
 * @property {string} name
 * @property {(unit: Uint8Array) => void} send sends one unit
 * @property {(code?: number, reason?: string) => void} close closes it; onclose is
 *   still called once
 * @property {((unit: Uint8Array) => void) | null} onunit set by the session
 * @property {((ev: {code: number, reason: string}) => void) | null} onclose set by the
 *   session; called once when the transport ends, whichever side ended it
 */

/**
 * Opens a transport to a gateway base URL; resolves when units can be sent.
 * @typedef {(base: string, options: {timeout?: number}) => Promise<Transport>} TransportFactory
 */

/** @type {Map<string, TransportFactory>} */
const registry = new Map([["websocket", connectWebSocket]]);

/** The order tried when the application does not choose. */
const DEFAULT_ORDER = ["websocket"];

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
 * @param {string | string[] | TransportFactory | undefined} choice
 * @returns {Array<[string, TransportFactory]>}
 */
export function resolveTransports(choice) {
  if (typeof choice === "function") return [[choice.transportName ?? choice.name ?? "custom", choice]];
  const names = choice === undefined ? DEFAULT_ORDER : Array.isArray(choice) ? choice : [choice];
  if (names.length === 0) throw new TypeError("no transport given");
  return names.map((n) => {
    const f = registry.get(n);
    if (!f) throw new TypeError(`unknown transport ${JSON.stringify(n)} (known: ${[...registry.keys()].join(", ")})`);
    return [n, f];
  });
}
