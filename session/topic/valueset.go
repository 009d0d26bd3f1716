package topic

// smallSet is the size up to which a valueSet finds values by scanning its
// slice; past it, a map from value to position keeps Add and Remove O(1) for
// popular filters with thousands of subscribers.
const smallSet = 8

// valueSet is a set of values kept in a slice, so that Index.Match iterates
// it without allocating and in a cache-friendly way, with a position map for
// large sets. Order is not preserved across removals.
type valueSet[V comparable] struct {
	list []V
	pos  map[V]int // nil while len(list) <= smallSet
}

func (s *valueSet[V]) len() int { return len(s.list) }

func (s *valueSet[V]) indexOf(v V) int {
	if s.pos != nil {
		if i, ok := s.pos[v]; ok {
			return i
		}
		return -1
	}
	for i, x := range s.list {
		if x == v {
			return i
		}
	}
	return -1
}

// add inserts v and reports whether it was absent.
func (s *valueSet[V]) add(v V) bool {
	if s.indexOf(v) >= 0 {
		return false
	}
	s.list = append(s.list, v)
	switch {
	case s.pos != nil:
		s.pos[v] = len(s.list) - 1
	case len(s.list) > smallSet:
		s.pos = make(map[V]int, len(s.list))
		for i, x := range s.list {
			s.pos[x] = i
		}
	}
	return true
}

// remove deletes v and reports whether it was present. The last value takes
// v's place, and memory is given back as the set shrinks so that a filter
// that once had many subscribers does not keep their slots forever.
func (s *valueSet[V]) remove(v V) bool {
	i := s.indexOf(v)
	if i < 0 {
		return false
	}
	last := len(s.list) - 1
	if i != last {
		s.list[i] = s.list[last]
		if s.pos != nil {
			s.pos[s.list[i]] = i
		}
	}
	var zero V
	s.list[last] = zero // drop the reference for the garbage collector
	s.list = s.list[:last]
	if s.pos != nil {
		delete(s.pos, v)
		if len(s.list) <= smallSet/2 {
			s.pos = nil
		}
	}
	switch {
	case len(s.list) == 0:
		s.list = nil
	case cap(s.list) > 64 && len(s.list) < cap(s.list)/4:
		s.list = append([]V(nil), s.list...)
	}
	return true
}
