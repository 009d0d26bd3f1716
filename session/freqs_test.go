package session

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// The index of frequency limits is built when a limit comes into force,
// after subscriptions without one, and still finds those: the least
// restrictive limit of the matching filters wins, an unlimited one
// included. It is dropped when the last limit goes.
func TestFrequencyIndexFollowsLimits(t *testing.T) {
	_, sessions := benchHub(t, 1)
	s := sessions[0]
	a, b := &Client{sess: s}, &Client{sess: s}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setFrequency(a, 1, "sensors/#", 0, 0) // unlimited, before any limit
	if s.freqs.of(1).index != nil {
		t.Fatal("an index without any limit in force")
	}
	s.setFrequency(b, 1, "sensors/+/temp", 1, 1)
	if s.throttled != 1 || s.freqs.of(1).index == nil {
		t.Fatalf("throttled %d, index %v: want 1 and an index", s.throttled, s.freqs.of(1).index)
	}
	if iv, qos, ok := s.freqs.of(1).limit("sensors/x/temp"); !ok || iv != 0 || qos != 1 {
		t.Fatalf("sensors/x/temp: interval %v, qos %d (matched %v), want 0 and 1: the unlimited filter wins, the highest QoS counts", iv, qos, ok)
	}
	if iv, _, ok := s.freqs.of(1).limit("other"); ok {
		t.Fatalf("other: interval %v, want no match", iv)
	}
	s.clearFrequency(a, 1, "sensors/#")
	if iv, _, ok := s.freqs.of(1).limit("sensors/x/temp"); !ok || iv <= 0 {
		t.Fatalf("sensors/x/temp after the unlimited one went: interval %v (matched %v), want the limit", iv, ok)
	}
	s.clearFrequency(b, 1, "sensors/+/temp")
	if s.throttled != 0 || len(s.freqs) != 0 {
		t.Fatalf("throttled %d, tables %d after every limit went", s.throttled, len(s.freqs))
	}
}

// A session's table keeps every client's limit on every filter as it grows
// past the size it keeps a map for and shrinks back: compared after each
// change, in a seeded random order, with what the clients asked for.
func TestFrequencyTableKeepsEveryLimitAsItGrowsAndShrinks(t *testing.T) {
	_, sessions := benchHub(t, 1)
	s := sessions[0]
	clients := []*Client{{sess: s}, {sess: s}, {sess: s}}
	type key struct {
		filter string
		c      int
	}
	want := map[key]float64{} // asked messages per second
	rng := rand.New(rand.NewPCG(7, 7))
	s.mu.Lock()
	defer s.mu.Unlock()
	check := func(step int) {
		t.Helper()
		ft := s.freqs.of(1)
		if len(want) == 0 {
			if ft != nil || len(s.freqs) != 0 {
				t.Fatalf("step %d: a table without limits", step)
			}
			return
		}
		if ft == nil || len(ft.entries) != len(want) {
			t.Fatalf("step %d: %d entries, want %d", step, len(ft.entries), len(want))
		}
		for k, asked := range want {
			i := ft.find(k.filter, clients[k.c])
			if i < 0 || ft.entries[i].asked != float32(asked) {
				t.Fatalf("step %d: %s of client %d not found as %v/s", step, k.filter, k.c, asked)
			}
		}
		if (ft.at != nil) != (len(want) > smallFreqTable) {
			t.Fatalf("step %d: %d entries, map %v", step, len(want), ft.at != nil)
		}
	}
	for step := range 2000 {
		k := key{fmt.Sprintf("s/%d/+", rng.IntN(30)), rng.IntN(len(clients))}
		grow := step < 1000 || step >= 1500 && step < 1600
		if _, held := want[k]; held && (!grow || rng.IntN(3) == 0) {
			s.clearFrequency(clients[k.c], 1, k.filter)
			delete(want, k)
		} else if grow {
			asked := float64(rng.IntN(4))
			s.setFrequency(clients[k.c], 1, k.filter, 0, asked)
			want[k] = asked
		}
		check(step)
	}
	for k := range want {
		s.clearFrequency(clients[k.c], 1, k.filter)
		delete(want, k)
	}
	check(2000)
	if s.throttled != 0 {
		t.Fatalf("throttled %d after every limit went", s.throttled)
	}
}
