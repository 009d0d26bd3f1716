package session

import (
	"testing"
	"time"
)

// sessionBehindAfter opens a session on a manager that counts a client
// behind after behindAfter, past 8 waiting frames, with a transport that
// only records wakes.
func sessionBehindAfter(t *testing.T, behindAfter time.Duration) *Session {
	t.Helper()
	m, err := NewManager(Config{SessionTimeout: time.Minute, Heartbeat: time.Minute, MaxMessageSize: 1 << 20,
		MaxPendingFrames: 1000, MaxPendingBytes: 1 << 20, ReplayFrames: 16, ReplayBytes: 1 << 20,
		ConflateAfter: 8, BehindAfter: behindAfter})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	s, _ := m.Open(OpenInfo{}, nil)
	rec := &wakeRecorder{}
	if err := s.Attach(rec, false, 0); err != nil {
		t.Fatal(err)
	}
	// Before m.Close (cleanups run last first): a bound transport that
	// never detaches makes Close wait closeWriteWait (2 s) per test.
	t.Cleanup(func() { s.Detach(rec) })
	return s
}

// values takes every waiting frame and returns their one-byte payloads.
func values(t *testing.T, s *Session) []byte {
	t.Helper()
	got, err := s.Take(nil, 10000)
	if err != nil {
		t.Fatal(err)
	}
	var v []byte
	for _, e := range got {
		v = append(v, e.Msg.Payload[0])
	}
	return v
}

// A burst that outruns the writer for a moment is not a slow client: past
// conflate_after, QoS 0 messages still queue, every one of them, until the
// transport has taken none for BehindAfter. (Conflating on the count
// alone took a third of a fast client's messages in a burst of 500.)
func TestABurstIsNotConflated(t *testing.T) {
	s := sessionBehindAfter(t, time.Hour)
	for i := range 200 {
		s.deliver(&Message{Topic: "chat", Payload: []byte{byte(i)}})
	}
	got := values(t, s)
	if len(got) != 200 {
		t.Fatalf("%d of 200 messages of a burst waiting, want all", len(got))
	}
	for i, v := range got {
		if v != byte(i) {
			t.Fatalf("message %d is %d", i, v)
		}
	}
}

// A client whose transport takes nothing for BehindAfter while frames past
// conflate_after wait is behind: the next QoS 0 value of a topic replaces
// the waiting one. Once the transport takes frames again the clock
// restarts, so the client is not behind until it stalls again.
func TestAStalledClientIsConflated(t *testing.T) {
	// The stall is made, not waited for: with a short BehindAfter, a burst
	// of 20 deliveries preempted for a few ms on a busy machine stalled
	// by itself, and its last values were conflated.
	const behind = time.Hour
	s := sessionBehindAfter(t, behind)
	for i := range 20 {
		s.deliver(&Message{Topic: "t", Payload: []byte{byte(i)}})
	}
	s.mu.Lock()
	s.overSince = s.overSince.Add(-behind) // the transport took nothing for BehindAfter
	s.mu.Unlock()
	s.deliver(&Message{Topic: "t", Payload: []byte{20}})
	got := values(t, s)
	if len(got) != 20 || got[19] != 20 {
		t.Fatalf("waiting after the stall: %v, want 0..18 and then 20 in the place of 19", got)
	}

	// Taken: the clock restarts at the next frame past conflate_after.
	for i := range 20 {
		s.deliver(&Message{Topic: "t", Payload: []byte{byte(i)}})
	}
	s.mu.Lock()
	since := s.overSince
	s.mu.Unlock()
	if since.IsZero() {
		t.Fatal("no clock started past conflate_after")
	}
	values(t, s)
	s.mu.Lock()
	since = s.overSince
	s.mu.Unlock()
	if !since.IsZero() {
		t.Fatal("the clock kept running after the transport took the frames")
	}
}

// A client whose transport takes frames but not as fast as they come (a
// phone on a slow link, taking 16 KiB at a time) stays behind: the clock
// restarts only once what it leaves is back under conflate_after. (It
// restarted at every take: with small writes a slow client was seldom
// behind for long, and 20 ms of each write's messages queued unconflated.)
func TestAClientThatTakesButFallsBehindIsConflated(t *testing.T) {
	const behind = time.Hour
	s := sessionBehindAfter(t, behind)
	for i := range 20 {
		s.deliver(&Message{Topic: "t", Payload: []byte{byte(i)}})
	}
	if got, err := s.Take(nil, 5); err != nil || len(got) != 5 {
		t.Fatalf("took %d: %v", len(got), err)
	}
	s.mu.Lock()
	if s.overSince.IsZero() {
		s.mu.Unlock()
		t.Fatal("the clock restarted with 15 frames still waiting, past conflate_after (8)")
	}
	s.overSince = s.overSince.Add(-behind) // as long as behindAfter since
	s.mu.Unlock()
	s.deliver(&Message{Topic: "t", Payload: []byte{20}})
	if got := values(t, s); len(got) != 15 || got[14] != 20 {
		t.Fatalf("waiting: %v, want 5..18 and then 20 in the place of 19", got)
	}
}
