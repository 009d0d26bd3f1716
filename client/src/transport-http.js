// What HTTP streaming and long polling share (PROTOCOL.md, Transports): the endpoint
// URLs, fetch options, the ordered /send queue, and how HTTP error answers become the
// server's CLOSE. Each transport adds its own way of receiving (transport-streaming.js,
// transport-polling.js).

import { decodeUnit, encodeFrame, encodeUnit, FrameType } from "./codec.js";
import { concat } from "./frame-reader.js";
import { gatewayUrl } from "./gateway-url.js";
import { deadline } from "./timers.js";
import { CookieJar } from "./cookie-jar.js";
import { echo } from "./errors.js";

/** Most bytes of a /send body sent with `keepalive` (browsers cap those at 64 KiB). */
const KEEPALIVE_MAX = 60 * 1024;

/**
 * Most bytes of one unit the session gives an HTTP transport (several frames queued in
 * one tick; one larger frame goes alone): small enough that /send bodies, which hold
 * several units, can be cut to fit a proxy's request size limit (_pump).
 */
export const HTTP_UNIT_MAX = 16 * 1024;

/**
 * How long one /send may take before the connection is considered broken. Long, as a
 * slow upload is not a dead one; the request is small in the common case.
 */
const SEND_TIMEOUT = 30000;

/**
 * The session side of an HTTP transport: what it needs to rebind on its own (polls, a
 * stream the server ended) and to name the session in /send requests.
 * @typedef {object} SessionLink
 * @property {() => Uint8Array} bindUnit a unit with one BIND frame carrying the current
 *   count of received data frames
 * @property {() => {session: Uint8Array, secret: Uint8Array} | null} credentials the
 *   session id and secret, once OPENED or BIND has named them
 * @property {() => number} maxFrame the largest unit the gateway accepts
 * @property {() => number} heartbeat the gateway's heartbeat period (ms)
 * @property {CookieJar} [cookies] the session's cookies outside browsers (load
 *   balancer affinity, cookie-jar.js); a transport without one keeps its own
 * @property {() => Record<string, string>} [headers] the headers of each request
 *   outside browsers: openSession's `headers` and the cookies (request-headers.js);
 *   without it, the cookies alone
 * @property {boolean} [ownHeaders] openSession was given headers
 */

const HTTP_SCHEMES = new Map([
  ["http:", "http:"],
  ["https:", "https:"],
  ["ws:", "http:"],
  ["wss:", "https:"],
]);

/**
 * The URL of an HTTP endpoint (`stream`, `poll`, `send`) under a gateway base URL.
 * A relative base ("/mqtt") resolves against the page's location in a browser; ws(s)
 * bases are accepted for symmetry with the WebSocket transport.
 * @param {string | URL} base
 * @param {string} name
 */
export function endpoint(base, name) {
  return gatewayUrl(base, name, HTTP_SCHEMES);
}

/**
 * Cookies go with cross-origin requests too: the gateway's hooks may authenticate with
 * them, and load balancers keep a session on one instance with them (PROTOCOL.md, Load
 * balancers). The session secret is never a cookie, so this gives a foreign page
 * nothing (PROTOCOL.md, Origins and CORS).
 * @param {string} url
 * @returns {"include" | "same-origin"}
 */
export function credentialsMode(url) {
  const here = globalThis.location?.origin;
  return here && here !== "null" && new URL(url).origin !== here ? "include" : "same-origin";
}

// How many connections a browser keeps to one host over HTTP/1.1 (Chromium, Firefox).
const CONNECTIONS_PER_HOST = 6;

/**
 * Makes a browser give up the kept-alive connections to the gateway that went silent
 * with the one the session lost (a network switch it was not told of), before the
 * session rebinds over HTTP. A browser keeps such connections for minutes (Chromium: 5)
 * and hands the next request to the one used last, so the rebind's request would go on
 * a silent connection and wait for the handshake's deadline (45 s when it is the last
 * transport), then the next attempt on the next one: a page that had loaded its modules
 * over six connections waited minutes. So as many small requests as a browser keeps
 * connections to a host go at once (HEAD of the client's own file, answered at once
 * and cached nowhere): they take every kept connection, and those that bring no answer
 * within `timeout` ms are ended, which closes their connections. Resolves when all are
 * done, with how many of them went unanswered.
 * @param {string | URL} base
 * @param {number} timeout
 * @returns {Promise<number>}
 */
