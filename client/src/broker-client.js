// A broker client inside a session: Paho-like API (callbacks and Promises), its
// subscriptions, and delivery of the MESSAGE frames of its stream.

import { checkOptions, operation, safeCall } from "./callbacks.js";
import { FrameType, isWellFormed, toBytes } from "./codec.js";
import { ErrorCode, MqttGatewayError, describeValue, echo } from "./errors.js";
import { Message, checkMessageProps } from "./message.js";
import { frequencyOnWire } from "./limits.js";
import { brokerReconnectDelay } from "./timers.js";
import { FilterMap, filterLevels } from "./topic.js";

/** Why a topic or filter with a lone surrogate is refused: UTF-8 cannot carry it. */
const loneSurrogate = (what) => `the ${what} holds a lone surrogate (not valid UTF-16), which UTF-8 cannot carry`;

/** What connect() and subscribe() take, besides onSuccess, onFailure and invocationContext. */
const CONNECT_OPTIONS = ["cleanSession", "willMessage", "willDelayInterval", "userName", "password", "keepAliveInterval", "sessionExpiryInterval", "reconnect"];
const SUBSCRIBE_OPTIONS = ["qos", "maxFrequency", "noLocal", "retainAsPublished", "retainHandling"];

const State = Object.freeze({
  DISCONNECTED: "disconnected",
  CONNECTING: "connecting",
  CONNECTED: "connected",
  DISCONNECTING: "disconnecting",
});

const isQos = (q) => q === 0 || q === 1 || q === 2;
/**
 * Why a QoS that is not the number 0, 1 or 2 (a common mistake is the string "1") is
 * refused, locally and with nothing sent, under the code the gateway would use (4033).
 */
const badQos = (name, q) => `${name} must be 0, 1 or 2, got ${describeValue(q)}`;
const empty = new Uint8Array(0);
/**
 * MQTT 5's largest session expiry interval: the session never expires (the broker may
 * cap it by its own settings). What cleanSession false alone asks for, as in MQTT 3.1.1.
 */
const SESSION_NEVER_EXPIRES = 0xffffffff;
/**
 * Codes that mean the broker went away or could not be reached for now, so that a
 * dedicated client with `reconnect: true` tries again: 4041 broker_unavailable,
 * 4044 broker_timeout, 4022 hook_unavailable (the gateway's hook failed, fail closed),
 * 4090 shutting_down (the gateway is reloading) and 4051 rate_limited (the gateway
 * holds back the client's address after refused credentials, or the session has too
 * many requests waiting: "not now"). A broker's refusal (4042) is tried
 * again for the reasons in RETRIED_REFUSALS. Anything else (4045 taken over, 4021 not
 * authorized by the gateway, a banned client id...) would be refused again: retrying
 * would only hammer the broker.
 */
const RECONNECT_CODES = new Set([
  ErrorCode.broker_unavailable,
  ErrorCode.broker_timeout,
  ErrorCode.hook_unavailable,
  ErrorCode.shutting_down,
  ErrorCode.rate_limited,
]);
/**
 * CONNACK reason codes of a 4042 that a reconnecting client tries again, as Paho does:
 * credentials it used before (a password being rotated, a wrong one in a reload of the
 * gateway, soon put right) and a broker busy for now. The 4042 message names the code
 * (PROTOCOL.md, Error codes).
 */
const RETRIED_REFUSALS = new Set([0x86, 0x87, 0x88, 0x89, 0x97, 0x9f]);

/** Whether a reconnection attempt that failed with `code` and `message` goes on. */
function retried(code, message) {
  if (RECONNECT_CODES.has(code)) return true;
  const reason = code === ErrorCode.broker_refused ? /refused the connection: 0x([0-9a-f]{2})\b/.exec(message) : null;
  return reason !== null && RETRIED_REFUSALS.has(parseInt(reason[1], 16));
}

/**
 * Refusals of a re-creation (a client's CONNECT or a subscription sent again in the
 * fresh session that replaced a lost one) in which the gateway says "not now" for its
 * own part: its hook failed or was slow (4022, fail closed), it is reloading (4090),
 * or too many of the session's requests wait (4051: a session re-creating many
 * subscriptions at once may pass max_queued_frames; PROTOCOL.md says to send them
 * again once earlier ones are answered). The application had that connection and
 * those subscriptions, and did nothing to lose them: they are tried again, whatever
 * the client's `reconnect` option, as the session's fresh OPEN is.
 */
const RECREATION_RETRY_CODES = new Set([ErrorCode.hook_unavailable, ErrorCode.shutting_down, ErrorCode.rate_limited]);

/**
 * A client of one broker of the gateway. Create it with session.createClient().
 *
 * Every operation returns a Promise and also calls the Paho-style callbacks given in
 * its options. Failures are MqttGatewayError {errorCode, errorMessage}.
 */
