package session

import (
	"fmt"
	"testing"
)

// BenchmarkAdmitManyLimitedFilters offers a QoS 0 message to a session
// whose 16 clients hold 256 frequency-limited filters each, the defaults'
// most: admit runs for every message on the broker connection's goroutine,
// so its cost must not grow with the filters.
func BenchmarkAdmitManyLimitedFilters(b *testing.B) {
	_, sessions := benchHub(b, 1)
	s := sessions[0]
	s.mu.Lock()
	for c := range 16 {
		client := &Client{sess: s}
		for f := range 256 {
			s.setFrequency(client, 1, fmt.Sprintf("rate/%d/%d/+", c, f), 0, 1000, 0)
		}
	}
	s.mu.Unlock()
	m := &Message{Stream: 1, Topic: "rate/3/17/x", Payload: make([]byte, 8)}
	events := make([]Event, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		s.deliver(m)
		events, _ = s.Take(events[:0], 16)
	}
}
