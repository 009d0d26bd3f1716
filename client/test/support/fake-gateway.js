// An in-memory peer that speaks the protocol's frames, to test the session logic
// (counting, dispatch, recovery) deterministically, frame by frame. The same logic
// is tested against the real gateway in integration.test.js; this one reaches the
// corner cases a real server cannot be made to produce on demand.

import { decodeUnit, encodeFrame, encodeUnit } from "../../src/codec.js";
import { waitFor } from "./wait.js";

export class FakeConnection {
  constructor(gateway) {
    this.gateway = gateway;
    /** @type {object[][]} units received from the client, decoded */
    this.units = [];
    /** @type {object[]} every frame received from the client, in order */
    this.frames = [];
    this.cursor = 0;
    this.closed = null;
    const conn = this;
    this.transport = {
      name: "fake",
      onunit: null,
      onclose: null,
      send(unit) {
        if (conn.closed) return;
        const frames = [...decodeUnit(unit)];
        conn.units.push(frames);
        conn.frames.push(...frames);
      },
      close(code = 1000, reason = "") {
        conn.end({ code, reason });
      },
    };
  }

  /** Ends the connection; the client hears of it asynchronously, as with a socket. */
  end(ev) {
    if (this.closed) return;
    this.closed = ev;
    const cb = this.transport.onclose;
    this.transport.onclose = null;
    setTimeout(() => cb?.(ev), 0);
  }

  /** An abrupt drop (no CLOSE frame). */
  drop(code = 1006) {
    this.end({ code, reason: "" });
  }

  /** Sends frame objects to the client as one unit. */
  send(...frames) {
    this.transport.onunit?.(encodeUnit(frames.map(encodeFrame)));
  }

  /** The next frame of `type` from the client after the previous take(). */
  async take(type, what = `frame 0x${type.toString(16)}`) {
    return waitFor(
      () => {
        for (let i = this.cursor; i < this.frames.length; i++) {
          if (this.frames[i].type === type) {
            this.cursor = i + 1;
            return this.frames[i];
          }
        }
        return null;
      },
      { what, timeout: 3000 },
    );
  }

  /** Frames of `type` received so far. */
  all(type) {
    return this.frames.filter((f) => f.type === type);
  }
}

export class FakeGateway {
  /** @param {string} [name] the transport name the session reports */
  constructor(name = "fake") {
    /** @type {FakeConnection[]} */
    this.connections = [];
    this.refuse = false;
    this.factory = async () => {
      if (this.refuse) throw new Error("connection refused");
      const c = new FakeConnection(this);
      c.transport.name = name;
      this.connections.push(c);
      return c.transport;
    };
    this.factory.transportName = name;
  }

  /** The n-th connection (0-based), once the client has opened it. */
  connection(n) {
    return waitFor(() => this.connections[n], { what: `connection #${n}`, timeout: 5000 });
  }
}
