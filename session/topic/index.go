package topic

import "strings"

// Index maps topic filters to sets of values and finds, for a topic name,
// every (filter, value) pair whose filter matches it. It is the fan-out hub's
// table of subscriptions: values are typically subscribers, and Add's and
// Remove's results tell the hub when a filter gains its first subscriber or
// loses its last, that is when to SUBSCRIBE to or UNSUBSCRIBE from the broker.
//
// It is a trie of topic levels, like mochi-mqtt's: each node has its literal
// children in a map and its '+' and '#' children apart, so matching a name
// costs one map lookup per level and per '+' branch taken, whatever the
// number of filters, and allocates nothing.
//
// Index is not safe for concurrent use: the hub serialises access with its
// own lock, which it needs anyway to keep the index and its broker
// subscriptions consistent. The zero value is an empty index ready to use. An
// Index must not be copied after first use.
type Index[V comparable] struct {
	_       noCopy
	root    node[V]
	filters int
}

// noCopy makes go vet's copylocks check report an Index copied by value,
// which would share the trie below the root between the copies.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}

// node is one level of the trie. A node has values only if a filter ends at
// it; nodes with neither values nor children are pruned.
type node[V comparable] struct {
	children map[string]*node[V] // literal levels; nil when none
	plus     *node[V]            // the '+' child
	hash     *node[V]            // the '#' child, always a leaf
	filter   string              // the filter ending here, while it has values
	values   valueSet[V]
}

// Len returns the number of distinct filters that have at least one value.
func (x *Index[V]) Len() int { return x.filters }

// Add associates v with filter and reports whether filter had no value
// before, that is whether the hub must now subscribe to it. Adding a value
// that is already there changes nothing.
//
// filter must be valid (see ValidateFilter; a "$share/..." filter is taken
// literally). Add panics otherwise: the hub validates every filter when a
// client asks for it, so an invalid one here is a bug upstream, and storing
// it would make Match's results wrong.
//
// The index keeps its own copy of filter, so a filter sliced from a larger
// buffer does not pin that buffer; a node's level is a slice of the copy
// of the filter that created it.
func (x *Index[V]) Add(filter string, v V) (first bool) {
	if err := checkFilter(filter); err != nil {
		panic("topic: Index.Add: " + err.Error() + ": " + filter)
	}
	// One copy of filter for the nodes this adds, their levels slices of
	// it: a level copied apart from the filter held it twice, and a
	// subscriber's memory may be mostly its filters' (a trial's session of
	// 128 filters of 60 KB held 45 MB).
	own := strings.Clone(filter)
	n := &x.root
	for pos := 0; pos >= 0; {
		var level string
		level, pos = nextLevel(own, pos)
		n = n.child(level)
	}
	first = n.values.len() == 0
	if n.values.add(v) && first {
		n.filter = own
		x.filters++
	}
	return first
}

// Remove dissociates v from filter and reports whether that removed the
// filter's last value, that is whether the hub must now unsubscribe from it.
// Removing a value that is not there changes nothing and reports false.
// Nodes left with neither values nor children are pruned, so the index does
// not grow with filters that are no longer subscribed.
func (x *Index[V]) Remove(filter string, v V) (last bool) {
	if filter == "" {
		return false
	}
	if _, last = x.root.remove(filter, 0, v); last {
		x.filters--
	}
	return last
}

// Match calls fn(filter, v) once for every filter in the index that matches
// name (see the package function Match) and every value v of that filter, in
// no particular order. A name beginning with '$' is not matched by filters
// whose first level is a wildcard [MQTT-4.7.2-1]. An empty name, or one
// holding a wildcard, matches nothing.
//
// Match allocates nothing and does not retain fn, so a closure passed to it
// can stay on the caller's stack; fn must not call Add or Remove on x, and
// should not hold on to anything past the call that it does not own.
func (x *Index[V]) Match(name string, fn func(filter string, v V)) {
	if name == "" || strings.IndexByte(name, '+') >= 0 || strings.IndexByte(name, '#') >= 0 {
		return
	}
	r := &x.root
	wild := name[0] != '$' // may wildcards match the first level?
	if wild && r.hash != nil {
		r.hash.emit(fn)
	}
	level, next := nextLevel(name, 0)
	if c := r.children[level]; c != nil {
		c.match(name, next, fn)
	}
	if wild && r.plus != nil {
		r.plus.match(name, next, fn)
	}
}

// match visits n, reached by the name's levels before pos (pos < 0: all of
// them), and its matching descendants.
func (n *node[V]) match(name string, pos int, fn func(string, V)) {
	if n.hash != nil {
		n.hash.emit(fn) // '#' matches the parent level and everything below
	}
	if pos < 0 {
		n.emit(fn)
		return
	}
	level, next := nextLevel(name, pos)
	if c := n.children[level]; c != nil {
		c.match(name, next, fn)
	}
	if n.plus != nil {
		n.plus.match(name, next, fn)
	}
}

func (n *node[V]) emit(fn func(string, V)) {
	for _, v := range n.values.list {
		fn(n.filter, v)
	}
}

// child returns n's child for level, creating it if needed.
func (n *node[V]) child(level string) *node[V] {
	switch level {
	case "+":
		if n.plus == nil {
			n.plus = new(node[V])
		}
		return n.plus
	case "#":
		if n.hash == nil {
			n.hash = new(node[V])
		}
		return n.hash
	}
	c := n.children[level]
	if c == nil {
		if n.children == nil {
			n.children = make(map[string]*node[V])
		}
		c = new(node[V])
		n.children[level] = c // a slice of Add's copy of its filter
	}
	return c
}

// lookup returns n's child for level, or nil.
func (n *node[V]) lookup(level string) *node[V] {
	switch level {
	case "+":
		return n.plus
	case "#":
		return n.hash
	}
	return n.children[level]
}

// prune deletes n's child for level.
func (n *node[V]) prune(level string) {
	switch level {
	case "+":
		n.plus = nil
	case "#":
		n.hash = nil
	default:
		delete(n.children, level)
		if len(n.children) == 0 {
			n.children = nil // a map never shrinks; let it go
		}
	}
}

func (n *node[V]) empty() bool {
	return n.values.len() == 0 && n.children == nil && n.plus == nil && n.hash == nil
}

// remove removes v from the filter's node below n, the filter's levels before
// pos having led to n, and prunes the nodes it empties on the way back up.
// It reports whether v was removed and whether that was the filter's last
// value.
func (n *node[V]) remove(filter string, pos int, v V) (removed, last bool) {
	if pos < 0 {
		if !n.values.remove(v) {
			return false, false
		}
		if n.values.len() == 0 {
			n.filter = ""
			return true, true
		}
		return true, false
	}
	level, next := nextLevel(filter, pos)
	c := n.lookup(level)
	if c == nil {
		return false, false
	}
	removed, last = c.remove(filter, next, v)
	if removed && c.empty() {
		n.prune(level)
	}
	return removed, last
}
