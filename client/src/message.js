// The application-facing message, as Paho's and MQTT.Cool's Message, plus MQTT 5
// publish properties as plain fields.

import { checkWellFormed, toBytes } from "./codec.js";
import { describeValue } from "./errors.js";

// Replacement (non-fatal) decoding for payloadString: a binary payload must not make
// reading the string form throw; payloadBytes stays exact.
const lenientUtf8 = new TextDecoder("utf-8", { ignoreBOM: true });
const EMPTY = new Uint8Array(0);

/**
 * An MQTT application message.
 *
 * The payload is kept as bytes. A string payload is UTF-8 encoded; an ArrayBuffer or
 * ArrayBufferView is copied, so changing the caller's buffer after `new Message()` does
 * not change what is sent. `payloadString` decodes the bytes lazily as UTF-8 (invalid
 * sequences become U+FFFD there; `payloadBytes` is always byte-exact).
 */
export class Message {
  /**
   * null while the payload is text not encoded yet: a string given to the constructor,
   * or a received payload read as valid UTF-8 text (see _settle).
   * @type {Uint8Array | null}
   */
  #bytes;
  /** @type {string | undefined} */
  #string;
  /** #bytes is a view into the transport unit the message came in (see _fromFrame). */
  #borrowed = false;

  /**
   * @param {string | ArrayBuffer | ArrayBufferView} payload
   */
  constructor(payload) {
    if (typeof payload === "string") {
      // Checked now, encoded when needed: straight into the PUBLISH frame (_wirePayload),
      // or by payloadBytes.
      checkWellFormed(payload);
      this.#string = payload;
      this.#bytes = null;
    } else if (payload === EMPTY) {
      // _fromFrame: the frame's payload replaces it at once, so no copy to throw away.
      this.#bytes = EMPTY;
    } else if (payload instanceof ArrayBuffer || ArrayBuffer.isView(payload)) {
      // new Uint8Array(view) copies; Buffer#slice would not.
      this.#bytes = new Uint8Array(toBytes(payload));
    } else {
      throw new TypeError("Message payload must be a string, ArrayBuffer or ArrayBufferView");
    }
    /** @type {string | undefined} topic the message is (to be) published on */
    this.destinationName = undefined;
    /** @type {0 | 1 | 2} */
    this.qos = 0;
    /** @type {boolean} */
    this.retained = false;
    /** @type {boolean} set on received messages that the broker may have sent before */
    this.duplicate = false;
    /** @type {0 | 1 | undefined} MQTT 5 payload format indicator (1: UTF-8) */
    this.payloadFormatIndicator = undefined;
    /** @type {number | undefined} MQTT 5 message expiry interval, seconds */
    this.messageExpiryInterval = undefined;
    /** @type {string | undefined} */
    this.contentType = undefined;
    /** @type {string | undefined} */
    this.responseTopic = undefined;
    /** @type {Uint8Array | undefined} */
    this.correlationData = undefined;
    /** @type {Array<[string, string]> | undefined} */
    this.userProperties = undefined;
  }

  /** The payload as UTF-8 text (decoded on first access). */
  get payloadString() {
    this.#string ??= lenientUtf8.decode(this.#bytes);
    return this.#string;
  }

  /** The payload bytes, exactly as published. */
  get payloadBytes() {
    if (this.#bytes === null) {
      // Well-formed text, or valid UTF-8 (see _settle): encoding it gives the exact bytes.
      this.#bytes = toBytes(/** @type {string} */ (this.#string));
    } else if (this.#borrowed) {
      this.#borrowed = false;
      this.#bytes = new Uint8Array(this.#bytes); // a copy the application may keep
    }
    return this.#bytes;
  }

  /** Paho's other name for destinationName. */
  get topic() {
    return this.destinationName;
  }

  set topic(value) {
    this.destinationName = value;
  }

