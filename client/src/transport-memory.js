// Which transport last worked for a gateway, so the next session starts there instead
// of waiting out the deadlines of transports that a network blocks (a buffering proxy
// costs two deadlines before long polling is tried).
//
// Browsers keep it in localStorage, so a reload or a new tab benefits too; entries
// expire after a day, since the network a laptop is on changes. Where storage is
// missing or refused (Node.js, sandboxed frames, some private modes) an in-memory map
// does for the life of the process.

const PREFIX = "mqttgw.transport:";
const TTL = 24 * 3600 * 1000;

/** @type {Map<string, {name: string, at: number}>} */
const memory = new Map();

function storage() {
  try {
    // Reading the property itself throws where storage is blocked.
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}

const keyOf = (base) => {
  try {
    return new URL(base, globalThis.location?.href).href;
  } catch {
    return String(base);
  }
};

/**
 * The transport that last worked for this gateway base URL, if recent.
 * @param {string} base
 * @param {() => number} [now]
 * @returns {string | null}
 */
export function recallTransport(base, now = Date.now) {
  const key = keyOf(base);
  let entry = memory.get(key) ?? null;
  const s = storage();
  if (s) {
    try {
      const raw = s.getItem(PREFIX + key);
      if (raw) entry = JSON.parse(raw);
    } catch {
      // unreadable or refused: the in-memory entry (if any) will do
    }
  }
  if (!entry || typeof entry.name !== "string" || !(now() - entry.at < TTL)) return null;
  return entry.name;
}

/**
 * Records the transport that worked for this gateway base URL.
 * @param {string} base
 * @param {string} name
 * @param {() => number} [now]
 */
export function rememberTransport(base, name, now = Date.now) {
  const key = keyOf(base);
  // The same transport again keeps the day the probe found it: a page opened every
  // day would otherwise keep a fallback (long polling behind a proxy since fixed) for
  // ever, since a session that starts from the memory never probes above it.
  const kept = recallTransport(base, now) === name ? recalledAt(key) : undefined;
  const entry = { name, at: kept ?? now() };
  memory.set(key, entry);
  try {
    storage()?.setItem(PREFIX + key, JSON.stringify(entry));
  } catch {
    // quota or policy: the in-memory entry stands
  }
}

/** When the entry for key was made, if there is one. */
function recalledAt(key) {
  let entry = memory.get(key);
  try {
    const raw = storage()?.getItem(PREFIX + key);
    if (raw) entry = JSON.parse(raw);
  } catch {
    // the in-memory entry will do
  }
  return typeof entry?.at === "number" ? entry.at : undefined;
}

/**
 * Forgets what was recorded for a base URL (all of them without one).
 * @param {string} [base]
 */
export function forgetTransport(base) {
  const keys = base === undefined ? [...memory.keys()] : [keyOf(base)];
  for (const key of keys) {
    memory.delete(key);
    try {
      storage()?.removeItem(PREFIX + key);
    } catch {
      // nothing to do
    }
  }
}
