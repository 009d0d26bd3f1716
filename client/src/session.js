// A gateway session (PROTOCOL.md, "Sessions" and "Recovery"): one transport at a time,
// the count of received data frames, request/RESULT correlation, MESSAGE dispatch to
// the broker clients, heartbeats, and reconnection that resumes the session (BIND) or,
// when the gateway lost it, opens a new one and re-creates every client and
// subscription so that the application keeps running.

import { BrokerClient } from "./broker-client.js";
import {
  FrameType,
  PROTOCOL_VERSION,
  eachFrame,
  encodeFrame,
  encodeUnit,
  isDataFrame,
  toBytes,
  uvarintSize,
} from "./codec.js";
import { CONNECTION_FAILED, ErrorCode, MqttGatewayError, echo, errorName } from "./errors.js";
import { Heartbeat, backoffDelay, deadline, freshSessionDelay } from "./timers.js";
import { checkOptions, safeCall } from "./callbacks.js";
import { bandwidthOnWire } from "./limits.js";
import { CookieJar } from "./cookie-jar.js";
import { requestHeaders } from "./request-headers.js";
import { describeAnswer, dropSilentConnections, endpoint, headAnswered, sendAsPageGoes } from "./transport-http.js";
import { forgetTransport, recallTransport, rememberTransport } from "./transport-memory.js";
import { resolveTransports, startingAt } from "./transports.js";

const PING = encodeFrame({ type: FrameType.PING });
/** A connection check's PING, which the gateway answers at once (checkConnection). */
const PING_ANSWER = encodeFrame({ type: FrameType.PING, answer: true });
const CLOSE = encodeFrame({ type: FrameType.CLOSE });
/** @param {Uint8Array} bytes */
const isPing = (bytes) => bytes === PING || bytes === PING_ANSWER;
/**
 * The CLOSE of a page that went away (closed, reloaded, left): the gateway fires its
 * dedicated clients' wills, as the broker does for a page's own MQTT connection.
 */
const CLOSE_LEFT = encodeFrame({ type: FrameType.CLOSE, left: true });

// Until OPENED says otherwise, assume the server's default heartbeat (PROTOCOL.md).
const DEFAULT_HEARTBEAT = 20000;
// A frame size every server accepts; only used before the first OPENED.
const DEFAULT_MAX_FRAME = 64 * 1024;
// How many of a dedicated stream's last ACKs may be sent again after a rebind. An ACK
// a dying connection took is among the last ones sent on it, and no more of a stream's
// messages await an ACK at once than the broker sends unacknowledged (the gateway asks
// external brokers for at most 64; the embedded one may send more, and a connection
// that dies with more than this many of its ACKs unread is not covered).
const RECENT_ACKS = 1024;
// How long close() waits at most for its CLOSE to be handed over (an HTTP transport's
// /send answered): a gateway that does not answer must not make close() hang.
const CLOSE_WAIT = 5000;
// How long a transport that is not the last candidate gets to complete OPEN/BIND before
// the next one is tried: long enough for a slow network, short enough that a page
// behind a proxy that blocks WebSocket or buffers responses is not left waiting.
const DEFAULT_PROBE_TIMEOUT = 3000;
// How long a connection check waits for anything from the gateway (checkConnection).
// The gateway answers at once; a phone's link may hold a few seconds of data ahead of
// the answer, and all of it counts. A connection that says nothing for this long after
// the network changed is taken for dead: a rebind costs a round trip or two and loses
// nothing, while waiting for the heartbeat deadline shows stale values for 45 s.
const CHECK_TIMEOUT = 5000;
// The transports that go by HTTP requests, whose connections a browser keeps alive.
const HTTP_TRANSPORTS = new Set(["streaming", "polling"]);
// A session the gateway loses sooner than this after OPENED was lost "quickly": once
// is bad luck (an instance died), in a row it is a setup that cannot keep sessions,
// typically a load balancer without affinity sending a /send or a poll to an instance
// that does not hold the session (4010). Fresh sessions then back off
// (freshSessionDelay) instead of opening in a tight loop, each orphan holding a place
// in the gateway's max_sessions for session_timeout.
const QUICK_LOSS_MS = 10000;

// How long after a session opened on a transport below WebSocket, on the word of the
// transport memory, the client checks whether WebSocket gets through now
// (_checkUpgrade).
const UPGRADE_CHECK_DELAY = 3000;
const QUICK_LOSS_WARNING =
  "the session was unknown to the gateway right after it opened: is the load balancer sticky? " +
  "HTTP streaming and long polling need every request of a session to reach the same gateway instance " +
  "(e.g. Caddy's lb_policy cookie); opening fresh sessions with a growing delay meanwhile";

/** Server CLOSE codes after which the gateway no longer has our session. */
const FRESH_SESSION_CODES = new Set([ErrorCode.session_unknown, ErrorCode.session_gap]);
/**
 * Server CLOSE codes that end the connection but are worth a BIND: the gateway asked
 * us to come back (shutting down / reloading), closed an idle-looking connection, or
 * hit an internal error. If the session did not survive, BIND gets 4010 and a fresh
 * session follows, so trying costs nothing.
 */
const RETRY_CODES = new Set([ErrorCode.heartbeat_timeout, ErrorCode.shutting_down, ErrorCode.internal]);
/**
 * Failures of an OPEN that time may mend: no transport got through (the gateway down
 * or restarting, the network away), or the gateway is not ready for a new session (its
 * limit, its hook, its shutdown or reload). openSession's `retry` waits them out for
 * the first OPEN; a session's recovery always does (mendsByWaiting).
 */
const OPEN_RETRY_CODES = new Set([
  CONNECTION_FAILED,
  ErrorCode.too_many_sessions,
  ErrorCode.hook_unavailable,
  ErrorCode.shutting_down,
  ErrorCode.internal,
]);

/**
 * HTTP answers that say the gateway is away, from a proxy in front of it: worth
 * waiting out (with `retry`, and in a recovery). Any other answer that is not the gateway's (401 or 403
 * from an auth handler, 404 for a wrong base path, 405 from a file server) is a
 * setup's answer, which does not change by waiting: the opening fails.
 */
const GATEWAY_AWAY = new Set([502, 503, 504]);

/** HTTP answers of an auth handler in front of the gateway: the page must log in again. */
const REFUSED_BY_AUTH = new Set([401, 403]);

/**
 * Whether an OPEN or BIND that failed with `outcome` (see _establish) is one that time
 * may mend: the gateway away (no transport got through, or only a proxy's 502, 503 or
 * 504 answered in its place) or not ready for a session now (OPEN_RETRY_CODES). The
 * one rule for `retry` at the first OPEN and for a session's recovery, which waits
 * these out always: an open session must not end for good because the authenticate
 * hook was slow during a deploy. A refusal (4020, an HTTP 401 or 404 from something
 * else in the gateway's place) is the same on every attempt.
 * @param {{kind: string, code?: number, statuses?: number[]}} outcome
 * @returns {boolean}
 */
function mendsByWaiting(outcome) {
  const code = outcome.kind === "close" ? outcome.code : CONNECTION_FAILED;
  return OPEN_RETRY_CODES.has(code) && (outcome.statuses ?? []).every((st) => GATEWAY_AWAY.has(st));
}

/** What a connection attempt's race resolves with when the session ends. */
const ENDED = Symbol("ended");

const State = Object.freeze({
  OPENING: "opening", // first OPEN in flight (openSession not resolved yet)
  OPEN: "open", // bound to a transport, requests flow
  RECONNECTING: "reconnecting", // transport lost; requests are queued
  CLOSED: "closed", // final
});

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/**
 * The message when no transport could reach the gateway: where, and what was learned.
 * An HTTP answer that is not the gateway's (a 404 for a wrong base path, a proxy's
 * error page) says the most, so when a transport got one it is the message; a browser's
 * WebSocket never tells its status, but the HTTP transports see it. Otherwise, each
 * transport's reason.
 * @param {string} base
 * @param {Array<{name: string, detail: string, http?: import("./transport-http.js").HttpAnswer}>} failures
 * @returns {string}
 */