export class BrokerClient {
  /** @internal */
  constructor(session, brokerName, clientId) {
    this._session = session;
    this._broker = brokerName;
    this._clientId = clientId;
    /** @type {string} one of State */
    this._state = State.DISCONNECTED;
    this._handle = null; // protocol handle of the current connection
    this._stream = null; // stream id from the CONNECT result
    this._connected = false; // CONNECT succeeded and the client has not been detached since
    this._connectOptions = null;
    this._connectOps = [];
    this._disconnectOps = [];
    /**
     * restoring: the client, not the application, is sending it again (a fresh session,
     * a reconnection), so a refusal that may mend is tried again (_resubscribeLater).
     * @type {FilterMap<{qos: number, options: {noLocal: boolean, retainAsPublished: boolean, retainHandling: number}, maxFrequency: number, grantedQos: number | null, ops: object[], levels: string[] | null, restoring?: boolean}>}
     */
    this._subs = new FilterMap();
    /** @type {Set<{timer: ReturnType<typeof setTimeout>, holdsRecovery: boolean}>} see _resubscribeLater */
    this._resubscriptionsLater = new Set();
    this._recovering = false;
    this._failedResubscriptions = [];
    this._autoReconnect = false; // connect option `reconnect`, dedicated clients only
    /**
     * The automatic reconnection under way after a LOST, or after a re-creation refused
     * for now (_retryRecreation), or null.
     * connecting: its CONNECT is pending; timer: the backoff before the next attempt;
     * failed: resubscriptions the broker refused, for onReconnectionComplete;
     * recreation: it re-creates the client after a fresh session; holdsRecovery: the
     * session's recovery waits for it (counted in session._recreating).
     * @type {{attempt: number, timer: ReturnType<typeof setTimeout> | null, connecting: boolean, subs: Array<{filter: string, qos: number, maxFrequency: number}>, failed: object[], recreation: boolean, holdsRecovery: boolean} | null}
     */
    this._reconnection = null;
    this._quietDisconnect = false; // disconnect() ended a reconnection: onConnectionLost already fired

    /** @type {((message: Message) => void) | null} */
    this.onMessageArrived = null;
    /** @type {((message: Message) => void) | null} */
    this.onMessageDelivered = null;
    /** @type {((error: {errorCode: number, errorMessage: string}) => void) | null} */
    this.onConnectionLost = null;
    /** @type {((message: Message, error: MqttGatewayError) => void) | null} */
    this.onMessageNotAuthorized = null;
    /** @type {((message: Message, error: MqttGatewayError) => void) | null} */
    this.onMessageNotDelivered = null;
    /** @type {(() => void) | null} */
    this.onReconnectionStart = null;
    /** @type {((info: {messagesMayHaveBeenLost: boolean}) => void) | null} */
    this.onReconnectionComplete = null;
    /**
     * Paho's: after connect() succeeds (false, after onSuccess) and after each
     * reconnection (true, after onReconnectionComplete: the subscriptions are back).
     * @type {((reconnect: boolean, uri: string) => void) | null}
     */
    this.onConnected = null;
    /**
     * The gateway lost its shared connection to this client's broker; the client
     * stays connected and its subscriptions come back with the broker.
     * @type {((error: {errorCode: number, errorMessage: string}) => void) | null}
     */
    this.onBrokerUnavailable = null;
    /** The broker is back and the subscriptions are restored. @type {(() => void) | null} */
    this.onBrokerAvailable = null;
    /**
     * The gateway ended a subscription on its own (its operator's admin API: a member
     * removed from a room); no message of it follows, and it is not made again.
     * @type {((info: {filter: string, errorCode: number, errorMessage: string}) => void) | null}
     */
    this.onSubscriptionLost = null;
  }

  /** The broker name given to createClient. */
  get brokerName() {
    return this._broker;
  }

  /** The MQTT client id ("" for the shared connection). */
  get clientId() {
    return this._clientId;
  }

  /** True between a successful connect and a disconnect or connection loss. */
  get isConnected() {
    return this._state === State.CONNECTED;
  }

  /** "disconnected", "connecting", "connected" or "disconnecting". */
  get state() {
    return this._state;
  }

