// The client's decoders meet whatever reaches it: a gateway of another version, a proxy
// that rewrites or cuts a response, a network that corrupts. Whatever the bytes, a
// decoder either returns frames or throws MqttGatewayError 4000 (malformed) or 4002
// (too large), which the session turns into a reconnection; never a TypeError or a
// RangeError from deep inside, which would escape as a bug. This is the client's
// counterpart of the Go fuzz target FuzzDecodeUnit: mutations of valid units, from a
// seeded generator so that a failure names the case that reproduces it.

import assert from "node:assert/strict";
import { test } from "node:test";

import { decodeFrame, decodeUnit, eachFrame, encodeFrame, encodeUnit } from "../src/codec.js";
import { ErrorCode, MqttGatewayError } from "../src/errors.js";
import { FrameReader } from "../src/frame-reader.js";
import { sampleFrames } from "./support/sample-frames.js";

const CASES = 20000;

/** mulberry32: a small seeded generator, so that every run mutates alike. */
function generator(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n) => Math.floor(next() * n);
  return { int, pick: (list) => list[int(list.length)] };
}

const encoded = sampleFrames.map((f) => encodeFrame(f));

/** A unit of one to four sample frames. */
function validUnit(rnd) {
  const frames = Array.from({ length: 1 + rnd.int(4) }, () => rnd.pick(encoded));
  return encodeUnit(frames);
}

/** unit with one to three random changes: bit flips, bytes set, cut, inserted, removed or repeated. */
function mutate(rnd, unit) {
  let b = unit.slice();
  for (let n = 1 + rnd.int(3); n > 0; n--) {
    const at = rnd.int(b.length + 1);
    switch (rnd.int(6)) {
      case 0:
        if (b.length) b[Math.min(at, b.length - 1)] ^= 1 << rnd.int(8);
        break;
      case 1:
        if (b.length) b[Math.min(at, b.length - 1)] = rnd.pick([0, 1, 0x7f, 0x80, 0xff, rnd.int(256)]);
        break;
      case 2:
        b = b.slice(0, at);
        break;
      case 3: {
        const extra = Uint8Array.from({ length: 1 + rnd.int(8) }, () => rnd.int(256));
        b = Uint8Array.from([...b.subarray(0, at), ...extra, ...b.subarray(at)]);
        break;
      }
      case 4:
        b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at + 1 + rnd.int(8))]);
        break;
      case 5:
        b = Uint8Array.from([...b.subarray(0, at), ...b.subarray(at, at + 1 + rnd.int(16)), ...b.subarray(at)]);
        break;
    }
  }
  return b;
}

/** Runs fn; an exception other than the decoders' own is the failure, named with its input. */
function decodes(what, input, fn) {
  try {
    return fn();
  } catch (err) {
    const ours = err instanceof MqttGatewayError && (err.errorCode === ErrorCode.malformed || err.errorCode === ErrorCode.frame_too_large);
    if (!ours) {
      assert.fail(`${what} of [${input}] threw ${err?.name}: ${err?.message}\n${err?.stack}`);
    }
    return null;
  }
}

test("mutated units decode into frames or fail as malformed, alike through every entry point", (t) => {
  const rnd = generator(20261128);
  let whole = 0;
  let refused = 0;
  for (let i = 0; i < CASES; i++) {
    const unit = mutate(rnd, validUnit(rnd));
    const lazily = decodes("decodeUnit", unit, () => [...decodeUnit(unit)]);
    const seen = [];
    const eachOk = decodes("eachFrame", unit, () => eachFrame(unit, (f) => seen.push(f)) ?? true);
    // The two entry points agree: same frames, refused alike. eachFrame acts on the
    // frames before a malformed one, so those match too.
    assert.equal(eachOk === null, lazily === null, `decodeUnit and eachFrame disagree on [${unit}]`);
    if (lazily === null) {
      refused++;
      continue;
    }
    whole++;
    assert.deepEqual(seen, lazily);
    // What decodes is a frame the codec would have written: encoding it gives a frame
    // that decodes to the same.
    for (const f of lazily) {
      const again = decodes("decodeFrame of a re-encoded frame", unit, () => decodeFrame(encodeFrame(f)));
      assert.deepEqual(again, f, `frame ${JSON.stringify(f, (k, v) => (typeof v === "bigint" ? String(v) : v))} of [${unit}] does not survive its own encoding`);
    }
  }
  t.diagnostic(`${whole} decoded, ${refused} refused`);
  // The mutations reach both outcomes, so both paths were exercised.
  assert.ok(whole > CASES / 20 && refused > CASES / 20, `${whole} decoded, ${refused} refused of ${CASES}`);
});

test("a stream split anywhere gives back its frames; a corrupted one, whole frames of its start or a malformed error", () => {
  const rnd = generator(7);
  for (let i = 0; i < CASES / 10; i++) {
    const units = Array.from({ length: 1 + rnd.int(6) }, () => validUnit(rnd));
    let stream = Uint8Array.from(units.flatMap((u) => [...u]));
    const corrupt = rnd.int(3) === 0;
    if (corrupt) stream = mutate(rnd, stream);
    const reader = new FrameReader();
    const out = [];
    const read = decodes("FrameReader.push", stream, () => {
      for (let at = 0; at < stream.length; ) {
        const size = 1 + rnd.int(rnd.pick([2, 16, 300]));
        const unit = reader.push(stream.subarray(at, at + size));
        at += size;
        if (unit) out.push(...unit);
      }
      return true;
    });
    if (!corrupt) {
      assert.ok(read, `an intact stream [${stream}] was refused`);
      assert.equal(reader.pending, 0);
      assert.deepEqual(Uint8Array.from(out), stream);
      continue;
    }
    // What the reader emitted is a prefix of the stream, in whole frames, whatever
    // came after.
    assert.deepEqual(Uint8Array.from(out), stream.subarray(0, out.length));
    if (out.length) decodes("decodeUnit of what FrameReader emitted", stream, () => [...decodeUnit(Uint8Array.from(out))]);
  }
});
