// A transport factory wrapping the real WebSocket transport that records every frame
// both ways, so integration tests can check what went over the wire.

import { decodeUnit } from "../../src/codec.js";
import { connectWebSocket } from "../../src/transport-websocket.js";

/**
 * @returns {{factory: Function, sent: object[], received: object[], units: {sent: number, received: number}}}
 */
export function tappedWebSocket() {
  const tap = { sent: [], received: [], units: { sent: 0, received: 0 } };
  tap.factory = async (base, options) => {
    const inner = await connectWebSocket(base, options);
    const outer = {
      name: inner.name,
      onunit: null,
      onclose: null,
      send(unit) {
        tap.units.sent++;
        tap.sent.push(...decodeUnit(unit));
        inner.send(unit);
      },
      close(code, reason) {
        inner.close(code, reason);
      },
    };
    inner.onunit = (unit) => {
      tap.units.received++;
      tap.received.push(...decodeUnit(unit));
      outer.onunit?.(unit);
    };
    inner.onclose = (ev) => outer.onclose?.(ev);
    return outer;
  };
  tap.factory.transportName = "websocket";
  return tap;
}
