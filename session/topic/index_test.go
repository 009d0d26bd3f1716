package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// pair is one (filter, value) that Index.Match reported.
type pair struct {
	filter string
	v      int
}

func collect(x *Index[int], name string) []pair {
	var got []pair
	x.Match(name, func(filter string, v int) { got = append(got, pair{filter, v}) })
	slices.SortFunc(got, comparePairs)
	return got
}

func comparePairs(a, b pair) int {
	if c := strings.Compare(a.filter, b.filter); c != 0 {
		return c
	}
	return a.v - b.v
}

// brute is what Index.Match must report: every stored pair whose filter
// matches name, by the package function Match.
func brute(subs map[pair]bool, name string) []pair {
	var want []pair
	for p := range subs {
		if Match(p.filter, name) {
			want = append(want, p)
		}
	}
	slices.SortFunc(want, comparePairs)
	return want
}

func TestIndexAddRemove(t *testing.T) {
	var x Index[string]
	if x.Len() != 0 {
		t.Fatal("zero Index is not empty")
	}
	steps := []struct {
		op, filter, v string
		want          bool
		len           int
	}{
		{"add", "a/+", "s1", true, 1},
		{"add", "a/+", "s2", false, 1},
		{"add", "a/+", "s1", false, 1}, // already there
		{"add", "a/#", "s1", true, 2},
		{"remove", "a/+", "s3", false, 2}, // never added
		{"remove", "b", "s1", false, 2},   // no such filter
		{"remove", "a/+", "s1", false, 2},
		{"remove", "a/+", "s1", false, 2}, // already removed
		{"remove", "a/+", "s2", true, 1},
		{"remove", "a/#", "s1", true, 0},
		{"remove", "a/#", "s1", false, 0},
		{"add", "a/+", "s1", true, 1}, // a removed filter starts over
	}
	for i, s := range steps {
		var got bool
		if s.op == "add" {
			got = x.Add(s.filter, s.v)
		} else {
			got = x.Remove(s.filter, s.v)
		}
		if got != s.want || x.Len() != s.len {
			t.Fatalf("step %d: %s(%q, %q) = %v with Len %d, want %v with Len %d", i, s.op, s.filter, s.v, got, x.Len(), s.want, s.len)
		}
	}
}

func TestIndexSpecVectors(t *testing.T) {
	for _, tt := range matchVectors {
		if checkFilter(tt.filter) != nil {
			continue
		}
		var x Index[int]
		x.Add(tt.filter, 1)
		got := collect(&x, tt.name)
		if want := tt.want; (len(got) == 1) != want || len(got) > 1 {
			t.Errorf("index of %q matched %q: %v, want %v", tt.filter, tt.name, got, want)
		}
	}
}

func TestIndexDollarRule(t *testing.T) {
	var x Index[int]
	for i, f := range []string{"#", "+", "+/#", "+/monitor/Clients", "$SYS/#", "$SYS/monitor/+", "$SYS", "a/#", "a/+"} {
		x.Add(f, i)
	}
	tests := map[string][]string{
		"$SYS/monitor/Clients": {"$SYS/#", "$SYS/monitor/+"},
		"$SYS":                 {"$SYS", "$SYS/#"},
		"$other":               nil,
		"x/monitor/Clients":    {"#", "+/#", "+/monitor/Clients"},
		"a/$SYS":               {"#", "+/#", "a/#", "a/+"},
		"a":                    {"#", "+", "+/#", "a/#"},
	}
	for name, want := range tests {
		var got []string
		for _, p := range collect(&x, name) {
			got = append(got, p.filter)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("Match(%q) reported %q, want %q", name, got, want)
		}
	}
}

func TestIndexInvalidNames(t *testing.T) {
	var x Index[int]
	x.Add("#", 1)
	x.Add("a/+", 2)
	for _, name := range []string{"", "a/+", "a/#", "+", "#"} {
		if got := collect(&x, name); len(got) != 0 {
			t.Errorf("Match(%q) reported %v, want nothing", name, got)
		}
	}
}

func TestIndexAddPanicsOnInvalidFilter(t *testing.T) {
	for _, f := range []string{"", "a/#/b", "a+", "a\x00", "\xff"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Add(%q) did not panic", f)
				}
			}()
			var x Index[int]
			x.Add(f, 1)
		}()
	}
}

// TestIndexExhaustive puts every filter of the test universe in one index and
// checks every name of the universe against brute force.
func TestIndexExhaustive(t *testing.T) {
	u := newUniverse()
	var x Index[int]
	subs := map[pair]bool{}
	for i, f := range u.filters {
		x.Add(f, i)
		x.Add(f, -i-1) // two values per filter
		subs[pair{f, i}], subs[pair{f, -i - 1}] = true, true
	}
	if x.Len() != len(u.filters) {
		t.Fatalf("Len() = %d, want %d", x.Len(), len(u.filters))
	}
	for _, n := range u.names {
		if got, want := collect(&x, n), brute(subs, n); !slices.Equal(got, want) {
			t.Fatalf("Match(%q):\n got %v\nwant %v", n, got, want)
		}
	}
	for i, f := range u.filters {
		if x.Remove(f, i) {
			t.Fatalf("Remove(%q, %d) reported last with a value left", f, i)
		}
		if !x.Remove(f, -i-1) {
			t.Fatalf("Remove(%q, %d) did not report last", f, -i-1)
		}
	}
	assertPruned(t, &x)
}

