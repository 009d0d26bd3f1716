// Cookies outside browsers. A browser keeps the cookies a load balancer sets
// (Caddy's lb_policy cookie pins requests to one gateway instance) and sends
// them back by itself; Node's fetch and the `ws` package keep none. A
// CookieJar does that one job for Node: it remembers the name=value of each
// Set-Cookie and sends them back with the session's requests and WebSocket
// handshakes. Attributes (Path, Expires, Domain) are ignored, except that a
// cookie set already expired (Max-Age=0, as a balancer that unpins does) is
// dropped: a jar serves one session's requests to one gateway base URL.
//
// One jar per session, not per process: affinity is per session (the balancer's
// cookie pins that session to the instance holding it). A jar shared by every
// session of a process would put them all on the first instance that answered,
// and sessions opened at once would race to overwrite each other's cookie,
// sending some of them to an instance that does not know them (4010).

/** True where the runtime manages cookies itself (a page). */
export const browserManagesCookies = typeof document !== "undefined";

export class CookieJar {
  constructor() {
    /** @type {Map<string, string>} name → value */
    this._cookies = new Map();
  }

  /**
   * Remembers the cookies of Set-Cookie header lines (a fetch Response's
   * `headers.getSetCookie()`, or a Node.js IncomingMessage's `headers["set-cookie"]`).
   * @param {string[] | string | undefined} lines
   */
  store(lines) {
    if (browserManagesCookies || lines === undefined) return;
    for (const line of typeof lines === "string" ? [lines] : lines) {
      const [pair, ...attributes] = line.split(";");
      const eq = pair.indexOf("=");
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      if (attributes.some(isExpiry)) this._cookies.delete(name);
      else this._cookies.set(name, pair.slice(eq + 1).trim());
    }
  }

  /**
   * Remembers the cookies a fetch Response sets.
   * @param {Response} res
   */
  storeFrom(res) {
    if (typeof res.headers.getSetCookie === "function") this.store(res.headers.getSetCookie());
  }

  /**
   * The Cookie header for a request, if the jar holds any.
   * @returns {Record<string, string>}
   */
  header() {
    if (browserManagesCookies || this._cookies.size === 0) return {};
    return { Cookie: [...this._cookies].map(([k, v]) => `${k}=${v}`).join("; ") };
  }
}

/** A Max-Age of zero or less: the server deletes the cookie. */
function isExpiry(attribute) {
  const m = /^\s*max-age\s*=\s*(-?\d+)\s*$/i.exec(attribute);
  return m !== null && Number(m[1]) <= 0;
}
