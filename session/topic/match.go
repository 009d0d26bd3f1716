package topic

import "strings"

// Match reports whether the topic name matches the topic filter (section
// 4.7): a literal level matches the same bytes only (no normalisation, case
// sensitive); '+' matches exactly one level, empty ones included; a final '#'
// matches its parent level and any number of levels below it ("sport/#"
// matches "sport", "sport/" and "sport/a/b"). A name beginning with '$' is
// never matched by a filter whose first level is a wildcard [MQTT-4.7.2-1].
//
// Match is meant for a name and a filter that were validated where they
// entered the gateway (ValidateName, ValidateFilter); it does not check UTF-8,
// U+0000 or length again. It does refuse what would make a match wrong rather
// than merely unusual: it reports false for an empty argument, for a name
// holding '+' or '#', and for a filter with a misplaced wildcard, so a
// forgotten validation cannot widen a match ("foo+" does not match "foo+").
//
// Match does not allocate. It walks both strings once, byte by byte, rather
// than level by level with strings.IndexByte: levels are short, and the
// calls cost more than the bytes.
func Match(filter, name string) bool {
	if filter == "" || name == "" {
		return false
	}
	if name[0] == '$' && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	// i and j are the starts of the current filter and name levels; j is
	// len(name)+1 once the name's last level has been consumed.
	i, j := 0, 0
	for {
		if i < len(filter) && filter[i] == '#' {
			// Matches the parent (name used up) and any levels left, if it is
			// the whole last level and those levels are wildcard-free.
			return i+1 == len(filter) && (j > len(name) || !hasWildcard(name[j:]))
		}
		if j > len(name) {
			return false // the filter has levels the name lacks
		}
		if i < len(filter) && filter[i] == '+' && (i+1 == len(filter) || filter[i+1] == '/') {
			i++
			for ; j < len(name) && name[j] != '/'; j++ {
				if name[j] == '+' || name[j] == '#' {
					return false
				}
			}
		} else {
			// A literal level: equal bytes up to the end of both levels. A
			// wildcard byte that compares equal is invalid on both sides; one
			// that differs ends the match anyway.
			for ; i < len(filter) && j < len(name) && filter[i] == name[j] && filter[i] != '/'; i, j = i+1, j+1 {
				if filter[i] == '+' || filter[i] == '#' {
					return false
				}
			}
			if i < len(filter) && filter[i] != '/' || j < len(name) && name[j] != '/' {
				return false
			}
		}
		// Both levels ended: at the end of their string or at a '/'.
		if i == len(filter) {
			return j == len(name)
		}
		i++
		j++ // past the '/', or to len(name)+1 if the name has ended
	}
}

// hasWildcard reports whether s holds '+' or '#'.
func hasWildcard(s string) bool {
	return strings.IndexByte(s, '+') >= 0 || strings.IndexByte(s, '#') >= 0
}
