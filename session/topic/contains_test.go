package topic

import "testing"

// containsVectors are the cases from the design brief and from Mosquitto's
// unit tests of mosquitto_sub_matches_acl (eclipse-mosquitto/mosquitto,
// test/unit/libcommon/topic_test.c: TEST_sub_match_acl and
// TEST_acl_pattern_wildcard_wildcard), the latter as (acl, sub) pairs.
var containsVectors = []struct {
	pattern, filter string
	want            bool
}{
	// The brief.
	{"a/+", "a/b", true},
	{"a/+", "a/#", false},
	{"foo/+/bar", "foo/#", false},
	{"#", "$SYS/uptime", false},
	{"#", "$SYS/#", false},
	{"#", "$SYS", false},
	{"$SYS/#", "$SYS", true},
	{"$SYS/#", "$SYS/uptime", true},
	{"+", "#", false},
	{"+", "+", true},
	{"a/b/c/d/+", "a/b/c/d/", true},
	{"a/#", "a", true},
	{"a/#", "a/#", true},
	{"a/#", "a/+/c", true},
	{"+/+", "+/#", false},
	{"#", "+/a", true},
	{"#", "#", true},
	{"#", "+/#", true},
	{"+/#", "#", true}, // both match every name not beginning with '$'
	{"+/#", "+", true},
	{"+/#", "a", true},
	{"+/#", "$SYS/#", false},
	{"+/+/#", "#", false}, // "+/+/#" does not match "a"
	{"+/+/#", "+/+", true},
	{"/+/#", "/#", true},    // "/#" cannot match "", its parent: names are never empty
	{"+/+/#", "/#", true},   // so all its names have two levels or more
	{"/+/+/#", "/#", false}, // "/" has only two
	{"+/+/#", "+/#", false}, // "a" has only one
	{"a/+/#", "a/#", false}, // "a" has only one
	{"$SYS/#", "$SYS/+/x", true},
	{"$SYS/#", "#", false},
	{"$SYS/+", "$SYS/uptime", true},
	{"$SYS/+", "$OTHER/uptime", false},
	{"+/uptime", "$SYS/uptime", false},
	{"$SYS", "$SYS", true},
	{"a/$SYS", "a/$SYS", true},
	{"a/+", "a/$SYS", true}, // '$' matters at the first level only
	{"#", "a/$SYS/#", true},
	{"users/alice/#", "users/alice", true},
	{"users/alice/#", "users/alice/+/x", true},
	{"users/alice/#", "users/+/#", false},
	{"users/alice/#", "users/#", false},
	{"users/+/inbox", "users/alice/inbox", true},
	{"users/+/inbox", "users/alice/inbox/x", false},
	// Mosquitto TEST_sub_match_acl.
	{"foo/+/bar", "foo/#", false},
	{"foo/+/ba\u211e/#", "foo/baz/ba\u211e", true},
	{"foo/+/ba\u211e/#", "foo/baz/ba\u211e/+", true},
	{"foo/+/ba\u211e/#", "foo/baz/ba\u211e/#", true},
	{"foo/+/ba\u211e/#", "foo/baz/+/#", false},
	{"/+//#", "/foo///#", true},
	{"#", "$SYS/uptime", false},
	{"$SYS/#", "$SYS/uptime", true},
	{"$SYS/+/#", "$SYS/uptime", true},
	{"$SYS/+/#", "$SYS/broker/uptime", true},
	{"#", "#", true},
	{"#", "+", true},
	{"/#", "+", false},
	{"/#", "/+", true},
	{"/+", "#", false},
	{"/+", "+", false},
	{"+/+", "topic/topic", true},
	{"+/+", "topic/topic/", false},
	{"+", "#", false},
	{"+", "+", true},
	{"a/b/c/d/e", "a/b/c/d/e", true},
	{"a/b/ /d/e", "a/b/c/d/e", false},
	{"a/b/c/d/e", "a/b/c/d/+", false},
	{"a/b/c/d/+", "a/b/c/d/e", true},
	{"a/b/c/d/", "a/b/c/d/+", false},
	{"a/b/c/d/+", "a/b/c/d/", true},
	// Mosquitto TEST_acl_pattern_wildcard_wildcard.
	{"$SYS/#", "$SYS/broker/#", true},
	{"$SYS/#", "$SYS/+/#", true},
	{"$SYS/#", "$SYS", true},
	{"$SYS/+", "$SYS/#", false},
	{"$SYS/+/a", "$SYS/a/+", false},
	{"$SYS/+", "$SYS/+/a", false},
	{"$SYS/broker/uptime", "$SYS/broker/#", false},
	{"#", "$SYS/broker/#", false},
	// Mosquitto TEST_sub_match_empty_input, and other invalid arguments:
	// an ACL must fail closed.
	{"sub", "", false},
	{"", "topic", false},
	{"", "", false},
	{"#", "a/#/b", false},
	{"#", "a+", false},
	{"a+", "a+", false},
	{"#", "a\x00", false},
	{"#", "\xff", false},
	// Shared subscriptions are compared literally: only a "$share" pattern
	// admits them.
	{"#", "$share/g/a", false},
	{"a/#", "$share/g/a", false},
	{"$share/#", "$share/g/a", true},
}