function unreachableMessage(base, failures) {
  let where = base;
  try {
    where = new URL(base, globalThis.location?.href).href;
  } catch {
    // not a URL: the transports said so
  }
  const head = `cannot reach the gateway at ${echo(where)}`;
  const answered = failures.filter((f) => Number.isInteger(f.http?.status));
  if (answered.length === 0) return `${head} (${failures.map((f) => `${f.name}: ${f.detail}`).join("; ")})`;
  // Per status, what any transport knew of it: the HTTP transports have the reason
  // phrase and content type, a WebSocket in Node.js only the status.
  const known = new Map();
  for (const { http } of answered) {
    const k = known.get(http.status) ?? { status: http.status };
    k.statusText ||= http.statusText;
    if (k.contentType === undefined) k.contentType = http.contentType;
    known.set(http.status, k);
  }
  const describe = (status) => {
    const text = describeAnswer(known.get(status));
    return status >= 200 && status <= 299 ? `${text}, not the gateway's answer` : text;
  };
  const summary =
    known.size === 1 ? describe(answered[0].http.status) : answered.map((f) => `${f.name}: ${describe(f.http.status)}`).join("; ");
  // 404: nothing at that path. 405, or a success: something else answers there, such
  // as a site's file_server, or its try_files turning every path into the index page.
  const statuses = [...known.keys()];
  const otherHandler = statuses.some((s) => s === 405 || (s >= 200 && s <= 299));
  const hint = otherHandler
    ? " (is the base path right? does another handler, such as try_files or file_server, answer the gateway's requests?)"
    : statuses.includes(404)
      ? " (is the base path right?)"
      : "";
  return `${head}: ${summary}${hint}`;
}

/**
 * A session with the gateway. Create it with openSession().
 */
export class Session {
  /**
   * @param {string} url gateway base URL
   * @param {object} options see openSession
   * @internal
   */
  constructor(url, options = {}) {
    this._base = String(url);
    this._user = options.user ?? "";
    // A function is asked at each OPEN (_openFrame): a fresh session after a gateway
    // restart must not go with the token the first one had, which may have expired.
    this._password =
      options.password === undefined ? new Uint8Array(0) : typeof options.password === "function" ? options.password : toBytes(options.password);
    // addressed_retained: each client's SUBSCRIBE gets the retained messages the
    // gateway holds, addressed to it (PROTOCOL.md; _onMessage).
    // session_present: a CONNECT's RESULT says whether the broker kept a session.
    // unsubscribed: the gateway says which subscriptions it ended (UNSUBSCRIBED).
    this._openOptions = [
      ["addressed_retained", "1"],
      ["session_present", "1"],
      ["unsubscribed", "1"],
    ];
    if (options.maxBandwidth !== undefined && options.maxBandwidth !== null) {
      const bw = bandwidthOnWire(options.maxBandwidth);
      if (bw > 0) this._openOptions.push(["max_bandwidth", String(bw)]);
    }
    /** Called with {dropped} when the gateway dropped messages this session could not take in time (code 4050). */
    this.onOverflow = options.onOverflow ?? null;
    this._transports = resolveTransports(options.transport);
    this._connectTimeout = options.connectTimeout ?? 10000;
    this._retryOpen = options.retry === true;
    /** @type {Set<() => void>} what _terminate calls: connections under way stop waiting */
    this._onEnd = new Set();
    this._aborted = null; // {reason} once openSession's signal aborted the opening
    this._abortSignal = null; // {signal, listener}
    this._probeTimeout = options.probeTimeout ?? DEFAULT_PROBE_TIMEOUT;

    /** Called when the transport dropped and the session starts recovering. */
    this.onReconnectionStart = options.onReconnectionStart ?? null;
    /** Called with {messagesMayHaveBeenLost} when the session works again, its clients re-created. */
    this.onReconnectionComplete = options.onReconnectionComplete ?? null;
    /** Called once with {errorCode, errorMessage} when the session ends for good. */
    this.onClose = options.onClose ?? null;
    /** Called with {errorCode, errorMessage, value} for a NOTICE from the gateway. */
    this.onNotice = options.onNotice ?? null;
    /** Called with {transport, previous} when the session moves to another transport. */
    this.onTransportChange = options.onTransportChange ?? null;

    /** @type {string} one of State */
    this._state = State.OPENING;
    this._transport = null;
    this._transportName = null;
    this._lastWorked = null; // the transport of the last completed handshake
    this._sessionId = null; // Uint8Array(16)
    this._secret = null;
    this._heartbeatMs = DEFAULT_HEARTBEAT;
    this._sessionTimeout = 0;
    this._maxFrame = DEFAULT_MAX_FRAME;
    this._info = {};

    // Data frame counting (PROTOCOL.md "Data frames"): _received is the count we
    // acknowledge in BIND; _next is the number the next data frame carries.
    this._received = 0;
    this._next = 1;

    this._nextReq = 1;
    this._nextHandle = 1;
    /** @type {Map<number, object>} requests awaiting their RESULT, in req order */
    this._pending = new Map();
    // Request frames are numbered in the order they are sent within a session, as the
    // gateway counts them for BOUND's `requests` (PROTOCOL.md, Recovery): those handed
    // to a transport (up to _sentSeq) but not counted by the gateway were lost with
    // the connection and are sent again.
    this._nextSeq = 1;
    this._sentSeq = 0;
    /** @type {Set<BrokerClient>} */
    this._clients = new Set();
    /** @type {Map<number, BrokerClient>} handle → client, current session only */
    this._handles = new Map();

    // Outgoing frames not yet handed to a transport, with their request number (0 for
    // frames that are not requests). They survive a drop (and go out after BOUND); a
    // fresh session discards them and re-issues what still matters.
    /** @type {Array<{bytes: Uint8Array, seq: number}>} */
    this._out = [];
    this._flushScheduled = false;
    // The last ACKs sent on each dedicated stream (RECENT_ACKS at most), sent again
    // after every rebind: an ACK is not a numbered request, so one lost with a
    // connection would never go again, and the broker, whose acknowledgements must
    // come in order, would hold that client's messages for good once its window of
    // unacknowledged ones filled (PROTOCOL.md, Recovery).
    // sent: how many of the newest went on the current connection (since its BOUND),
    // the only ones it can have lost.
    /** @type {Map<number, {ids: Uint16Array, next: number, count: number, sent: number}>} stream → ring of packet ids */
    this._recentAcks = new Map();

    this._handshake = null; // {resolve} while OPEN/BIND awaits its answer
    this._bound = false; // OPENED/BOUND seen on the current transport
    this._recovering = false; // between onReconnectionStart and onReconnectionComplete
    this._mayHaveLost = false;
    this._sessionIdWasLost = false; // the gateway lost our session: next handshake is OPEN
    // What a fresh session's recovery still waits for: re-creation requests unanswered,
    // and clients and subscriptions whose re-creation the gateway refused for now,
    // until they are tried again (broker-client.js, holdsRecovery).
    this._recreating = 0;
    this._sleep = null; // {timer, resolve} while waiting to retry
    this._openedAt = 0; // Date.now() of the last OPENED
    this._quickLosses = 0; // sessions lost in a row, each soon after its OPENED
    this._liveQuickLoss = false; // one of them on a connection that worked (_sessionLost)
    this._warnedQuickLoss = false;
    /** @type {Promise<void> | null} what close() resolves with: CLOSE handed over */
    this._closing = null;

    this._heartbeat = new Heartbeat({
      ping: () => this._enqueue(PING),
      dead: () => this._transportDead(),
      // Asleep (a laptop's lid, a frozen tab): the network may be another one now.
      woke: () => this._checkOnEvent(),
      // Steady traffic stopped: a path left silent, or a pause of the application's.
      stalled: () => this._checkStall(),
    });
    /** @type {{t: object, promise: Promise<boolean>, end: (ok: boolean) => void} | null} the check under way */
    this._check = null;

    /** @type {{target: EventTarget, listener: (ev: Event) => void} | null} see _watchPageHide */
    this._pageHide = null;
    if (options.closeOnPageHide ?? true) this._watchPageHide();
    /** @type {Array<{target: EventTarget, type: string, listener: () => void}>} see _watchNetwork */
    this._watched = [];
    this._fromTop = false; // the next handshake tries the transports from the best (_watchNetwork)
    this._dropSilent = false; // the next attempt drops the browser's silent connections first (_suspectKeptConnections)
    this._nudging = false; // _nudgeSilentConnection runs
    this._upgradeCheck = null; // ends the one _checkUpgrade, waiting or under way
    this._upgradeChecked = false;
    this._watchNetwork();

    /** What HTTP transports need from the session (transport-http.js, SessionLink). */
    this._link = {
      bindUnit: () => encodeUnit([this._bindFrame()]),
      credentials: () => (this._sessionId ? { session: this._sessionId, secret: this._secret } : null),
      maxFrame: () => this._maxFrame,
      heartbeat: () => this._heartbeatMs,
      // This session's own cookies (Node.js): a balancer's affinity cookie pins this
      // session, not every session of the process (cookie-jar.js).
      cookies: new CookieJar(),
      /** The headers of each request and handshake outside browsers (request-headers.js). */
      headers: () => requestHeaders(options.headers, this._link.cookies),
      /** True when openSession was given headers: a transport that cannot send them must not open. */
      ownHeaders: options.headers !== undefined,
    };
  }

