package topic

import "strings"

// nextLevel returns the level of s that starts at byte pos and the position
// of the level after it, or -1 when it was the last level. Walking levels this
// way, instead of with strings.Split, keeps matching free of allocations.
// pos must be in [0, len(s)]; pos == len(s) yields the empty last level of a
// string ending in '/'.
func nextLevel(s string, pos int) (level string, next int) {
	if i := strings.IndexByte(s[pos:], '/'); i >= 0 {
		return s[pos : pos+i], pos + i + 1
	}
	return s[pos:], -1
}
