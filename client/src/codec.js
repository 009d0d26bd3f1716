// Encoder and decoder of the mqtt_gateway session protocol, version 1
// (transport/PROTOCOL.md). Pure functions over Uint8Array: no I/O, no state, so the
// same code serves every transport and the tests.
//
// Frames are plain objects `{type, ...fields}` with camelCase field names taken from
// PROTOCOL.md's tables (client_id → clientId, packet_id → packetId, ...). Decoding is
// strict: anything PROTOCOL.md calls malformed throws an MqttGatewayError with code
// 4000, and so do reserved flag bits and trailing bytes, so that a version mismatch or
// a corrupted stream is caught at the first frame instead of being half-understood.

import { ErrorCode, MqttGatewayError } from "./errors.js";

/** The protocol version this codec speaks (OPEN's `version`). */
export const PROTOCOL_VERSION = 1;

/** Frame type numbers. 0x01-0x7F client→server, 0x80-0xFF server→client, PING both. */
export const FrameType = Object.freeze({
  OPEN: 0x01,
  BIND: 0x02,
  CONNECT: 0x03,
  SUBSCRIBE: 0x04,
  UNSUBSCRIBE: 0x05,
  PUBLISH: 0x06,
  DISCONNECT: 0x07,
  ACK: 0x08,
  PING: 0x09,
  CLOSE: 0x0a,
  FREQUENCY: 0x0b,
  BANDWIDTH: 0x0c,
  SEND: 0x0d,
  OPENED: 0x81,
  BOUND: 0x82,
  RESULT: 0x83,
  MESSAGE: 0x84,
  LOST: 0x85,
  NOTICE: 0x86,
  UNSUBSCRIBED: 0x87,
  SERVER_CLOSE: 0x8a,
});

/** MQTT 5 publish property ids as the protocol numbers them (not MQTT's own ids). */
export const PropId = Object.freeze({
  payloadFormatIndicator: 1,
  messageExpiryInterval: 2,
  contentType: 3,
  responseTopic: 4,
  correlationData: 5,
  userProperty: 6,
  willDelayInterval: 7, // a will's props only
});

/** Largest uvarint value: every protocol integer is exact in a JS number. */
export const MAX_UVARINT = Number.MAX_SAFE_INTEGER;
const MAX_UVARINT_BYTES = 8;

const utf8Encoder = new TextEncoder();
// fatal: invalid UTF-8 is malformed, not silently replaced.
// ignoreBOM: a leading U+FEFF is data (a topic may start with it), not a marker to strip.
const utf8Decoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });

const malformed = (why) => new MqttGatewayError(ErrorCode.malformed, why);

// Lone surrogates cannot be encoded as UTF-8; TextEncoder would silently turn them into
// U+FFFD and the gateway would act on a different topic than the caller named.
const loneSurrogate = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
export const isWellFormed =
  typeof String.prototype.isWellFormed === "function"
    ? (s) => s.isWellFormed()
    : (s) => !loneSurrogate.test(s);

/**
 * Throws a TypeError for a string with a lone surrogate, which UTF-8 cannot carry.
 * @param {string} s
 */
export function checkWellFormed(s) {
  if (!isWellFormed(s)) throw new TypeError("string contains a lone surrogate (not valid UTF-16)");
}

/** Encodes a JS string as UTF-8, rejecting lone surrogates. */
export function encodeUtf8(s) {
  if (typeof s !== "string") throw new TypeError(`expected a string, got ${typeof s}`);
  checkWellFormed(s);
  return utf8Encoder.encode(s);
}

// encodeFrame writes small frames into a shared slab and returns views of it. A
// Uint8Array of its own for each frame would have its memory allocated outside the JS
// heap (V8 does so for typed arrays over 64 bytes), which costs more than encoding a
// publish, and more garbage collection. A frame never changes once encoded, so frames
// can share a buffer; a slab is freed once none of its frames is referenced (the
// session keeps a request's frame until its RESULT).
const SLAB_SIZE = 16 * 1024;
const SLAB_MAX_FRAME = 1024; // a frame that may be larger gets a buffer of its own
let slab = new Uint8Array(0);
let slabUsed = 0;