  /** The session id, as 32 hex digits (changes when a fresh session replaces a lost one). */
  get id() {
    return this._sessionId ? hex(this._sessionId) : null;
  }

  /**
   * The name of the transport in use ("websocket", "streaming", "polling"), or null
   * between transports (one being tried is not in use until the gateway answered).
   */
  get transport() {
    return this._transport && this._bound ? this._transportName : null;
  }

  /** "opening", "open", "reconnecting" or "closed". */
  get state() {
    return this._state;
  }

  /** The server's `info` pairs from OPENED, as an object. */
  get info() {
    return this._info;
  }

  /** The heartbeat period the gateway asked for (ms). */
  get heartbeat() {
    return this._heartbeatMs;
  }

  /** How long the gateway keeps this session after a drop (ms). */
  get sessionTimeout() {
    return this._sessionTimeout;
  }

  /** The largest frame the gateway accepts (bytes). */
  get maxFrame() {
    return this._maxFrame;
  }

  /**
   * Creates a client of the named broker (as configured in the gateway). Without
   * clientId it shares the gateway's connection to that broker; with one it gets a
   * dedicated broker connection with that MQTT client id.
   * @param {string} brokerName
   * @param {string} [clientId]
   * @returns {BrokerClient}
   */
  createClient(brokerName, clientId = "") {
    if (typeof brokerName !== "string") throw new TypeError("brokerName must be a string");
    if (typeof clientId !== "string") throw new TypeError("clientId must be a string");
    if (this._state === State.CLOSED) throw new MqttGatewayError(ErrorCode.bad_request, "session closed");
    const client = new BrokerClient(this, brokerName, clientId);
    this._clients.add(client);
    return client;
  }

  /**
   * Ends the session: sends CLOSE (the gateway frees it at once) and closes the
   * transport. The gateway still carries out the requests sent before CLOSE, but their
   * results never come back: pending requests fail here with 4003 (they may have
   * succeeded); connected clients
   * get onConnectionLost with errorCode 0. The session is closed when this returns;
   * the Promise resolves once CLOSE is handed over (written to the WebSocket; on HTTP
   * transports, once the /send carrying it is answered or failed, 5 s at most), so a
   * process may exit then without leaving its session on the gateway.
   * @returns {Promise<void>}
   */
  close() {
    this._close(false);
    return this._closing ?? Promise.resolve();
  }

  /**
   * close(), and the page's unload (`unloading`): then nothing asynchronous will run
   * any more, so the transport sends what it holds at once (an HTTP transport does
   * not wait for a /send in flight), and the CLOSE says the page went away: the page
   * did not disconnect its clients, so their wills fire, as with a page's own MQTT
   * connection (a client disconnected before, in a pagehide listener, has none).
   * @param {boolean} unloading
   */
  _close(unloading) {
    if (this._state === State.CLOSED) return;
    const t = this._transport;
    const close = unloading ? CLOSE_LEFT : CLOSE;
    let sent;
    if (t && this._bound) {
      this._out.push({ bytes: close, seq: 0 });
      this._flush();
    } else if (this._sessionId !== null) {
      sent = this._closeWithoutTransport(close);
    }
    const handedOver = this._terminate(0, unloading ? "session closed: the page was unloaded" : "session closed", { unloading });
    if (!unloading) this._closing = within(sent ?? handedOver, CLOSE_WAIT);
  }

  /**
   * The session is closed (or its page unloaded) with no transport bound: it is
   * reconnecting, and the browser may already have cancelled the page's requests (an
   * HTTP transport can fail just before pagehide, taking a /send with it). The gateway
   * may still have it, and would keep it until session_timeout, then fire its clients'
   * wills: CLOSE goes by a /send of its own (sendAsPageGoes), after the requests whose
   * fate is unknown and those queued since. Requests are processed in order, so one
   * answered means every one before it arrived: the unknown ones are the unanswered
   * run that ends with the last one handed to a transport, and SEND's count lets the
   * gateway skip those it has.
   * @param {Uint8Array} close the CLOSE frame to end with (CLOSE or CLOSE_LEFT)
   */
  _closeWithoutTransport(close) {
    const bySeq = new Map();
    for (const rec of this._pending.values()) bySeq.set(rec.seq, rec);
    let first = this._sentSeq + 1;
    while (bySeq.has(first - 1)) first--;
    const entries = [];
    for (let seq = first; seq <= this._sentSeq; seq++) entries.push({ bytes: bySeq.get(seq).bytes, seq });
    const queued = this._out.filter((e) => !isPing(e.bytes) && !(e.seq > 0 && e.seq <= this._sentSeq));
    entries.push(...queued, { bytes: close, seq: 0 });
    const units = entries.map((e) => ({ unit: encodeUnit([e.bytes]), before: e.seq > 0 ? e.seq - 1 : undefined }));
    let headers;
    try {
      headers = this._link.headers();
    } catch {
      headers = this._link.cookies.header(); // the CLOSE goes, even if openSession's headers function failed
    }
    return sendAsPageGoes(endpoint(this._base, "send"), this._link.credentials(), units, this._maxFrame, headers);
  }

  /**
   * In a browser, closes the session when the page is unloaded for good (closed,
   * reloaded, navigated away from: `pagehide` with `persisted` false), as close()
   * does: without CLOSE the gateway would keep it for session_timeout, waiting for a
   * client that will not come back, and count it against max_sessions(_per_ip).
   * A page put in the back/forward cache (`persisted` true) may come back: its
   * session is left alone, and if the gateway dropped it meanwhile the client opens
   * a fresh one and re-creates its clients, as after any loss. Nothing in Node.js.
   */
  _watchPageHide() {
    const target = globalThis.window;
    if (typeof target?.addEventListener !== "function") return;
    const listener = (ev) => {
      if (!ev.persisted) this._close(true);
    };
    target.addEventListener("pagehide", listener);
    this._pageHide = { target, listener };
  }

  /**
   * In a browser, a network that comes back (`online`; the device may be on another
   * network now, one that lets WebSocket through) makes the client try the transports
   * from the best again: it forgets the one remembered for this gateway, moves an open
   * session on a lesser transport up (a rebind: nothing is lost), and cuts short a
   * reconnection's wait (with one transport too). Without it a session that fell back
   * to long polling on a network that blocks WebSocket would stay there, and so would
   * the next sessions for a day (transport-memory.js).
   *
   * A session already on the best transport checks its connection instead
   * (checkConnection), as it does when the device reports another kind of network
   * (`navigator.connection`, where the browser has it) and when its page comes back to
   * the foreground: a network switch often leaves the old connection silent rather
   * than broken, and only the heartbeat deadline (45 s by default) would tell.
   * Nothing in Node.js, where the heartbeat's wake-up check remains.
   */
  _watchNetwork() {
    const win = globalThis.window;
    if (typeof win?.addEventListener !== "function") return;
    const watch = (target, type, listener) => {
      if (typeof target?.addEventListener !== "function") return;
      target.addEventListener(type, listener);
      this._watched.push({ target, type, listener });
    };
    watch(win, "online", () => {
      const best = this._transports[0][0];
      if (this._transports.length > 1) forgetTransport(this._base);
      if (this._state === State.OPEN && this._transportName !== best) {
        this._moveUp();
      } else if (this._state === State.OPEN) {
        this._checkOnEvent();
      } else {
        if (this._transports.length > 1) this._fromTop = true;
        if (this._state === State.RECONNECTING) {
          // Attempts made while the network was away dropped nothing (their requests
          // failed at once): now the kept connections may be silent.
          this._suspectKeptConnections();
          this._wake();
        }
      }
    });
    watch(globalThis.navigator?.connection, "change", () => {
      if (this._state === State.RECONNECTING) this._suspectKeptConnections();
      this._checkOnEvent();
    });
    const doc = globalThis.document;
    watch(doc, "visibilitychange", () => {
      if (doc.visibilityState === "visible") this._checkOnEvent();
    });
  }

