package topic

import (
	"strings"
	"testing"
)

// Fuzz targets. Each checks the fast code against the reference
// implementations in reference_test.go or against a property that follows
// from the definitions. Seeds are the spec's and Mosquitto's vectors; inputs
// the fuzzer found worth keeping live in testdata/fuzz.

func FuzzValidateFilter(f *testing.F) {
	for _, tt := range matchVectors {
		f.Add(tt.filter)
		f.Add(tt.name)
	}
	f.Add("$share/g/a/#")
	f.Add("\xed\xa0\x80")
	f.Fuzz(func(t *testing.T, s string) {
		errF, errN := ValidateFilter(s), ValidateName(s)
		if want := refValidateFilter(s); errF != want {
			t.Fatalf("ValidateFilter(%q) = %v, reference says %v", s, errF, want)
		}
		if want := refValidateName(s); errN != want {
			t.Fatalf("ValidateName(%q) = %v, reference says %v", s, errN, want)
		}
		if IsShared(s) != (strings.Split(s, "/")[0] == "$share") {
			t.Fatalf("IsShared(%q) = %v", s, IsShared(s))
		}
		// A valid shared subscription is a share name, then a valid filter.
		if ValidateShared(s) == nil {
			levels := strings.SplitN(s, "/", 3)
			if errF != ErrSharedSubscription || len(levels) != 3 || levels[1] == "" || strings.ContainsAny(levels[1], "+#") ||
				refValidateFilter(levels[2]) != nil && refValidateFilter(levels[2]) != ErrSharedSubscription {
				t.Fatalf("ValidateShared took %q (ValidateFilter: %v)", s, errF)
			}
		}
		// Every name is a filter (one that matches only itself).
		if errN == nil {
			if errF != nil && errF != ErrSharedSubscription {
				t.Fatalf("valid name %q is not a valid filter: %v", s, errF)
			}
			if !Match(s, s) || !Contains(s, s) {
				t.Fatalf("name %q does not match or contain itself", s)
			}
		}
		// Every valid filter matches some name, and contains itself.
		if checkFilter(s) == nil {
			if n, ok := instantiate(s, "x"); !ok || !Match(s, n) {
				t.Fatalf("valid filter %q does not match %q", s, n)
			}
			if !Contains(s, s) {
				t.Fatalf("valid filter %q does not contain itself", s)
			}
		}
	})
}

func FuzzMatch(f *testing.F) {
	for _, tt := range matchVectors {
		f.Add(tt.filter, tt.name)
	}
	f.Fuzz(func(t *testing.T, filter, name string) {
		got := Match(filter, name)
		if want := refMatch(filter, name); got != want {
			t.Fatalf("Match(%q, %q) = %v, reference says %v", filter, name, got, want)
		}
		// An index of this one filter must agree.
		if checkFilter(filter) != nil {
			return
		}
		var x Index[int]
		x.Add(filter, 1)
		calls := 0
		x.Match(name, func(f string, v int) {
			if f != filter || v != 1 {
				t.Fatalf("Index.Match reported (%q, %d)", f, v)
			}
			calls++
		})
		if calls != 0 && !got || calls != 1 && got {
			t.Fatalf("Index.Match(%q) on {%q} made %d calls, Match says %v", name, filter, calls, got)
		}
		if !x.Remove(filter, 1) || !x.root.empty() {
			t.Fatalf("removing %q did not empty the index", filter)
		}
	})
}