/** Growable byte buffer with the protocol's primitive encoders. */
export class Writer {
  /**
   * @param {number} [capacity]
   * @param {boolean} [shared] start in the shared slab when `capacity` is small
   *   (encodeFrame); finish() then gives a view of it
   */
  constructor(capacity = 64, shared = false) {
    this.length = 0;
    this.inSlab = shared && capacity <= SLAB_MAX_FRAME;
    if (!this.inSlab) {
      this.buf = new Uint8Array(capacity);
      return;
    }
    if (slab.length - slabUsed < capacity) {
      slab = new Uint8Array(SLAB_SIZE);
      slabUsed = 0;
    }
    this.buf = slab.subarray(slabUsed, slabUsed + capacity);
  }

  reserve(n) {
    const need = this.length + n;
    if (need <= this.buf.length) return;
    let cap = Math.max(this.buf.length * 2, 16);
    while (cap < need) cap *= 2;
    const next = new Uint8Array(cap);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.inSlab = false; // what it had of the slab is left for the next frame
  }

  u8(v) {
    if (!Number.isInteger(v) || v < 0 || v > 255) throw new RangeError(`u8 out of range: ${v}`);
    this.reserve(1);
    this.buf[this.length++] = v;
  }

  uvarint(v) {
    if (!Number.isSafeInteger(v) || v < 0) throw new RangeError(`uvarint out of range: ${v}`);
    this.reserve(MAX_UVARINT_BYTES);
    // Division, not bit shifts: JS shifts are 32-bit and values go up to 2^53-1.
    while (v >= 0x80) {
      this.buf[this.length++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.length++] = v;
  }

  /** A string's UTF-8 bytes, without a length (payloads), encoded in place. */
  utf8(s) {
    checkWellFormed(s);
    const most = 3 * s.length;
    this.reserve(most);
    this.length += utf8Encoder.encodeInto(s, this.buf.subarray(this.length, this.length + most)).written;
  }

  /** A payload: bytes, or a string as UTF-8 (see utf8()). */
  payload(p) {
    if (typeof p === "string") this.utf8(p);
    else this.raw(toBytes(p ?? new Uint8Array(0)));
  }

  raw(bytes) {
    this.reserve(bytes.length);
    this.buf.set(bytes, this.length);
    this.length += bytes.length;
  }

  bytes(bytes) {
    this.uvarint(bytes.length);
    this.raw(bytes);
  }

  string(s) {
    if (typeof s !== "string") throw new TypeError(`expected a string, got ${typeof s}`);
    checkWellFormed(s);
    // Encoded in place: TextEncoder.encode() would allocate an array for each string
    // (outside the JS heap), several times the cost of encoding a topic. The length
    // prefix is reserved for the longest the text can be (3 bytes per UTF-16 unit) and
    // the bytes moved back if the real length takes fewer.
    const most = 3 * s.length;
    const room = uvarintSize(most);
    this.reserve(MAX_UVARINT_BYTES + most); // uvarint() below must not grow the buffer
    const start = this.length;
    const { written } = utf8Encoder.encodeInto(s, this.buf.subarray(start + room, start + room + most));
    const size = uvarintSize(written);
    if (size < room) this.buf.copyWithin(start + size, start + room, start + room + written);
    this.uvarint(written);
    this.length = start + size + written;
  }

  id16(bytes) {
    if (!(bytes instanceof Uint8Array) || bytes.length !== 16) throw new TypeError("id16 must be 16 bytes");
    this.raw(bytes);
  }

  kv(pairs) {
    this.uvarint(pairs.length);
    for (const [k, v] of pairs) {
      this.string(k);
      this.string(v);
    }
  }

  props(p = {}) {
    const entries = [];
    if (p.payloadFormatIndicator !== undefined && p.payloadFormatIndicator !== null)
      entries.push(() => { this.u8(PropId.payloadFormatIndicator); this.uvarint(Number(p.payloadFormatIndicator)); });
    if (p.messageExpiryInterval !== undefined && p.messageExpiryInterval !== null)
      entries.push(() => { this.u8(PropId.messageExpiryInterval); this.uvarint(p.messageExpiryInterval); });
    if (p.contentType !== undefined && p.contentType !== null)
      entries.push(() => { this.u8(PropId.contentType); this.string(p.contentType); });
    if (p.responseTopic !== undefined && p.responseTopic !== null)
      entries.push(() => { this.u8(PropId.responseTopic); this.string(p.responseTopic); });
    if (p.correlationData !== undefined && p.correlationData !== null)
      entries.push(() => { this.u8(PropId.correlationData); this.bytes(toBytes(p.correlationData)); });
    for (const pair of p.userProperties ?? []) {
      const [k, v] = pair;
      if (typeof k !== "string" || typeof v !== "string")
        throw new TypeError(`userProperties must be [name, value] pairs of strings, got ${JSON.stringify(pair)}`);
      entries.push(() => { this.u8(PropId.userProperty); this.string(k); this.string(v); });
    }
    if (p.willDelayInterval !== undefined && p.willDelayInterval !== null)
      entries.push(() => { this.u8(PropId.willDelayInterval); this.uvarint(p.willDelayInterval); });
    this.uvarint(entries.length);
    for (const write of entries) write();
  }

  /** The bytes written so far (a view, not a copy). */
  finish() {
    if (this.inSlab) {
      // Taken: the next frame starts after it.
      slabUsed += this.length;
      this.inSlab = false;
    }
    return this.buf.subarray(0, this.length);
  }
}

/** Cursor over one frame (or unit) with the protocol's primitive decoders. */
export class Reader {
  constructor(bytes, start = 0, end = bytes.length) {
    this.buf = bytes;
    this.pos = start;
    this.end = end;
  }