  /**
   * A connection lost over HTTP in a browser, or the network back or changed while the
   * session reconnects: the browser's other kept-alive connections to the gateway may be
   * as dead, silent after a network switch (or kept through Chromium's offline mode),
   * and the next attempt drops them first (dropSilentConnections).
   */
  _suspectKeptConnections() {
    if (globalThis.window !== undefined && HTTP_TRANSPORTS.has(this._lastWorked)) this._dropSilent = true;
  }

  /**
   * Over HTTP/2 a browser has one connection to the gateway, which dropping kept
   * connections cannot end: ending a request there ends the request only. Chromium ends
   * a silent HTTP/2 connection itself, 10 s after a PING it sends with a new request
   * once nothing came on the connection for 10 s; a rebind's request made before that
   * mark waits for its deadline (45 s when streaming is the last transport), and no
   * other request goes meanwhile. Measured through a silenced link: rebound 62 s after
   * the network came back. So while the session reconnects, HEADs go one after the
   * other, each ended after `probeTimeout`, as long as they go unanswered, and the
   * browser's check starts within seconds of its mark; its end fails the waiting request
   * (or Chromium sends it again on a new connection), and the session rebinds. One that
   * is answered, or fails at once (the gateway down, the browser offline: no silent
   * connection took it), ends them; the network back re-arms them (_watchNetwork).
   */
  async _nudgeSilentConnection() {
    if (this._nudging) return;
    this._nudging = true;
    try {
      let answered = false;
      while (answered === false && this._state === State.RECONNECTING) {
        answered = await headAnswered(this._base, this._probeTimeout);
      }
    } finally {
      this._nudging = false;
    }
  }

  /**
   * checkConnection for an event of the device or the page; its answer is not awaited.
   * @returns {boolean} whether a check is under way
   */
  _checkOnEvent() {
    if (this._state === State.OPEN) this.checkConnection();
    return this._check !== null;
  }

  /** checkConnection when steady traffic stopped (Heartbeat, stalled); the heartbeat hears how it went. */
  _checkStall() {
    if (this._state !== State.OPEN || this._check) return;
    this.checkConnection().then((ok) => {
      if (ok !== null) this._heartbeat.stallChecked(ok);
    });
  }

  /**
   * Checks the connection in use now, rather than waiting for the heartbeat deadline:
   * sends a PING the gateway answers at once (PROTOCOL.md, Heartbeats) and waits up to
   * `timeout` ms for anything from the gateway. Resolves with true when something came;
   * with false when nothing did, and the session then rebinds on a new connection, as
   * after a heartbeat timeout (onReconnectionStart, nothing lost), or when the
   * connection ended meanwhile; with null when there was nothing to check (the session
   * is not open, or the gateway is too old to answer). A check under way is shared.
   *
   * Browsers check by themselves when the network comes back or changes and when the
   * page returns to the foreground; the heartbeat checks after this process slept.
   * Call it when the application knows more (a mobile app's network events).
   * @param {{timeout?: number}} [options]
   * @returns {Promise<boolean | null>}
   */
  checkConnection(options = {}) {
    checkOptions("checkConnection", options, ["timeout"], { callbacks: false });
    const { timeout = CHECK_TIMEOUT } = options;
    if (typeof timeout !== "number" || !(timeout > 0)) throw new TypeError(`checkConnection timeout must be a positive number of ms, got ${timeout}`);
    if (this._check) return this._check.promise;
    const t = this._transport;
    if (this._state !== State.OPEN || !t || !this._bound || this._info.ping_answer !== "1") return Promise.resolve(null);
    let resolve;
    const promise = new Promise((r) => (resolve = r));
    const end = (ok) => {
      if (this._check !== check) return;
      this._check = null;
      cancel();
      resolve(ok);
    };
    const check = { t, promise, end };
    this._check = check;
    const cancel = deadline(timeout, () => {
      end(false);
      if (this._transport === t) this._reconnect({ code: ErrorCode.heartbeat_timeout });
    });
    this._enqueue(PING_ANSWER);
    return promise;
  }

  /** Once per session: _checkUpgrade after UPGRADE_CHECK_DELAY. */
  _scheduleUpgradeCheck() {
    if (this._upgradeChecked) return;
    this._upgradeChecked = true;
    const timer = setTimeout(() => this._checkUpgrade(), UPGRADE_CHECK_DELAY);
    timer.unref?.();
    this._upgradeCheck = () => clearTimeout(timer);
  }

  /**
   * A session that started on a lesser transport because one worked there before (a
   * network that blocked WebSocket, remembered for a day) checks whether WebSocket gets
   * through now: a bare connection to the WebSocket endpoint that sends a PING, which
   * the gateway answers before any OPEN (PROTOCOL.md, WebSocket), and is closed then.
   * An answer within the probe deadline moves the session to WebSocket, as after the
   * network came back online. An upgrade that opens but carries nothing (some proxies)
   * is no answer: the session goes on where it is, as when the upgrade is refused.
   */
  async _checkUpgrade() {
    this._upgradeCheck = null;
    const best = this._transports.find(([n]) => n === "websocket");
    if (!best || this._state !== State.OPEN || this._transportName === "websocket") return;
    let t;
    try {
      t = await best[1](this._base, { timeout: this._probeTimeout, link: this._link });
    } catch {
      return;
    }
    const answered =
      this._state === State.OPEN &&
      (await new Promise((resolve) => {
        const end = (ok) => {
          cancel();
          this._upgradeCheck = null;
          resolve(ok);
        };
        const cancel = deadline(this._probeTimeout, () => end(false));
        this._upgradeCheck = () => end(false); // the session ends meanwhile
        t.onunit = () => end(true);
        t.onclose = () => end(false);
        t.send(encodeUnit([PING]));
      }));
    t.onunit = null;
    t.onclose = null;
    t.close(1000, "");
    if (!answered || this._state !== State.OPEN || this._transportName === "websocket") return;
    this._moveUp();
  }

  /** Moves an open session to the best transport that works: a rebind, nothing lost. */
  _moveUp() {
    this._fromTop = true;
    this._reconnect({ immediate: true });
  }

  // ---------------------------------------------------------------- opening

  /**
   * First OPEN: resolves when OPENED arrives. Rejects on a failure, but with the option
   * `retry` tries again after one that time may mend (OPEN_RETRY_CODES), for as long
   * as it takes; rejects with the signal's reason once aborted. @internal
   */
  async _open() {
    for (let attempt = 0; ; attempt++) {
      const outcome = await this._establish(true);
      if (outcome.kind === "opened") return;
      if (this._aborted) throw this._aborted.reason;
      const err =
        outcome.kind === "close"
          ? new MqttGatewayError(outcome.code, outcome.message)
          : new MqttGatewayError(CONNECTION_FAILED, outcome.message);
      if (this._retryOpen && mendsByWaiting(outcome)) {
        // Said once: the cause may be a mistake (a host that never answers) rather
        // than a restart, and it must not go unseen.
        if (attempt === 0) console.warn(`mqttgateway-client: no session yet, trying again: ${errorName(err.errorCode)} (${err.errorCode}): ${err.errorMessage}`);
        await this._pause(backoffDelay(attempt));
        if (this._aborted) throw this._aborted.reason;
        continue;
      }
      this._terminate(err.errorCode, err.errorMessage, { silent: true });
      throw err;
    }
  }

