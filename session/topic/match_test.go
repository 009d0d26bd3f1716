package topic

import (
	"strings"
	"testing"
)

// matchVectors come from the MQTT 5.0 specification's non-normative comments
// (sections 4.7.1.2, 4.7.1.3, 4.7.2 and 4.7.3) and from Mosquitto's unit tests
// of mosquitto_topic_matches_sub (eclipse-mosquitto/mosquitto,
// test/unit/libcommon/topic_test.c: TEST_valid_matching,
// TEST_valid_no_matching, TEST_invalid_but_matching, TEST_invalid and
// TEST_empty_input), where an invalid argument means "no match".
var matchVectors = []struct {
	filter, name string
	want         bool
}{
	// Spec 4.7.1.2.
	{"sport/tennis/player1/#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"sport/#", "sport", true},
	{"#", "sport/tennis/player1", true},
	{"sport/tennis#", "sport/tennis", false},
	{"sport/tennis/#/ranking", "sport/tennis/player1/ranking", false},
	// Spec 4.7.1.3.
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player2", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	{"sport+", "sport+", false},
	{"sport/+/player1", "sport/tennis/player1", true},
	{"+/tennis/#", "sport/tennis", true},
	{"+/+", "/finance", true},
	{"/+", "/finance", true},
	{"+", "/finance", false},
	// Spec 4.7.2.
	{"#", "$SYS/monitor/Clients", false},
	{"#", "$SYS", false},
	{"#", "$", false},
	{"+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"$SYS/#", "$SYS/monitor/Clients", true},
	{"$SYS/#", "$SYS", true},
	{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"+/#", "$SYS/x", false},
	{"a/#", "a/$SYS", true}, // the rule is about the first level only
	{"a/+", "a/$SYS", true},
	// Spec 4.7.3.
	{"ACCOUNTS", "Accounts", false},
	{"Accounts payable", "Accounts payable", true},
	{"/finance", "finance", false},
	{"finance", "/finance", false},
	{"/", "/", true},
	{"+/+", "/", true},
	{"#", "/", true},
	{"+", "/", false},
	// Mosquitto TEST_valid_matching.
	{"foo/#", "foo/", true},
	{"foo/#", "foo", true},
	{"foo//bar", "foo//bar", true},
	{"foo//+", "foo//bar", true},
	{"foo/+/+/baz", "foo///baz", true},
	{"foo/bar/+", "foo/bar/", true},
	{"foo/bar", "foo/bar", true},
	{"foo/+", "foo/bar", true},
	{"foo/+/baz", "foo/bar/baz", true},
	{"A/B/+/#", "A/B/B/C", true},
	{"foo/+/#", "foo/bar/baz", true},
	{"foo/+/#", "foo/bar", true},
	{"#", "foo/bar/baz", true},
	{"#", "/foo/bar", true},
	{"/#", "/foo/bar", true},
	// Mosquitto TEST_valid_no_matching.
	{"test/6/#", "test/3", false},
	{"foo/bar", "foo", false},
	{"foo/+", "foo/bar/baz", false},
	{"foo/+/baz", "foo/bar/bar", false},
	{"foo/+/#", "fo2/bar/baz", false},
	{"/#", "foo/bar", false},
	{"#", "$SYS/bar", false},
	{"$BOB/bar", "$SYS/bar", false},
	// Mosquitto TEST_invalid_but_matching: a naive matcher would say yes.
	{"+foo", "+foo", false},
	{"fo+o", "fo+o", false},
	{"foo+", "foo+", false},
	{"+foo/bar", "+foo/bar", false},
	{"foo+/bar", "foo+/bar", false},
	{"foo/+bar", "foo/+bar", false},
	{"foo/bar+", "foo/bar+", false},
	{"+foo", "afoo", false},
	{"fo+o", "foao", false},
	{"foo+", "fooa", false},
	{"+foo/bar", "afoo/bar", false},
	{"foo+/bar", "fooa/bar", false},
	{"foo/+bar", "foo/abar", false},
	{"foo/bar+", "foo/bara", false},
	{"#foo", "#foo", false},
	{"fo#o", "fo#o", false},
	{"foo#", "foo#", false},
	{"#foo/bar", "#foo/bar", false},
	{"foo#/bar", "foo#/bar", false},
	{"foo/#bar", "foo/#bar", false},
	{"foo/bar#", "foo/bar#", false},
	{"foo/+", "foo/+", false},
	{"foo/#", "foo/+", false},
	{"foo/+", "foo/bar/+", false},
	{"foo/#", "foo/bar/+", false},
	{"foo/+", "foo/#", false},
	{"foo/#", "foo/#", false},
	{"foo/+", "foo/bar/#", false},
	{"foo/#", "foo/bar/#", false},
	// Mosquitto TEST_invalid.
	{"foo#", "foo", false},
	{"fo#o/", "foo", false},
	{"foo#", "fooa", false},
	{"foo+", "foo", false},
	{"foo/#a", "foo", false},
	{"#a", "foo", false},
	{"foo/#abc", "foo", false},
	{"#abc", "foo", false},
	{"/#a", "foo/bar", false},
	// Mosquitto TEST_empty_input.
	{"sub", "", false},
	{"", "topic", false},
	{"", "", false},
	// '#' not last, '+' at the end, and other edges.
	{"#/a", "x/a", false},
	{"a/#/#", "a/b/c", false},
	{"+", "a", true},
	{"+", "", false},
	{"a/+", "a", false},
	{"a/+/#", "a", false},
	{"a/+/#", "a/", true},
	{"+/+/+", "a//", true},
	{"a/b", "a/b/", false},
	{"a/b/", "a/b", false},
	{"a", "a/", false},
	{"\u00e9", "e\u0301", false}, // no Unicode normalisation
}

func TestMatch(t *testing.T) {
	for _, tt := range matchVectors {
		if got := Match(tt.filter, tt.name); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
		if got := refMatch(tt.filter, tt.name); got != tt.want {
			t.Errorf("refMatch(%q, %q) = %v, want %v", tt.filter, tt.name, got, tt.want)
		}
	}
}

// TestMatchExhaustive compares Match with refMatch on every filter of up to
// four levels and every name of up to five levels over a small alphabet that
// has the interesting cases: an empty level, a '$' level, a plain one.
func TestMatchExhaustive(t *testing.T) {
	u := newUniverse()
	for _, f := range u.filters {
		for _, n := range u.names {
			if got, want := Match(f, n), refMatch(f, n); got != want {
				t.Fatalf("Match(%q, %q) = %v, refMatch says %v", f, n, got, want)
			}
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() {
		for _, tt := range matchVectors {
			Match(tt.filter, tt.name)
		}
	}); n != 0 {
		t.Errorf("Match allocates %v times per run", n)
	}
}

// universe is every filter and name built from a few levels, for tests that
// need to reason over "all" names.
type universe struct {
	filters []string // valid filters of 1..4 levels
	names   []string // valid names of 1..5 levels
}

// Filter literals, and name levels: the literals plus "z", which no filter
// mentions and so stands for every level a filter does not name.
var (
	filterLits = []string{"", "a", "$a"}
	nameLevels = []string{"", "a", "$a", "z"}
)

func newUniverse() *universe {
	u := &universe{}
	var gen func(prefix []string, max int, alphabet []string, wild bool, out *[]string)
	gen = func(prefix []string, max int, alphabet []string, wild bool, out *[]string) {
		if s := strings.Join(prefix, "/"); s != "" { // a lone empty level is the empty string, invalid
			*out = append(*out, s)
			if prefix[len(prefix)-1] == "#" {
				return
			}
		}
		if len(prefix) == max {
			return
		}
		levels := alphabet
		if wild {
			levels = append(append([]string(nil), alphabet...), "+", "#")
		}
		for _, l := range levels {
			gen(append(prefix, l), max, alphabet, wild, out)
		}
	}
	gen(nil, 4, filterLits, true, &u.filters)
	gen(nil, 5, nameLevels, false, &u.names)
	return u
}
