package session

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// lockedSession is a session of a hub of its own, its lock held until the
// test ends: the frequency tables are the session's, under its lock.
func lockedSession(t *testing.T) *Session {
	_, sessions := benchHub(t, 1)
	s := sessions[0]
	s.mu.Lock()
	t.Cleanup(s.mu.Unlock)
	return s
}

// The index of frequency limits is built when a limit comes into force,
// after subscriptions without one, and still finds those: the least
// restrictive limit of the matching filters wins, an unlimited one
// included. It is dropped when the last limit goes.
func TestFrequencyIndexFollowsLimits(t *testing.T) {
	s := lockedSession(t)
	a, b := &Client{sess: s}, &Client{sess: s}
	s.setFrequency(a, 1, "sensors/#", 0, 0, 0) // unlimited, before any limit
	if s.freqs.of(1).index != nil {
		t.Fatal("an index without any limit in force")
	}
	s.setFrequency(b, 1, "sensors/+/temp", 1, 1, 0)
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
	s := lockedSession(t)
	clients := []*Client{{sess: s}, {sess: s}, {sess: s}}
	type key struct {
		filter string
		c      int
	}
	want := map[key]float64{} // asked messages per second
	rng := rand.New(rand.NewPCG(7, 7))
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
			s.setFrequency(clients[k.c], 1, k.filter, 0, asked, 0)
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

// Which messages published at QoS 1 a session's clients get at QoS 0: those
// whose topic only QoS 0 subscriptions match. A table of many such
// subscriptions beside one above QoS 0 is indexed for that question, and
// the index goes with the last subscription above QoS 0.
func TestMessagesReachingAtQoS0(t *testing.T) {
	s := lockedSession(t)
	c := &Client{sess: s}
	if s.freqs.of(1).reachesAtQoS0("sensors/1") {
		t.Fatal("a message without any subscription reaches at QoS 0")
	}
	for i := range smallFreqTable {
		s.setFrequency(c, 1, fmt.Sprintf("sensors/%d", i), 0, 0, 0)
	}
	ft := s.freqs.of(1)
	if !ft.reachesAtQoS0("sensors/1") || ft.index != nil {
		t.Fatalf("QoS 0 subscriptions only: reaches at QoS 0 %v, index %v; want true, none", ft.reachesAtQoS0("sensors/1"), ft.index != nil)
	}
	s.setFrequency(c, 1, "alarms/#", 1, 0, 0)
	if ft.index == nil {
		t.Fatal("no index for a large table that mixes QoS")
	}
	for topic, want := range map[string]bool{"sensors/1": true, "alarms/fire": false, "other": false} {
		if got := ft.reachesAtQoS0(topic); got != want {
			t.Errorf("%s: reaches at QoS 0 %v, want %v", topic, got, want)
		}
	}
	s.setFrequency(c, 1, "sensors/#", 1, 0, 0)
	if ft.reachesAtQoS0("sensors/1") {
		t.Error("sensors/1 reaches at QoS 0 beside a QoS 1 subscription that matches it too")
	}
	s.clearFrequency(c, 1, "sensors/#")
	s.clearFrequency(c, 1, "alarms/#")
	if ft.index != nil || !ft.reachesAtQoS0("sensors/1") {
		t.Fatalf("after the QoS 1 subscriptions went: index %v, reaches at QoS 0 %v; want none, true", ft.index != nil, ft.reachesAtQoS0("sensors/1"))
	}
}

// A shared subscription matches topics by the filter after its share name,
// and is limited as any other: a session capped by its plan does not lift
// its cap by joining a group of its own. The least restrictive limit of a
// topic wins, as between plain filters.
func TestSharedSubscriptionsAreLimitedByTheirFilter(t *testing.T) {
	s := lockedSession(t)
	c := &Client{sess: s}
	s.setFrequency(c, 1, "$share/g/jobs/+", 0, 1, 0)
	if iv, _, ok := s.freqs.of(1).limit("jobs/x"); !ok || iv <= 0 {
		t.Fatalf("jobs/x under $share/g/jobs/+ at 1/s: interval %v (matched %v), want the limit", iv, ok)
	}
	if _, _, ok := s.freqs.of(1).limit("other/x"); ok {
		t.Fatal("other/x matched $share/g/jobs/+")
	}
	s.setFrequency(c, 1, "jobs/#", 0, 0, 0)
	if iv, _, ok := s.freqs.of(1).limit("jobs/x"); !ok || iv != 0 {
		t.Fatalf("jobs/x beside an unlimited jobs/#: interval %v (matched %v), want none", iv, ok)
	}
	s.clearFrequency(c, 1, "jobs/#")
	s.capFrequency = 2
	s.setFrequency(c, 1, "$share/h/jobs/+", 0, 0, 0) // asks for no limit: the session's cap holds
	if iv, _, ok := s.freqs.of(1).limit("jobs/x"); !ok || iv < 400*time.Millisecond {
		t.Fatalf("jobs/x in a session capped at 2/s: interval %v (matched %v), want at least 0.5 s", iv, ok)
	}
}
