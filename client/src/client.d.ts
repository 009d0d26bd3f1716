// Type declarations of mqttgateway-client, the JavaScript client of mqtt_gateway.
// The implementation is plain ES modules (client.js and the modules it imports).

/** The error codes of the mqtt_gateway protocol (transport/PROTOCOL.md), by name. */
export declare const ErrorCode: Readonly<{
  ok: 0;
  malformed: 4000;
  unsupported_version: 4001;
  frame_too_large: 4002;
  bad_request: 4003;
  heartbeat_timeout: 4004;
  session_unknown: 4010;
  session_secret: 4011;
  session_gap: 4012;
  too_many_sessions: 4013;
  session_count: 4014;
  not_authenticated: 4020;
  not_authorized: 4021;
  hook_unavailable: 4022;
  invalid_topic: 4030;
  invalid_filter: 4031;
  message_too_large: 4032;
  invalid_qos: 4033;
  unknown_broker: 4040;
  broker_unavailable: 4041;
  broker_refused: 4042;
  broker_rejected: 4043;
  broker_timeout: 4044;
  client_connected: 4045;
  overflow: 4050;
  rate_limited: 4051;
  too_many_clients: 4052;
  too_many_subscriptions: 4053;
  shutting_down: 4090;
  internal: 4091;
}>;

/**
 * The code the client reports when the gateway cannot be reached (no transport could
 * be opened, or it closed before the session was established). Not a protocol code:
 * the gateway never sends it. Same number as WebSocket's abnormal closure.
 */
export declare const CONNECTION_FAILED: 1006;

/** The protocol name of a code ("not_authorized" for 4021), or "unknown". */
export declare function errorName(code: number): string;

/** What failures report: the protocol's numeric code and a human-readable message. */
export interface ErrorInfo {
  errorCode: number;
  errorMessage: string;
}

/** What onSubscriptionLost gets: the filter of the subscription the gateway ended, and why. */
export interface SubscriptionLost extends ErrorInfo {
  filter: string;
}

/** The error of every failed operation, to callbacks and as a Promise rejection. */
export declare class MqttGatewayError extends Error implements ErrorInfo {
  constructor(errorCode: number, errorMessage?: string);
  readonly name: "MqttGatewayError";
  errorCode: number;
  errorMessage: string;
  /** The invocationContext of the operation's options, when one was given. */
  invocationContext?: unknown;
}

export type QoS = 0 | 1 | 2;

/** An MQTT application message, as in Paho, with MQTT 5 publish properties. */
export declare class Message {
  /**
   * @param payload a string (sent as UTF-8), or bytes (copied)
   */
  constructor(payload: string | ArrayBuffer | ArrayBufferView);
  /** The topic the message is published on (required to send it). */
  destinationName: string | undefined;
  /** Paho's other name for destinationName: the same property. */
  topic: string | undefined;
  /** The payload decoded as UTF-8 (invalid sequences become U+FFFD). */
  readonly payloadString: string;
  /** The payload bytes, exactly as published. Treat as read-only. */
  readonly payloadBytes: Uint8Array;
  qos: QoS;
  retained: boolean;
  /** Set on received messages the broker may have delivered before. */
  duplicate: boolean;
  /** MQTT 5 payload format indicator: 1 when the payload is UTF-8 text. */
  payloadFormatIndicator: 0 | 1 | undefined;
  /** MQTT 5 message expiry interval, in seconds. */
  messageExpiryInterval: number | undefined;
  contentType: string | undefined;
  responseTopic: string | undefined;
  correlationData: Uint8Array | undefined;
  /** MQTT 5 user properties, in order; keys may repeat. */
  userProperties: Array<[string, string]> | undefined;
}

/** A message onMessageArrived gets: its topic is always there. */
export type ArrivedMessage = Message & { destinationName: string; topic: string };

/** Paho-style callbacks accepted next to the returned Promise. */
export interface CallbackOptions<S = {}> {
  onSuccess?: (info: S & { invocationContext?: unknown }) => void;
  /**
   * When given, a failure is reported here and the returned Promise, though rejected,
   * does not count as an unhandled rejection.
   */
  onFailure?: (error: MqttGatewayError) => void;
  invocationContext?: unknown;
}

