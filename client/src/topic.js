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

const FEW_FILTERS = 4;

/**
 * The subscriptions of a client, filter → entry, as a Map, with the entries indexed by
 * their levels (`entry.levels`, from filterLevels(); null matches nothing) in a tree
 * of topic levels: finding the filters that match a topic costs about the topic's
 * levels, not the number of filters, so a page with 1,000 subscriptions on a shared
 * stream does not test each of them against every message (that took 8 µs of CPU a
 * message in Node.js, 8 times the rest of receiving it). Every change goes through set(),
 * delete() or clear(), which keep the index in step; emptied branches are pruned, so
 * the index does not grow with filters that come and go.
 * @internal
 * @template {{levels: string[] | null}} E
 * @extends {Map<string, E>}
 */
export class FilterMap extends Map {
  #root = new FilterNode();

  set(filter, entry) {
    const old = super.get(filter);
    if (old !== undefined) this.#unindex(old);
    super.set(filter, entry);
    if (entry.levels !== null) this.#index(entry);
    return this;
  }

  delete(filter) {
    const old = super.get(filter);
    if (old === undefined) return false;
    this.#unindex(old);
    return super.delete(filter);
  }

  clear() {
    this.#root = new FilterNode();
    super.clear();
  }

  /**
   * Calls `visit` with each entry whose filter matches the topic, with the rules of
   * levelsMatch(): `#` matches the parent level and any below, `+` one level, and a
   * topic starting with `$` matches no filter starting with a wildcard.
   * @param {string[]} topic the topic's levels (`topic.split("/")`)
   * @param {(entry: E) => void} visit
   */
  forEachMatch(topic, visit) {
    if (this.size <= FEW_FILTERS) {
      // Testing a few filters directly is as quick as walking the index.
      for (const e of this.values()) if (e.levels !== null && levelsMatch(e.levels, topic)) visit(e);
      return;
    }
    const root = this.#root;
    if (topic[0].startsWith("$")) {
      const child = root.children?.get(topic[0]);
      if (child !== undefined) child.collect(topic, 1, visit);
    } else {
      root.collect(topic, 0, visit);
    }
  }

  #index(entry) {
    let node = this.#root;
    for (const level of entry.levels) {
      if (level === "#") {
        (node.hash ??= []).push(entry);
        return;
      }
      node = node.child(level, true);
    }
    (node.here ??= []).push(entry);
  }

  #unindex(entry) {
    if (entry.levels === null) return;
    const path = [this.#root];
    let list = null;
    for (const level of entry.levels) {
      const node = path[path.length - 1];
      if (level === "#") {
        list = node.hash;
        break;
      }
      const next = node.child(level, false);
      if (next === undefined) return; // not indexed (cannot happen: set() indexed it)
      path.push(next);
    }
    list ??= path[path.length - 1].here;
    const at = list?.indexOf(entry) ?? -1;
    if (at >= 0) list.splice(at, 1);
    // Prune the branch up to the first node still in use.
    for (let i = path.length - 1; i > 0 && path[i].empty; i--) path[i - 1].drop(entry.levels[i - 1]);
  }
}

/**
 * A level of FilterMap's index. Its lists are made when first needed: most nodes of
 * a large index hold one child or one entry.
 */
class FilterNode {
  constructor() {
    /** @type {Map<string, FilterNode> | null} literal levels */
    this.children = null;
    /** @type {FilterNode | null} the level "+" */
    this.plus = null;
    /** @type {object[] | null} entries whose filter ends with "#" here */
    this.hash = null;
    /** @type {object[] | null} entries whose filter ends here */
    this.here = null;
  }

  get empty() {
    return !this.children?.size && this.plus === null && !this.hash?.length && !this.here?.length;
  }

  /** The child for `level` ("+" included); created when `create`. */
  child(level, create) {
    if (level === "+") {
      if (create) this.plus ??= new FilterNode();
      return this.plus ?? undefined;
    }
    let node = this.children?.get(level);
    if (node === undefined && create) {
      node = new FilterNode();
      (this.children ??= new Map()).set(level, node);
    }
    return node;
  }

  drop(level) {
    if (level === "+") this.plus = null;
    else this.children?.delete(level);
  }

  /** Visits the entries matching topic levels from `i` on, this node having matched those before. */
  collect(topic, i, visit) {
    if (this.hash !== null) for (let k = 0; k < this.hash.length; k++) visit(this.hash[k]);
    if (i === topic.length) {
      if (this.here !== null) for (let k = 0; k < this.here.length; k++) visit(this.here[k]);
      return;
    }
    const child = this.children?.get(topic[i]);
    if (child !== undefined) child.collect(topic, i + 1, visit);
    if (this.plus !== null) this.plus.collect(topic, i + 1, visit);
  }
}
