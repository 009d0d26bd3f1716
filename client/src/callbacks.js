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