  /**
   * Attaches this client to its broker. Resolves with `sessionPresent`: whether the
   * broker kept a session for this client id (MQTT's Session Present; always false on
   * the shared connection); onSuccess gets it too.
   * @param {object} [o]
   * @returns {Promise<{sessionPresent: boolean}>}
   */
  connect(o = {}) {
    checkOptions("connect", o, CONNECT_OPTIONS);
    if (o.reconnect !== undefined && typeof o.reconnect !== "boolean") throw new TypeError(`reconnect must be a boolean, got ${describeValue(o.reconnect)}`);
    const op = operation(o);
    // As in Paho, connect() between two attempts of an automatic reconnection ends it
    // and connects with the options given now.
    const replacesReconnection = this._awaitingReconnect() && !this._reconnection.connecting;
    if (this._state !== State.DISCONNECTED && !replacesReconnection) {
      const why = this._reconnection ? "reconnecting (disconnect() first to connect with other options)" : this._state;
      op.fail(new MqttGatewayError(ErrorCode.bad_request, `client is ${why}`));
      return op.promise;
    }
    const will = o.willMessage ?? null;
    const willDelay = o.willDelayInterval ?? null;
    if (willDelay !== null) {
      if (will === null) throw new TypeError("willDelayInterval needs a willMessage");
      if (!Number.isInteger(willDelay) || willDelay < 0 || willDelay > 0xffffffff) {
        throw new TypeError(`willDelayInterval must be a whole number of seconds from 0 to 4294967295, got ${describeValue(willDelay)}`);
      }
    }
    if (will !== null) {
      if (typeof will.destinationName !== "string") throw new TypeError("willMessage.destinationName must be set");
      checkMessageProps(will, "willMessage");
      if (!isQos(will.qos ?? 0)) {
        op.fail(new MqttGatewayError(ErrorCode.invalid_qos, badQos("willMessage.qos", will.qos)));
        return op.promise;
      }
    }
    const cleanStart = o.cleanSession ?? true;
    this._connectOptions = {
      cleanStart,
      keepAlive: o.keepAliveInterval ?? 0,
      // Paho's cleanSession false (MQTT 3.1.1) is a session the broker keeps until it
      // expires it by its own settings: in MQTT 5, clean start 0 with the largest
      // expiry. An explicit sessionExpiryInterval, 0 included, is sent as given.
      sessionExpiry: o.sessionExpiryInterval ?? (cleanStart ? 0 : SESSION_NEVER_EXPIRES),
      username: o.userName ?? "",
      password: o.password === undefined ? empty : toBytes(o.password),
      will:
        will === null
          ? null
          : {
              topic: will.destinationName,
              qos: will.qos ?? 0,
              retain: !!will.retained,
              props: {
                ...(typeof will._props === "function" ? will._props() : {}),
                ...(willDelay === null ? {} : { willDelayInterval: willDelay }),
              },
              payload: will.payloadBytes ?? empty,
            },
    };
    // The shared connection is the gateway's to restore (NOTICE 4041, then 0): its
    // clients never get LOST for a broker outage, so the option has nothing to do there.
    this._autoReconnect = !!o.reconnect && this._clientId !== "";
    if (replacesReconnection) this._reset();
    this._state = State.CONNECTING;
    this._connectOps.push(op);
    this._sendConnect(false);
    return op.promise;
  }

  /**
   * Subscribes to a topic filter. Resolves with the granted QoS.
   * @param {string} filter
   * @param {object} [o]
   * @returns {Promise<number>}
   */
  subscribe(filter, o = {}) {
    if (typeof filter !== "string") throw new TypeError("filter must be a string");
    checkOptions("subscribe", o, SUBSCRIBE_OPTIONS);
    const op = operation(o);
    const qos = o.qos ?? 0;
    if (!isQos(qos)) {
      op.fail(new MqttGatewayError(ErrorCode.invalid_qos, badQos("qos", qos)));
      return op.promise;
    }
    if (!isWellFormed(filter)) {
      // A filter the gateway would refuse, told as it would (not a throw: only a
      // mistake in the arguments' types throws).
      op.fail(new MqttGatewayError(ErrorCode.invalid_filter, loneSurrogate("filter")));
      return op.promise;
    }
    const maxFrequency = frequencyOnWire(o.maxFrequency ?? 0);
    const retainHandling = o.retainHandling ?? 0;
    if (retainHandling !== 0 && retainHandling !== 1 && retainHandling !== 2) {
      throw new TypeError("retainHandling must be 0 (retained messages at every subscribe), 1 (only for a new subscription) or 2 (never)");
    }
    if (!this._acceptsRequests()) {
      op.fail(new MqttGatewayError(ErrorCode.bad_request, "client not connected"));
      return op.promise;
    }
    // The subscription takes part in dispatch from now on: a retained message may
    // overtake the RESULT on a shared stream, and it is this subscription's.
    // levels: the filter split once here for dispatch (null: matches nothing).
    // The MQTT 5 subscription options (PROTOCOL.md): kept with the entry, so a
    // resubscription asks for them too.
    const options = { noLocal: !!o.noLocal, retainAsPublished: !!o.retainAsPublished, retainHandling };
    const entry = { qos, options, maxFrequency, grantedQos: null, ops: [op], levels: filterLevels(filter) };
    this._subs.set(filter, entry);
    this._sendSubscribe(filter, entry, false);
    return op.promise;
  }