  /**
   * openSession's `signal`: aborting it closes the session, and makes a pending
   * openSession reject with its reason (an effect's clean-up, a module replaced by
   * hot reloading). The listener goes with the session. @internal
   * @param {AbortSignal} signal
   */
  _closeOnAbort(signal) {
    const listener = () => {
      if (this._state === State.OPENING) this._aborted = { reason: signal.reason };
      this._close(false);
    };
    signal.addEventListener("abort", listener, { once: true });
    this._abortSignal = { signal, listener };
  }

  /** Throws a TypeError when openSession's password function fails. */
  _openFrame() {
    return encodeFrame({
      type: FrameType.OPEN,
      version: PROTOCOL_VERSION,
      user: this._user,
      password: typeof this._password === "function" ? askPassword(this._password) : this._password,
      options: this._openOptions,
    });
  }

  _bindFrame() {
    return encodeFrame({ type: FrameType.BIND, session: this._sessionId, secret: this._secret, received: this._received });
  }

  /**
   * Connects a transport and completes the handshake: OPEN when `fresh`, else BIND.
   * Candidates are tried in order; each but the last gets the probe deadline for the
   * whole attempt (connect + answer), since a WebSocket upgrade that a proxy swallows
   * and a stream that a proxy buffers both look like silence. The first answer wins:
   * a CLOSE is the gateway speaking, so it is not a reason to try another transport.
   * A timed-out attempt may have opened a session on the gateway; it expires there
   * by itself (session_timeout), and its transport is closed here.
   * @param {boolean} fresh
   * @returns {Promise<{kind: string, code?: number, message?: string, statuses?: number[]}>}
   *   the outcome of the handshake (see _shake), or {kind: "dropped", statuses} when no
   *   transport answered (statuses: the HTTP answers that were not the gateway's)
   */
  async _establish(fresh) {
    const candidates = this._candidates(fresh);
    /** @type {Array<{name: string, detail: string, http?: import("./transport-http.js").HttpAnswer}>} */
    const failures = [];
    for (let i = 0; i < candidates.length; i++) {
      if (this._state === State.CLOSED) return { kind: "close", code: 0, message: "session closed" };
      const [name, factory] = candidates[i];
      const probe = i < candidates.length - 1 ? this._probeTimeout : null;
      const started = Date.now();
      let t;
      try {
        // The session's end (close(), openSession's signal, the page leaving) does not
        // wait for a connection under way, which may take connectTimeout.
        const opening = factory(this._base, { timeout: probe ?? this._connectTimeout, link: this._link });
        // A promise per attempt, dropped after it: racing one long-lived promise would
        // keep a reaction of every attempt until the session ends.
        let end;
        const ended = new Promise((resolve) => (end = () => resolve(ENDED)));
        this._onEnd.add(end);
        t = await Promise.race([opening, ended]).finally(() => this._onEnd.delete(end));
        if (t === ENDED) {
          opening.then((late) => late.close(1000, "session closed"), () => {});
          return { kind: "close", code: 0, message: "session closed" };
        }
      } catch (err) {
        failures.push({ name, detail: String(err?.message ?? err), http: err?.http });
        continue;
      }
      if (this._state === State.CLOSED) {
        t.close(1000, "session closed");
        return { kind: "close", code: 0, message: "session closed" };
      }
      this._transportName = name;
      // What is left of the probe deadline, but never so little that a transport that
      // connected in time cannot answer.
      const wait = probe === null ? null : Math.max(probe - (Date.now() - started), Math.min(probe, 1000));
      let hello;
      try {
        hello = fresh ? this._openFrame() : this._bindFrame();
      } catch (err) {
        // The password function's fault: no transport or retry mends it.
        t.close(1000, "session closed");
        return { kind: "close", code: ErrorCode.bad_request, message: String(err?.message ?? err) };
      }
      const outcome = await this._shake(t, hello, wait);
      if (outcome.kind === "dropped") {
        failures.push({ name, detail: outcome.message, http: outcome.http });
        if (this._state === State.CLOSED) return { kind: "close", code: 0, message: "session closed" };
        continue;
      }
      if (outcome.kind === "opened" || outcome.kind === "bound") {
        this._transportWorked(name);
        // A session on a transport that comes after WebSocket in the list, WebSocket
        // not tried this time (the memory, or the transport in use, said to start
        // here): see later whether WebSocket gets through now.
        const order = this._transports.map(([n]) => n);
        const ws = order.indexOf("websocket");
        if (ws !== -1 && ws < order.indexOf(name) && candidates.slice(i + 1).some(([n]) => n === "websocket")) {
          this._scheduleUpgradeCheck();
        }
      }
      return outcome;
    }
    const statuses = failures.map((f) => f.http?.status).filter(Number.isInteger);
    return { kind: "dropped", message: unreachableMessage(this._base, failures), statuses };
  }

  /**
   * The transports to try, in order. The first session of a page starts with what
   * worked last time for this gateway (transport-memory.js), a resumed session with
   * the transport it was using, and a fresh session that replaces a lost one probes
   * from the top: a better transport may work now (the user changed networks); so
   * does the first handshake after the network came back (_watchNetwork).
   */
  _candidates(fresh) {
    const list = this._transports;
    if (list.length < 2) return list;
    if (this._fromTop) {
      this._fromTop = false;
      return list;
    }
    if (this._sessionId === null) return startingAt(list, recallTransport(this._base));
    if (fresh) return list;
    return startingAt(list, this._lastWorked);
  }

  _transportWorked(name) {
    if (this._transports.length > 1) rememberTransport(this._base, name);
    const previous = this._lastWorked;
    this._lastWorked = name;
    if (previous !== null && previous !== name) safeCall(this.onTransportChange, this, { transport: name, previous });
  }

  /**
   * Makes `t` the current transport, sends OPEN or BIND and waits for the answer.
   * Resolves with {kind: "opened" | "bound" | "close" | "dropped" | "fresh", ...}; the
   * state changes for OPENED/BOUND are made synchronously in _onFrame, because the
   * data frames that follow them in the same unit must already be counted right.
   */
  _shake(t, frame, wait = null) {
    this._attach(t);
    // A long poll may hold its answer to BIND until it has something to send
    // (PROTOCOL.md, HTTP long polling): that is the transport working, not silence.
    const hold = frame[0] === FrameType.BIND ? (t.bindHold ?? 0) : 0;
    return new Promise((resolve) => {
      const cancel = deadline((wait ?? 2 * this._heartbeatMs + 5000) + hold, () => {
        if (this._transport === t) this._detach();
        settle({ kind: "dropped", message: `no answer to ${frame[0] === FrameType.OPEN ? "OPEN" : "BIND"}` });
        t.close(ErrorCode.heartbeat_timeout, "");
      });
      const settle = (outcome) => {
        if (this._handshake !== handshake) return;
        this._handshake = null;
        cancel();
        resolve(outcome);
      };
      const handshake = { settle };
      this._handshake = handshake;
      this._sendNow(t, [{ bytes: frame, seq: 0 }]);
    });
  }

  _attach(t) {
    this._transport = t;
    this._bound = false;
    t.onunit = (unit) => this._onUnit(t, unit);
    t.onclose = (ev) => this._onTransportClose(t, ev);
  }

  _detach() {
    const t = this._transport;
    this._transport = null;
    this._bound = false;
    this._heartbeat.stop();
    this._check?.end(false);
    if (t) {
      t.onunit = null;
      t.onclose = null;
    }
    return t;
  }

  // ---------------------------------------------------------------- incoming

  _onUnit(t, unit) {
    if (t !== this._transport) return;
    this._heartbeat.received();
    if (this._check?.t === t) this._check.end(true);
    try {
      // MESSAGE payloads are borrowed from the unit: each client's Message copies what
      // it keeps once its onMessageArrived returns (Message#_settle).
      eachFrame(
        unit,
        (frame) => {
          this._onFrame(frame);
          // A frame handler may have ended this transport (CLOSE, fatal error).
          return t === this._transport;
        },
        true,
      );
    } catch (err) {
      if (!(err instanceof MqttGatewayError)) throw err;
      // Undecodable input: this client and the gateway disagree on the protocol. A
      // BIND would replay the same bytes, so retrying cannot help.
      this._fatal(err.errorCode, `bad frame from the gateway: ${err.errorMessage}`);
    }
  }