/** What connect() resolves with (and onSuccess gets). */
export interface ConnectResult {
  /**
   * The broker kept a session for this client id (MQTT's Session Present): its
   * subscriptions are still there, and messages it queued follow. Always false on the
   * shared connection and after a clean start.
   */
  sessionPresent: boolean;
}

export interface ConnectOptions extends CallbackOptions<ConnectResult> {
  /**
   * MQTT clean start (default true). false resumes the broker session of this client
   * id, if any, and keeps it after the connection ends, as in Paho (MQTT 3.1.1): without
   * sessionExpiryInterval the session never expires (expiry 0xFFFFFFFF is sent; the
   * broker may cap it by its own settings), so subscriptions and the QoS 1/2 messages
   * published meanwhile wait for the client's return. Dedicated connections only.
   */
  cleanSession?: boolean;
  /**
   * Published by the broker if this client's connection ends abnormally. Dedicated
   * connections only (a client with a client id): on the shared connection, which is
   * many clients', connect() fails with 4003 rather than drop the will.
   */
  willMessage?: Message;
  /**
   * MQTT 5 will delay interval in seconds (needs willMessage): the broker waits this
   * long after the connection ends before it publishes the will, and drops it if this
   * client id resumes its session meanwhile (cleanSession false), as a page that
   * reloads may. Takes effect with a session that outlives the connection
   * (sessionExpiryInterval, or cleanSession false); the broker publishes the will when
   * the session ends, if that is sooner.
   */
  willDelayInterval?: number;
  /** Broker credentials (dedicated connections; the gateway may configure its own). */
  userName?: string;
  password?: string | ArrayBuffer | ArrayBufferView;
  /** MQTT keep alive in seconds; 0 (default) lets the gateway choose. */
  keepAliveInterval?: number;
  /**
   * MQTT 5 session expiry interval in seconds (dedicated connections): how long the
   * broker keeps the session after the connection ends. Default: 0 (the session ends
   * with the connection) with cleanSession true, 0xFFFFFFFF (never expires) with
   * cleanSession false. A value given, 0 included, is sent as is.
   */
  sessionExpiryInterval?: number;
  /**
   * Paho's automatic reconnection (default false). A dedicated client (one with a
   * client id) whose broker connection is lost because the broker went away or did not
   * answer (LOST 4041 broker_unavailable, 4044 broker_timeout, 4022 hook_unavailable,
   * 4090 shutting_down) then, after onConnectionLost with that code and
   * onReconnectionStart, connects again with the same options (client id, cleanSession,
   * will, credentials, keep alive...): first after 0.5-1 s, then after delays doubling
   * up to 30 s (each drawn between half and all of its step), for as long as it takes.
   * Once connected it subscribes again to every filter it held (same QoS and
   * maxFrequency; harmless for a session the broker kept) and calls
   * onReconnectionComplete({messagesMayHaveBeenLost: true, failedSubscriptions?}).
   * Meanwhile the client is "connecting", isConnected is false, and send, subscribe
   * and unsubscribe fail at once with 4003 "client not connected" (Paho throws "not
   * connected"). disconnect() stops it; connect() between attempts replaces it with
   * the new options. No reconnection after disconnect(), a takeover (4045), the
   * gateway's refusal (4021 not authorized) or the end of the session; an attempt
   * refused that way ends the reconnection with a second onConnectionLost carrying
   * its code. An attempt the broker refuses (4042) for its credentials (0x86, 0x87) or
   * because it is busy (0x88, 0x89, 0x97, 0x9F) is tried again, as in Paho: the
   * credentials worked before; so is one the gateway holds back for now (4051: after
   * several refused credentials from this address, or too many requests waiting). Shared clients accept the option and need none: the gateway restores
   * their connection itself (onBrokerUnavailable / onBrokerAvailable).
   */
  reconnect?: boolean;
}

