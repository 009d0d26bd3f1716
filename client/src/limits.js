import { describeValue } from "./errors.js";

/**
 * The rate limits an application asks for, checked and turned into what the wire
 * carries. Each must be a number: a string ("2") is a mistake the caller should hear
 * of, as for `qos`. A positive value never becomes 0, which means no limit.
 */

/** Messages per second as the wire counts them: per 1000 s, so that one per minute stays an integer. */
export function frequencyOnWire(value) {
  if (typeof value !== "number" || !(value >= 0) || !Number.isFinite(value)) {
    throw new TypeError(`maxFrequency must be a non-negative number (messages per second), not ${describeValue(value)}`);
  }
  if (value === 0) return 0;
  const wire = Math.max(1, Math.round(value * 1000));
  if (!Number.isSafeInteger(wire)) throw new TypeError(`maxFrequency ${value} is too large (messages per second)`);
  return wire;
}

/** Bytes per second, whole (rounded down), but never 0 for a positive value: 0.5 is 1. */
export function bandwidthOnWire(value, name = "maxBandwidth") {
  if (typeof value !== "number" || !(value >= 0) || !Number.isFinite(value)) {
    throw new TypeError(`${name} must be a non-negative number (bytes per second), not ${describeValue(value)}`);
  }
  if (value === 0) return 0;
  const wire = Math.max(1, Math.floor(value));
  if (!Number.isSafeInteger(wire)) throw new TypeError(`${name} ${value} is too large (bytes per second)`);
  return wire;
}
