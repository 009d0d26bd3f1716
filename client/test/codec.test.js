import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  FrameType,
  MAX_UVARINT,
  Reader,
  Writer,
  decodeFrame,
  decodeUnit,
  eachFrame,
  encodeFrame,
  encodeUnit,
  uvarintSize,
} from "../src/codec.js";
import { ErrorCode, MqttGatewayError } from "../src/errors.js";
import { sampleFrames } from "./support/sample-frames.js";

const bytes = (...b) => new Uint8Array(b);

function encodeUvarint(v) {
  const w = new Writer();
  w.uvarint(v);
  return w.finish().slice();
}
const decodeUvarint = (b) => new Reader(b).uvarint();
const concatBytes = (...parts) => Uint8Array.from(parts.flatMap((p) => [...p]));

function assertMalformed(fn, code = ErrorCode.malformed) {
  assert.throws(fn, (err) => err instanceof MqttGatewayError && err.errorCode === code);
}

describe("uvarint", () => {
  test("known encodings", () => {
    assert.deepEqual(encodeUvarint(0), bytes(0));
    assert.deepEqual(encodeUvarint(1), bytes(1));
    assert.deepEqual(encodeUvarint(127), bytes(0x7f));
    assert.deepEqual(encodeUvarint(128), bytes(0x80, 0x01));
    assert.deepEqual(encodeUvarint(300), bytes(0xac, 0x02));
    assert.deepEqual(encodeUvarint(16383), bytes(0xff, 0x7f));
    assert.deepEqual(encodeUvarint(16384), bytes(0x80, 0x80, 0x01));
    assert.deepEqual(encodeUvarint(MAX_UVARINT), bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f));
  });

  test("round trips at every byte-length boundary and 2^53-1", () => {
    const values = [0, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 49, MAX_UVARINT - 1, MAX_UVARINT];
    for (let bits = 7; bits <= 56; bits += 7) {
      values.push(Math.min(2 ** bits - 1, MAX_UVARINT), Math.min(2 ** bits, MAX_UVARINT));
    }
    for (const v of values) {
      const enc = encodeUvarint(v);
      assert.equal(enc.length, uvarintSize(v), `size of ${v}`);
      assert.ok(enc.length <= 8);
      assert.equal(decodeUvarint(enc), v, `round trip of ${v}`);
    }
  });

  test("encoder rejects values it cannot represent", () => {
    for (const v of [-1, 1.5, MAX_UVARINT + 1, 2 ** 60, NaN, Infinity]) {
      assert.throws(() => encodeUvarint(v), RangeError, String(v));
    }
  });

  test("truncated uvarint is malformed", () => {
    assertMalformed(() => decodeUvarint(bytes()));
    assertMalformed(() => decodeUvarint(bytes(0x80)));
    assertMalformed(() => decodeUvarint(bytes(0xff, 0xff, 0xff)));
  });

  test("uvarint longer than 8 bytes is malformed", () => {
    assertMalformed(() => decodeUvarint(bytes(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00)));
    assertMalformed(() => decodeUvarint(bytes(0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01)));
  });

  test("8-byte values above 2^53-1 are malformed", () => {
    // 2^53 exactly, and 2^56-1 (the largest 8-byte value)
    assertMalformed(() => decodeUvarint(bytes(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10)));
    assertMalformed(() => decodeUvarint(bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f)));
  });

  test("non-minimal encodings within 8 bytes are accepted (as Go's binary.Uvarint does)", () => {
    assert.equal(decodeUvarint(bytes(0x80, 0x00)), 0);
    assert.equal(decodeUvarint(bytes(0x81, 0x80, 0x00)), 1);
  });
});