export interface SubscribeOptions extends CallbackOptions<{ grantedQos: QoS }> {
  /** Requested QoS (default 0). */
  qos?: QoS;
  /**
   * At most this many messages per second for this subscription (fractions allowed,
   * e.g. 0.1 = one per 10 s); the gateway conflates the rest. 0 (default): unlimited.
   */
  maxFrequency?: number;
  /**
   * MQTT 5 Retain Handling: when this subscribe gets the filter's retained messages.
   * 0 (default): every time; 1: only when this client did not hold the subscription
   * already; 2: never.
   */
  retainHandling?: 0 | 1 | 2;
  /**
   * MQTT 5 No Local: this client's own publishes are not delivered back to it. On the
   * gateway's shared connection the gateway recognises them (PROTOCOL.md, Subscription
   * options, for its limits).
   */
  noLocal?: boolean;
  /**
   * MQTT 5 Retain As Published: messages keep the retain flag they were published with
   * (by default only those sent because this client subscribed are flagged; on the
   * gateway's shared connection, a retained message published live within 2 s of a
   * subscription may come flagged too: PROTOCOL.md, Retained messages).
   */
  retainAsPublished?: boolean;
}

export interface ReconnectionInfo {
  /**
   * False when the session resumed (every message was delivered); true when the
   * gateway had lost it and a new session was opened, clients and subscriptions
   * re-created: messages published meanwhile may not have been delivered.
   */
  messagesMayHaveBeenLost: boolean;
  /** Subscriptions the new session refused (client events only; absent when none). */
  failedSubscriptions?: Array<{ filter: string } & ErrorInfo>;
}

/** A client of one broker configured in the gateway. Create it with Session.createClient. */
export declare class BrokerClient {
  private constructor();
  /** The broker name given to createClient. */
  readonly brokerName: string;
  /** The MQTT client id; "" for the gateway's shared connection. */
  readonly clientId: string;
  /** True between a successful connect and a disconnect or connection loss. */
  readonly isConnected: boolean;
  /**
   * "connecting" also during an automatic reconnection (connect option `reconnect`),
   * and while a fresh session's re-creation of this client, refused for now, is tried
   * again.
   */
  readonly state: "disconnected" | "connecting" | "connected" | "disconnecting";

  /** Attaches to the broker. */
  connect(options?: ConnectOptions): Promise<ConnectResult>;
  /**
   * Subscribes; resolves with the granted QoS. A subscription to the same filter
   * replaces the one held; one that fails (4021 refused…) leaves none, the one held
   * before included, at the gateway too. A client with a client ID may join a share
   * group the gateway opens (`shared_subscriptions`), `"$share/<share name>/<filter>"`,
   * without `noLocal`; otherwise the subscribe is refused (4031).
   */
  subscribe(filter: string, options?: SubscribeOptions): Promise<QoS>;
  /** Unsubscribes; messages for the filter stop being delivered at once. */
  unsubscribe(filter: string, options?: CallbackOptions): Promise<void>;
  /**
   * Changes a subscription's maximum frequency (messages per second per topic, 0 for
   * unlimited) without resubscribing; QoS 0 values in between are conflated and the
   * latest value of every topic always arrives.
   */
  setMaxFrequency(filter: string, maxFrequency: number, options?: CallbackOptions): Promise<void>;
  /**
   * Publishes; resolves with the message when the gateway reports the broker flow
   * complete (PUBACK / PUBCOMP / written for QoS 0), after onMessageDelivered.
   * A message not yet confirmed when a fresh session replaces a lost one: if it was
   * never sent, it goes in the new session; if it was, a QoS 1 one is published again
   * (at least once: it may arrive twice) and a QoS 0 or 2 one fails with 4012
   * (session_gap), as it may or may not have been delivered. The (topic, payload) form throws a TypeError without a
   * payload: pass "" for an empty one (with retained, it deletes the retained message).
   * A failure rejects the Promise for whoever awaits it, and calls onMessageNotDelivered;
   * a publish nobody awaits is never an unhandled rejection (it does not end a Node.js
   * process).
   */
  send(message: Message): Promise<Message>;
  send(topic: string, payload: string | ArrayBuffer | ArrayBufferView, qos?: QoS, retained?: boolean): Promise<Message>;
  /** Same as send(topic, payload, qos, retained). */
  publish(topic: string, payload: string | ArrayBuffer | ArrayBufferView, qos?: QoS, retained?: boolean): Promise<Message>;
  /** Detaches from the broker; onConnectionLost fires with errorCode 0 (as in Paho). */
  disconnect(): Promise<void>;