  get remaining() {
    return this.end - this.pos;
  }

  u8() {
    if (this.pos >= this.end) throw malformed("truncated frame");
    return this.buf[this.pos++];
  }

  uvarint() {
    let value = 0;
    let scale = 1;
    for (let i = 0; i < MAX_UVARINT_BYTES; i++) {
      if (this.pos >= this.end) throw malformed("truncated uvarint");
      const b = this.buf[this.pos++];
      value += (b & 0x7f) * scale;
      if (b < 0x80) {
        // 8 groups of 7 bits hold up to 2^56-1; the protocol promises 2^53-1.
        if (value > MAX_UVARINT) throw malformed("uvarint exceeds 2^53-1");
        return value;
      }
      scale *= 0x80;
    }
    throw malformed("uvarint longer than 8 bytes");
  }

  raw(n) {
    if (n > this.remaining) throw malformed("truncated frame");
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  /**
   * A length-prefixed byte field, copied (into a plain Uint8Array, even from a Node.js
   * Buffer whose slice() is a view) so that it does not pin the unit buffer.
   */
  bytes() {
    return new Uint8Array(this.raw(this.uvarint()));
  }

  string() {
    const b = this.raw(this.uvarint());
    try {
      return utf8Decoder.decode(b);
    } catch {
      throw malformed("invalid UTF-8 in string");
    }
  }

  id16() {
    return new Uint8Array(this.raw(16));
  }

  kv() {
    const n = this.uvarint();
    const out = [];
    for (let i = 0; i < n; i++) out.push([this.string(), this.string()]);
    return out;
  }

  props(will = false) {
    const n = this.uvarint();
    const p = {};
    for (let i = 0; i < n; i++) {
      const id = this.u8();
      switch (id) {
        case PropId.payloadFormatIndicator: {
          const v = this.uvarint();
          if (v > 1) throw malformed(`payload format indicator ${v}`);
          once(p, "payloadFormatIndicator", v);
          break;
        }
        case PropId.messageExpiryInterval:
          once(p, "messageExpiryInterval", this.uvarint());
          break;
        case PropId.contentType:
          once(p, "contentType", this.string());
          break;
        case PropId.responseTopic:
          once(p, "responseTopic", this.string());
          break;
        case PropId.correlationData:
          once(p, "correlationData", this.bytes());
          break;
        case PropId.userProperty:
          (p.userProperties ??= []).push([this.string(), this.string()]);
          break;
        case PropId.willDelayInterval:
          if (!will) throw malformed("will delay interval outside a will");
          once(p, "willDelayInterval", this.uvarint());
          break;
        default:
          throw malformed(`unknown property id ${id}`);
      }
    }
    return p;
  }

  /** Every remaining byte (payloads), copied for the same reason as bytes(). */
  rest() {
    return new Uint8Array(this.raw(this.remaining));
  }

  /**
   * Every remaining byte, as a view into the frame's buffer (no copy): for a receiver
   * that copies what it keeps itself (see decodeFrame's `borrow`).
   */
  restView() {
    return this.raw(this.remaining);
  }

  done() {
    if (this.pos !== this.end) throw malformed("trailing bytes after frame body");
  }
}

// MQTT allows each property but the user property at most once; a repeat means the
// frame was built wrong, and taking either value would be a guess.
function once(p, key, value) {
  if (key in p) throw malformed(`duplicate property ${key}`);
  p[key] = value;
}

/** Normalizes any binary input to a Uint8Array (a view, not a copy). */
export function toBytes(data) {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (typeof data === "string") return encodeUtf8(data);
  throw new TypeError("expected a string, ArrayBuffer or ArrayBufferView");
}

function qosFlag(qos, name) {
  if (!Number.isInteger(qos) || qos < 0 || qos > 3) throw new RangeError(`${name} out of range: ${qos}`);
  return qos;
}

// SUBSCRIBE's options byte, laid out as MQTT 5's: bits 0-1 QoS (3 passes: the gateway
// answers it with 4033), bit 2 no local, bit 3 retain as published, bits 4-5 retain
// handling (0, 1 or 2).
function subscribeOptions(f) {
  const rh = f.retainHandling ?? 0;
  if (rh !== 0 && rh !== 1 && rh !== 2) throw new RangeError(`retainHandling out of range: ${rh}`);
  return qosFlag(f.qos, "qos") | (f.noLocal ? 0x04 : 0) | (f.retainAsPublished ? 0x08 : 0) | (rh << 4);
}

function checkReserved(flags, mask, what) {
  if (flags & ~mask) throw malformed(`reserved bits set in ${what} flags`);
}

// At most this many UTF-8 bytes for a JS string (3 per UTF-16 code unit); 0 for a
// non-string, which the encoder itself rejects.
const utf8Bound = (s) => (typeof s === "string" ? 3 * s.length : 0);

// The initial capacity of encodeFrame's Writer: the payload, the topic and the string
// properties at their worst case, and room for the fixed fields (Writer reserves
// MAX_UVARINT_BYTES per uvarint). A PUBLISH with a long topic then does not grow, and so
// copy, a payload-sized buffer; rarer fields (user properties, correlation data, the
// CONNECT strings) may still make it grow.
function frameCapacity(f) {
  let n = 64 + utf8Bound(f.topic);
  if (typeof f.payload === "string") n += utf8Bound(f.payload);
  else if (f.payload) n += f.payload.length;
  const p = f.props;
  if (p) n += 4 * (1 + MAX_UVARINT_BYTES) + utf8Bound(p.contentType) + utf8Bound(p.responseTopic);
  return n;
}

/**
 * Encodes one frame (type byte and body, no length prefix).
 * @param {object} f a frame object, `{type: FrameType.X, ...}`
 * @returns {Uint8Array}
 */
export function encodeFrame(f) {
  // A payload may be a string (PUBLISH, MESSAGE): a short one is encoded in place, a
  // long one first on its own, so that the frame's buffer is not made for the longest
  // it could encode to (3 bytes per UTF-16 unit) and kept at that size until its RESULT.
  if (typeof f.payload === "string" && utf8Bound(f.payload) > SLAB_MAX_FRAME) f = { ...f, payload: encodeUtf8(f.payload) };
  const w = new Writer(frameCapacity(f), true);
  w.u8(f.type);
  switch (f.type) {
    case FrameType.OPEN:
      w.uvarint(f.version ?? PROTOCOL_VERSION);
      w.string(f.user ?? "");
      w.bytes(toBytes(f.password ?? new Uint8Array(0)));
      w.kv(f.options ?? []);
      break;
    case FrameType.BIND:
      w.id16(f.session);
      w.id16(f.secret);
      w.uvarint(f.received);
      break;
    case FrameType.SEND:
      w.id16(f.session);
      w.id16(f.secret);
      if (f.requests === undefined) {
        w.u8(0);
      } else {
        w.u8(0x01);
        w.uvarint(f.requests);
      }
      break;
    case FrameType.CONNECT: {
      const will = f.will ?? null;
      let flags = f.cleanStart ? 0x01 : 0;
      if (will) flags |= 0x02 | (qosFlag(will.qos ?? 0, "will qos") << 2) | (will.retain ? 0x10 : 0);
      w.uvarint(f.req);
      w.uvarint(f.handle);
      w.string(f.broker);
      w.string(f.clientId ?? "");
      w.u8(flags);
      w.uvarint(f.keepAlive ?? 0);
      w.uvarint(f.sessionExpiry ?? 0);
      w.string(f.username ?? "");
      w.bytes(toBytes(f.password ?? new Uint8Array(0)));
      if (will) {
        w.string(will.topic);
        w.props(will.props);
        w.bytes(toBytes(will.payload ?? new Uint8Array(0)));
      }
      break;
    }
    case FrameType.SUBSCRIBE:
      w.uvarint(f.req);
      w.uvarint(f.handle);
      w.string(f.filter);
      w.u8(subscribeOptions(f));
      w.uvarint(f.maxFrequency ?? 0);
      break;
    case FrameType.UNSUBSCRIBE:
      w.uvarint(f.req);
      w.uvarint(f.handle);
      w.string(f.filter);
      break;
    case FrameType.FREQUENCY:
      w.uvarint(f.req);
      w.uvarint(f.handle);
      w.string(f.filter);
      w.uvarint(f.maxFrequency ?? 0);
      break;
    case FrameType.BANDWIDTH:
      w.uvarint(f.req);
      w.uvarint(f.value ?? 0);
      break;
    case FrameType.PUBLISH:
      w.uvarint(f.req);
      w.uvarint(f.handle);
      w.string(f.topic);
      w.u8(qosFlag(f.qos ?? 0, "qos") | (f.retain ? 0x04 : 0));
      w.props(f.props);
      w.payload(f.payload);
      break;
    case FrameType.DISCONNECT:
      w.uvarint(f.req);
      w.uvarint(f.handle);
      break;
    case FrameType.ACK:
      w.uvarint(f.stream);
      w.uvarint(f.packetId);
      break;
    case FrameType.PING:
      // A connection check: answer at once (only to a gateway whose OPENED info has
      // ping_answer; an older one takes the byte for malformed).
      if (f.answer) w.u8(0x01);
      break;
    case FrameType.CLOSE:
      // The page went away: the session's dedicated clients' wills fire.
      if (f.left) w.u8(0x01);
      break;
    case FrameType.OPENED:
      w.id16(f.session);
      w.id16(f.secret);
      w.uvarint(f.heartbeat);
      w.uvarint(f.sessionTimeout);
      w.uvarint(f.maxFrame);
      w.kv(f.info ?? []);
      break;
    case FrameType.BOUND:
      w.uvarint(f.replayFrom);
      w.uvarint(f.requests ?? 0);
      break;
    case FrameType.RESULT:
      w.uvarint(f.req);
      w.uvarint(f.code);
      w.string(f.message ?? "");
      w.uvarint(f.value ?? 0);
      if (f.sessionPresent !== undefined) w.u8(f.sessionPresent ? 0x01 : 0);
      break;
    case FrameType.MESSAGE:
      w.uvarint(f.stream);
      w.u8(qosFlag(f.qos ?? 0, "qos") | (f.retain ? 0x04 : 0) | (f.duplicate ? 0x08 : 0) | (f.client ? 0x10 : 0) | (f.except ? 0x20 : 0) | (f.publishedRetain ? 0x40 : 0));
      w.uvarint(f.packetId ?? 0);
      if (f.client) w.uvarint(f.client);
      if (f.except) w.uvarint(f.except);
      w.string(f.topic);
      w.props(f.props);
      w.payload(f.payload);
      break;
    case FrameType.LOST:
      w.uvarint(f.handle);
      w.uvarint(f.code);
      w.string(f.message ?? "");
      break;
    case FrameType.NOTICE:
      w.uvarint(f.code);
      w.string(f.message ?? "");
      w.uvarint(f.value ?? 0);
      break;
    case FrameType.UNSUBSCRIBED:
      w.uvarint(f.handle);
      w.string(f.filter);
      w.uvarint(f.code);
      w.string(f.message ?? "");
      break;
    case FrameType.SERVER_CLOSE:
      w.uvarint(f.code);
      w.string(f.message ?? "");
      break;
    default:
      throw new TypeError(`unknown frame type ${f.type}`);
  }
  return w.finish();
}

/**
 * Decodes one frame (type byte and body, no length prefix). Decodes both directions,
 * so tests and tools can read what the client sends.
 *
 * Byte fields are copies, so that a frame kept does not pin the buffer it came in;
 * with `borrow`, a MESSAGE's payload is a view into `bytes` instead, for a receiver
 * that is done with it, or has copied it, before `bytes` may change (the session:
 * Message#_settle). A copy per payload is most of the cost of a small message (a
 * typed array over 64 bytes allocates its memory outside the JS heap).
 * @param {Uint8Array} bytes
 * @param {number} [start]
 * @param {number} [end]
 * @param {boolean} [borrow]
 * @returns {object}
 * @throws {MqttGatewayError} code 4000 when malformed
 */
export function decodeFrame(bytes, start = 0, end = bytes.length, borrow = false) {
  const r = new Reader(bytes, start, end);
  const type = r.u8();
  /** @type {any} */
  let f;
  switch (type) {
    case FrameType.OPEN:
      f = { type, version: r.uvarint(), user: r.string(), password: r.bytes(), options: r.kv() };
      break;
    case FrameType.BIND:
      f = { type, session: r.id16(), secret: r.id16(), received: r.uvarint() };
      break;
    case FrameType.SEND: {
      f = { type, session: r.id16(), secret: r.id16() };
      const flags = r.u8();
      checkReserved(flags, 0x01, "SEND");
      if (flags & 0x01) f.requests = r.uvarint();
      break;
    }
    case FrameType.CONNECT: {
      f = { type, req: r.uvarint(), handle: r.uvarint(), broker: r.string(), clientId: r.string() };
      const flags = r.u8();
      checkReserved(flags, 0x1f, "CONNECT");
      const hasWill = (flags & 0x02) !== 0;
      if (!hasWill && flags & 0x1c) throw malformed("will qos or retain without a will");
      f.cleanStart = (flags & 0x01) !== 0;
      f.keepAlive = r.uvarint();
      f.sessionExpiry = r.uvarint();
      f.username = r.string();
      f.password = r.bytes();
      f.will = null;
      if (hasWill) {
        f.will = {
          qos: (flags >> 2) & 0x03,
          retain: (flags & 0x10) !== 0,
          topic: r.string(),
          props: r.props(true),
          payload: r.bytes(),
        };
      }
      break;
    }
    case FrameType.SUBSCRIBE: {
      f = { type, req: r.uvarint(), handle: r.uvarint(), filter: r.string() };
      const opts = r.u8();
      // Retain handling 3 and bits 6-7 are malformed, as in MQTT. A QoS of 3 passes: it
      // is a request error (RESULT 4033), not a malformed frame.
      if (opts & 0xc0 || (opts & 0x30) === 0x30) throw malformed("reserved SUBSCRIBE options");
      f.qos = opts & 0x03;
      // The options are present only when set, so a plain SUBSCRIBE decodes as before.
      if (opts & 0x04) f.noLocal = true;
      if (opts & 0x08) f.retainAsPublished = true;
      if (opts & 0x30) f.retainHandling = opts >> 4;
      f.maxFrequency = r.uvarint();
      break;
    }
    case FrameType.UNSUBSCRIBE:
      f = { type, req: r.uvarint(), handle: r.uvarint(), filter: r.string() };
      break;
    case FrameType.FREQUENCY:
      f = { type, req: r.uvarint(), handle: r.uvarint(), filter: r.string(), maxFrequency: r.uvarint() };
      break;
    case FrameType.BANDWIDTH:
      f = { type, req: r.uvarint(), value: r.uvarint() };
      break;
    case FrameType.PUBLISH: {
      f = { type, req: r.uvarint(), handle: r.uvarint(), topic: r.string() };
      const flags = r.u8();
      checkReserved(flags, 0x07, "PUBLISH");
      f.qos = flags & 0x03; // 3 passes through, as for SUBSCRIBE: RESULT 4033
      f.retain = (flags & 0x04) !== 0;
      f.props = r.props();
      f.payload = r.rest();
      break;
    }
    case FrameType.DISCONNECT:
      f = { type, req: r.uvarint(), handle: r.uvarint() };
      break;
    case FrameType.ACK:
      f = { type, stream: r.uvarint(), packetId: r.uvarint() };
      break;
    case FrameType.PING:
      f = { type };
      if (r.remaining > 0) {
        const flags = r.u8();
        checkReserved(flags, 0x01, "PING");
        if (flags & 0x01) f.answer = true;
      }
      break;
    case FrameType.CLOSE:
      f = { type };
      if (r.remaining > 0) {
        const flags = r.u8();
        checkReserved(flags, 0x01, "CLOSE");
        if (flags & 0x01) f.left = true;
      }
      break;
    case FrameType.OPENED:
      f = {
        type,
        session: r.id16(),
        secret: r.id16(),
        heartbeat: r.uvarint(),
        sessionTimeout: r.uvarint(),
        maxFrame: r.uvarint(),
        info: r.kv(),
      };
      break;
    case FrameType.BOUND:
      f = { type, replayFrom: r.uvarint(), requests: r.uvarint() };
      break;
    case FrameType.RESULT:
      f = { type, req: r.uvarint(), code: r.uvarint(), message: r.string(), value: r.uvarint() };
      // A CONNECT's flags (OPEN option session_present): bit 0, the broker kept a session.
      if (r.remaining > 0) {
        const flags = r.u8();
        checkReserved(flags, 0x01, "RESULT");
        f.sessionPresent = (flags & 0x01) !== 0;
      }
      break;
    case FrameType.MESSAGE: {
      f = { type, stream: r.uvarint() };
      const flags = r.u8();
      checkReserved(flags, 0x7f, "MESSAGE");
      if ((flags & 0x30) === 0x30) throw malformed("MESSAGE both addressed and for all but one client");
      f.qos = flags & 0x03;
      if (f.qos === 3) throw malformed("MESSAGE with QoS 3");
      f.retain = (flags & 0x04) !== 0;
      f.duplicate = (flags & 0x08) !== 0;
      // A live message published with the retain flag, for subscriptions with
      // retainAsPublished (PROTOCOL.md, Subscription options); only then present.
      if (flags & 0x40) f.publishedRetain = true;
      f.packetId = r.uvarint();
      // Addressed: the handle of the one client it is for (a retained message
      // answering that client's SUBSCRIBE; PROTOCOL.md, addressed_retained).
      if (flags & 0x10) f.client = r.uvarint();
      // For all but one: the handle of the client whose own publish it is, which its
      // noLocal subscriptions keep from it (PROTOCOL.md, Subscription options).
      if (flags & 0x20) f.except = r.uvarint();
      f.topic = r.string();
      f.props = r.props();
      f.payload = borrow ? r.restView() : r.rest();
      break;
    }
    case FrameType.LOST:
      f = { type, handle: r.uvarint(), code: r.uvarint(), message: r.string() };
      break;
    case FrameType.NOTICE:
      f = { type, code: r.uvarint(), message: r.string(), value: r.uvarint() };
      break;
    case FrameType.UNSUBSCRIBED:
      f = { type, handle: r.uvarint(), filter: r.string(), code: r.uvarint(), message: r.string() };
      break;
    case FrameType.SERVER_CLOSE:
      f = { type, code: r.uvarint(), message: r.string() };
      break;
    default:
      throw malformed(`unknown frame type 0x${type.toString(16).padStart(2, "0")}`);
  }
  r.done();
  return f;
}

/** True for the frames the server counts (RESULT, MESSAGE, LOST, NOTICE, UNSUBSCRIBED). */
export function isDataFrame(type) {
  return (
    type === FrameType.RESULT || type === FrameType.MESSAGE || type === FrameType.LOST || type === FrameType.NOTICE || type === FrameType.UNSUBSCRIBED
  );
}

/**
 * Joins encoded frames into one transport unit, each preceded by its uvarint length.
 * @param {Uint8Array[]} frames
 * @returns {Uint8Array}
 */
export function encodeUnit(frames) {
  let size = 0;
  for (const f of frames) size += f.length + uvarintSize(f.length);
  // Writer.uvarint reserves MAX_UVARINT_BYTES whatever the value: the slack keeps a
  // small last frame (a PING, an ACK) from growing an exactly sized buffer.
  const w = new Writer(size + MAX_UVARINT_BYTES);
  for (const f of frames) {
    w.uvarint(f.length);
    w.raw(f);
  }
  return w.finish();
}

/** Bytes a uvarint of value v takes. */
export function uvarintSize(v) {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 0x80);
    n++;
  }
  return n;
}