describe("strings, bytes, kv, props", () => {
  const roundString = (s) => {
    const w = new Writer();
    w.string(s);
    return new Reader(w.finish()).string();
  };

  test("UTF-8 strings round trip, BOM and NUL included", () => {
    for (const s of ["", "a", "sensors/é/temp", "日本語", "😀/+", "\uFEFFbom", "nul\u0000inside"]) {
      assert.equal(roundString(s), s);
    }
  });

  // Writer#string encodes in place, with room for the longest encoding, and moves the
  // bytes back when the real length's prefix is shorter: every prefix size, ASCII and
  // wider text, and whatever the Writer held before.
  test("strings round trip at every length-prefix boundary, byte for byte as TextEncoder's", () => {
    const enc = new TextEncoder();
    const lengths = [0, 1, 42, 43, 127, 128, 129, 5461, 16383, 16384, 16385, 70000];
    for (const unit of ["a", "é", "日", "😀"]) {
      for (const n of lengths) {
        const s = unit.repeat(Math.ceil(n / unit.length)).slice(0, n - (n % unit.length));
        const w = new Writer(n % 2 ? 1 : 64);
        w.u8(7); // something before it
        w.string(s);
        w.u8(9); // and after it
        const want = enc.encode(s);
        const got = w.finish();
        const r = new Reader(got);
        assert.equal(r.u8(), 7);
        assert.equal(r.uvarint(), want.length, `${JSON.stringify(unit)} × ${n}: length`);
        assert.deepEqual(r.raw(want.length), want, `${JSON.stringify(unit)} × ${n}: bytes`);
        assert.equal(r.u8(), 9);
        assert.equal(r.remaining, 0, `${JSON.stringify(unit)} × ${n}: nothing else`);
      }
    }
  });

  test("invalid UTF-8 in a string is malformed", () => {
    const cases = [
      bytes(0xff),
      bytes(0xc0, 0x80), // overlong NUL
      bytes(0xed, 0xa0, 0x80), // UTF-16 surrogate
      bytes(0xe2, 0x82), // truncated sequence
      bytes(0xf4, 0x90, 0x80, 0x80), // beyond U+10FFFF
    ];
    for (const c of cases) {
      const w = new Writer();
      w.bytes(c);
      assertMalformed(() => new Reader(w.finish()).string());
    }
  });

  test("strings with lone surrogates cannot be encoded", () => {
    assert.throws(() => new Writer().string("a\uD800b"), TypeError);
    assert.throws(() => new Writer().string("\uDC00"), TypeError);
  });

  test("string length beyond the frame is malformed", () => {
    assertMalformed(() => new Reader(bytes(5, 0x61, 0x62)).string());
  });

  test("kv round trip", () => {
    const w = new Writer();
    const pairs = [["max_bandwidth", "65536"], ["", ""], ["k", "v"], ["k", "again"]];
    w.kv(pairs);
    assert.deepEqual(new Reader(w.finish()).kv(), pairs);
  });

  test("props round trip with every property", () => {
    const p = {
      payloadFormatIndicator: 1,
      messageExpiryInterval: 3600,
      contentType: "application/json",
      responseTopic: "replies/42",
      correlationData: bytes(0, 1, 2, 255),
      userProperties: [["a", "1"], ["a", "2"], ["b", ""]],
    };
    const w = new Writer();
    w.props(p);
    const enc = w.finish();
    assert.equal(enc[0], 8, "count: 5 single properties + 3 user properties");
    assert.deepEqual(new Reader(enc).props(), p);
  });

  test("empty props", () => {
    const w = new Writer();
    w.props({});
    assert.deepEqual(w.finish(), bytes(0));
    assert.deepEqual(new Reader(bytes(0)).props(), {});
  });

  test("unknown property id is malformed", () => {
    assertMalformed(() => new Reader(bytes(1, 8, 0)).props());
    assertMalformed(() => new Reader(bytes(1, 0, 0)).props());
  });

  test("a will delay interval is a will's alone", () => {
    assert.deepEqual(new Reader(bytes(1, 7, 30)).props(true), { willDelayInterval: 30 });
    assertMalformed(() => new Reader(bytes(1, 7, 30)).props());
  });

  test("repeated single-valued property is malformed", () => {
    assertMalformed(() => new Reader(bytes(2, 2, 5, 2, 6)).props());
  });

  test("payload format indicator above 1 is malformed", () => {
    assertMalformed(() => new Reader(bytes(1, 1, 2)).props());
  });

  test("truncated props are malformed", () => {
    assertMalformed(() => new Reader(bytes(2, 2, 5)).props());
  });
});

