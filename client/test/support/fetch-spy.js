// Watches (and can interfere with) the HTTP transports' requests by wrapping the
// global fetch, which they call at request time.

import { decodeUnit } from "../../src/codec.js";

/**
 * Wraps globalThis.fetch until restore(). Every call is recorded as {endpoint, frames}
 * (endpoint: the last path segment, frames: the decoded request body). `intercept`, when
 * set, is asked first for each call and may return a Promise to answer it instead; it
 * gets the call, `go` (the real fetch) and `sent` (the real fetch, immune to the
 * caller's abort signal, as a request already on the wire is).
 * @returns {{calls: {endpoint: string, frames: object[]}[], intercept: ((call: object, go: () => Promise<Response>, sent: () => Promise<Response>) => Promise<Response> | null) | null, count: (endpoint: string) => number, restore: () => void}}
 */
export function spyFetch() {
  const original = globalThis.fetch;
  const spy = {
    calls: [],
    intercept: null,
    count: (endpoint) => spy.calls.filter((c) => c.endpoint === endpoint).length,
    restore: () => {
      globalThis.fetch = original;
    },
  };
  globalThis.fetch = (url, init = {}) => {
    const endpoint = new URL(String(url)).pathname.split("/").pop();
    let frames = [];
    try {
      if (init.body instanceof Uint8Array) frames = [...decodeUnit(init.body)];
    } catch {
      // not a unit
    }
    const call = { endpoint, frames };
    spy.calls.push(call);
    const go = () => original(url, init);
    // A request that has left cannot be recalled: aborting the fetch only stops the
    // client from waiting for it. `sent` sends it so, without the caller's signal.
    const sent = () => original(url, { ...init, signal: undefined });
    return spy.intercept?.(call, go, sent) ?? go();
  };
  return spy;
}