  /**
   * A message for one of this client's subscriptions, at the lower of its QoS and the
   * subscription's. On a dedicated connection (clientId given) every message of the
   * connection arrives, including those a persistent session kept. QoS 1/2 messages of
   * a dedicated connection are acknowledged to the broker when this callback returns.
   */
  onMessageArrived: ((message: ArrivedMessage) => void) | null;
  /** A publish was confirmed. */
  onMessageDelivered: ((message: Message) => void) | null;
  /**
   * The client was detached: errorCode 0 after disconnect() or session.close(), else
   * the reason. With
   * `reconnect: true` and a broker that went away, onReconnectionStart follows and the
   * client connects again by itself (see ConnectOptions.reconnect).
   */
  onConnectionLost: ((error: ErrorInfo) => void) | null;
  /** A publish was refused by the authorize hook (4021); onMessageNotDelivered follows. */
  onMessageNotAuthorized: ((message: Message, error: MqttGatewayError) => void) | null;
  /**
   * A publish failed, whatever the reason (the broker unavailable, 4041; refused by the
   * gateway or the broker; not connected, 4003): where a fire-and-forget publish's
   * failure is heard. Not called for publishes the application ended by closing the
   * session.
   */
  onMessageNotDelivered: ((message: Message, error: MqttGatewayError) => void) | null;
  /**
   * The session lost its transport (requests are queued meanwhile), or, with
   * `reconnect: true`, the client lost its broker and reconnects (after onConnectionLost).
   */
  onReconnectionStart: (() => void) | null;
  /**
   * The session works again, and so does this client; or the client's automatic
   * reconnection to its broker succeeded and its subscriptions are back (Paho's
   * `onConnected(true, uri)`). After a fresh session whose re-creation of this client
   * or of a subscription the gateway refused for now (4022, 4090, 4051; for a shared
   * client or one with `reconnect: true` also 4041, 4044), once they were tried again
   * and are back; a refusal for good (4021) calls onConnectionLost instead.
   */
  onReconnectionComplete: ((info: ReconnectionInfo) => void) | null;
  /**
   * Paho's onConnected: after connect() succeeds (`reconnect` false, after onSuccess)
   * and after each reconnection of this client (true, after onReconnectionComplete;
   * its subscriptions are back already, so there is nothing to subscribe again).
   * `uri` is the gateway URL the session was opened with.
   */
  onConnected: ((reconnect: boolean, uri: string) => void) | null;
  /**
   * The gateway ended one of this client's subscriptions on its own: its operator's
   * admin API ended the user's subscriptions under a filter (a member removed from a
   * room), errorCode 4021 with the operator's message. No message of it follows, and
   * it is not made again after a fresh session; the client's other subscriptions go on.
   */
  onSubscriptionLost: ((info: SubscriptionLost) => void) | null;
  /** The gateway lost its shared connection to this client's broker (4041); subscriptions come back with it. */
  onBrokerUnavailable: ((error: ErrorInfo) => void) | null;
  /** The broker is back and this client's subscriptions are restored. */
  onBrokerAvailable: (() => void) | null;
}

/** The transports built in, in the order "auto" tries them. */
export type TransportName = "websocket" | "streaming" | "polling";

/**
 * What the session gives transports that rebind on their own (the HTTP ones: every
 * poll, and a stream the gateway ended after ~4 MiB, start with BIND).
 */
export interface SessionLink {
  /** A unit with one BIND frame carrying the current count of received data frames. */
  bindUnit(): Uint8Array;
  /**
   * The session id and secret (16 bytes each), for the SEND frame that starts each
   * /send body (never a header or the URL, so the secret stays out of access logs);
   * null before OPENED.
   */
  credentials(): { session: Uint8Array; secret: Uint8Array } | null;
  /** The largest unit the gateway accepts, bytes. */
  maxFrame(): number;
  /** The gateway's heartbeat period, ms. */
  heartbeat(): number;
  /**
   * The session's own cookies outside browsers (Node.js), for load balancer affinity:
   * send `cookies.header()` with each request or WebSocket handshake and give the
   * answer's Set-Cookie lines to `cookies.store()`. One jar per session (the
   * balancer's cookie pins that session to its instance). Browsers manage cookies
   * themselves: there the jar holds and sends nothing.
   */
  cookies?: CookieJar;
}