export async function dropSilentConnections(base, timeout) {
  const probes = Array.from({ length: CONNECTIONS_PER_HOST }, () => headAnswered(base, timeout));
  return (await Promise.all(probes)).filter((answered) => answered === false).length;
}

/**
 * Sends a HEAD of the client's own file to the gateway, ended if no answer came within
 * `timeout` ms. Resolves with true when an answer came (any status: the connection
 * works), false when none came in time (the connection it went on is silent), and null
 * when it failed at once (nothing listens, or the browser is offline): a connection
 * refused is no silent one. The request goes with the session's credentials mode, so
 * on the connections the session's requests use, and as `no-cors`: a page of another
 * origin may not read the answer (the gateway's files allow any origin, which a request
 * with credentials may not rely on), and needs only to know that one came.
 * @param {string | URL} base
 * @param {number} timeout
 * @returns {Promise<boolean | null>}
 */
export async function headAnswered(base, timeout) {
  const url = endpoint(base, "client.js");
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeout);
  try {
    await fetch(url, { method: "HEAD", mode: "no-cors", credentials: credentialsMode(url), cache: "no-store", signal: ac.signal });
    return true;
  } catch {
    return ac.signal.aborted ? false : null;
  } finally {
    clearTimeout(timer);
  }
}

/** True when a response carries the protocol's bytes (not a proxy's HTML page). */
export function isProtocolResponse(res) {
  return (res.headers.get("content-type") ?? "").toLowerCase().startsWith("application/octet-stream");
}

/**
 * An HTTP answer that is not the gateway's (a server or proxy at that URL answered
 * something else: a 404 page for a wrong base path, a proxy's 502), as a transport
 * reports it to the session with its end (Transport#onclose's `http`).
 * @typedef {object} HttpAnswer
 * @property {number} status
 * @property {string} [statusText] the reason phrase (none over HTTP/2)
 * @property {string | null} [contentType]
 */

/**
 * The HttpAnswer of a response that is not the gateway's.
 * @param {Response} res
 * @returns {HttpAnswer}
 */
export function httpAnswer(res) {
  return { status: res.status, statusText: res.statusText, contentType: res.headers.get("content-type") };
}

/**
 * "HTTP 404 Not Found", and for a success that is not the protocol's what it was
 * ("HTTP 200 OK with text/html").
 * @param {HttpAnswer} a
 * @returns {string}
 */
export function describeAnswer(a) {
  const head = `HTTP ${a.status}${a.statusText ? ` ${a.statusText}` : ""}`;
  if (a.status < 200 || a.status > 299 || a.contentType === undefined) return head;
  return `${head} with ${a.contentType ? echo(a.contentType, 60) : "no content type"}`;
}

/**
 * The message of a failed fetch, with its cause when Node.js gives one ("fetch failed
 * (ECONNREFUSED)", "fetch failed (bad port)"); browsers give none.
 * @param {unknown} err
 * @returns {string}
 */
export function fetchError(err) {
  const text = String(err?.message ?? err);
  const cause = err?.cause?.code ?? err?.cause?.message;
  return typeof cause === "string" && cause ? `${text} (${cause})` : text;
}

/**
 * Reads an HTTP error answer: the gateway puts a CLOSE frame in its body (PROTOCOL.md,
 * Errors on HTTP transports). Returns that unit and its code, or null when the body is
 * something else (a proxy's error page).
 * @param {Response} res
 * @returns {Promise<{unit: Uint8Array, code: number, message: string} | null>}
 */
export async function closeFromErrorAnswer(res) {
  let body;
  try {
    body = new Uint8Array(await res.arrayBuffer());
  } catch {
    return null;
  }
  if (!isProtocolResponse(res) || body.length === 0) return null;
  try {
    for (const f of decodeUnit(body)) {
      if (f.type === FrameType.SERVER_CLOSE) return { unit: body, code: f.code, message: f.message };
    }
  } catch {
    // not the protocol's bytes after all
  }
  return null;
}

