package topic

// Overlaps reports whether some topic name is matched by both filters. It is
// the test a revocation needs: ending a user's subscriptions "to room/42/#"
// must end every subscription that could deliver a name under it, "room/+/msg"
// and "#" included, not only those inside it (Contains). Both arguments must
// be valid filters (see ValidateFilter, minus the shared-subscription
// refusal); if either is not, Overlaps reports false.
//
// The rule. Compare the levels pairwise from the left while both filters
// have one. Two literals must be equal; '+' takes any level, so a literal or
// '+' on the other side fits. A '#' on either side ends the walk: the other
// filter's levels from here, or none, complete a name both match, except
// when the name would be the empty string (names never are): that happens
// only when no level is left on the other side and the common prefix is a
// single level that must be empty ("/#" and "+": "/#" matches names of two
// levels or more, "+" names of one). When one filter runs out first, the
// other must have exactly "#" left (the parent rule) with the same empty-name
// exception; when both run out together, the prefix is a name both match.
//
// The '$' rule [MQTT-4.7.2-1]: a filter whose first level is a wildcard
// matches no name beginning with '$', all of whose names a filter starting
// with a literal '$' level has; such a pair does not overlap.
//
// The exhaustive test in overlaps_test.go checks the rule against the
// definition over every pair of filters of up to four levels.
func Overlaps(a, b string) bool {
	if checkFilter(a) != nil || checkFilter(b) != nil {
		return false
	}
	if a[0] == '$' && (b[0] == '+' || b[0] == '#') || b[0] == '$' && (a[0] == '+' || a[0] == '#') {
		return false
	}
	apos, bpos := 0, 0
	levels := 0
	emptyFirst := false // the first common level can only be ""
	for {
		if apos < 0 || bpos < 0 {
			if apos < 0 && bpos < 0 {
				return true
			}
			rest := a[max(apos, 0):]
			if apos < 0 {
				rest = b[bpos:]
			}
			return rest == "#" && !(levels == 1 && emptyFirst)
		}
		al, anext := nextLevel(a, apos)
		bl, bnext := nextLevel(b, bpos)
		if al == "#" || bl == "#" {
			return true // the other side still has a level, so the name is not empty
		}
		if al != "+" && bl != "+" && al != bl {
			return false
		}
		if levels == 0 {
			emptyFirst = al == "" || bl == ""
		}
		levels++
		apos, bpos = anext, bnext
	}
}