  /**
   * Changes a subscription's maximum frequency (messages per second per topic, 0 for
   * unlimited) without resubscribing. The gateway conflates QoS 0 values in between:
   * the latest value of every topic always arrives.
   * @param {string} filter
   * @param {number} maxFrequency
   * @param {object} [o] `onSuccess`, `onFailure`
   * @returns {Promise<void>}
   */
  setMaxFrequency(filter, maxFrequency, o = {}) {
    checkOptions("setMaxFrequency", o, []);
    const wire = frequencyOnWire(maxFrequency);
    const op = operation(o);
    const entry = this._subs.get(filter);
    if (!this._acceptsRequests() || !entry) {
      op.fail(new MqttGatewayError(ErrorCode.bad_request, entry ? "client not connected" : `not subscribed to ${echo(filter)}`));
      return op.promise;
    }
    // Kept in the entry, so a resubscription after a fresh session asks for it.
    entry.maxFrequency = wire;
    this._session._request(
      this,
      (req, handle) => ({ type: FrameType.FREQUENCY, req, handle, filter, maxFrequency: entry.maxFrequency }),
      (code, message, _value, quiet) => (code === 0 ? op.ok(undefined) : op.fail(new MqttGatewayError(code, message), quiet)),
      () => op.ok(undefined), // the fresh session resubscribes with it
    );
    return op.promise;
  }

  /**
   * Removes a subscription. Messages stop being delivered for it at once.
   * @param {string} filter
   * @param {object} [o]
   * @returns {Promise<void>}
   */
  unsubscribe(filter, o = {}) {
    if (typeof filter !== "string") throw new TypeError("filter must be a string");
    checkOptions("unsubscribe", o, []);
    const op = operation(o);
    if (!this._acceptsRequests()) {
      op.fail(new MqttGatewayError(ErrorCode.bad_request, "client not connected"));
      return op.promise;
    }
    const entry = this._subs.get(filter);
    this._subs.delete(filter);
    this._session._request(
      this,
      (req, handle) => ({ type: FrameType.UNSUBSCRIBE, req, handle, filter }),
      (code, message, _value, quiet) => {
        if (code === 0) return op.ok(undefined);
        // Still subscribed at the gateway: keep dispatching as it does.
        if (entry && !this._subs.has(filter) && this._live()) this._subs.set(filter, entry);
        op.fail(new MqttGatewayError(code, message), quiet);
      },
      () => op.ok(undefined), // a fresh session does not have the subscription
    );
    return op.promise;
  }

  /**
   * Publishes a message. Resolves with the message once the gateway reports the broker
   * flow complete (then onMessageDelivered fires). Also accepts Paho's
   * `send(topic, payload, qos, retained)` form.
   * @param {Message | string} message
   * @returns {Promise<Message>}
   */
  send(message, payload, qos, retained) {
    if (typeof message === "string") {
      // No payload is a mistake, not an empty one: with retained, an empty payload
      // deletes the topic's retained message.
      if (payload === undefined || payload === null)
        throw new TypeError(`send(topic, payload, …) needs a payload (a string, ArrayBuffer or view; "" for an empty one), got ${payload}`);
      const m = new Message(payload);
      m.destinationName = message;
      if (qos !== undefined) m.qos = qos;
      if (retained !== undefined) m.retained = !!retained;
      message = m;
    }
    if (!(message instanceof Message)) throw new TypeError("send() takes a Message or (topic, payload, qos, retained)");
    if (typeof message.destinationName !== "string") throw new TypeError("message.destinationName must be set");
    checkMessageProps(message, "message");
    return this._publish(message);
  }

  /**
   * Publishes `payload` on `topic`. Same as send(topic, payload, qos, retained).
   * @returns {Promise<Message>}
   */
  publish(topic, payload, qos = 0, retained = false) {
    return this.send(topic, payload, qos, retained);
  }

  /**
   * Detaches from the broker; subscriptions are released. onConnectionLost fires with
   * errorCode 0 if the client was connected (as in Paho).
   * @returns {Promise<void>}
   */
  disconnect() {
    const op = operation({});
    if (this._state === State.DISCONNECTED) {
      op.ok(undefined);
      return op.promise;
    }
    if (this._reconnection && this._state === State.CONNECTING) {
      // The application already had onConnectionLost for the loss that started the
      // reconnection: stopping it calls nothing more. Between attempts there is no
      // connection to end; an attempt in flight may still succeed, so it is
      // disconnected like any connection being made.
      const attemptInFlight = this._reconnection.connecting;
      this._stopReconnection();
      if (!attemptInFlight) {
        this._reset();
        op.ok(undefined);
        return op.promise;
      }
      this._quietDisconnect = true;
    }
    this._disconnectOps.push(op);
    if (this._state === State.DISCONNECTING) return op.promise;
    this._state = State.DISCONNECTING;
    this._session._request(
      this,
      (req, handle) => ({ type: FrameType.DISCONNECT, req, handle }),
      // Whatever the code (the handle may already be gone), the client is detached.
      () => this._finishDisconnect(),
      () => this._finishDisconnect(),
    );
    return op.promise;
  }

  // ---------------------------------------------------------------- internals

  _live() {
    return this._state === State.CONNECTING || this._state === State.CONNECTED;
  }

  /**
   * Whether the application's requests may go out. Not while an automatic
   * reconnection waits for its CONNECT: they fail at once with "client not connected",
   * as for any client that is not connected (Paho throws "not connected" too), rather
   * than wait an unknown time for a broker that may never come back.
   */
  _acceptsRequests() {
    return this._live() && !this._awaitingReconnect();
  }

