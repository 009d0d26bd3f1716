// Package topic implements MQTT 5 topic names and topic filters as the
// gateway needs them: validation (MQTT 5.0 sections 1.5.4 and 4.7),
// matching a name against a filter, filter containment for authorization,
// and Index, the subscription trie that the fan-out hub matches every
// incoming message against.
//
// Vocabulary, as in the specification: a topic name is what a PUBLISH
// carries and never holds a wildcard; a topic filter is what a SUBSCRIBE
// carries and may hold the single-level wildcard '+' and the multi-level
// wildcard '#'. Both are split into levels by '/', and levels may be empty:
// "a//b" has three levels, the middle one empty; "/a" and "a/" have two.
//
// Topics beginning with '$' ("$SYS/...") are special (section 4.7.2): a
// filter whose first level is a wildcard never matches them. Every function
// here applies that rule, so "#" does not match, and does not contain,
// anything under "$SYS".
//
// The package depends only on the standard library, and the hot paths
// (Match, Index.Match) allocate nothing: they walk levels by index into the
// strings instead of splitting them.
package topic