// TestIndexRandom cross-checks Index.Match against brute force while random
// filters come and go, then checks that removing everything prunes the trie.
func TestIndexRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	levels := []string{"a", "b", "c", "", "$SYS", "sensors", "\u00e9t\u00e9"}
	randLevels := func(n int) []string {
		l := make([]string, n)
		for i := range l {
			l[i] = levels[rng.IntN(len(levels))]
		}
		return l
	}
	randFilter := func() string {
		for {
			l := randLevels(1 + rng.IntN(5))
			for i := range l {
				switch rng.IntN(6) {
				case 0:
					l[i] = "+"
				case 1:
					if i == len(l)-1 {
						l[i] = "#"
					}
				}
			}
			if f := strings.Join(l, "/"); f != "" {
				return f
			}
		}
	}
	randName := func() string {
		for {
			if n := strings.Join(randLevels(1+rng.IntN(6)), "/"); n != "" {
				return n
			}
		}
	}

	var x Index[int]
	subs := map[pair]bool{}
	filterCount := map[string]int{}
	for round := range 3000 {
		f, v := randFilter(), rng.IntN(20)
		p := pair{f, v}
		if rng.IntN(3) > 0 {
			first := x.Add(f, v)
			if want := filterCount[f] == 0; first != want {
				t.Fatalf("Add(%q, %d) = %v, want %v", f, v, first, want)
			}
			if !subs[p] {
				subs[p] = true
				filterCount[f]++
			}
		} else {
			last := x.Remove(f, v)
			if want := subs[p] && filterCount[f] == 1; last != want {
				t.Fatalf("Remove(%q, %d) = %v, want %v", f, v, last, want)
			}
			if subs[p] {
				delete(subs, p)
				if filterCount[f]--; filterCount[f] == 0 {
					delete(filterCount, f)
				}
			}
		}
		if x.Len() != len(filterCount) {
			t.Fatalf("round %d: Len() = %d, want %d", round, x.Len(), len(filterCount))
		}
		for range 3 {
			n := randName()
			if got, want := collect(&x, n), brute(subs, n); !slices.Equal(got, want) {
				t.Fatalf("round %d: Match(%q):\n got %v\nwant %v", round, n, got, want)
			}
		}
	}
	for p := range subs {
		x.Remove(p.filter, p.v)
	}
	assertPruned(t, &x)
}

// TestIndexManyValues drives a filter's value set past its switch to a map
// and back.
func TestIndexManyValues(t *testing.T) {
	var x Index[int]
	const n = 1000
	for v := range n {
		if first := x.Add("a/+", v); first != (v == 0) {
			t.Fatalf("Add(a/+, %d) = %v", v, first)
		}
	}
	x.Add("a/+", 7) // duplicate
	rng := rand.New(rand.NewPCG(3, 4))
	left := map[int]bool{}
	for v := range n {
		left[v] = true
	}
	for _, v := range rng.Perm(n) {
		if last := x.Remove("a/+", v); last != (len(left) == 1) {
			t.Fatalf("Remove(a/+, %d) = %v with %d left", v, last, len(left))
		}
		delete(left, v)
		if len(left)%97 == 0 {
			var got []int
			x.Match("a/b", func(_ string, v int) { got = append(got, v) })
			if len(got) != len(left) {
				t.Fatalf("Match reported %d values, want %d", len(got), len(left))
			}
			for _, v := range got {
				if !left[v] {
					t.Fatalf("Match reported removed value %d", v)
				}
			}
		}
	}
	assertPruned(t, &x)
}

func TestIndexMatchDoesNotAllocate(t *testing.T) {
	x, names := benchIndex(10000)
	count := 0
	fn := func(string, int) { count++ }
	if n := testing.AllocsPerRun(100, func() {
		for _, name := range names {
			x.Match(name, fn)
		}
	}); n != 0 {
		t.Errorf("Index.Match allocates %v times per run", n)
	}
	// A closure built at the call site must not escape either.
	if n := testing.AllocsPerRun(100, func() {
		c := 0
		x.Match(names[0], func(string, int) { c++ })
		count += c
	}); n != 0 {
		t.Errorf("Index.Match with a fresh closure allocates %v times per run", n)
	}
	if count == 0 {
		t.Error("benchmark names matched nothing")
	}
}

func assertPruned(t *testing.T, x *Index[int]) {
	t.Helper()
	if x.Len() != 0 || !x.root.empty() {
		t.Fatalf("emptied index is not pruned: Len %d, root %d children, plus %v, hash %v",
			x.Len(), len(x.root.children), x.root.plus != nil, x.root.hash != nil)
	}
}

// benchIndex builds an index of n distinct filters shaped like a fleet of
// sensors and user inboxes, and names to match against it, most of which
// match a few filters.
func benchIndex(n int) (*Index[int], []string) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := new(Index[int])
	for i := 0; x.Len() < n; i++ {
		site, dev := rng.IntN(100), rng.IntN(200)
		var f string
		switch rng.IntN(10) {
		case 0:
			f = fmt.Sprintf("sensors/site%d/+/temperature", site)
		case 1:
			f = fmt.Sprintf("sensors/site%d/dev%d/#", site, dev)
		case 2:
			f = fmt.Sprintf("users/user%d/#", rng.IntN(5000))
		case 3:
			f = fmt.Sprintf("+/site%d/dev%d/humidity", site, dev)
		default:
			f = fmt.Sprintf("sensors/site%d/dev%d/%s", site, dev, []string{"temperature", "humidity", "pressure"}[rng.IntN(3)])
		}
		x.Add(f, i)
	}
	x.Add("#", -1)
	x.Add("$SYS/#", -2)
	names := []string{
		"sensors/site42/dev17/temperature",
		"sensors/site7/dev199/humidity",
		"users/user123/inbox",
		"sensors/site1000/dev1/temperature", // only "#" and "+/..." candidates
		"$SYS/broker/uptime",
	}
	return x, names
}
