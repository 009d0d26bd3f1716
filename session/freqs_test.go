package session

import "testing"

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
	if s.freqs[1].index != nil {
		t.Fatal("an index without any limit in force")
	}
	s.setFrequency(b, 1, "sensors/+/temp", 1, 1)
	if s.throttled != 1 || s.freqs[1].index == nil {
		t.Fatalf("throttled %d, index %v: want 1 and an index", s.throttled, s.freqs[1].index)
	}
	if iv, qos, ok := s.freqs[1].limit("sensors/x/temp"); !ok || iv != 0 || qos != 1 {
		t.Fatalf("sensors/x/temp: interval %v, qos %d (matched %v), want 0 and 1: the unlimited filter wins, the highest QoS counts", iv, qos, ok)
	}
	if iv, _, ok := s.freqs[1].limit("other"); ok {
		t.Fatalf("other: interval %v, want no match", iv)
	}
	s.clearFrequency(a, 1, "sensors/#")
	if iv, _, ok := s.freqs[1].limit("sensors/x/temp"); !ok || iv <= 0 {
		t.Fatalf("sensors/x/temp after the unlimited one went: interval %v (matched %v), want the limit", iv, ok)
	}
	s.clearFrequency(b, 1, "sensors/+/temp")
	if s.throttled != 0 || len(s.freqs) != 0 {
		t.Fatalf("throttled %d, tables %d after every limit went", s.throttled, len(s.freqs))
	}
}