func FuzzContains(f *testing.F) {
	for _, tt := range containsVectors {
		f.Add(tt.pattern, tt.filter, "x/y")
	}
	f.Add("+/#", "#", "$a/b/c")
	f.Fuzz(func(t *testing.T, pattern, filter, seed string) {
		contains := Contains(pattern, filter)
		if checkFilter(pattern) != nil || checkFilter(filter) != nil {
			if contains {
				t.Fatalf("Contains(%q, %q) with an invalid argument", pattern, filter)
			}
			return
		}
		// Soundness: a name that filter matches, pattern matches.
		name, ok := instantiate(filter, seed)
		if ok {
			if !Match(filter, name) {
				t.Fatalf("test bug: %q instantiated as %q, which it does not match", filter, name)
			}
			if contains && !Match(pattern, name) {
				t.Fatalf("Contains(%q, %q) but %q matches only the latter", pattern, filter, name)
			}
			if ValidateName(name) == nil && Contains(pattern, name) != Match(pattern, name) {
				t.Fatalf("Contains(%q, %q) = %v but Match says %v", pattern, name, !Match(pattern, name), Match(pattern, name))
			}
		}
		// Completeness: if not contained, some name proves it.
		if !contains {
			if w, found, complete := findWitness(pattern, filter, 5000); complete && !found {
				t.Fatalf("Contains(%q, %q) = false, but no name refutes it", pattern, filter)
			} else if found && (!Match(filter, w) || Match(pattern, w)) {
				t.Fatalf("test bug: witness %q", w)
			}
		}
	})
}

// instantiate builds a topic name that the valid filter matches, taking the
// levels for its wildcards from seed. It reports false when it cannot (the
// only such name would be empty).
func instantiate(filter, seed string) (string, bool) {
	seed = strings.ToValidUTF8(seed, "?")
	seed = strings.NewReplacer("+", "", "#", "", "\x00", "").Replace(seed)
	chunks := strings.Split(seed, "/")
	next := 0
	chunk := func(first bool) string {
		c := chunks[next%len(chunks)]
		next++
		if first && strings.HasPrefix(c, "$") {
			c = "x" + c // a wildcard first level never matches '$'
		}
		return c
	}
	var out []string
	for i, l := range strings.Split(filter, "/") {
		switch l {
		case "+":
			out = append(out, chunk(i == 0))
		case "#":
			for k := range len(seed) % 4 {
				out = append(out, chunk(i == 0 && k == 0))
			}
		default:
			out = append(out, l)
		}
	}
	name := strings.Join(out, "/")
	return name, name != ""
}

// findWitness looks for a name that filter matches and pattern does not. It
// tries every name made of filter's literals and, for its wildcards, of
// pattern's literal levels and one level that pattern does not name, up to
// one level longer than the longer filter: if any name refutes containment,
// one of these does (see TestContainsExhaustive). It gives up (complete =
// false) after budget names.
func findWitness(pattern, filter string, budget int) (witness string, found, complete bool) {
	pl, fl := strings.Split(pattern, "/"), strings.Split(filter, "/")
	fresh := "\u00a7"
	var cands []string
	for _, l := range pl {
		if l != "+" && l != "#" && !containsString(cands, l) {
			cands = append(cands, l)
		}
	}
	for containsString(cands, fresh) {
		fresh += "\u00a7"
	}
	cands = append(cands, fresh)
	maxLen := max(len(pl), len(fl)) + 1

	acc := make([]string, 0, maxLen+len(fl))
	var try func(i int) bool // reports true to stop
	try = func(i int) bool {
		if i == len(fl) {
			if budget--; budget < 0 {
				return true
			}
			n := strings.Join(acc, "/")
			if n != "" && Match(filter, n) && !Match(pattern, n) {
				witness, found = n, true
				return true
			}
			return false
		}
		switch fl[i] {
		case "+":
			for _, c := range cands {
				acc = append(acc, c)
				stop := try(i + 1)
				acc = acc[:len(acc)-1]
				if stop {
					return true
				}
			}
			return false
		case "#":
			var tail func() bool
			tail = func() bool {
				if try(i + 1) {
					return true
				}
				if len(acc) >= maxLen {
					return false
				}
				for _, c := range cands {
					acc = append(acc, c)
					stop := tail()
					acc = acc[:len(acc)-1]
					if stop {
						return true
					}
				}
				return false
			}
			return tail()
		default:
			acc = append(acc, fl[i])
			stop := try(i + 1)
			acc = acc[:len(acc)-1]
			return stop
		}
	}
	try(0)
	return witness, found, budget >= 0
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