/**
 * A /send body: the SEND frame that names the session (with its secret, in the body
 * and not in a header, as access logs record headers) and the count of requests sent
 * before the first of these units, then the units.
 * @param {{session: Uint8Array, secret: Uint8Array}} cred
 * @param {Uint8Array[]} units
 * @param {number | undefined} before
 */
export function sendBody(cred, units, before) {
  const head = encodeUnit([encodeFrame({ type: FrameType.SEND, session: cred.session, secret: cred.secret, requests: before })]);
  return concat([head, ...units], units.reduce((n, u) => n + u.length, head.length));
}

/**
 * Sends a session's last units (ending with its CLOSE) as the page is unloaded: one
 * `POST <base>/send` with `keepalive`, which the browser completes after the page is
 * gone (it cancels other requests). The units may repeat requests that already
 * arrived: SEND's count makes the gateway skip those (PROTOCOL.md), and if earlier
 * ones are missing it runs none of them but still takes the CLOSE. When the units are
 * more than a keepalive request may carry, the CLOSE (the last unit) goes alone. Best effort: the
 * Promise resolves when the request is answered or failed, and reports nothing.
 * @param {string} url the /send endpoint
 * @param {{session: Uint8Array, secret: Uint8Array} | null} cred
 * @param {{unit: Uint8Array, before: number | undefined}[]} units
 * @param {number} maxFrame the gateway's limit for a /send body
 * @param {Record<string, string>} [headers] the session's headers (Node.js: its own,
 *   and its cookies for the balancer's affinity)
 * @returns {Promise<void>}
 */
export function sendAsPageGoes(url, cred, units, maxFrame, headers = {}) {
  if (!cred) return Promise.resolve();
  const size = units.reduce((n, u) => n + u.unit.length, 0);
  const body =
    size <= Math.min(KEEPALIVE_MAX, maxFrame)
      ? sendBody(cred, units.map((u) => u.unit), units.find((u) => u.before !== undefined)?.before)
      : sendBody(cred, [units.at(-1).unit], undefined);
  const all = { "Content-Type": "application/octet-stream", ...headers };
  return fetch(url, { method: "POST", body, headers: all, credentials: credentialsMode(url), cache: "no-store", keepalive: true }).then(discard, () => {});
}

/** Discards a response body so the connection can be reused. */
function discard(res) {
  res.body?.cancel().catch(() => {});
}

/**
 * The common part of the HTTP transports. The first unit the session sends (OPEN or
 * BIND) starts the receiving side, which subclasses implement in `_receive(firstUnit)`;
 * every later unit goes out by `POST <base>/send`, one request at a time so that the
 * gateway processes frames in order (PROTOCOL.md: "in order only when the client waits
 * for each /send to be answered before the next"); units queued meanwhile go together
 * in the next request.
 */
export class HttpTransport {
  /**
   * @param {string} name
   * @param {string | URL} base
   * @param {{link?: SessionLink}} options
   */
  constructor(name, base, { link } = {}) {
    if (!link) throw new TypeError(`the ${name} transport needs a session link`);
    this.name = name;
    /** @type {((unit: Uint8Array) => void) | null} */
    this.onunit = null;
    /** @type {((ev: {code: number, reason: string}) => void) | null} */
    this.onclose = null;
    this._link = link;
    this._cookies = link.cookies ?? new CookieJar();
    this._headers = link.headers ?? (() => this._cookies.header());
    this._sendUrl = endpoint(base, "send");
    this._credentials = credentialsMode(this._sendUrl);
    this._started = false;
    this._closed = false; // nothing more is delivered or reported
    this._flushing = false; // closed, but units accepted before close() still go out
    /** @type {{unit: Uint8Array, before: number | undefined}[]} units, and the requests sent before each one's first */
    this._queue = [];
    this._sending = false;
    /** @type {AbortController | null} the receiving request in flight */
    this._receiving = null;
    /** @type {AbortController | null} the /send in flight */
    this._sendAbort = null;
    /** @type {{unit: Uint8Array, before: number | undefined}[]} what the /send in flight carries */
    this._inFlight = [];
    /** @type {(() => void) | null} resolves the promise close() returned while units are flushed */
    this._flushed = null;
    /**
     * The most bytes of units a /send carries: max_frame, until a proxy refuses a body
     * as too large (HTTP 413) and the units go again in smaller ones (_pump).
     */
    this._sendCap = Infinity;
  }

