package topic

// Contains reports whether every topic name that filter matches is also
// matched by pattern. It is the test an ACL needs: a rule pattern admits a
// SUBSCRIBE to filter only if Contains(pattern, filter), and admits a PUBLISH
// to a name only if Contains(pattern, name) (a name is a filter without
// wildcards, and for valid names Contains(pattern, name) == Match(pattern,
// name)). Both arguments must be valid filters (see ValidateFilter, minus the
// shared-subscription refusal); if either is not, Contains reports false, so
// that an ACL fails closed.
//
// The rule. Write P = p1/.../pm and F = f1/.../fn. Every valid filter matches
// some name; a name has at least one level and is never the empty string, so
// never a single empty level. Compare the levels pairwise from the left while
// both filters have one:
//
//   - pi = "#": true. P takes anything below the levels compared so far, and
//     F only has names with those levels (F's own '#' has not come yet).
//   - fi = "#" (and pi is not): F takes every continuation below its prefix,
//     including none at all ("a/#" matches "a"), and no '+' or literal level
//     of P admits "no level": false. The exception is a prefix that can only
//     spell the empty string: none ("#") or a single empty level ("/#"). Then
//     "no level" would make the empty name, so F's names all have at least
//     one more level, and P also takes them all when what it has left is
//     "+/#" ("+" takes that level, "#" the rest or nothing). So "+/#" contains
//     "#", and "/+/#" contains "/#".
//   - pi = "+": admits any single level of F, literal or '+'; go on.
//   - pi literal: F's level must be the same literal ('+' would admit levels
//     P does not); go on.
//
// When F runs out first, F's names end here and P must admit that: true iff
// P is also used up or all it has left is "#" (the parent rule). When P runs
// out first, F has names with more levels than P: false.
//
// On top of this sits the '$' rule [MQTT-4.7.2-1]. A filter starting with a
// wildcard matches no name beginning with '$', and a filter starting with a
// literal matches only names whose first level is that literal. So if f1 is a
// literal beginning with '$', all of F's names begin with '$' and p1 must not
// be a wildcard ("#" contains neither "$SYS/uptime" nor "$SYS/#" nor "$SYS");
// a literal p1 is then handled by the pairwise rule ("$SYS/#" contains
// "$SYS"). In every other case the rule changes nothing: if f1 is a wildcard,
// F's names exclude '$' names exactly as a wildcard p1 does, and a literal p1
// cannot contain F at all.
//
// The length limit is ignored (a '#' is taken to reach arbitrarily deep). The
// exhaustive test in contains_test.go checks the rule against the definition
// over every pair of filters of up to four levels; it is what found the "/#"
// exception.
func Contains(pattern, filter string) bool {
	if checkFilter(pattern) != nil || checkFilter(filter) != nil {
		return false
	}
	if filter[0] == '$' && (pattern[0] == '+' || pattern[0] == '#') {
		return false
	}
	ppos, fpos := 0, 0
	for {
		if fpos < 0 {
			return ppos < 0 || pattern[ppos:] == "#"
		}
		if ppos < 0 {
			return false
		}
		plevel, pnext := nextLevel(pattern, ppos)
		if plevel == "#" {
			return true
		}
		flevel, fnext := nextLevel(filter, fpos)
		if flevel == "#" {
			// fpos <= 1: F's levels before '#' are none, or one empty level.
			return fpos <= 1 && pattern[ppos:] == "+/#"
		}
		if plevel != "+" && plevel != flevel {
			return false
		}
		ppos, fpos = pnext, fnext
	}
}
