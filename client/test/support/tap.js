// Transport factories wrapping the real ones that record every frame both ways, so
// integration tests can check what went over the wire.

import { decodeUnit } from "../../src/codec.js";
import { connectPolling } from "../../src/transport-polling.js";
import { connectStreaming } from "../../src/transport-streaming.js";
import { connectWebSocket } from "../../src/transport-websocket.js";

const CONNECT = { websocket: connectWebSocket, streaming: connectStreaming, polling: connectPolling };

/**
 * @param {"websocket" | "streaming" | "polling"} name
 * @returns {{factory: Function, sent: object[], received: object[], units: {sent: number, received: number}}}
 */
export function tapped(name) {
  const connect = CONNECT[name];
  const tap = { sent: [], received: [], units: { sent: 0, received: 0 } };
  tap.factory = async (base, options) => {
    const inner = await connect(base, options);
    const outer = {
      name: inner.name,
      onunit: null,
      onclose: null,
      send(unit) {
        tap.units.sent++;
        tap.sent.push(...decodeUnit(unit));
        inner.send(unit);
      },
      close(code, reason, o) {
        return inner.close(code, reason, o);
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
  tap.factory.transportName = name;
  return tap;
}

/** The WebSocket transport, tapped. */
export function tappedWebSocket() {
  return tapped("websocket");
}