  /** The most bytes of one unit the session should give this transport. */
  get maxUnit() {
    return HTTP_UNIT_MAX;
  }

  /**
   * @param {Uint8Array} unit
   * @param {number} [requestsBefore] requests the session sent before the unit's first
   */
  send(unit, requestsBefore) {
    if (this._closed) return;
    if (!this._started) {
      this._started = true;
      this._receive(unit);
      return;
    }
    this._queue.push({ unit, before: requestsBefore });
    this._pump();
  }

  /**
   * Ends the transport. With `flush` (the session is ending and has queued its CLOSE),
   * units already accepted are still sent; otherwise the connection is suspect and they
   * are dropped: the session sends its requests again after BIND, as BOUND's `requests`
   * says (an old /send arriving late is not run twice: SEND's count).
   * With `unloading` too (the page is being unloaded: no promise will be
   * settled any more, so a /send cannot wait for the one before it), they go at once
   * (see _sendAtOnce).
   * Resolves once the units to flush are out: their last /send answered, or failed (a
   * failure is not reported: the transport is closed); at once when there is nothing
   * to flush. The session bounds the wait (Session#close).
   * @param {number} [code]
   * @param {string} [reason]
   * @param {{flush?: boolean, unloading?: boolean}} [o]
   * @returns {Promise<void>}
   */
  close(code = 1000, reason = "", { flush = false, unloading = false } = {}) {
    if (flush && unloading) {
      this._sendAtOnce();
      flush = false;
    }
    this._end({ code, reason }, flush);
    if (!this._flushing) return Promise.resolve();
    return new Promise((resolve) => {
      const previous = this._flushed;
      this._flushed = () => {
        previous?.();
        resolve();
      };
    });
  }

  /**
   * The page is being unloaded and the session has queued its CLOSE: what the /send in
   * flight carries (the browser cancels that request with the page; it may or may not
   * have arrived) and the queued units go now, in one /send that outlives the page
   * (sendAsPageGoes).
   */
  _sendAtOnce() {
    if (this._closed || !this._started) return;
    const units = [...this._inFlight, ...this._queue];
    if (units.length === 0) return;
    sendAsPageGoes(this._sendUrl, this._link.credentials(), units, this._link.maxFrame(), this._headers());
  }

  /**
   * Ends the transport and reports `ev` to the session (once).
   * @param {{code: number, reason: string, http?: HttpAnswer}} ev
   * @param {boolean} flush
   */
  _end(ev, flush) {
    if (this._closed) return;
    this._closed = true;
    this._receiving?.abort();
    if (flush && (this._queue.length > 0 || this._sending)) {
      this._flushing = true;
      this._pump();
    } else {
      this._queue = [];
      this._sendAbort?.abort();
    }
    const cb = this.onclose;
    this.onclose = null;
    this.onunit = null;
    cb?.(ev);
  }

  /**
   * Reports the end of the transport, whoever noticed first; `http` when what ended it
   * is an HTTP answer that is not the gateway's. @protected
   * @param {number} code
   * @param {string} reason
   * @param {HttpAnswer} [http]
   */
  _fail(code, reason, http) {
    this._end(http ? { code, reason, http } : { code, reason }, false);
  }

  /** Hands a unit of whole frames to the session. @protected */
  _deliver(unit) {
    if (!this._closed) this.onunit?.(unit);
  }

  /**
   * Ends the transport after an HTTP error answer: its CLOSE frame goes to the session
   * like any CLOSE of the server; a foreign error page is a broken connection.
   * @protected
   */
  async _failWithAnswer(res, what) {
    const close = await closeFromErrorAnswer(res);
    if (this._closed) return;
    if (close) {
      this._deliver(close.unit);
      this._fail(close.code, close.message);
    } else {
      const http = httpAnswer(res);
      this._fail(1006, `${what}: ${describeAnswer(http)}`, http);
    }
  }

