import assert from "node:assert/strict";
import { test } from "node:test";

import { FrameType, decodeFrame, encodeFrame } from "../src/codec.js";
import { Message, checkMessageProps } from "../src/message.js";

const allBytes = () => Uint8Array.from({ length: 256 }, (_, i) => i);

test("a string payload is UTF-8 encoded", () => {
  const m = new Message("héllo 😀");
  assert.equal(m.payloadString, "héllo 😀");
  assert.deepEqual(m.payloadBytes, new TextEncoder().encode("héllo 😀"));
  assert.equal(m.qos, 0);
  assert.equal(m.retained, false);
  assert.equal(m.duplicate, false);
  assert.equal(m.destinationName, undefined);
});

// A string payload is encoded when needed (payloadBytes, or straight into the PUBLISH
// frame): a lone surrogate is still refused at once, and the bytes are the same.
test("a string payload with a lone surrogate is refused by the constructor; payloadBytes is one array", () => {
  assert.throws(() => new Message("a\uD800b"), /lone surrogate/);
  const m = new Message("x".repeat(100));
  assert.equal(m.payloadBytes, m.payloadBytes);
  assert.equal(m.payloadBytes.constructor, Uint8Array);
});

test("binary payloads stay byte-identical, invalid UTF-8 included", () => {
  const b = allBytes();
  for (const payload of [b, b.buffer, new DataView(b.buffer), new Uint16Array(b.buffer), Buffer.from(b)]) {
    const m = new Message(payload);
    assert.deepEqual(m.payloadBytes, b);
  }
  // Reading the string form of a binary payload does not throw nor alter the bytes.
  const m = new Message(b);
  assert.equal(typeof m.payloadString, "string");
  assert.ok(m.payloadString.includes("\uFFFD"));
  assert.deepEqual(m.payloadBytes, b);
});

test("a view's window is honoured", () => {
  const b = allBytes();
  assert.deepEqual(new Message(b.subarray(10, 20)).payloadBytes, b.slice(10, 20));
  assert.deepEqual(new Message(new DataView(b.buffer, 250)).payloadBytes, b.slice(250));
});

test("the payload is copied: later changes to the caller's buffer do not leak in", () => {
  const b = allBytes();
  const m = new Message(b);
  b[0] = 99;
  assert.equal(m.payloadBytes[0], 0);
});

test("empty payloads", () => {
  assert.equal(new Message("").payloadBytes.length, 0);
  assert.equal(new Message(new ArrayBuffer(0)).payloadString, "");
});

test("other payload types are refused", () => {
  for (const p of [undefined, null, 42, {}, [1, 2]]) assert.throws(() => new Message(p), TypeError);
});

test("a received MESSAGE frame becomes a Message with its properties, bytes untouched", () => {
  const payload = allBytes();
  const frame = decodeFrame(
    encodeFrame({
      type: FrameType.MESSAGE,
      stream: 1,
      qos: 2,
      retain: true,
      duplicate: true,
      packetId: 0,
      topic: "t/1",
      props: {
        payloadFormatIndicator: 0,
        messageExpiryInterval: 10,
        contentType: "application/octet-stream",
        responseTopic: "r",
        correlationData: new Uint8Array([1, 2]),
        userProperties: [["k", "v"]],
      },
      payload,
    }),
  );
  const m = Message._fromFrame(frame, 1);
  assert.equal(m instanceof Message, true);
  assert.equal(m.destinationName, "t/1");
  assert.equal(m.qos, 1);
  assert.equal(m.retained, true);
  assert.equal(m.duplicate, true);
  assert.deepEqual(m.payloadBytes, payload);
  assert.equal(m.contentType, "application/octet-stream");
  assert.equal(m.payloadFormatIndicator, 0);
  assert.equal(m.messageExpiryInterval, 10);
  assert.equal(m.responseTopic, "r");
  assert.deepEqual(m.correlationData, new Uint8Array([1, 2]));
  assert.deepEqual(m.userProperties, [["k", "v"]]);
});

test("topic is Paho's other name for destinationName", () => {
  const m = new Message("x");
  m.topic = "a/b";
  assert.equal(m.destinationName, "a/b");
  m.destinationName = "c";
  assert.equal(m.topic, "c");
});

test("MQTT 5 properties the wire cannot carry are a TypeError naming the property", () => {
  const bad = {
    messageExpiryInterval: [-1, 1.5, 2 ** 32, "60"],
    payloadFormatIndicator: [2, true],
    contentType: [42],
    responseTopic: [{}],
    correlationData: [42, {}],
    userProperties: [{ a: "b" }, [["a"]], [["a", 1]], "a=b"],
  };
  for (const [name, values] of Object.entries(bad)) {
    for (const v of values) {
      const m = new Message("x");
      m[name] = v;
      assert.throws(() => checkMessageProps(m, "message"), (e) => e instanceof TypeError && e.message.startsWith(`message.${name} must be`), `${name} = ${String(v)}`);
    }
  }
  const ok = new Message("x");
  Object.assign(ok, { messageExpiryInterval: 0xffffffff, payloadFormatIndicator: 1, contentType: "text/plain", responseTopic: "r", correlationData: new Uint8Array([0, 1]), userProperties: [["a", "b"], ["a", "c"]] });
  checkMessageProps(ok, "message");
  checkMessageProps(new Message("x"), "message");
});