/** A session's cookies outside browsers (see SessionLink.cookies). */
export interface CookieJar {
  /** `{ Cookie: "name=value; ..." }`, or `{}` when the jar is empty (or in a browser). */
  header(): Record<string, string>;
  /** Remembers the cookies of Set-Cookie lines; one set with Max-Age=0 is forgotten. */
  store(setCookie: string[] | string | undefined): void;
  /** store() with a fetch Response's Set-Cookie lines. */
  storeFrom(response: Response): void;
}

/**
 * Opens a transport to a gateway base URL; resolves when it can send. `timeout` bounds
 * the connection step (ms); `link` is the session's (the built-in WebSocket transport
 * uses only its `cookies`). See registerTransport.
 */
export type TransportFactory = ((base: string, options: { timeout?: number; link?: SessionLink }) => Promise<Transport>) & {
  transportName?: string;
};

/**
 * An HTTP answer that is not the gateway's (a 404 for a wrong base path, a proxy's
 * error page), reported by a transport with its end, or as an `http` property of the
 * error its factory rejects with.
 */
export interface HttpAnswer {
  status: number;
  statusText?: string;
  contentType?: string | null;
}

/** A connected transport carrying protocol units (one or more length-prefixed frames). */
export interface Transport {
  readonly name: string;
  /**
   * The most bytes of one unit the session should hand over (several frames queued
   * together; a larger frame still goes alone); the gateway's max_frame without it.
   * The HTTP transports ask for 16 KiB, so that their /send bodies can be cut to fit a
   * proxy's request size limit.
   */
  readonly maxUnit?: number;
  /**
   * Sends a unit; the session's first one is OPEN or BIND. requestsBefore is the number
   * of requests the session sent before the unit's first (undefined when the unit has
   * none): HTTP transports send it with each /send so that a repeated /send is safe.
   */
  send(unit: Uint8Array, requestsBefore?: number): void;
  /**
   * Closes the transport. flush: the session is ending (its CLOSE is queued) and units
   * already handed over should still go out; without it they are dropped (the session
   * sends its requests again after BIND). unloading (with flush): the page is being
   * unloaded, so they must go out now, before anything asynchronous (HTTP transports
   * send them in one `keepalive` request without waiting for a request in flight).
   * A transport whose flushed units are not out when close() returns (the HTTP ones)
   * returns a Promise that resolves when they are (or failed); Session.close() waits for
   * it, 5 s at most.
   */
  close(code?: number, reason?: string, options?: { flush?: boolean; unloading?: boolean }): void | Promise<void>;
  onunit: ((unit: Uint8Array) => void) | null;
  /**
   * Called once when the transport ends, whichever side ended it. `http`: what ended
   * it was an HTTP answer that is not the gateway's (openSession's error reports it).
   */
  onclose: ((event: { code: number; reason: string; http?: HttpAnswer }) => void) | null;
  /** Ms the server may take by design to answer BIND (a long poll), added to the deadline. */
  readonly bindHold?: number;
}

/** Makes a transport available by name to openSession's `transport` option. */
export declare function registerTransport(name: string, factory: TransportFactory): void;