describe("frames", () => {

  test("every frame type round trips", () => {
    const seen = new Set();
    for (const f of sampleFrames) {
      const enc = encodeFrame(f);
      assert.equal(enc[0], f.type);
      assert.deepEqual(decodeFrame(enc), f);
      seen.add(f.type);
    }
    assert.deepEqual([...seen].sort(), Object.values(FrameType).sort(), "a sample of every type");
  });

  test("wire layout of a SUBSCRIBE matches PROTOCOL.md field by field", () => {
    const enc = encodeFrame({ type: FrameType.SUBSCRIBE, req: 1, handle: 2, filter: "a/+", qos: 1, maxFrequency: 1000 });
    assert.deepEqual(enc, bytes(0x04, 1, 2, 3, 0x61, 0x2f, 0x2b, 1, 0xe8, 0x07));
  });

  test("wire layout of SUBSCRIBE options: MQTT 5's byte", () => {
    const optionsOf = (o) => encodeFrame({ type: FrameType.SUBSCRIBE, req: 1, handle: 2, filter: "a", qos: 1, maxFrequency: 0, ...o })[5];
    assert.equal(optionsOf({}), 0x01);
    assert.equal(optionsOf({ noLocal: true }), 0x05);
    assert.equal(optionsOf({ retainAsPublished: true }), 0x09);
    assert.equal(optionsOf({ retainHandling: 1 }), 0x11);
    assert.equal(optionsOf({ retainHandling: 2 }), 0x21);
    assert.throws(() => optionsOf({ retainHandling: 3 }), RangeError);
    for (const bad of [0x31, 0x41, 0x81]) {
      assert.throws(() => decodeFrame(bytes(0x04, 1, 2, 1, 0x61, bad, 0)), /reserved SUBSCRIBE options/, `options 0x${bad.toString(16)}`);
    }
  });

  test("wire layout of CONNECT flags", () => {
    const base = { type: FrameType.CONNECT, req: 1, handle: 1, broker: "b", clientId: "", keepAlive: 0, sessionExpiry: 0, username: "", password: bytes() };
    const flagsOf = (f) => encodeFrame({ ...base, ...f })[6];
    assert.equal(flagsOf({ cleanStart: true }), 0x01);
    assert.equal(flagsOf({ cleanStart: false, will: { topic: "t", qos: 1, retain: true, props: {}, payload: bytes() } }), 0x02 | 0x04 | 0x10);
    assert.equal(flagsOf({ cleanStart: true, will: { topic: "t", qos: 2, retain: false, props: {}, payload: bytes() } }), 0x01 | 0x02 | 0x08);
  });

  test("wire layout of MESSAGE flags", () => {
    const enc = encodeFrame({ type: FrameType.MESSAGE, stream: 1, qos: 2, retain: true, duplicate: true, packetId: 0, topic: "t", props: {}, payload: bytes(7) });
    assert.deepEqual(enc, bytes(0x84, 1, 0x0e, 0, 1, 0x74, 0, 7));
    const addressed = encodeFrame({ type: FrameType.MESSAGE, stream: 1, qos: 0, retain: true, packetId: 0, client: 3, topic: "t", props: {}, payload: bytes(7) });
    assert.deepEqual(addressed, bytes(0x84, 1, 0x14, 0, 3, 1, 0x74, 0, 7), "bit 4, then the handle after packet_id");
    const allButOne = encodeFrame({ type: FrameType.MESSAGE, stream: 1, qos: 0, retain: false, packetId: 0, except: 3, topic: "t", props: {}, payload: bytes(7) });
    assert.deepEqual(allButOne, bytes(0x84, 1, 0x20, 0, 3, 1, 0x74, 0, 7), "bit 5, then the handle after packet_id");
    assert.equal(decodeFrame(allButOne).except, 3);
    const asPublished = encodeFrame({ type: FrameType.MESSAGE, stream: 1, qos: 0, retain: false, publishedRetain: true, packetId: 0, topic: "t", props: {}, payload: bytes(7) });
    assert.deepEqual(asPublished, bytes(0x84, 1, 0x40, 0, 1, 0x74, 0, 7), "bit 6");
    assert.equal(decodeFrame(asPublished).publishedRetain, true);
    assert.throws(() => decodeFrame(bytes(0x84, 1, 0x80, 0, 1, 0x74, 0, 7)), /reserved bits/);
    assert.throws(() => decodeFrame(bytes(0x84, 1, 0x30, 0, 3, 3, 1, 0x74, 0, 7)), /both addressed and for all but one/);
  });

  test("unknown frame type is malformed", () => {
    assertMalformed(() => decodeFrame(bytes(0x0b)));
    assertMalformed(() => decodeFrame(bytes(0x80)));
    assertMalformed(() => decodeFrame(bytes(0xff)));
  });

  test("trailing bytes after a fixed body are malformed", () => {
    assertMalformed(() => decodeFrame(bytes(FrameType.PING, 0x01, 0)));
    assertMalformed(() => decodeFrame(bytes(FrameType.BOUND, 1, 0, 0)));
  });

  test("truncated bodies are malformed", () => {
    for (const f of sampleFrames) {
      const enc = encodeFrame(f);
      // Frames ending in `rest` accept any cut inside the payload, not before it; a
      // RESULT without its optional flags is a RESULT, and a CLOSE or PING without its
      // flags a CLOSE or PING.
      const minimum =
        f.type === FrameType.PUBLISH || f.type === FrameType.MESSAGE
          ? enc.length - f.payload.length
          : f.sessionPresent !== undefined || f.left || f.answer
            ? enc.length - 1
            : enc.length;
      for (let n = 1; n < minimum; n++) {
        assertMalformed(() => decodeFrame(enc.subarray(0, n)), undefined, `type ${f.type} cut at ${n}`);
      }
    }
  });

  test("wire layout of a CONNECT's RESULT with flags", () => {
    assert.deepEqual(encodeFrame({ type: FrameType.RESULT, req: 1, code: 0, message: "", value: 2, sessionPresent: true }), bytes(0x83, 1, 0, 0, 2, 0x01));
    assert.equal(decodeFrame(bytes(0x83, 1, 0, 0, 2, 0x00)).sessionPresent, false);
    assert.equal(decodeFrame(bytes(0x83, 1, 0, 0, 2)).sessionPresent, undefined, "no flags: not a CONNECT's, or not asked for");
    assertMalformed(() => decodeFrame(bytes(0x83, 1, 0, 0, 2, 0x02)));
    assertMalformed(() => decodeFrame(bytes(0x83, 1, 0, 0, 2, 0x01, 0)));
  });

  test("reserved flag bits are malformed", () => {
    const msg = encodeFrame({ type: FrameType.MESSAGE, stream: 1, qos: 0, packetId: 0, topic: "t", props: {}, payload: bytes() });
    msg[2] |= 0x20;
    assertMalformed(() => decodeFrame(msg));
    const pub = encodeFrame({ type: FrameType.PUBLISH, req: 1, handle: 1, topic: "t", qos: 0, props: {}, payload: bytes() });
    pub[5] |= 0x08;
    assertMalformed(() => decodeFrame(pub));
    assert.deepEqual([...encodeFrame({ type: FrameType.CLOSE, left: true })], [0x0a, 0x01], "a page's CLOSE: the flag the gateway reads");
    assertMalformed(() => decodeFrame(bytes(0x0a, 0x02)));
    assert.deepEqual([...encodeFrame({ type: FrameType.PING, answer: true })], [0x09, 0x01], "a connection check: the flag the gateway reads");
    assert.deepEqual([...encodeFrame({ type: FrameType.PING })], [0x09], "a heartbeat: no flags byte, which a gateway without ping_answer refuses");
    assertMalformed(() => decodeFrame(bytes(FrameType.PING, 0x02)));
  });

  test("MESSAGE with QoS 3 is malformed; PUBLISH with QoS 3 is left to the server (4033)", () => {
    const msg = encodeFrame({ type: FrameType.MESSAGE, stream: 1, qos: 3, packetId: 0, topic: "t", props: {}, payload: bytes() });
    assertMalformed(() => decodeFrame(msg));
    const pub = encodeFrame({ type: FrameType.PUBLISH, req: 1, handle: 1, topic: "t", qos: 3, props: {}, payload: bytes() });
    assert.equal(decodeFrame(pub).qos, 3);
  });

  test("will QoS without will flag is malformed", () => {
    const enc = encodeFrame({ type: FrameType.CONNECT, req: 1, handle: 1, broker: "b", clientId: "", cleanStart: true, keepAlive: 0, sessionExpiry: 0, username: "", password: bytes() });
    enc[6] |= 0x04;
    assertMalformed(() => decodeFrame(enc));
  });

  test("invalid UTF-8 in a topic is malformed", () => {
    const enc = encodeFrame({ type: FrameType.MESSAGE, stream: 1, qos: 0, packetId: 0, topic: "ab", props: {}, payload: bytes() });
    enc[5] = 0xff; // first topic byte
    assertMalformed(() => decodeFrame(enc));
  });

  test("payloads are byte-exact, invalid UTF-8 included", () => {
    const payload = Uint8Array.from({ length: 256 }, (_, i) => 255 - i);
    const f = decodeFrame(encodeFrame({ type: FrameType.MESSAGE, stream: 3, qos: 0, packetId: 0, topic: "t", props: {}, payload }));
    assert.deepEqual(f.payload, payload);
  });
});

