// Cookies for the HTTP transports outside browsers. A browser keeps the
// cookies a load balancer sets (Caddy's lb_policy cookie pins a session's
// requests to one gateway instance) and sends them back by itself; Node's
// fetch keeps none. This jar does that one job for Node: it remembers the
// name=value of each Set-Cookie per origin and sends them back to that
// origin. Attributes (Path, Expires, Domain) are ignored: the jar lives as
// long as the process and serves one gateway URL's requests.

const jars = new Map(); // origin → Map(name → value)

/** True where the runtime manages cookies itself (a page). */
const browserManaged = typeof document !== "undefined";

/**
 * Remembers the cookies a response sets.
 * @param {string} url
 * @param {Response} res
 */
export function storeCookies(url, res) {
  if (browserManaged) return;
  const lines = typeof res.headers.getSetCookie === "function" ? res.headers.getSetCookie() : [];
  if (lines.length === 0) return;
  const origin = new URL(url).origin;
  let jar = jars.get(origin);
  if (!jar) jars.set(origin, (jar = new Map()));
  for (const line of lines) {
    const pair = line.split(";", 1)[0];
    const eq = pair.indexOf("=");
    if (eq > 0) jar.set(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
  }
}

/**
 * The Cookie header for a request, if the jar has any for its origin.
 * @param {string} url
 * @returns {Record<string, string>}
 */
export function cookieHeader(url) {
  if (browserManaged) return {};
  const jar = jars.get(new URL(url).origin);
  if (!jar || jar.size === 0) return {};
  return { Cookie: [...jar].map(([k, v]) => `${k}=${v}`).join("; ") };
}