export interface SessionOptions {
  /** User name for the gateway's authenticate hook. */
  user?: string;
  /**
   * For the authenticate hook: a password or a token. A function is asked at each
   * OPEN, the fresh session that replaces a lost one's included (after a gateway
   * restart), so a token refreshed since goes with it; it must return at once (keep
   * the current token at hand). One that throws or returns something else ends the
   * opening with 4003.
   */
  password?: string | ArrayBuffer | ArrayBufferView | (() => string | ArrayBuffer | ArrayBufferView);
  /**
   * "auto" (default): WebSocket, then HTTP streaming, then HTTP long polling, falling
   * back when one does not complete its handshake within probeTimeout, starting with
   * the one that last worked for this gateway URL (remembered for a day). A session
   * that starts below WebSocket that way checks 3 s later whether WebSocket carries
   * data both ways (a PING the gateway answers before OPEN), and moves to it if so;
   * in a browser, the network coming back online makes an open session move up to
   * the best transport that works. A name (or
   * factory) forces that transport; a list is tried in its order.
   */
  transport?: "auto" | TransportName | (string & {}) | TransportFactory | Array<TransportName | (string & {}) | TransportFactory>;
  /**
   * Outside browsers (Node.js): headers sent with every request and WebSocket
   * handshake of the session, as `{ Authorization: "Bearer …" }` for an auth handler
   * in front of the gateway (Caddy's forward_auth, an OAuth2 proxy); its hooks see
   * them too. A function is called for each request and handshake, so a refreshed
   * token goes with the next one; it must return at once (keep the current token at
   * hand) and not throw. A Cookie header goes before the session's own cookies. A page
   * cannot set a handshake's headers and uses cookies: there the option is a
   * TypeError, as are headers the client sets itself (Host, Content-Type,
   * Sec-WebSocket-*…), X-Mqtt-* (the gateway drops them) and values that are not
   * strings. WebSocket needs the ws package for them (a dependency).
   */
  headers?: Record<string, string> | (() => Record<string, string>);
  /** Bytes per second the gateway may send to this session. */
  maxBandwidth?: number;
  /** Milliseconds to wait for the last (or only) transport to open (default 10000). */
  connectTimeout?: number;
  /**
   * Milliseconds a transport that is not the last choice gets to connect and answer
   * OPEN or BIND before the next is tried (default 3000).
   */
  probeTimeout?: number;
  onReconnectionStart?: () => void;
  /**
   * The session works again, and the clients a fresh session re-created are back (or
   * given up: their onConnectionLost said why), those whose re-creation the gateway
   * refused for now included, which are tried again until then. A session the gateway
   * lost is replaced at once, an OPEN refused for now (4013, 4022, 4090, 4091, a
   * proxy's 502/503/504) tried again with the reconnection's delays; when
   * sessions keep being lost within 10 s of opening (a load balancer without
   * affinity), fresh ones open after a delay of 1 s doubling up to 30 s (each drawn
   * between half and all of it), and console.warn says why, once per session.
   */
  onReconnectionComplete?: (info: ReconnectionInfo) => void;
  /** The session ended for good: errorCode 0 after close(), else the reason. */
  onClose?: (info: ErrorInfo) => void;
  /** A NOTICE from the gateway (e.g. 4050 overflow, with a count in value). */
  onNotice?: (info: ErrorInfo & { value: number }) => void;
  /** The gateway dropped messages this session could not take in time (4050). */
  onOverflow?: (info: OverflowInfo) => void;
  /** The session moved to another transport (after a reconnection). */
  onTransportChange?: (info: TransportChange) => void;
  /**
   * In a browser, close the session as close() does when the page is unloaded for good
   * (closed, reloaded or left: `pagehide` with `persisted` false), so that the gateway
   * frees it at once. The page did not disconnect its dedicated clients, so their wills
   * fire at once, as a page's own MQTT connection's do when it goes (a client
   * disconnected in a `pagehide` listener added before openSession has none). Default
   * true. With false, the session of a closed page stays on the gateway for its
   * session_timeout, waiting for a client that will not come back, and then expires
   * like a lost connection (wills fire then). No effect in Node.js.
   */
  closeOnPageHide?: boolean;
  /**
   * Keep trying to open while the gateway cannot be reached (1006: down, restarting,
   * the network away) or is not ready for a new session (4013 too many sessions, 4022
   * hook unavailable, 4090 shutting down, 4091), with the delays of the session's own
   * reconnections (from about 250 ms, doubling up to 5 s): openSession then resolves
   * once the gateway is back, as a page loaded during a deploy needs. A refusal (4020
   * not authenticated, 4021 origin not allowed, 4001) still rejects at once, and so does
   * an HTTP answer that is not the gateway's, but for a proxy's 502, 503 or 504 (401
   * from an auth handler, 404 for a wrong base path: waiting would not change them).
   * An attempt that timed out may have left a session on the gateway, which expires
   * after session_timeout (and counts against max_sessions_per_ip until then). Default
   * false: the first failure rejects. Stop it with `signal`. An open session waits out
   * the same failures when it recovers (a fresh session that replaces a lost one
   * included), with or without the option; a refusal ends it (onClose).
   */
  retry?: boolean;
  /**
   * Aborting it closes the session (as close() does), at any time: before the session
   * has opened (a `retry` under way, an OPEN awaiting its answer), openSession rejects
   * with the signal's reason and nothing is left open. For an effect's clean-up or a
   * module replaced by hot reloading.
   */
  signal?: AbortSignal;
}