// encodeFrame gives views of a shared slab (codec.js): each frame must keep its bytes
// however many are encoded after it, small ones in the slab and large ones apart.
test("frames encoded one after another keep their bytes", () => {
  const sizes = [0, 1, 100, 500, 1000, 2000, 20000];
  const frames = [];
  for (let i = 0; i < 3000; i++) {
    const payload = Uint8Array.from({ length: sizes[i % sizes.length] }, (_, k) => (i + k) & 0xff);
    const f = { type: FrameType.PUBLISH, req: i + 1, handle: 1, topic: `t/${i}/${"é".repeat(i % 50)}`, qos: 0, retain: false, props: {}, payload };
    frames.push([f, encodeFrame(f)]);
  }
  for (const [f, bytes] of frames) assert.deepEqual(decodeFrame(bytes), f);
});

// A text payload (Message#_wirePayload) is encoded into the frame as its UTF-8 bytes
// would be: short ones in place, long ones apart.
test("a PUBLISH with a string payload encodes as with its UTF-8 bytes", () => {
  for (const text of ["", "on", "é😀".repeat(100), "x".repeat(341), "x".repeat(342), "日".repeat(5000)]) {
    const f = { type: FrameType.PUBLISH, req: 1, handle: 1, topic: "a/b", qos: 1, retain: false, props: {} };
    const want = encodeFrame({ ...f, payload: new TextEncoder().encode(text) });
    assert.deepEqual(encodeFrame({ ...f, payload: text }), want, `${text.length} characters`);
  }
  assert.throws(() => encodeFrame({ type: FrameType.PUBLISH, req: 1, handle: 1, topic: "a", props: {}, payload: "\uDC00" }), TypeError);
});

