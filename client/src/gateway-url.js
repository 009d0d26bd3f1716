// The URL of a gateway endpoint under a base URL, shared by the transports
// (transport-http.js, transport-websocket.js); only the scheme mapping differs.

import { echo } from "./errors.js";

/**
 * `<base>/<name>` as an absolute URL: a relative base ("/mqtt") resolves against the
 * page's location in a browser, the scheme is mapped through `schemes`, trailing
 * slashes of the base path are dropped and so is the fragment.
 * @param {string | URL} base
 * @param {string} name
 * @param {ReadonlyMap<string, string>} schemes accepted base scheme → endpoint scheme
 *   (with the colon, as URL#protocol); any other scheme is a TypeError
 * @returns {string}
 */
export function gatewayUrl(base, name, schemes) {
  const u = new URL(base, globalThis.location?.href);
  const scheme = schemes.get(u.protocol);
  if (scheme === undefined) throw new TypeError(`unsupported gateway URL scheme ${echo(u.protocol)}`);
  if (scheme !== u.protocol) u.protocol = scheme;
  u.pathname = u.pathname.replace(/\/+$/, "") + "/" + name;
  u.hash = "";
  return u.href;
}
