// Reassembles length-prefixed frames from a byte stream (PROTOCOL.md, Framing: "an
// HTTP streaming response is a byte stream and the reader reassembles frames across
// chunks"). Network chunks split frames anywhere, even inside the length prefix.

import { ErrorCode, MqttGatewayError } from "./errors.js";

const MAX_PREFIX = 8; // a uvarint is at most 8 bytes

/**
 * Reads the uvarint length prefix at `pos`.
 * @returns {{len: number, size: number} | null} null when the prefix is incomplete
 */
function prefixAt(buf, pos) {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < MAX_PREFIX; i++) {
    if (pos + i >= buf.length) return null;
    const b = buf[pos + i];
    value += (b & 0x7f) * scale;
    if (b < 0x80) return { len: value, size: i + 1 };
    scale *= 0x80;
  }
  throw new MqttGatewayError(ErrorCode.malformed, "frame length longer than 8 bytes");
}

/**
 * Turns chunks of a byte stream into transport units holding whole frames only.
 *
 * Chunks are kept in a list until the frame that is being waited for is complete and
 * joined once then, so a large frame arriving in many small chunks costs one copy,
 * not one per chunk.
 */
export class FrameReader {
  constructor() {
    /** @type {Uint8Array[]} */
    this.parts = [];
    this.size = 0; // bytes in parts
    this.need = 1; // bytes needed before something can be emitted
  }

  /** Bytes held that do not make a whole frame yet. */
  get pending() {
    return this.size;
  }

  /**
   * Adds a chunk; returns a unit with every frame now complete, or null.
   * @param {Uint8Array} chunk
   * @returns {Uint8Array | null}
   * @throws {MqttGatewayError} 4000 when a length prefix is malformed
   */
  push(chunk) {
    if (chunk.length === 0) return null;
    this.parts.push(chunk);
    this.size += chunk.length;
    if (this.size < this.need) return null;
    const buf = this.parts.length === 1 ? this.parts[0] : concat(this.parts, this.size);
    let end = 0; // end of the last whole frame
    for (;;) {
      const p = prefixAt(buf, end);
      if (p === null) {
        this.need = buf.length - end + 1;
        break;
      }
      if (p.len === 0) throw new MqttGatewayError(ErrorCode.malformed, "empty frame");
      const frameEnd = end + p.size + p.len;
      if (frameEnd > buf.length) {
        this.need = frameEnd - end;
        break;
      }
      end = frameEnd;
    }
    // The rest is copied so that the emitted unit (a view) and the kept bytes do not
    // share a buffer the caller may reuse.
    const rest = buf.subarray(end);
    this.parts = rest.length ? [rest.slice()] : [];
    this.size = rest.length;
    if (rest.length === 0) this.need = 1;
    return end === 0 ? null : buf.subarray(0, end);
  }
}

/**
 * Joins `parts` (`size` bytes in all) into one new array.
 * @param {Uint8Array[]} parts
 * @param {number} size
 * @returns {Uint8Array}
 */
export function concat(parts, size) {
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