  /** Between the LOST that started an automatic reconnection and its successful CONNECT. */
  _awaitingReconnect() {
    return this._reconnection !== null && this._state === State.CONNECTING;
  }

  _sendConnect(recreating) {
    const s = this._session;
    this._handle = s._assignHandle(this);
    this._stream = null;
    const o = this._connectOptions;
    if (recreating) s._recreating++;
    s._request(
      this,
      (req, handle) => ({
        type: FrameType.CONNECT,
        req,
        handle,
        broker: this._broker,
        clientId: this._clientId,
        ...o,
      }),
      (code, message, value, quiet, frame) => {
        this._onConnectResult(code, message, value, quiet, frame?.sessionPresent ?? false, recreating);
        if (recreating) s._recreated();
      },
      // A fresh session re-creates the connection from _recreate(); nothing to do here.
    );
  }

  _onConnectResult(code, message, value, quiet = false, sessionPresent = false, recreating = false) {
    const ops = this._connectOps.splice(0);
    const reconnection = this._reconnection;
    const wasReconnectAttempt = reconnection !== null && reconnection.connecting;
    if (reconnection) reconnection.connecting = false;
    if (code === 0) {
      this._stream = value;
      this._connected = true;
      if (this._state === State.CONNECTING) this._state = State.CONNECTED;
      for (const op of ops) op.ok({ sessionPresent }, { sessionPresent });
      if (wasReconnectAttempt && this._state === State.CONNECTED) this._resubscribe(reconnection);
      else if (ops.length > 0 && this._state === State.CONNECTED) safeCall(this.onConnected, this, false, this._session._base);
      return;
    }
    if (wasReconnectAttempt && this._state === State.CONNECTING) {
      this._reconnectAttemptFailed(reconnection, code, message);
      return;
    }
    const err = new MqttGatewayError(code, message);
    const wasConnected = this._connected;
    if (recreating && wasConnected && this._state === State.CONNECTED && this._retriesRecreation(code, message)) {
      this._retryRecreation();
      return;
    }
    if (this._state !== State.DISCONNECTING) this._reset();
    else this._connected = false;
    for (const op of ops) op.fail(err, quiet);
    // Only when re-creating after a lost session: the application had a connection.
    if (wasConnected) {
      this._recovering = false;
      safeCall(this.onConnectionLost, this, { errorCode: code, errorMessage: message });
    }
  }

  /**
   * @param {string} filter
   * @param {object} entry
   * @param {boolean} recreating part of a fresh session's re-creation, which waits for it
   * @param {number} [attempt] how many times a refusal for now sent it again
   */
  _sendSubscribe(filter, entry, recreating, attempt = 0) {
    const s = this._session;
    if (recreating) s._recreating++;
    s._request(
      this,
      (req, handle) => ({ type: FrameType.SUBSCRIBE, req, handle, filter, qos: entry.qos, ...entry.options, maxFrequency: entry.maxFrequency }),
      (code, message, value, quiet) => {
        const current = this._subs.get(filter) === entry;
        if (code !== 0 && current && entry.restoring && RECREATION_RETRY_CODES.has(code)) {
          this._resubscribeLater(filter, entry, recreating, attempt);
          if (recreating) s._recreated();
          return;
        }
        const ops = entry.ops.splice(0);
        if (code === 0) {
          if (current) entry.grantedQos = value;
          for (const op of ops) op.ok(value, { grantedQos: value });
        } else {
          if (current) this._subs.delete(filter);
          const err = new MqttGatewayError(code, message);
          for (const op of ops) op.fail(err, quiet);
          if (recreating && ops.length === 0 && current) {
            this._failedResubscriptions.push({ filter, errorCode: code, errorMessage: message });
          }
        }
        if (recreating) s._recreated();
      },
      () => {
        // Lost with the session before its RESULT. If the filter is still wanted,
        // _recreate() subscribes again and the waiting callers move with the entry;
        // if it was replaced or unsubscribed meanwhile, that is this request's end.
        if (this._subs.get(filter) !== entry) {
          for (const op of entry.ops.splice(0)) op.ok(entry.qos, { grantedQos: entry.qos });
        }
      },
    );
  }