  _onFrame(f) {
    if (f.type === FrameType.PING) return;
    if (f.type === FrameType.SERVER_CLOSE) {
      this._onServerClose(f.code, f.message);
      return;
    }
    // Every poll's answer starts with BOUND, and so does a stream renewed after the
    // gateway ended one: a BOUND on a bound transport continues it.
    if (f.type === FrameType.BOUND) return this._onBound(f);
    if (!this._bound) {
      if (f.type === FrameType.OPENED) return this._onOpened(f);
      throw new MqttGatewayError(ErrorCode.malformed, `frame 0x${f.type.toString(16)} before OPENED/BOUND`);
    }
    if (!isDataFrame(f.type)) {
      throw new MqttGatewayError(ErrorCode.malformed, `unexpected frame 0x${f.type.toString(16)}`);
    }
    // Every data frame counts, even one no client wants, so that BIND's count matches
    // the server's. Frames the server replays that we already had are dropped here.
    const n = this._next++;
    if (n <= this._received) return;
    this._received = n;
    switch (f.type) {
      case FrameType.RESULT:
        return this._onResult(f);
      case FrameType.MESSAGE:
        return this._onMessage(f);
      case FrameType.LOST:
        return this._handles.get(f.handle)?._onLost(f.code, f.message);
      case FrameType.NOTICE:
        return this._onNotice(f);
      case FrameType.UNSUBSCRIBED:
        return this._handles.get(f.handle)?._onUnsubscribed(f.filter, f.code, f.message);
    }
  }

  /**
   * NOTICE: overflow (4050) goes to onOverflow; a shared broker connection going
   * (4041) or coming back (0) goes to the clients on that stream; everything also
   * goes to onNotice.
   */
  _onNotice(f) {
    const notice = { errorCode: f.code, errorMessage: f.message, value: f.value };
    if (f.code === ErrorCode.overflow) {
      this._mayHaveLost = true; // reported by the next onReconnectionComplete, if one is under way
      safeCall(this.onOverflow, this, { dropped: f.value, errorCode: f.code, errorMessage: f.message });
    } else if (f.code === ErrorCode.broker_unavailable || f.code === 0) {
      for (const client of this._handles.values()) {
        if (client._stream !== f.value) continue;
        if (f.code === 0) safeCall(client.onBrokerAvailable, client);
        else safeCall(client.onBrokerUnavailable, client, { errorCode: f.code, errorMessage: f.message });
      }
    }
    safeCall(this.onNotice, this, notice);
  }

  /**
   * Caps the bandwidth the gateway uses for this session, in bytes per second (0: no
   * cap of the session's own; the gateway's configuration may still cap it). Waiting
   * QoS 0 values are conflated per topic to respect it. Resolves with the cap in
   * force.
   * @param {number} bytesPerSecond
   * @returns {Promise<number>}
   */
  setMaxBandwidth(bytesPerSecond) {
    const value = bandwidthOnWire(bytesPerSecond, "bytesPerSecond");
    // A fresh session after a loss opens with the new value.
    this._openOptions = this._openOptions.filter(([k]) => k !== "max_bandwidth");
    if (value > 0) this._openOptions.push(["max_bandwidth", String(value)]);
    return new Promise((resolve, reject) => {
      this._request(
        { _handle: 0 },
        (req) => ({ type: FrameType.BANDWIDTH, req, value }),
        (code, message, inForce) => (code === 0 ? resolve(inForce) : reject(new MqttGatewayError(code, message))),
        () => resolve(value), // a fresh session opened with it
      );
    });
  }

  _onOpened(f) {
    const fresh = this._sessionId !== null; // a replacement for a session the gateway lost
    this._sessionId = f.session;
    this._secret = f.secret;
    this._heartbeatMs = f.heartbeat || DEFAULT_HEARTBEAT;
    this._sessionTimeout = f.sessionTimeout;
    this._maxFrame = f.maxFrame || DEFAULT_MAX_FRAME;
    this._info = Object.fromEntries(f.info);
    this._openedAt = Date.now();
    const handedOver = this._sentSeq; // the lost session's requests up to it may have run
    this._received = 0;
    this._next = 1;
    this._nextSeq = 1;
    this._sentSeq = 0;
    this._recentAcks.clear(); // the old session's streams are gone with it
    this._bound = true;
    this._state = State.OPEN;
    this._heartbeat.start(this._heartbeatMs);
    if (fresh) this._recreate(handedOver);
    this._flush();
    this._handshake?.settle({ kind: "opened" });
  }

  _onBound(f) {
    const continuing = this._bound;
    if (f.replayFrom < 1 || f.replayFrom > this._received + 1) {
      // The server would skip frames we never saw: that is a gap, whatever it says.
      // Give the server its session back and start anew.
      const t = this._detach();
      this._sendNow(t, [{ bytes: CLOSE, seq: 0 }]);
      t.close(1000, "session gap", { flush: true });
      if (this._handshake) {
        this._handshake.settle({ kind: "fresh" });
      } else {
        this._sessionLost();
        this._reconnect({ immediate: true });
      }
      return;
    }
    this._next = f.replayFrom;
    // A continuing BOUND (a poll, a renewed stream) says nothing about requests: those
    // go by /send, and one in flight may not be counted yet, so nothing is sent again
    // here; a /send that failed ends the transport and leads here through BIND.
    if (continuing) return;
    this._bound = true;
    this._state = State.OPEN;
    this._heartbeat.start(this._heartbeatMs);
    this._resendLost(f.requests);
    this._resendAcks();
    this._flush();
    this._handshake?.settle({ kind: "bound" });
  }

  /**
   * After BOUND on a new connection: the requests handed to the old one that the
   * gateway did not count were lost with it. They go again, in their order, ahead of
   * everything queued since (which was numbered after them).
   */
  _resendLost(requests) {
    const lost = [];
    for (const rec of this._pending.values()) {
      if (rec.seq > requests && rec.seq <= this._sentSeq) lost.push(rec);
    }
    if (lost.length === 0) return;
    lost.sort((a, b) => a.seq - b.seq);
    this._out = lost.map((rec) => ({ bytes: rec.bytes, seq: rec.seq })).concat(this._out);
  }

  _onResult(f) {
    const rec = this._pending.get(f.req);
    if (!rec) return; // not ours (any more): e.g. superseded by a fresh session
    this._pending.delete(f.req);
    rec.onResult(f.code, f.message, f.value, false, f);
  }

  _onMessage(f) {
    let delivered = false;
    if (f.client) {
      // A retained message for one client's SUBSCRIBE: that client's only.
      const client = this._handles.get(f.client);
      delivered = client?._stream === f.stream && client._deliver(f);
    } else {
      for (const client of this._clients) {
        if (client._stream !== f.stream || (f.except && client._handle === f.except)) continue;
        if (client._deliver(f)) delivered = true;
      }
    }
    // Acknowledge only what an application callback has seen: an ACK for a message
    // nobody got would tell the broker it was delivered.
    if (f.packetId !== 0 && delivered) {
      this._enqueue(encodeFrame({ type: FrameType.ACK, stream: f.stream, packetId: f.packetId }));
      this._noteAck(f.stream, f.packetId);
    }
  }

  /** Keeps an ACK's packet id to send again after a rebind (see _recentAcks). */
  _noteAck(stream, packetId) {
    let ring = this._recentAcks.get(stream);
    if (!ring) {
      // A new stream: forget those no client holds any more (stream ids are not reused).
      const held = new Set([...this._clients].map((c) => c._stream));
      for (const old of this._recentAcks.keys()) if (!held.has(old)) this._recentAcks.delete(old);
      ring = { ids: new Uint16Array(RECENT_ACKS), next: 0, count: 0, sent: 0 };
      this._recentAcks.set(stream, ring);
    }
    ring.ids[ring.next] = packetId;
    ring.next = (ring.next + 1) % RECENT_ACKS;
    if (ring.count < RECENT_ACKS) ring.count++;
    ring.sent++;
  }