/**
 * Splits a transport unit into its frames and decodes them lazily, so that a receiver
 * acts on the good frames that precede a malformed one in the same unit.
 * @param {Uint8Array} unit
 * @param {number} [maxFrame] frames longer than this throw code 4002
 * @returns {Generator<object>}
 */
export function* decodeUnit(unit, maxFrame = Infinity) {
  const r = unitReader(unit);
  while (r.remaining > 0) {
    const start = nextFrame(r, maxFrame);
    yield decodeFrame(unit, start, r.pos);
  }
}

/**
 * decodeUnit for the receive path: calls `fn` with each frame in turn, decoding the
 * next one only once `fn` has returned, and stops early when it returns false. No
 * generator: resuming one for each frame was a tenth of the cost of a small message.
 * @param {Uint8Array} unit
 * @param {(frame: any) => boolean} fn
 * @param {boolean} [borrow] MESSAGE payloads are views into `unit` (see decodeFrame)
 * @throws {MqttGatewayError} code 4000 when malformed (after the frames before it)
 */
export function eachFrame(unit, fn, borrow = false) {
  const r = unitReader(unit);
  while (r.remaining > 0) {
    const start = nextFrame(r, Infinity);
    if (fn(decodeFrame(unit, start, r.pos, borrow)) === false) return;
  }
}

function unitReader(unit) {
  const r = new Reader(unit);
  if (r.remaining === 0) throw malformed("empty transport unit");
  return r;
}

/** Reads a frame's length prefix; returns where the frame starts, `r` being moved past its end. */
function nextFrame(r, maxFrame) {
  const len = r.uvarint();
  if (len === 0) throw malformed("empty frame");
  if (len > maxFrame) throw new MqttGatewayError(ErrorCode.frame_too_large, `frame of ${len} bytes exceeds ${maxFrame}`);
  if (len > r.remaining) throw malformed("frame length exceeds unit");
  const start = r.pos;
  r.pos += len;
  return start;
}
