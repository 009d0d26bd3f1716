package session

import (
	"fmt"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/zap"
)

// benchHub builds a hub with n sessions subscribed to one filter, without a
// broker connection: the fan-out path alone.
func benchHub(b testing.TB, n int) (*Hub, []*Session) {
	m, err := NewManager(Config{SessionTimeout: 1, Heartbeat: 1, MaxMessageSize: 1 << 20,
		MaxPendingFrames: 1 << 20, MaxPendingBytes: 1 << 30, ReplayFrames: 16, ReplayBytes: 1 << 20})
	if err != nil {
		b.Fatal(err)
	}
	h := newHub("bench", &brokerRuntime{cfg: &BrokerConfig{Name: "bench"}}, 1, false, zap.NewNop(),
		newMetrics(""), func(string, map[string]any) {})
	sessions := make([]*Session, n)
	for i := range sessions {
		s, _ := m.Open(OpenInfo{}, nil)
		sessions[i] = s
		mb := &member{sess: s, filters: map[string]int{"sensors/+/temp": 1}}
		h.members[s] = mb
		h.index.Add("sensors/+/temp", mb)
	}
	// Unrelated filters, so the lookup is not trivially small.
	for i := 0; i < 1000; i++ {
		h.index.Add(fmt.Sprintf("other/%d/#", i), &member{sess: sessions[i%n], filters: map[string]int{}})
	}
	return h, sessions
}

// benchPublish is a received 100-byte PUBLISH as paho hands it over: with
// an empty properties struct, not nil ones.
func benchPublish() paho.PublishReceived {
	return paho.PublishReceived{Packet: &paho.Publish{Topic: "sensors/a/temp", Payload: make([]byte, 100),
		Properties: &paho.PublishProperties{}}}
}

// BenchmarkHubFanOut delivers one message to 10,000 subscribed sessions and
// drains their outboxes as their writers would. allocs/op is per message:
// the target is the message itself and nothing per session.
func BenchmarkHubFanOut(b *testing.B) {
	const n = 10000
	h, sessions := benchHub(b, n)
	pub := benchPublish()
	events := make([]Event, 0, 16)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		pub.Packet.Payload[0] = byte(i) // a new message each time, not a copy
		h.onPublish(pub)
		for _, s := range sessions {
			events, _ = s.Take(events[:0], 16)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
}

// Fanning a message out costs the same allocations for 1,000 sessions as for
// 10: nothing per delivery, from the hub through the outbox's replay window
// (ReplayFrames 16, so the 50 rounds below fill and trim it).
func TestHubFanOutAllocatesNothingPerDelivery(t *testing.T) {
	perMessage := func(n int) float64 {
		h, sessions := benchHub(t, n)
		pub := benchPublish()
		events := make([]Event, 0, 16)
		round := func() {
			h.onPublish(pub)
			for _, s := range sessions {
				events, _ = s.Take(events[:0], 16)
			}
		}
		for i := 0; i < 40; i++ {
			round() // grow the rings to their steady size first
		}
		return testing.AllocsPerRun(50, round)
	}
	small, large := perMessage(10), perMessage(1000)
	if large != small {
		t.Fatalf("%.0f allocations per message to 1,000 sessions, %.0f to 10: %.3f per delivery",
			large, small, (large-small)/990)
	}
}
