// Calling into application code: its mistakes must not corrupt the client's state.

/**
 * Calls an application callback. An exception it throws must not break frame
 * processing half-way through a unit, so it is reported like any uncaught error of the
 * application: with reportError() where it exists (browsers: console and
 * window.onerror), else rethrown from a microtask (Node.js: 'uncaughtException').
 * @param {unknown} fn
 * @param {unknown} thisArg
 * @param {...unknown} args
 */
export function safeCall(fn, thisArg, ...args) {
  if (typeof fn !== "function") return;
  try {
    fn.apply(thisArg, args);
  } catch (err) {
    reportUncaught(err);
  }
}

function reportUncaught(err) {
  if (typeof globalThis.reportError === "function") {
    globalThis.reportError(err);
    return;
  }
  queueMicrotask(() => {
    throw err;
  });
}

/**
 * An operation with both a Promise and Paho-style callbacks (`onSuccess`, `onFailure`,
 * `invocationContext`). When the failure reaches an onFailure callback, the Promise is
 * marked handled: callback-style code that ignores the returned Promise must not crash
 * Node.js with an unhandled rejection for an error it did handle.
 * @param {{onSuccess?: Function, onFailure?: Function, invocationContext?: unknown}} o
 */
export function operation(o = {}) {
  let resolve, reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return {
    promise,
    /** @param {unknown} value what the Promise resolves to @param {object} [info] extra onSuccess fields */
    ok(value, info = {}) {
      safeCall(o.onSuccess, null, { ...info, invocationContext: o.invocationContext });
      resolve(value);
    },
    /**
     * @param {Error & {invocationContext?: unknown}} err
     * @param {boolean} [quiet] the application caused this failure itself (it closed
     *   the session): an un-awaited Promise must not crash it with an unhandled rejection
     */
    fail(err, quiet = false) {
      if (o.invocationContext !== undefined) err.invocationContext = o.invocationContext;
      if (quiet) promise.catch(() => {});
      if (typeof o.onFailure === "function") {
        promise.catch(() => {});
        safeCall(o.onFailure, null, err);
      }
      reject(err);
    },
  };
}

const CALLBACK_OPTIONS = ["onSuccess", "onFailure", "invocationContext"];

/** Options of Paho's that have no equivalent here, with what to do instead. */
const PAHO_ONLY = {
  timeout: "requests wait for the gateway's answer (its connect_timeout, hook_timeout)",
  useSSL: "the session's URL says TLS (https:// or wss://)",
  hosts: "one gateway URL per session; put a load balancer in front",
  ports: "one gateway URL per session; put a load balancer in front",
  uris: "one gateway URL per session; put a load balancer in front",
  mqttVersion: "the gateway speaks MQTT 5 to the broker",
  mqttVersionExplicit: "the gateway speaks MQTT 5 to the broker",
};

/**
 * Throws a TypeError for an option `what` does not know: a misspelt one (`qso`) would
 * otherwise be ignored without a word, as Paho refuses unknown properties.
 * @param {string} what
 * @param {object} o
 * @param {string[]} known besides onSuccess, onFailure and invocationContext (an
 *   operation's), unless `callbacks` is false (openSession, which returns a Promise only)
 * @param {{callbacks?: boolean}} [options]
 */
export function checkOptions(what, o, known, { callbacks = true } = {}) {
  if (o === null || typeof o !== "object") throw new TypeError(`${what} options must be an object, got ${o === null ? "null" : typeof o}`);
  const all = callbacks ? [...known, ...CALLBACK_OPTIONS] : known;
  for (const key of Object.keys(o)) {
    if (all.includes(key)) continue;
    const instead = Object.hasOwn(PAHO_ONLY, key) ? `: Paho's ${key} has no equivalent here (${PAHO_ONLY[key]})` : "";
    throw new TypeError(`unknown ${what} option ${JSON.stringify(key)}${instead}; known: ${all.join(", ")}`);
  }
}