  /**
   * The payload for a PUBLISH frame: its text when not encoded yet, which encodeFrame
   * encodes in place (a TextEncoder.encode() of its own costs more than the rest of a
   * small publish), else its bytes.
   * @internal
   * @returns {Uint8Array | string}
   */
  _wirePayload() {
    return this.#bytes ?? /** @type {string} */ (this.#string);
  }

  /** The MQTT 5 properties in the codec's shape. @internal */
  _props() {
    return {
      payloadFormatIndicator: this.payloadFormatIndicator,
      messageExpiryInterval: this.messageExpiryInterval,
      contentType: this.contentType,
      responseTopic: this.responseTopic,
      correlationData: this.correlationData,
      userProperties: this.userProperties,
    };
  }

  /**
   * Builds a received message from a decoded MESSAGE frame, borrowing its payload (a
   * view into the transport unit, decodeFrame's `borrow`) until _settle().
   * @internal
   */
  static _fromFrame(frame, qos, retained = frame.retain) {
    const m = new Message(EMPTY);
    m.#bytes = frame.payload;
    m.#borrowed = true;
    m.destinationName = frame.topic;
    m.qos = qos;
    m.retained = retained;
    m.duplicate = frame.duplicate;
    const p = frame.props;
    m.payloadFormatIndicator = p.payloadFormatIndicator;
    m.messageExpiryInterval = p.messageExpiryInterval;
    m.contentType = p.contentType;
    m.responseTopic = p.responseTopic;
    m.correlationData = p.correlationData;
    m.userProperties = p.userProperties;
    return m;
  }

  /**
   * Ends the borrowing of _fromFrame, once onMessageArrived has returned: the message
   * may outlive the unit, which must not stay pinned by a 100-byte payload. The payload
   * is copied, unless the application read it as text and the text has no U+FFFD: the
   * bytes were then valid UTF-8, and payloadBytes can encode them again if ever asked.
   * A dashboard that reads payloadString so costs no copy (a typed array over 64
   * bytes allocates outside the JS heap, which is most of the cost of a small message).
   * @internal
   */
  _settle() {
    if (!this.#borrowed) return;
    this.#borrowed = false;
    if (this.#string !== undefined && !this.#string.includes("\uFFFD")) this.#bytes = null;
    else this.#bytes = new Uint8Array(/** @type {Uint8Array} */ (this.#bytes));
  }
}

/**
 * Throws a TypeError, naming the property, for MQTT 5 properties of `m` the wire cannot
 * carry as given: before, -1 or 1.5 failed deep in the encoder as "uvarint out of
 * range", 2 ** 32 was silently cut to 4294967295, and an object of user properties
 * failed with "object is not iterable". `what` names the message ("message",
 * "willMessage").
 * @param {Message} m
 * @param {string} what
 */
export function checkMessageProps(m, what) {
  const given = (v) => v !== undefined && v !== null;
  const fail = (name, want, v) => {
    throw new TypeError(`${what}.${name} must be ${want}, got ${describeValue(v)}`);
  };
  const pfi = m.payloadFormatIndicator;
  if (given(pfi) && pfi !== 0 && pfi !== 1) fail("payloadFormatIndicator", "0 or 1", pfi);
  const expiry = m.messageExpiryInterval;
  if (given(expiry) && !(Number.isInteger(expiry) && expiry >= 0 && expiry <= 0xffffffff))
    fail("messageExpiryInterval", "a whole number of seconds from 0 to 4294967295", expiry);
  for (const name of ["contentType", "responseTopic"]) {
    if (given(m[name]) && typeof m[name] !== "string") fail(name, "a string", m[name]);
  }
  const cd = m.correlationData;
  if (given(cd) && typeof cd !== "string" && !(cd instanceof ArrayBuffer) && !ArrayBuffer.isView(cd))
    fail("correlationData", "bytes (a Uint8Array, ArrayBuffer or view)", cd);
  const up = m.userProperties;
  if (given(up) && (!Array.isArray(up) || !up.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === "string" && typeof p[1] === "string")))
    fail("userProperties", "an array of [name, value] pairs of strings", up);
}
