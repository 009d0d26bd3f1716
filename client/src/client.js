// mqttgateway-client: the JavaScript client of mqtt_gateway, for browsers and Node.js.
//
//   import { openSession, Message } from "/mqtt/client.js";      // browser
//   import { openSession, Message } from "mqttgateway-client";   // Node.js
//
//   const session = await openSession("/mqtt", { user: "alice", password: "secret" });
//   const client = session.createClient("sensors");
//   client.onMessageArrived = (m) => console.log(m.destinationName, m.payloadString);
//   await client.connect();
//   await client.subscribe("sensors/+/temp", { qos: 1 });
//   await client.publish("sensors/a/cmd", "on", 1);

import { checkOptions } from "./callbacks.js";
import { checkHeadersOption } from "./request-headers.js";
import { Session } from "./session.js";

export { BrokerClient } from "./broker-client.js";
export { CONNECTION_FAILED, ErrorCode, MqttGatewayError, errorName } from "./errors.js";
export { Message } from "./message.js";
export { Session } from "./session.js";
export { topicMatches } from "./topic.js";
export { registerTransport } from "./transports.js";

// The client's other modules, named here so that a page asks for them all as soon as it
// has this file, rather than a level of imports at a time (the deepest chain is seven
// files, seven round trips one after another). Over HTTP/1.1 a browser fetches six at a
// time and a slow link's bandwidth dominates: behind 40 KB/s and 300 ms the client
// loaded in 2.6 s instead of 2.6-2.9 s; over HTTP/2 they all go at once. Last, so that
// the modules still run in the order the imports above give them.
import "./codec.js";
import "./cookie-jar.js";
import "./frame-reader.js";
import "./gateway-url.js";
import "./limits.js";
import "./timers.js";
import "./transport-http.js";
import "./transport-memory.js";
import "./transport-polling.js";
import "./transport-streaming.js";
import "./transport-websocket.js";

/**
 * Opens a session with the gateway.
 *
 * @param {string | URL} url the gateway's base URL, e.g. "https://host/mqtt" or, in a
 *   page, "/mqtt" (resolved against the page's location)
 * @param {object} [options]
 * @param {string} [options.user] user name for the gateway's authenticate hook
 * @param {string | ArrayBuffer | ArrayBufferView | (() => string | ArrayBuffer | ArrayBufferView)} [options.password]
 *   for the authenticate hook; a function is asked at each OPEN (a refreshed token)
 * @param {string | Function | Array<string | Function>} [options.transport] "auto"
 *   (default: "websocket", then "streaming", then "polling", starting with the one that
 *   last worked for this URL), one transport name or factory to force it, or a list to
 *   try in order
 * @param {number} [options.maxBandwidth] bytes per second the gateway may send
 * @param {number} [options.connectTimeout] ms to wait for the last (or only) transport
 *   to open (10000)
 * @param {number} [options.probeTimeout] ms a transport that is not the last choice
 *   gets to connect and answer OPEN/BIND before the next is tried (3000)
 * @param {() => void} [options.onReconnectionStart]
 * @param {(info: {messagesMayHaveBeenLost: boolean}) => void} [options.onReconnectionComplete]
 * @param {(info: {errorCode: number, errorMessage: string}) => void} [options.onClose]
 * @param {(info: {errorCode: number, errorMessage: string, value: number}) => void} [options.onNotice]
 * @param {(info: {transport: string, previous: string}) => void} [options.onTransportChange]
 * @param {boolean} [options.closeOnPageHide] in a browser, close the session as close()
 *   does when the page is unloaded for good (`pagehide` not persisted), so the gateway
 *   frees it at once and fires its dedicated clients' wills (default true); false
 *   leaves it to expire after session_timeout
 * @param {boolean} [options.retry] keep trying to open while the gateway cannot be
 *   reached (no answer, or a proxy's 502/503/504) or is not ready (4013, 4022, 4090,
 *   4091), with the backoff of the session's reconnections; a refusal (4020, an HTTP
 *   401 or 404 from something else in its place...) still rejects (default false).
 *   An open session waits out the same failures when it recovers, with or without it
 * @param {AbortSignal} [options.signal] aborting it closes the session; before it has
 *   opened, openSession rejects with the signal's reason
 * @returns {Promise<Session>} rejects with an MqttGatewayError (e.g. 4020 when the
 *   authenticate hook says no, 1006 when the gateway cannot be reached), or a TypeError
 *   when url is not one (a relative URL outside a page) or an option is unknown
 */
export async function openSession(url, options = {}) {
  checkSessionOptions(options);
  if (!URL.canParse(url, globalThis.location?.href)) {
    // A mistake in the call, not a gateway out of reach (1006).
    throw new TypeError(
      `openSession: ${JSON.stringify(String(url))} is not a URL` +
        (globalThis.location ? "" : " (outside a page, give an absolute one, such as https://host/mqtt)"),
    );
  }
  const { signal } = options;
  if (signal?.aborted) throw signal.reason;
  const session = new Session(url, options);
  if (signal) session._closeOnAbort(signal);
  await session._open();
  return session;
}

const SESSION_OPTIONS = [
  "user",
  "password",
  "transport",
  "maxBandwidth",
  "connectTimeout",
  "probeTimeout",
  "onReconnectionStart",
  "onReconnectionComplete",
  "onClose",
  "onNotice",
  "onOverflow",
  "onTransportChange",
  "closeOnPageHide",
  "retry",
  "signal",
  "headers",
];

/** A misspelt option (`transprot`) is a TypeError, as with the clients' methods. */
function checkSessionOptions(options) {
  checkOptions("openSession", options, SESSION_OPTIONS, { callbacks: false });
  checkHeadersOption(options.headers);
  if (options.retry !== undefined && typeof options.retry !== "boolean") {
    throw new TypeError(`openSession option retry must be true or false, got ${typeof options.retry}`);
  }
  // An AbortSignal by what it does, not instanceof: one from another frame or a
  // polyfill is one too.
  const { signal } = options;
  if (signal !== undefined && (typeof signal?.addEventListener !== "function" || typeof signal.aborted !== "boolean")) {
    throw new TypeError("openSession option signal must be an AbortSignal");
  }
}