describe("units", () => {
  test("a unit carries several length-prefixed frames", () => {
    const frames = [
      { type: FrameType.RESULT, req: 1, code: 0, message: "", value: 5 },
      { type: FrameType.PING },
      { type: FrameType.MESSAGE, stream: 5, qos: 0, retain: false, duplicate: false, packetId: 0, topic: "a", props: {}, payload: new Uint8Array(300) },
    ];
    const unit = encodeUnit(frames.map(encodeFrame));
    assert.equal(unit[0], encodeFrame(frames[0]).length);
    assert.deepEqual([...decodeUnit(unit)], frames);
  });

  // The session's way through a unit: frame by frame, the good frames before a
  // malformed one acted on, and it may stop (its transport ended) half-way.
  test("eachFrame: the frames in order, up to a malformed one or until told to stop", () => {
    const frames = [
      { type: FrameType.RESULT, req: 1, code: 0, message: "", value: 5 },
      { type: FrameType.MESSAGE, stream: 5, qos: 0, retain: false, duplicate: false, packetId: 0, topic: "a", props: {}, payload: new Uint8Array(300).fill(7) },
      { type: FrameType.PING },
    ];
    const unit = encodeUnit(frames.map(encodeFrame));
    const seen = [];
    eachFrame(unit, (f) => seen.push(f) > 0);
    assert.deepEqual(seen, frames);
    const borrowed = [];
    eachFrame(unit, (f) => borrowed.push(f) > 0, true);
    assert.equal(borrowed[1].payload.buffer, unit.buffer, "borrow: the payload is a view into the unit");
    assert.notEqual(seen[1].payload.buffer, unit.buffer, "otherwise a copy");
    const firstTwo = [];
    eachFrame(unit, (f) => firstTwo.push(f) < 2);
    assert.deepEqual(firstTwo, frames.slice(0, 2));
    const bad = concatBytes(encodeUnit([encodeFrame(frames[0])]), bytes(1, 0x7f)); // a frame of unknown type 0x7f
    const before = [];
    assertMalformed(() => eachFrame(bad, (f) => before.push(f) > 0));
    assert.deepEqual(before, frames.slice(0, 1));
    assertMalformed(() => eachFrame(new Uint8Array(0), () => true));
  });

  test("empty unit, empty frame, and a frame longer than the unit are malformed", () => {
    assertMalformed(() => [...decodeUnit(bytes())]);
    assertMalformed(() => [...decodeUnit(bytes(0))]);
    assertMalformed(() => [...decodeUnit(bytes(3, FrameType.PING))]);
    assertMalformed(() => [...decodeUnit(bytes(0x80))]);
  });

  test("frames over the limit are 4002", () => {
    const unit = encodeUnit([encodeFrame({ type: FrameType.NOTICE, code: 1, message: "x".repeat(100), value: 0 })]);
    assertMalformed(() => [...decodeUnit(unit, 50)], ErrorCode.frame_too_large);
  });

  test("frames before a malformed one are decoded", () => {
    const good = encodeFrame({ type: FrameType.PING });
    const unit = encodeUnit([good, good, bytes(0x7f)]);
    const got = [];
    assertMalformed(() => {
      for (const f of decodeUnit(unit)) got.push(f);
    });
    assert.equal(got.length, 2);
  });
});
