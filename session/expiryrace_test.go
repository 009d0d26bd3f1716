package session

import (
	"testing"
	"time"
)

// A rebind that lands as the session timeout passes must either fail
// (session unknown) or keep the session: once Attach has succeeded, the
// client has its BOUND and the session must not expire under it. DetachFor's
// expiry timer calls Close unconditionally, so a timer that fired just
// before Attach (its goroutine waiting for s.mu, which Attach holds, so
// Stop returns false) closes the freshly resumed session anyway.
func TestRebindAtTheTimeoutKeepsTheSession(t *testing.T) {
	m, err := NewManager(Config{SessionTimeout: time.Millisecond, Heartbeat: time.Minute, MaxMessageSize: 1 << 20,
		MaxPendingFrames: 1000, MaxPendingBytes: 1 << 20, ReplayFrames: 16, ReplayBytes: 1 << 20, ConflateAfter: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	closedUnder := 0
	const rounds = 2000
	for i := 0; i < rounds; i++ {
		s, _ := m.Open(OpenInfo{}, nil)
		a := &wakeRecorder{}
		if err := s.Attach(a, false, 0); err != nil {
			t.Fatal(err)
		}
		s.Detach(a)
		// Rebind around the moment the 1 ms timeout passes.
		time.Sleep(time.Duration(i%40) * 50 * time.Microsecond)
		b := &wakeRecorder{}
		if err := s.Attach(b, true, 0); err != nil {
			continue // expired first: the client learns it, fine
		}
		time.Sleep(2 * time.Millisecond) // any expiry already under way lands
		if c := s.Closed(); c != nil {
			closedUnder++
			if closedUnder == 1 {
				t.Logf("round %d: Attach succeeded, then the session closed: %v", i, c)
			}
		}
		s.Close(&Error{Code: CodeOK, Message: "done"})
	}
	if closedUnder > 0 {
		t.Fatalf("%d of %d sessions expired after a successful rebind", closedUnder, rounds)
	}
}
