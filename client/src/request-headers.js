// Headers of a session's own outside browsers: openSession's `headers` option. A
// Node.js service behind an auth handler in front of the gateway (Caddy's
// forward_auth, an OAuth2 proxy) must show a Bearer token or an API key with every
// request and WebSocket handshake, as a page shows its login cookie. Browsers decide
// a WebSocket handshake's headers themselves, so pages cannot use the option.

import { browserManagesCookies } from "./cookie-jar.js";

// Headers the transports set themselves, or that name the connection rather than the
// caller: sending another value would break the request, so it is a mistake in the call.
const OWN = new Set(["host", "connection", "upgrade", "content-type", "content-length", "transfer-encoding", "keep-alive", "te", "trailer"]);

/**
 * Throws a TypeError for headers a session cannot send: in a browser, or one the
 * transports set (Host, Content-Type, Sec-WebSocket-*...), or X-Mqtt-* (the gateway
 * drops them so that no client can forge what it tells hooks), or a value that is not
 * a string a header can carry.
 * @param {unknown} headers what openSession was given, or what its function returned
 * @param {string} what where they came from, for the message
 * @returns {Record<string, string>}
 */
export function checkHeaders(headers, what = "openSession option headers") {
  if (headers === null || typeof headers !== "object" || Array.isArray(headers)) {
    throw new TypeError(`${what} must be an object of header names and values, got ${headers === null ? "null" : Array.isArray(headers) ? "an array" : typeof headers}`);
  }
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) throw new TypeError(`${what}: ${JSON.stringify(name)} is not a header name`);
    if (OWN.has(lower) || lower.startsWith("sec-websocket-") || lower.startsWith("proxy-")) {
      throw new TypeError(`${what}: ${name} is set by the client itself`);
    }
    if (lower.startsWith("x-mqtt-")) {
      throw new TypeError(`${what}: ${name}: the gateway drops X-Mqtt-* headers (only it sets those for hooks)`);
    }
    if (typeof value !== "string") throw new TypeError(`${what}: the value of ${name} must be a string, got ${typeof value}`);
    if (/[\r\n\0]/.test(value)) throw new TypeError(`${what}: the value of ${name} holds a line break or NUL`);
  }
  return /** @type {Record<string, string>} */ (headers);
}

/**
 * Checks openSession's `headers` option: an object, or a function returning one
 * (called for each request and handshake, so a refreshed token goes with the next).
 * @param {unknown} option
 */
export function checkHeadersOption(option) {
  if (option === undefined) return;
  if (browserManagesCookies) {
    throw new TypeError("openSession option headers works outside browsers only: a page cannot set a WebSocket handshake's headers (use a cookie)");
  }
  if (typeof option !== "function") checkHeaders(option);
}

/**
 * The headers for one request or handshake: the caller's, then the session's cookies
 * (a Cookie header of the caller's comes first, the jar's cookies after it).
 * @param {Record<string, string> | (() => Record<string, string>) | undefined} option
 * @param {import("./cookie-jar.js").CookieJar} jar
 * @returns {Record<string, string>}
 */
export function requestHeaders(option, jar) {
  const own = jar.header().Cookie;
  if (option === undefined) return own ? { Cookie: own } : {};
  const given = typeof option === "function" ? checkHeaders(option(), "openSession option headers() returned") : option;
  const out = {};
  let cookie = own;
  for (const [name, value] of Object.entries(given)) {
    if (name.toLowerCase() === "cookie") cookie = own ? `${value}; ${own}` : value;
    else out[name] = value;
  }
  if (cookie) out.Cookie = cookie;
  return out;
}
