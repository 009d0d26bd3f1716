package throttle

import (
	"container/heap"
	"time"
)

// Gate spaces deliveries per key (a topic, or a topic of one subscription)
// to at most one per interval, keeping only the latest value offered while a
// key waits. Its zero value is not usable; use NewGate.
type Gate[K comparable, T any] struct {
	slots   map[K]*slot[T]
	due     dueHeap[T]
	weigh   func(T) int // nil: values weigh nothing
	held    int         // the weight of the values waiting
	pruneAt int         // Offer prunes when a new key would make this many
	pruned  time.Time   // the last Prune
}

// minPruneAt is the fewest keys a gate prunes at: below it, a scan costs
// more than the memory it would free.
const minPruneAt = 1024

// slot is one key's state. It is in the due heap exactly while waiting:
// Offer pushes it when it starts waiting, and Due or Drop take it out.
type slot[T any] struct {
	next     time.Time // earliest time of the next delivery
	interval time.Duration
	pending  T
	waiting  bool // pending holds a value, and the slot is in the due heap
	index    int  // its place in the due heap while waiting
}

// NewGate returns an empty gate.
func NewGate[K comparable, T any]() *Gate[K, T] {
	return &Gate[K, T]{slots: map[K]*slot[T]{}, pruneAt: minPruneAt}
}

// NewWeighedGate returns an empty gate that keeps the weight of the values
// waiting (Held), as weigh measures each: values held for keys that wait
// long can add up, and whoever holds them needs to bound them.
func NewWeighedGate[K comparable, T any](weigh func(T) int) *Gate[K, T] {
	return &Gate[K, T]{slots: map[K]*slot[T]{}, weigh: weigh, pruneAt: minPruneAt}
}

// Held is the total weight of the values waiting (0 without a weigh).
func (g *Gate[K, T]) Held() int { return g.held }

func (g *Gate[K, T]) weight(v T) int {
	if g.weigh == nil {
		return 0
	}
	return g.weigh(v)
}

// Offer presents v for key at time now. It returns true when v may be
// delivered at once. Otherwise v replaces any value already waiting for key
// (the replaced one is conflated: it reports true in replaced) and is
// released by Due when its time comes.
func (g *Gate[K, T]) Offer(key K, interval time.Duration, v T, now time.Time) (deliver, replaced bool) {
	s := g.slots[key]
	if s == nil {
		// Every new key prunes, in turn: a subscription to ever-new topics
		// (device or event ids) whose values all pass at once never arms a
		// timer, and its keys were kept for the session's life. Doubling the
		// mark after each scan keeps the cost per Offer constant, and the
		// keys at most twice those still within their interval.
		if len(g.slots) >= g.pruneAt {
			g.Prune(now)
			g.pruneAt = max(2*len(g.slots), minPruneAt)
		}
		s = &slot[T]{}
		g.slots[key] = s
	}
	s.interval = interval
	if !s.waiting && !now.Before(s.next) {
		s.next = now.Add(interval)
		return true, false
	}
	replaced = s.waiting
	if replaced {
		g.held -= g.weight(s.pending)
	}
	g.held += g.weight(v)
	s.pending, s.waiting = v, true
	if !replaced {
		heap.Push(&g.due, s)
	}
	return false, replaced
}

// Due appends to dst the waiting values whose time has come, oldest
// deadline first, and starts their next interval.
func (g *Gate[K, T]) Due(dst []T, now time.Time) []T {
	for len(g.due) > 0 && !now.Before(g.due[0].next) {
		dst = g.release(dst, now)
	}
	return dst
}

// release appends the earliest waiting value to dst and starts its key's
// next interval.
func (g *Gate[K, T]) release(dst []T, now time.Time) []T {
	s := heap.Pop(&g.due).(*slot[T])
	dst = append(dst, s.pending)
	g.held -= g.weight(s.pending)
	var zero T
	s.pending, s.waiting = zero, false
	s.next = now.Add(s.interval)
	return dst
}

// Drop discards the value waiting for key, if any: a newer one went out
// past the gate (a QoS 1/2 message, a topic no longer limited), and the
// older must not follow it.
func (g *Gate[K, T]) Drop(key K) (dropped bool) {
	_, dropped = g.Take(key)
	return dropped
}

// Take removes and returns the value waiting for key, if any, for the
// caller to deliver now; the key's interval runs on as it was.
func (g *Gate[K, T]) Take(key K) (v T, ok bool) {
	s := g.slots[key]
	if s == nil || !s.waiting {
		return v, false
	}
	heap.Remove(&g.due, s.index)
	g.held -= g.weight(s.pending)
	v = s.pending
	var zero T
	s.pending, s.waiting = zero, false
	return v, true
}

// Drain appends every waiting value to dst, due or not, oldest deadline
// first (the limits changed), and starts their next interval.
func (g *Gate[K, T]) Drain(dst []T, now time.Time) []T {
	for len(g.due) > 0 {
		dst = g.release(dst, now)
	}
	return dst
}

// Next reports when the earliest waiting value is due.
func (g *Gate[K, T]) Next() (time.Time, bool) {
	if len(g.due) == 0 {
		return time.Time{}, false
	}
	return g.due[0].next, true
}

// Waiting is the number of keys holding a value.
func (g *Gate[K, T]) Waiting() int { return len(g.due) }

// Prune forgets keys with nothing waiting whose interval has passed, so a
// stream of ever-new topics does not grow the gate without bound. When most
// keys go, the map is rebuilt: a Go map keeps the buckets of its largest
// size, some 100 bytes per key it once held.
func (g *Gate[K, T]) Prune(now time.Time) {
	g.pruned = now
	before := len(g.slots)
	for k, s := range g.slots {
		if !s.waiting && !now.Before(s.next) {
			delete(g.slots, k)
		}
	}
	if before >= minPruneAt && len(g.slots) < before/4 {
		kept := make(map[K]*slot[T], len(g.slots))
		for k, s := range g.slots {
			kept[k] = s
		}
		g.slots = kept
	}
}

// Tidy prunes when the keys far outnumber those waiting, at most once a
// second. Offer prunes as new keys come; Tidy, called as held values are
// released, covers the gate that stops getting new keys after a burst (a
// wildcard's retained messages, then updates of a few topics), which would
// otherwise keep the burst's keys for good.
func (g *Gate[K, T]) Tidy(now time.Time) {
	if len(g.slots) > 4*len(g.due)+minPruneAt && now.Sub(g.pruned) >= time.Second {
		g.Prune(now)
	}
}

// Keys is the number of keys the gate remembers.
func (g *Gate[K, T]) Keys() int { return len(g.slots) }

type dueHeap[T any] []*slot[T]

func (h dueHeap[T]) Len() int           { return len(h) }
func (h dueHeap[T]) Less(i, j int) bool { return h[i].next.Before(h[j].next) }
func (h dueHeap[T]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *dueHeap[T]) Push(x any) {
	s := x.(*slot[T])
	s.index = len(*h)
	*h = append(*h, s)
}
func (h *dueHeap[T]) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil // Prune may drop the slot: the array must not keep it
	*h = old[:len(old)-1]
	return s
}