export interface OverflowInfo extends ErrorInfo {
  /** Messages dropped since the previous overflow notice. */
  dropped: number;
}

export interface TransportChange {
  transport: string;
  previous: string;
}

/** A session with the gateway (one per page or process). */
export declare class Session {
  private constructor();
  /** The session id (32 hex digits); changes when a fresh session replaces a lost one. */
  readonly id: string;
  /**
   * The transport in use: "websocket", "streaming", "polling" (or a custom one's
   * name); null while reconnecting.
   */
  readonly transport: TransportName | (string & {}) | null;
  readonly state: "opening" | "open" | "reconnecting" | "closed";
  /** The gateway's info pairs from OPENED. */
  readonly info: Readonly<Record<string, string>>;
  /** The gateway's heartbeat period, ms. */
  readonly heartbeat: number;
  /** How long the gateway keeps the session after a drop, ms. */
  readonly sessionTimeout: number;
  /** The largest frame the gateway accepts, bytes. */
  readonly maxFrame: number;

  /**
   * A client of a broker configured in the gateway. Without clientId it shares the
   * gateway's connection to that broker; with one it gets a dedicated connection.
   */
  createClient(brokerName: string, clientId?: string): BrokerClient;
  /**
   * Ends the session (the gateway frees it at once). The gateway still carries out the
   * requests sent before (a publish reaches the broker), but their results never come
   * back: requests still pending here fail with 4003 "session closed before its result
   * came back" (unlike a 4003 "not connected", such a publish may well be delivered:
   * do not send it again). The session's
   * state is "closed" at once; the Promise resolves once the CLOSE frame is handed
   * over: written to the WebSocket, or on HTTP transports once the /send carrying it
   * is answered (or failed, or after 5 s at most). A Node.js process that awaits it
   * before exiting leaves no session behind, so its dedicated clients disconnect
   * cleanly and their wills do not fire.
   */
  close(): Promise<void>;
  /**
   * Caps the bytes per second the gateway sends this session (0: no cap of its own;
   * the gateway's configuration may cap it further). Waiting QoS 0 values are
   * conflated per topic to respect it. Resolves with the cap in force.
   */
  setMaxBandwidth(bytesPerSecond: number): Promise<number>;
  /**
   * Checks the connection now instead of waiting for the heartbeat deadline (45 s by
   * default): sends a PING the gateway answers at once and waits up to `timeout` ms
   * (default 5000) for anything from it. Resolves true when something came; false when
   * nothing did (the session then rebinds on a new connection, as after a heartbeat
   * timeout: onReconnectionStart, nothing lost) or the connection ended meanwhile; null
   * when there was nothing to check (the session is not open, or the gateway is too old
   * to answer). Browsers check by themselves when the network comes back or changes and
   * when the page returns to the foreground, and the client checks after its process
   * slept; call it when the application knows more (a mobile app's network events).
   * A TypeError for an unknown option or a timeout that is not a positive number.
   */
  checkConnection(options?: { timeout?: number }): Promise<boolean | null>;
  onOverflow: ((info: OverflowInfo) => void) | null;

  onReconnectionStart: (() => void) | null;
  onReconnectionComplete: ((info: ReconnectionInfo) => void) | null;
  onClose: ((info: ErrorInfo) => void) | null;
  onNotice: ((info: ErrorInfo & { value: number }) => void) | null;
  onTransportChange: ((info: TransportChange) => void) | null;
}

/**
 * Opens a session with the gateway at `url` (its base, e.g. "https://host/mqtt", or
 * "/mqtt" in a page). Rejects with MqttGatewayError: 4020 when the authenticate hook
 * refuses, 1006 when the gateway cannot be reached, ...; with a TypeError when url is
 * not a URL (a relative one outside a page) or an option is unknown (a misspelt one).
 */
export declare function openSession(url: string | URL, options?: SessionOptions): Promise<Session>;

/** Whether an MQTT topic name matches a topic filter (MQTT 5 rules, $-topics included). */
export declare function topicMatches(filter: string, topic: string): boolean;