  /**
   * After BOUND on a new connection: the ACKs each stream sent on the old one go
   * again, oldest first and ahead of everything else, as any of them may have been
   * lost with it; they count as sent on the new one. Those that arrived are ignored:
   * the gateway no longer awaits their packet id.
   */
  _resendAcks() {
    const again = [];
    for (const [stream, ring] of this._recentAcks) {
      ring.sent = Math.min(ring.sent, ring.count);
      for (let i = ring.sent; i > 0; i--) {
        const packetId = ring.ids[(ring.next - i + RECENT_ACKS) % RECENT_ACKS];
        again.push({ bytes: encodeFrame({ type: FrameType.ACK, stream, packetId }), seq: 0 });
      }
    }
    if (again.length > 0) this._out = again.concat(this._out);
  }

  _onServerClose(code, message) {
    if (this._handshake) {
      this._detach()?.close(1000, "");
      this._handshake.settle({ kind: "close", code, message });
      return;
    }
    if (FRESH_SESSION_CODES.has(code)) {
      this._sessionLost({ live: true });
      this._reconnect({ immediate: true });
    } else if (RETRY_CODES.has(code)) {
      this._reconnect();
    } else {
      this._terminate(code, message);
    }
  }

  _onTransportClose(t, ev) {
    if (t !== this._transport) return;
    if (this._handshake) {
      this._detach();
      // The transport's reason ("stream request failed: fetch failed (ECONNREFUSED)"), and
      // the HTTP answer that ended it when it was not the gateway's.
      const message = !ev.reason ? `transport closed (${ev.code})` : ev.code === 1006 ? ev.reason : `${ev.reason} (${ev.code})`;
      this._handshake.settle({ kind: "dropped", message, http: ev.http });
      return;
    }
    // A close code in the protocol's range without a CLOSE frame: the server's intent
    // is the same as with the frame.
    if (ev.code >= 4000 && ev.code <= 4999) {
      this._onServerClose(ev.code, ev.reason || "connection closed by the gateway");
      return;
    }
    this._reconnect();
  }

  /** The heartbeat deadline passed: drop this transport and recover. */
  _transportDead() {
    if (this._transport) this._reconnect({ code: ErrorCode.heartbeat_timeout });
  }

  // ---------------------------------------------------------------- outgoing

  /**
   * Registers a request and sends it (now, or when the session is back).
   * @param {BrokerClient} client
   * @param {(req: number, handle: number) => object} build makes the frame object
   * @param {(code: number, message: string, value: number, quiet?: boolean) => void} onResult
   *   quiet: the failure comes from the application's own session.close()
   * @param {(handedOver: boolean) => void} [onFresh] what to do if a fresh session
   *   replaces this one before the RESULT arrives (the request is dropped from the
   *   pending set first); handedOver: it went to a transport, so the gateway may have
   *   carried it out
   * @returns {boolean} false if the request could not be issued (error already reported)
   * @internal
   */
  _request(client, build, onResult, onFresh) {
    if (this._state === State.CLOSED) {
      onResult(ErrorCode.bad_request, "session closed", 0, false);
      return false;
    }
    const req = this._nextReq++;
    const bytes = encodeFrame(build(req, client._handle ?? 0));
    if (bytes.length > this._maxFrame) {
      onResult(ErrorCode.frame_too_large, `frame of ${bytes.length} bytes exceeds the gateway's ${this._maxFrame}`, 0);
      return false;
    }
    const seq = this._nextSeq++;
    this._pending.set(req, { req, seq, bytes, client, onResult, onFresh });
    this._enqueue(bytes, seq);
    return true;
  }

  /** Allocates a handle for a client's CONNECT. @internal */
  _assignHandle(client) {
    if (client._handle !== null) this._handles.delete(client._handle);
    const h = this._nextHandle++;
    this._handles.set(h, client);
    return h;
  }

  /** @internal */
  _releaseHandle(client) {
    if (client._handle !== null && this._handles.get(client._handle) === client) this._handles.delete(client._handle);
  }

  _enqueue(bytes, seq = 0) {
    this._out.push({ bytes, seq });
    if (this._flushScheduled) return;
    this._flushScheduled = true;
    // Everything queued in this tick goes out as one unit (fewer WebSocket messages
    // and syscalls when an application subscribes to 50 filters in a loop).
    queueMicrotask(() => {
      this._flushScheduled = false;
      this._flush();
    });
  }

  _flush() {
    if (this._out.length === 0 || !this._transport || !this._bound) return;
    const entries = this._out;
    this._out = [];
    for (const e of entries) if (e.seq > this._sentSeq) this._sentSeq = e.seq;
    this._sendNow(this._transport, entries);
  }

  /**
   * Sends entries ({bytes, seq}; seq 0 for frames that are not requests) on t, as few
   * units as the gateway's max_frame allows. Each unit goes with the number of requests
   * sent before its first one, which lets HTTP transports repeat a /send safely
   * (PROTOCOL.md, HTTP streaming: SEND).
   */
  _sendNow(t, entries) {
    let batch = [];
    let size = 0;
    /** @type {number | undefined} */
    let before;
    const emit = () => {
      if (batch.length === 0) return;
      t.send(encodeUnit(batch), before);
      batch = [];
      size = 0;
      before = undefined;
    };
    // PROTOCOL.md bounds frames, not units; keeping units within max_frame keeps them
    // within whatever message limit the server derives from it. An HTTP transport asks
    // for smaller ones, which it can send apart when a proxy limits request sizes.
    const limit = Math.min(this._maxFrame, t.maxUnit ?? Infinity);
    for (const e of entries) {
      const n = e.bytes.length + uvarintSize(e.bytes.length);
      if (size > 0 && size + n > limit) emit();
      batch.push(e.bytes);
      if (before === undefined && e.seq > 0) before = e.seq - 1;
      size += n;
    }
    emit();
    this._heartbeat.sent();
  }

  // ---------------------------------------------------------------- recovery

  /** Starts (or continues) recovery after the current transport is gone. */
  _reconnect({ immediate = false, code = 1000 } = {}) {
    // While opening, the handshake reports failures to openSession instead.
    if (this._state === State.CLOSED || this._state === State.OPENING) return;
    const t = this._detach();
    t?.close(code, "");
    if (t) this._suspectKeptConnections();
    // Frames not yet sent stay queued for the resumed session; PINGs are pointless.
    this._out = this._out.filter((e) => !isPing(e.bytes));
    this._beginRecovery();
    if (this._state === State.RECONNECTING) return; // a loop is already running
    this._state = State.RECONNECTING;
    this._reconnectLoop(immediate).catch((err) => this._terminate(ErrorCode.internal, String(err?.message ?? err)));
  }

  _beginRecovery() {
    if (this._recovering) return;
    this._recovering = true;
    safeCall(this.onReconnectionStart, this);
    for (const c of this._clients) c._onReconnectionStart();
  }

  async _reconnectLoop(immediate) {
    let attempt = 0;
    let wait = !immediate;
    while (this._state === State.RECONNECTING) {
      const fresh = this._sessionIdWasLost || this._sessionId === null;
      const delay = Math.max(wait ? backoffDelay(attempt++) : 0, fresh ? this._freshOpenDelay() : 0);
      if (delay > 0) {
        await this._pause(delay);
        if (this._state !== State.RECONNECTING) return;
      }
      wait = true;
      if (this._dropSilent) {
        this._dropSilent = false;
        await dropSilentConnections(this._base, this._probeTimeout);
        if (this._state !== State.RECONNECTING) return;
        this._nudgeSilentConnection();
      }
      const outcome = await this._establish(fresh);
      if (this._state === State.CLOSED) return;
      switch (outcome.kind) {
        case "opened":
          this._sessionIdWasLost = false;
          this._maybeCompleteRecovery();
          return;
        case "bound":
          this._maybeCompleteRecovery();
          return;
        case "fresh": // BOUND announced a gap (_onBound closed that transport)
          this._sessionLost();
          wait = false;
          attempt = 0;
          break;
        case "close":
          this._detach();
          if (FRESH_SESSION_CODES.has(outcome.code)) {
            this._sessionLost();
            wait = false;
            attempt = 0;
          } else if (!RETRY_CODES.has(outcome.code) && !mendsByWaiting(outcome)) {
            // A refusal that waiting does not change (4020: the user was revoked).
            // The others (4013, 4022, 4090, 4091) are tried again after the backoff,
            // the fresh OPEN that replaces a lost session included: the gateway
            // refusing a new session for now is no reason to end this one.
            this._terminate(outcome.code, outcome.message);
            return;
          }
          break;
        default: // dropped (every transport was closed by _establish)
          // An auth handler in front of the gateway refusing the page now (401, 403:
          // its login expired) ends the session, saying why as openSession would: no
          // waiting brings it back. Any other answer from something in the gateway's
          // place is tried again after the backoff: the session worked, so the setup
          // is right, and a proxy answers 404 or 52x for a moment during a deploy.
          if ((outcome.statuses ?? []).some((st) => REFUSED_BY_AUTH.has(st))) {
            this._terminate(CONNECTION_FAILED, outcome.message);
            return;
          }
      }
    }
  }

