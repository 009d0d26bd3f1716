// MQTT 5 topic filter matching (MQTT 5.0 §4.7), used to dispatch a MESSAGE frame of a
// shared stream to the clients of this session whose subscriptions match it. The
// gateway validates filters and topics; this module only matches.

const SHARE_PREFIX = "$share/";

/**
 * Whether `topic` (a topic name) matches `filter` (a topic filter).
 *
 * - `+` matches exactly one level (possibly empty), `#` the parent level and any
 *   number of levels below it;
 * - a filter starting with a wildcard does not match a topic starting with `$`
 *   (§4.7.2), so `#` never delivers `$SYS/...`;
 * - `$share/<group>/<filter>` matches as `<filter>` does: the broker delivers a shared
 *   subscription's messages with their real topic names.
 *
 * @param {string} filter
 * @param {string} topic
 * @returns {boolean}
 */
export function topicMatches(filter, topic) {
  const f = filterLevels(filter);
  return f !== null && levelsMatch(f, topic.split("/"));
}

/**
 * The levels of `filter` as levelsMatch() takes them, without a `$share/<group>/`
 * prefix; null for a `$share/<group>` without a filter, which matches nothing.
 * Dispatch splits each filter once, when subscribing, rather than per message.
 * @internal
 * @param {string} filter
 * @returns {string[] | null}
 */
export function filterLevels(filter) {
  if (filter.startsWith(SHARE_PREFIX)) {
    const groupEnd = filter.indexOf("/", SHARE_PREFIX.length);
    if (groupEnd < 0) return null;
    filter = filter.slice(groupEnd + 1);
  }
  return filter.split("/");
}

/**
 * Whether a topic split into levels (`topic.split("/")`) matches filter levels from
 * filterLevels().
 * @internal
 * @param {string[]} f
 * @param {string[]} t
 * @returns {boolean}
 */
export function levelsMatch(f, t) {
  // §4.7.2. Only a first level of exactly "+" or "#" can match a "$" level: any other
  // first level is compared literally below and differs from it.
  if (t[0].startsWith("$") && (f[0] === "+" || f[0] === "#")) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}