  _publish(message) {
    let resolve, reject;
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    // A publish is fire-and-forget as often as it is awaited (Paho's send() returns
    // nothing): its failure must not end a Node.js process as an unhandled rejection.
    // Whoever awaits the Promise still gets the error; onMessageNotDelivered hears of
    // every failure.
    promise.catch(() => {});
    const fail = (code, text, quiet = false) => {
      const err = new MqttGatewayError(code, text);
      if (!quiet) {
        if (code === ErrorCode.not_authorized) safeCall(this.onMessageNotAuthorized, this, message, err);
        safeCall(this.onMessageNotDelivered, this, message, err);
      }
      reject(err);
    };
    if (!isQos(message.qos)) {
      fail(ErrorCode.invalid_qos, badQos("qos", message.qos));
      return promise;
    }
    if (!isWellFormed(message.destinationName)) {
      fail(ErrorCode.invalid_topic, loneSurrogate("topic"));
      return promise;
    }
    if (!this._acceptsRequests()) {
      fail(ErrorCode.bad_request, "client not connected");
      return promise;
    }
    const issue = () =>
      this._session._request(
        this,
        (req, handle) => ({
          type: FrameType.PUBLISH,
          req,
          handle,
          topic: message.destinationName,
          qos: message.qos,
          retain: !!message.retained,
          props: message._props(),
          payload: message._wirePayload(),
        }),
        (code, text, _value, quiet) => {
          if (code !== 0) return fail(code, text, quiet);
          safeCall(this.onMessageDelivered, this, message);
          resolve(message);
        },
        // The session was lost before the RESULT. A publish never handed to a
        // transport goes in the new session. One that did may have reached the broker:
        // QoS 1 is sent again (at least once: it may arrive twice), QoS 0 and 2 fail,
        // as sending them again could deliver them twice (PROTOCOL.md, Recovery), and
        // the application decides.
        (handedOver) => {
          if (!this._acceptsRequests()) return fail(ErrorCode.session_gap, "session lost before the publish was confirmed");
          if (!handedOver || message.qos === 1) return issue();
          fail(ErrorCode.session_gap, `session lost before the QoS ${message.qos} publish was confirmed: it may or may not have been delivered`);
        },
      );
    issue();
    return promise;
  }

  _finishDisconnect() {
    const wasConnected = this._connected && !this._quietDisconnect;
    this._reset();
    for (const op of this._disconnectOps.splice(0)) op.ok(undefined);
    if (wasConnected) safeCall(this.onConnectionLost, this, { errorCode: 0, errorMessage: "disconnected" });
  }

  /** Back to disconnected: no handle, no stream, no subscriptions. */
  _reset() {
    this._session._releaseHandle(this);
    this._state = State.DISCONNECTED;
    this._handle = null;
    this._stream = null;
    this._connected = false;
    this._subs.clear();
    this._recovering = false;
    this._quietDisconnect = false;
    this._stopReconnection();
    this._cancelResubscriptionsLater(true);
  }

  /**
   * Delivers a MESSAGE frame of this client's stream. Returns whether it reached the
   * application (and so may be acknowledged).
   * @internal
   */
  _deliver(f) {
    if (this._state !== State.CONNECTED) return false;
    let qos = f.qos;
    let retained = f.retain;
    // A shared stream carries every message the gateway's connection receives, for
    // all sessions: keep those this client subscribed to, at the QoS it asked for.
    // A dedicated stream only carries this client's messages, including those the
    // broker kept for a persistent session from subscriptions made before this page
    // loaded: filtering them by the current subscriptions would lose them.
    if (this._clientId === "") {
      let best = -1;
      let asPublished = false;
      this._subs.forEachMatch(f.topic.split("/"), (e) => {
        best = Math.max(best, e.grantedQos ?? e.qos);
        if (e.options.retainAsPublished) asPublished = true;
      });
      if (best < 0) return false;
      qos = Math.min(qos, best);
      // Published retained: a subscription with retainAsPublished sees the flag.
      if (f.publishedRetain && asPublished) retained = true;
    }
    const m = Message._fromFrame(f, qos, retained);
    safeCall(this.onMessageArrived, this, m);
    m._settle();
    return true;
  }

  /** LOST: the gateway detached this client (its broker connection ended). @internal */
  /**
   * UNSUBSCRIBED: the gateway ended the subscription to `filter`. A SUBSCRIBE to it sent
   * after the gateway ended it is still in flight when its entry has operations
   * waiting: its RESULT decides, so the entry stays.
   */
  _onUnsubscribed(filter, code, message) {
    const entry = this._subs.get(filter);
    if (!entry) return;
    if (entry.ops.length === 0) this._subs.delete(filter);
    safeCall(this.onSubscriptionLost, this, { filter, errorCode: code, errorMessage: message });
  }

  _onLost(code, message) {
    // Waiting for a reconnection attempt: its CONNECT RESULT (which the gateway sends
    // ahead of any LOST) decides what happens next.
    if (this._state === State.DISCONNECTED || this._awaitingReconnect()) return;
    const wasConnected = this._connected;
    if (this._state === State.DISCONNECTING) {
      this._connected = false; // the DISCONNECT result still completes the disconnect
      this._stream = null;
      return;
    }
    const reconnection = this._reconnection; // lost again while resubscribing
    const subs = this._subscriptionList();
    this._reset();
    if (this._autoReconnect && RECONNECT_CODES.has(code) && wasConnected) {
      // In place before onConnectionLost, so that a disconnect() or connect() the
      // application makes there ends it (as in Paho). Lost again while resubscribing:
      // the application heard of the loss when the reconnection began.
      const started = this._startReconnection(subs, reconnection);
      if (reconnection) return;
      safeCall(this.onConnectionLost, this, { errorCode: code, errorMessage: message });
      if (this._reconnection === started) safeCall(this.onReconnectionStart, this);
      return;
    }
    if (wasConnected) safeCall(this.onConnectionLost, this, { errorCode: code, errorMessage: message });
  }