  /**
   * The gateway no longer has our session (4010, 4012, a gap): the next handshake is
   * OPEN, and the new session may lack messages. Notes whether the session was lost
   * quickly after its OPENED (see QUICK_LOSS_MS): from the second such loss in a row,
   * the next OPEN waits (_freshOpenDelay). A loss after the session lived a while (a
   * gateway restarted, an instance died) starts the count anew: replaced at once.
   * The console hears of a balancer without affinity only when one of the quick
   * losses came on a connection that worked (`live`: a /send or poll answered 4010
   * by another instance), not when each came in answer to a BIND after the
   * connection dropped, as when a gateway restarts twice in a row.
   * @param {{live?: boolean}} [o]
   */
  _sessionLost({ live = false } = {}) {
    this._mayHaveLost = true;
    this._sessionIdWasLost = true; // the next handshake must be OPEN, not BIND
    const quick = this._openedAt > 0 && Date.now() - this._openedAt < QUICK_LOSS_MS;
    this._quickLosses = quick ? this._quickLosses + 1 : 0;
    this._liveQuickLoss = quick && (live || this._liveQuickLoss);
    if (this._quickLosses >= 2 && this._liveQuickLoss && !this._warnedQuickLoss) {
      // Once per session: the cause is in the setup, not in this client, and the
      // operator who reads the console should learn it without a flood.
      this._warnedQuickLoss = true;
      console.warn(`mqttgateway-client: ${QUICK_LOSS_WARNING} (${echo(this._base)})`);
    }
  }

  /**
   * How long to wait before opening a fresh session: 0 unless sessions keep being lost
   * quickly. One quick loss alone is replaced at once, as an instance that died just
   * after a session opened on it is no reason to wait; from the second in a row, the
   * delays grow (freshSessionDelay).
   */
  _freshOpenDelay() {
    return this._quickLosses >= 2 ? freshSessionDelay(this._quickLosses - 2) : 0;
  }

  _pause(ms) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this._sleep = null;
        resolve();
      }, ms);
      this._sleep = { timer, resolve };
    });
  }

  /** Ends a _pause now, if one is under way. */
  _wake() {
    if (!this._sleep) return;
    clearTimeout(this._sleep.timer);
    this._sleep.resolve();
    this._sleep = null;
  }

  /**
   * After OPENED of a fresh session: every request of the lost session is dropped
   * (its RESULT will never come), every client that was connected or connecting
   * sends CONNECT again with its subscriptions, and each dropped request decides
   * what it means now (a PUBLISH may be sent again, an UNSUBSCRIBE is simply done...).
   * @param {number} handedOver the last request number the lost session handed to a
   *   transport
   */
  _recreate(handedOver) {
    this._mayHaveLost = true;
    const old = [...this._pending.values()];
    this._pending.clear();
    this._handles.clear();
    this._out = [];
    this._recreating = 0;
    for (const c of this._clients) c._recreate();
    for (const rec of old) rec.onFresh?.(rec.seq <= handedOver);
  }

  /** Counts one answered re-creation request. @internal */
  _recreated() {
    this._recreating--;
    this._maybeCompleteRecovery();
  }

  _maybeCompleteRecovery() {
    if (!this._recovering || this._state !== State.OPEN || this._recreating > 0) return;
    const info = { messagesMayHaveBeenLost: this._mayHaveLost };
    this._recovering = false; // between onReconnectionStart and onReconnectionComplete
    this._mayHaveLost = false;
    this._sessionIdWasLost = false; // the gateway lost our session: next handshake is OPEN
    safeCall(this.onReconnectionComplete, this, info);
    for (const c of this._clients) c._onReconnectionComplete(info);
  }

  // ---------------------------------------------------------------- ending

  /** A protocol violation: tell the gateway we are gone, then end. */
  _fatal(code, message) {
    const t = this._transport;
    if (t && this._bound) this._sendNow(t, [{ bytes: CLOSE, seq: 0 }]);
    this._terminate(code, message);
  }

  /**
   * Ends the session for good.
   * @param {number} code 0 when the application closed it
   * @param {string} message
   * @param {{silent?: boolean, unloading?: boolean}} [o] silent: openSession is rejecting
   *   instead of onClose; unloading: the page is being unloaded (see _close)
   */
  _terminate(code, message, { silent = false, unloading = false } = {}) {
    if (this._state === State.CLOSED) return;
    const wasOpened = this._sessionId !== null;
    this._state = State.CLOSED;
    if (this._pageHide) {
      this._pageHide.target.removeEventListener("pagehide", this._pageHide.listener);
      this._pageHide = null;
    }
    for (const w of this._watched) w.target.removeEventListener(w.type, w.listener);
    this._watched = [];
    if (this._abortSignal) {
      this._abortSignal.signal.removeEventListener("abort", this._abortSignal.listener);
      this._abortSignal = null;
    }
    for (const end of this._onEnd) end();
    this._upgradeCheck?.();
    const t = this._detach();
    // flush: a CLOSE queued by close() or _fatal still goes out on HTTP transports,
    // which say when it has (a Promise); others have written it already.
    const handedOver = t?.close(code >= 4000 && code <= 4999 ? code : 1000, "", unloading ? { flush: true, unloading: true } : { flush: true });
    this._wake();
    this._handshake?.settle({ kind: "close", code, message });
    this._out = [];
    // Requests fail with the session's end code; with 4003 when the application
    // closed it (0 would read as success), saying that, unlike a 4003 "not connected",
    // they went out before the CLOSE and the gateway carries them out.
    const reqCode = code === 0 ? ErrorCode.bad_request : code;
    const reqMessage = code === 0 ? `${message} before its result came back: the gateway still carries out what was sent before the close` : message;
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const rec of pending) rec.onResult(reqCode, reqMessage, 0, code === 0);
    for (const c of this._clients) c._onSessionEnd(code, message);
    this._handles.clear();
    if (!silent && wasOpened) safeCall(this.onClose, this, { errorCode: code, errorMessage: message });
    return handedOver;
  }
}

/**
 * Resolves when `value` (a Promise or anything else) settles, or after `ms` at most;
 * never rejects. The timer does not keep a Node.js process alive on its own.
 * @param {unknown} value
 * @param {number} ms
 * @returns {Promise<void>}
 */
function within(value, ms) {
  if (typeof value?.then !== "function") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    timer.unref?.();
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    value.then(done, done);
  });
}

/**
 * What openSession's password function gives, as bytes.
 * @param {() => unknown} fn
 * @returns {Uint8Array}
 */
function askPassword(fn) {
  let value;
  try {
    value = fn();
  } catch (err) {
    throw new TypeError(`openSession option password() threw: ${err?.message ?? err}`);
  }
  if (typeof value?.then === "function") {
    throw new TypeError("openSession option password() returned a Promise: it must return the token at once (keep the current one at hand)");
  }
  try {
    return toBytes(value);
  } catch {
    throw new TypeError(`openSession option password() must return a string, ArrayBuffer or ArrayBufferView, got ${value === null ? "null" : typeof value}`);
  }
}
