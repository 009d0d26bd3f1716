import assert from "node:assert/strict";
import { test } from "node:test";

import { FilterMap, filterLevels, topicMatches } from "../src/topic.js";

// [filter, topic, expected]: the examples of MQTT 5.0 §4.7 and mosquitto's
// topic-matching unit tests (test/unit/util_topic_test.c).
const vectors = [
  // §4.7.1.2 multi-level wildcard
  ["sport/tennis/player1/#", "sport/tennis/player1", true],
  ["sport/tennis/player1/#", "sport/tennis/player1/ranking", true],
  ["sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true],
  ["sport/#", "sport", true],
  ["#", "sport/tennis", true],
  // §4.7.1.3 single-level wildcard
  ["sport/tennis/+", "sport/tennis/player1", true],
  ["sport/tennis/+", "sport/tennis/player2", true],
  ["sport/tennis/+", "sport/tennis/player1/ranking", false],
  ["sport/+", "sport", false],
  ["sport/+", "sport/", true],
  ["+/+", "/finance", true],
  ["/+", "/finance", true],
  ["+", "/finance", false],
  ["+/tennis/#", "sport/tennis/player1", true],
  // §4.7.2 topics beginning with $
  ["#", "$SYS/broker/uptime", false],
  ["+/monitor/Clients", "$SYS/monitor/Clients", false],
  ["$SYS/#", "$SYS/monitor/Clients", true],
  ["$SYS/monitor/+", "$SYS/monitor/Clients", true],
  ["+", "$SYS", false],
  ["$SYS/#", "$SYS", true],
  // §4.7.3 case sensitivity, spaces, empty levels
  ["ACCOUNTS", "Accounts", false],
  ["Accounts payable", "Accounts payable", true],
  ["/", "/", true],
  ["+/+", "/", true],
  ["+", "/", false],
  ["a//b", "a//b", true],
  ["a/+/b", "a//b", true],
  ["a/+/b", "a/b", false],
  // mosquitto vectors
  ["foo/bar", "foo/bar", true],
  ["foo/+", "foo/bar", true],
  ["foo/+/baz", "foo/bar/baz", true],
  ["foo/+/#", "foo/bar/baz", true],
  ["foo/+/#", "foo/bar", true],
  ["A/B/+/#", "A/B/B/C", true],
  ["#", "foo/bar/baz", true],
  ["#", "/foo/bar", true],
  ["/#", "/foo/bar", true],
  ["+/bar/baz", "foo/bar/baz", true],
  ["foo/bar/+", "foo/bar/", true],
  ["foo/#", "foo/", true],
  ["foo/#", "foo", true],
  ["foo//bar", "foo//bar", true],
  ["foo//+", "foo//bar", true],
  ["foo/+/+/baz", "foo///baz", true],
  ["foo/bar/+", "foo/bar/", true],
  ["test/6/#", "test/3", false],
  ["foo/bar", "foo", false],
  ["foo/+", "foo/bar/baz", false],
  ["foo/+/baz", "foo/bar/bar", false],
  ["foo/+/#", "fo2/bar/baz", false],
  ["/#", "foo/bar", false],
  ["#", "$SYS/bar", false],
  ["$BOB/bar", "$SYS/bar", false],
  ["+/+", "foo", false],
  ["foo/+", "foo", false],
  ["foo/bar/#", "foo/baz", false],
  // shared subscriptions match on their filter part
  ["$share/group/sensors/+/temp", "sensors/a/temp", true],
  ["$share/group/#", "$SYS/x", false],
  ["$share/group", "group", false],
];

test("MQTT filter matching: spec examples and mosquitto vectors", () => {
  for (const [filter, topic, expected] of vectors) {
    assert.equal(topicMatches(filter, topic), expected, `${JSON.stringify(filter)} vs ${JSON.stringify(topic)}`);
  }
});

/** The filters of `map` that match `topic`, as its index finds them, sorted. */
function indexed(map, topic) {
  const found = [];
  map.forEachMatch(topic.split("/"), (e) => found.push(e.filter));
  return found.sort();
}

const entry = (filter) => ({ filter, levels: filterLevels(filter) });

// Dispatch finds a client's matching subscriptions through FilterMap's index: it must
// agree with topicMatches for every filter held at once, as they come and go.
test("FilterMap's index finds exactly the filters topicMatches matches, as filters come and go", () => {
  const filters = [...new Set(vectors.map(([f]) => f))];
  const topics = [...new Set(vectors.map(([, t]) => t))];
  const map = new FilterMap();
  const check = (what) => {
    for (const topic of topics) {
      const want = [...map.keys()].filter((f) => topicMatches(f, topic)).sort();
      assert.deepEqual(indexed(map, topic), want, `${what}: ${JSON.stringify(topic)}`);
    }
  };
  for (const f of filters) map.set(f, entry(f));
  check("all filters");
  for (const f of filters.filter((_, i) => i % 3 === 0)) assert.equal(map.delete(f), true);
  assert.equal(map.delete("never/held"), false);
  check("a third deleted");
  for (const f of filters.filter((_, i) => i % 2 === 0)) map.set(f, entry(f)); // some again, some replaced
  check("some set again");
  map.clear();
  check("cleared");
  assert.deepEqual(indexed(map, "sport/tennis"), []);
  map.set("sport/#", entry("sport/#"));
  check("after clear");
});

test("FilterMap: a filter set again is found once, with its new entry", () => {
  // A few filters are tested one by one, more through the index: both ways.
  for (const others of [0, 10]) {
    const map = new FilterMap();
    for (let i = 0; i < others; i++) map.set(`other/${i}`, entry(`other/${i}`));
    const first = entry("a/+");
    const second = entry("a/+");
    map.set("a/+", first).set("a/+", second);
    const found = [];
    map.forEachMatch(["a", "b"], (e) => found.push(e));
    assert.equal(found.length, 1, `with ${others} other filters`);
    assert.equal(found[0], second, `with ${others} other filters`);
  }
});