  /**
   * POSTs a unit.
   * @protected
   * @param {string} url
   * @param {Uint8Array} body
   * @param {AbortSignal} signal
   * @param {Record<string, string>} [headers]
   * @param {boolean} [keepalive]
   */
  async _post(url, body, signal, headers = {}, keepalive = false) {
    const res = await fetch(url, {
      method: "POST",
      body,
      headers: { "Content-Type": "application/octet-stream", ...this._headers(), ...headers },
      credentials: this._credentials,
      cache: "no-store",
      keepalive,
      signal,
    });
    this._cookies.storeFrom(res); // load balancer affinity outside browsers
    return res;
  }

  /**
   * The next /send: queued units, as many as fit in max_frame together, and the number
   * of requests sent before its first (the first unit's that has requests).
   * @returns {{units: {unit: Uint8Array, before: number | undefined}[], before: number | undefined}}
   */
  _nextBatch() {
    const limit = Math.min(this._link.maxFrame(), this._sendCap);
    let n = 1;
    let size = this._queue[0].unit.length;
    while (n < this._queue.length && size + this._queue[n].unit.length <= limit) size += this._queue[n++].unit.length;
    const units = this._queue.splice(0, n);
    return { units, before: units.find((q) => q.before !== undefined)?.before };
  }

  async _pump() {
    if (this._sending) return;
    this._sending = true;
    try {
      while (this._queue.length > 0 && (!this._closed || this._flushing)) {
        const cred = this._link.credentials();
        if (!cred) {
          this._fail(4003, "no session to send for");
          return;
        }
        const { units, before } = this._nextBatch();
        // With the count, a /send that arrives after the session resent its requests
        // (an aborted fetch may still arrive) is not run twice (PROTOCOL.md).
        const body = sendBody(cred, units.map((u) => u.unit), before);
        const ac = new AbortController();
        this._sendAbort = ac;
        this._inFlight = units;
        const cancel = deadline(SEND_TIMEOUT, () => ac.abort());
        let res;
        try {
          res = await this._post(
            this._sendUrl,
            body,
            ac.signal,
            {},
            // A page being closed still gets its CLOSE out.
            this._flushing && body.length <= KEEPALIVE_MAX,
          );
        } catch (err) {
          // The frames may or may not have arrived: the connection is suspect. The
          // session rebinds and BOUND tells it which requests to send again.
          this._fail(1006, `send failed: ${fetchError(err)}`);
          return;
        } finally {
          cancel();
          this._sendAbort = null;
          this._inFlight = [];
        }
        // A proxy's request size limit (nginx's client_max_body_size is 1 MB by
        // default), not the gateway's.
        const proxyTooLarge = res.status === 413 && !isProtocolResponse(res);
        if (proxyTooLarge && units.length > 1) {
          // The units go again, in bodies half that size. Failing the transport
          // instead made the session rebind and send the same body again, for ever,
          // and nothing reached the gateway.
          discard(res);
          // (Loops, not spread arguments: a batch may hold many thousand units.)
          let largest = 0;
          for (const u of units) largest = Math.max(largest, u.unit.length);
          this._sendCap = Math.max(Math.floor(body.length / 2), largest);
          this._queue = units.concat(this._queue);
          continue;
        }
        if (proxyTooLarge) {
          // One unit, one frame mostly (a large publish), that the proxy will refuse
          // every time: after a rebind the session would send it again, for ever. The
          // session ends, saying why.
          discard(res);
          this._fail(
            4002,
            `a proxy between this client and the gateway refused a request of ${body.length} bytes (HTTP 413 Payload Too Large): ` +
              "publish smaller messages, use the WebSocket transport, or raise the proxy's limit (nginx: client_max_body_size)",
          );
          return;
        }
        if (!res.ok) {
          await this._failWithAnswer(res, "send refused");
          return;
        }
        discard(res);
      }
    } finally {
      this._sending = false;
      if (this._closed) {
        this._flushing = false;
        this._queue = [];
        const flushed = this._flushed;
        this._flushed = null;
        flushed?.();
      }
    }
  }
}