func TestContains(t *testing.T) {
	for _, tt := range containsVectors {
		if got := Contains(tt.pattern, tt.filter); got != tt.want {
			t.Errorf("Contains(%q, %q) = %v, want %v", tt.pattern, tt.filter, got, tt.want)
		}
		// Show why: a refuting name for every "no" between valid filters
		// (this also tests the fuzz target's witness search).
		if !tt.want && checkFilter(tt.pattern) == nil && checkFilter(tt.filter) == nil {
			if w, found, _ := findWitness(tt.pattern, tt.filter, 100000); !found {
				t.Errorf("no name refutes Contains(%q, %q)", tt.pattern, tt.filter)
			} else if !Match(tt.filter, w) || Match(tt.pattern, w) {
				t.Errorf("witness %q does not refute Contains(%q, %q)", w, tt.pattern, tt.filter)
			}
		}
	}
}

// TestContainsExhaustive proves Contains against its definition, "every name
// that filter matches, pattern matches", over every pair of filters of up to
// four levels built from the literals "", "a", "$a" and the wildcards. The
// names of up to five levels over "", "a", "$a" and "z" suffice to decide
// containment for these filters: a name that refutes it stays a refutation
// when every level that no filter names is replaced with "z" (the filters
// only compare levels for equality with their literals, and a first level
// beginning with '$' is matched by no wildcard and by no literal but itself),
// and when it is cut to one level more than the longer filter (past that,
// only a final '#' in each filter is still at work).
func TestContainsExhaustive(t *testing.T) {
	u := newUniverse()
	sets := u.matchSets()
	for i, f := range u.filters {
		if isEmpty(sets[i]) {
			t.Fatalf("filter %q matches no name of the universe", f)
		}
	}
	checked := 0
	for i, p := range u.filters {
		for j, f := range u.filters {
			want := subset(sets[j], sets[i])
			if got := Contains(p, f); got != want {
				t.Fatalf("Contains(%q, %q) = %v, but by definition %v", p, f, got, want)
			}
			checked++
		}
		// A name is a filter: Contains must agree with Match on it.
		for _, n := range u.names {
			if got, want := Contains(p, n), Match(p, n); got != want {
				t.Fatalf("Contains(%q, %q) = %v, but Match says %v", p, n, got, want)
			}
		}
	}
	t.Logf("checked %d filter pairs over %d names", checked, len(u.names))
}

// matchSets returns, for each filter of u, the set of u's names it
// matches, as a bit set.
func (u *universe) matchSets() [][]uint64 {
	words := (len(u.names) + 63) / 64
	sets := make([][]uint64, len(u.filters))
	for i, f := range u.filters {
		sets[i] = make([]uint64, words)
		for j, n := range u.names {
			if Match(f, n) {
				sets[i][j/64] |= 1 << (j % 64)
			}
		}
	}
	return sets
}

func subset(a, b []uint64) bool {
	for i := range a {
		if a[i]&^b[i] != 0 {
			return false
		}
	}
	return true
}

func isEmpty(s []uint64) bool {
	for _, w := range s {
		if w != 0 {
			return false
		}
	}
	return true
}
