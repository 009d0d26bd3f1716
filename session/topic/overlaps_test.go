package topic

import "testing"

var overlapsVectors = []struct {
	a, b string
	want bool
}{
	{"room/42/#", "room/42/msg", true},
	{"room/42/#", "room/+/msg", true},
	{"room/42/#", "#", true},
	{"room/42/#", "+/+/typing", true},
	{"room/42/#", "room/43/#", false},
	{"room/42/#", "room/42", true}, // the parent
	{"room/42/#", "room", false},
	{"room/42/#", "room/+", true}, // room/42
	{"room/42/msg", "room/42/msg", true},
	{"room/42/msg", "room/42/typing", false},
	{"a/+", "+/b", true},
	{"a/+/c", "a/b", false},
	{"#", "$SYS/#", false},
	{"+/x", "$SYS/x", false},
	{"$SYS/#", "$SYS/uptime", true},
	{"/#", "+", false},   // "/#" names have two levels or more
	{"+/#", "+", true},   // "x"
	{"/#", "/", true},    // "/"
	{"/#", "/+", true},   // "/x"
	{"//#", "+/+", true}, // "/"
	{"#", "#", true},
	{"a/#", "a/#", true},
	{"", "a", false},
	{"a/#/b", "a", false},
}

func TestOverlaps(t *testing.T) {
	for _, tt := range overlapsVectors {
		if got := Overlaps(tt.a, tt.b); got != tt.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := Overlaps(tt.b, tt.a); got != tt.want {
			t.Errorf("Overlaps(%q, %q) = %v, want %v (swapped)", tt.b, tt.a, got, tt.want)
		}
	}
}

// TestOverlapsExhaustive proves Overlaps against its definition, "some name
// both filters match", over the universe of TestContainsExhaustive (every
// filter of up to four levels over "", "a", "$a" and the wildcards, the
// names of up to five levels over "", "a", "$a" and "z"): a common name stays
// common when every level no filter names becomes "z" and when it is cut to
// one level more than the longer filter.
func TestOverlapsExhaustive(t *testing.T) {
	u := newUniverse()
	sets := u.matchSets()
	for i, a := range u.filters {
		for j, b := range u.filters {
			want := false
			for w := range sets[i] {
				if sets[i][w]&sets[j][w] != 0 {
					want = true
					break
				}
			}
			if got := Overlaps(a, b); got != want {
				t.Fatalf("Overlaps(%q, %q) = %v, but by definition %v", a, b, got, want)
			}
		}
	}
}