  /** The session ended for good. @internal */
  _onSessionEnd(code, message) {
    if (this._state === State.DISCONNECTED) return;
    const wasConnected = this._connected;
    this._reset();
    if (wasConnected) safeCall(this.onConnectionLost, this, { errorCode: code, errorMessage: message });
  }

  /** A fresh session replaced the lost one: connect and subscribe again. @internal */
  _recreate() {
    // The fresh session subscribes again to every filter held, and counts what its
    // recovery waits for from 0: a reconnection that re-creates this client is
    // counted again.
    this._cancelResubscriptionsLater(false);
    if (this._reconnection?.holdsRecovery) this._session._recreating++;
    if (this._awaitingReconnect()) {
      // Between attempts nothing is pending; an attempt's CONNECT went with the lost
      // session and is made again in this one.
      if (this._reconnection.connecting) this._sendConnect(true);
      return;
    }
    if (!this._live()) return;
    this._failedResubscriptions = [];
    this._sendConnect(true);
    for (const [filter, entry] of this._subs) {
      entry.grantedQos = null;
      // A subscription the application has no answer pending for is the client's to
      // restore; one it awaits gets the new session's answer, as it would have had
      // the old one's.
      if (entry.ops.length === 0) entry.restoring = true;
      this._sendSubscribe(filter, entry, true);
    }
  }

  /** @internal */
  _onReconnectionStart() {
    // During an automatic reconnection to the broker, the application has had
    // onReconnectionStart already; onReconnectionComplete comes when that one ends.
    if (!this._live() || this._reconnection) return;
    this._recovering = true;
    safeCall(this.onReconnectionStart, this);
  }

  /** @internal */
  _onReconnectionComplete(info) {
    if (!this._recovering) return;
    this._recovering = false;
    const failed = this._failedResubscriptions.splice(0);
    safeCall(this.onReconnectionComplete, this, failed.length ? { ...info, failedSubscriptions: failed } : info);
    this._onReconnected();
  }

  /** Paho's onConnected(true, uri), once a reconnection is complete. */
  _onReconnected() {
    if (this._state === State.CONNECTED) safeCall(this.onConnected, this, true, this._session._base);
  }

  // ------------------------------------------- automatic reconnection (`reconnect`)

  /** What to subscribe to again after a reconnection: every filter held, as asked. */
  _subscriptionList() {
    return [...this._subs].map(([filter, e]) => ({ filter, qos: e.qos, options: e.options, maxFrequency: e.maxFrequency }));
  }

  /**
   * Begins reconnecting to the broker after a LOST: the client is "connecting" (not
   * connected) until a CONNECT with the same options succeeds. `previous`: the
   * reconnection that was resubscribing when the broker went away again; the
   * application was told of its start already, and its refused filters still count.
   */
  _startReconnection(subs, previous, recreation = false) {
    this._state = State.CONNECTING;
    const reconnection = { attempt: 0, timer: null, connecting: false, subs, failed: previous?.failed ?? [], recreation, holdsRecovery: recreation };
    if (recreation) this._session._recreating++;
    this._reconnection = reconnection;
    this._scheduleReconnectAttempt(reconnection);
    return reconnection;
  }

  _scheduleReconnectAttempt(reconnection) {
    const delay = brokerReconnectDelay(reconnection.attempt++);
    reconnection.timer = setTimeout(() => {
      reconnection.timer = null;
      if (this._reconnection !== reconnection) return;
      reconnection.connecting = true;
      this._sendConnect(false);
    }, delay);
  }

  /**
   * A reconnection attempt failed. The broker still away, busy, or refusing the
   * credentials it took before (see retried): wait and try again. Refused for a reason
   * that will not pass by itself: the reconnection ends, and a second onConnectionLost
   * with the refusal's code tells the application.
   */
  _reconnectAttemptFailed(reconnection, code, message) {
    this._session._releaseHandle(this);
    this._handle = null;
    this._stream = null;
    if (reconnection.recreation ? this._retriesRecreation(code, message) : retried(code, message)) {
      this._scheduleReconnectAttempt(reconnection);
      return;
    }
    this._reset();
    safeCall(this.onConnectionLost, this, { errorCode: code, errorMessage: message });
  }

