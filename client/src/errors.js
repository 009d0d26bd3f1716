/**
 * Error codes of the mqtt_gateway protocol (transport/PROTOCOL.md, "Error codes"),
 * keyed by the name the table gives them. Frozen: this is the wire contract.
 * @type {Readonly<Record<string, number>>}
 */
export const ErrorCode = Object.freeze({
  ok: 0,
  malformed: 4000,
  unsupported_version: 4001,
  frame_too_large: 4002,
  bad_request: 4003,
  heartbeat_timeout: 4004,
  session_unknown: 4010,
  session_secret: 4011,
  session_gap: 4012,
  too_many_sessions: 4013,
  session_count: 4014,
  not_authenticated: 4020,
  not_authorized: 4021,
  hook_unavailable: 4022,
  invalid_topic: 4030,
  invalid_filter: 4031,
  message_too_large: 4032,
  invalid_qos: 4033,
  unknown_broker: 4040,
  broker_unavailable: 4041,
  broker_refused: 4042,
  broker_rejected: 4043,
  broker_timeout: 4044,
  client_connected: 4045,
  overflow: 4050,
  rate_limited: 4051,
  too_many_clients: 4052,
  too_many_subscriptions: 4053,
  shutting_down: 4090,
  internal: 4091,
});

/**
 * Code used by the client when the gateway cannot be reached at all (no transport
 * could be opened, or it dropped before the session was established). The protocol
 * table has no such code because the server never sends it; 1006 is what a browser
 * reports for an abnormal WebSocket closure, so it reads naturally in logs.
 */
export const CONNECTION_FAILED = 1006;

const names = new Map(Object.entries(ErrorCode).map(([name, code]) => [code, name]));
names.set(CONNECTION_FAILED, "connection_failed");

/**
 * The protocol name of a numeric code ("not_authorized" for 4021), or "unknown".
 * @param {number} code
 * @returns {string}
 */
export function errorName(code) {
  return names.get(code) ?? "unknown";
}

/** Most characters of an application's input that the client's own messages repeat. */
const ECHO_MAX = 200;

/**
 * Application input (a topic, a filter, a URL) as the client's own error messages
 * repeat it: cut to `max` characters with "…" after, so that a 70,000-character topic
 * does not make a 70 KB message. Never cuts a surrogate pair in two.
 * @param {unknown} input
 * @param {number} [max]
 * @returns {string}
 */
export function echo(input, max = ECHO_MAX) {
  const s = String(input);
  if (s.length <= max) return s;
  const last = s.charCodeAt(max - 1);
  const cut = last >= 0xd800 && last <= 0xdbff ? max - 1 : max; // a high surrogate
  return `${s.slice(0, cut)}…`;
}

/**
 * A value the application gave, for a message saying it is not what was expected:
 * `"1" (string)`, `3 (number)`, `null`, `an object`. Strings are quoted (and cut, see
 * echo).
 * @param {unknown} value
 * @returns {string}
 */
export function describeValue(value) {
  if (value === null || value === undefined) return String(value);
  if (typeof value === "string") return `${JSON.stringify(echo(value))} (string)`;
  if (typeof value === "bigint") return `${value}n (bigint)`;
  if (typeof value === "function") return "a function";
  if (typeof value === "object") return Array.isArray(value) ? "an array" : "an object";
  return `${echo(String(value))} (${typeof value})`;
}

/**
 * The error every failed operation reports, to callbacks and as a Promise rejection.
 * `errorCode` is the protocol's numeric code, `errorMessage` the human text (from the
 * gateway when it produced the error).
 */
export class MqttGatewayError extends Error {
  /**
   * @param {number} errorCode
   * @param {string} [errorMessage]
   */
  constructor(errorCode, errorMessage = errorName(errorCode)) {
    super(`${errorName(errorCode)} (${errorCode}): ${errorMessage}`);
    this.name = "MqttGatewayError";
    this.errorCode = errorCode;
    this.errorMessage = errorMessage;
  }
}
