// Polling with a deadline: tests wait for conditions, never for fixed times.

/**
 * Resolves with the first truthy value of `probe()`, polled every `interval` ms;
 * rejects after `timeout` ms with `what` in the message.
 * @template T
 * @param {() => T | Promise<T>} probe
 * @param {{timeout?: number, interval?: number, what?: string}} [o]
 * @returns {Promise<T>}
 */
export async function waitFor(probe, { timeout = 5000, interval = 5, what = "condition" } = {}) {
  const deadline = Date.now() + timeout;
  for (;;) {
    const v = await probe();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}