  /**
   * Connected again: subscribe again to every filter held before the loss, then report
   * the reconnection complete. The CONNECT result does not say whether the broker kept
   * a session (cleanSession false), so this always subscribes again; for a kept session
   * that is harmless, as the broker replaces a subscription with an identical one.
   */
  _resubscribe(reconnection) {
    // A filter the application subscribed to again by itself is left as it asked.
    const wanted = reconnection.subs.filter((s) => !this._subs.has(s.filter));
    let left = wanted.length;
    const settled = () => {
      if (--left === 0) this._completeReconnection(reconnection);
    };
    for (const { filter, qos, options, maxFrequency } of wanted) {
      const entry = { qos, options, maxFrequency, grantedQos: null, ops: [], levels: filterLevels(filter), restoring: true };
      entry.ops.push({
        ok: settled,
        fail: (err) => {
          reconnection.failed.push({ filter, errorCode: err.errorCode, errorMessage: err.errorMessage });
          settled();
        },
      });
      this._subs.set(filter, entry);
      this._sendSubscribe(filter, entry, false);
    }
    if (wanted.length === 0) this._completeReconnection(reconnection);
  }

  _completeReconnection(reconnection) {
    if (this._reconnection !== reconnection) return; // lost again, or disconnected, meanwhile
    this._reconnection = null;
    // The session's onReconnectionComplete first, as when no client had to wait.
    this._releaseRecovery(reconnection);
    // The broker was away: QoS 0 messages published meanwhile are gone, and QoS 1/2
    // ones too unless it kept a session for this client (cleanSession false).
    const info = { messagesMayHaveBeenLost: true };
    const failed = reconnection.failed;
    safeCall(this.onReconnectionComplete, this, failed.length ? { ...info, failedSubscriptions: failed } : info);
    this._onReconnected();
  }

  _stopReconnection() {
    const reconnection = this._reconnection;
    if (!reconnection) return;
    if (reconnection.timer !== null) clearTimeout(reconnection.timer);
    this._reconnection = null;
    this._releaseRecovery(reconnection);
  }

  // ------------------------------------- re-creation refused for now (fresh session)

  /**
   * Whether a re-creation CONNECT refused with `code` and `message` is tried again:
   * the gateway's "not now" (RECREATION_RETRY_CODES) for every client; a broker away or
   * busy (see retried) for a shared client, whose connection is the gateway's to
   * restore (its clients never lose it to a broker outage), and for a dedicated one
   * with `reconnect: true`, as after a LOST. A dedicated client without it stays
   * disconnected after its broker went away, as documented; a refusal (4021 not
   * authorized: a revoked user) ends any client.
   */
  _retriesRecreation(code, message) {
    if (RECREATION_RETRY_CODES.has(code)) return true;
    return (this._clientId === "" || this._autoReconnect) && retried(code, message);
  }

  /**
   * The CONNECT that re-creates a connected client in a fresh session was refused for
   * now: the client reconnects as with `reconnect: true` (same options; 0.5-1 s, then
   * delays doubling up to 30 s; its subscriptions once connected), tried again with
   * _retriesRecreation. No onConnectionLost: the application was told with
   * onReconnectionStart that the client is recovering, and onReconnectionComplete
   * comes when it is back, the session's too (it waits, holdsRecovery). Without this
   * a shared client, which is never reconnected later, would stay disconnected for
   * good after an overloaded hook answered 4022 once. The SUBSCRIBEs sent after the
   * refused CONNECT are answered for a handle that has no connection: cleared here,
   * they are no longer this client's, and go again once it has one.
   */
  _retryRecreation() {
    const subs = this._subscriptionList();
    this._reset();
    this._startReconnection(subs, null, true);
  }

  /** Lets the session's recovery complete without this reconnection any more. */
  _releaseRecovery(reconnection) {
    if (!reconnection.holdsRecovery) return;
    reconnection.holdsRecovery = false;
    this._session._recreated();
  }

  /**
   * A subscription the client is restoring (entry.restoring) was refused for now
   * (RECREATION_RETRY_CODES): it goes again after a delay (0.5-1 s doubling up to
   * 30 s, as reconnection attempts), for as long as the client holds it; callers
   * waiting on it stay with the entry. In a fresh session's re-creation, the session's
   * recovery waits for it (holdsRecovery).
   */
  _resubscribeLater(filter, entry, recreating, attempt) {
    const s = this._session;
    if (recreating) s._recreating++;
    const later = { timer: null, holdsRecovery: recreating };
    later.timer = setTimeout(() => {
      this._resubscriptionsLater.delete(later);
      if (this._subs.get(filter) !== entry) {
        // Unsubscribed or subscribed anew meanwhile: that is this request's end.
        for (const op of entry.ops.splice(0)) op.ok(entry.qos, { grantedQos: entry.qos });
      } else if (this._acceptsRequests()) {
        this._sendSubscribe(filter, entry, recreating, attempt + 1);
      }
      if (later.holdsRecovery) s._recreated();
    }, brokerReconnectDelay(attempt));
    this._resubscriptionsLater.add(later);
  }

  /**
   * Stops the resubscriptions waiting to go again. release: the session's recovery
   * goes on without them; not when a fresh session starts its count anew.
   */
  _cancelResubscriptionsLater(release) {
    const waiting = [...this._resubscriptionsLater];
    this._resubscriptionsLater.clear();
    for (const later of waiting) {
      clearTimeout(later.timer);
      if (release && later.holdsRecovery) this._session._recreated();
    }
  }
}
