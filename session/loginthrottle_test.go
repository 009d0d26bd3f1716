package session

import (
	"testing"
	"time"
)

// Past loginGrace refusals an address waits 1 s, then 2 s, 4 s... up to
// loginDelayMax after its last refusal; a try under way holds back the
// next, and at most loginInFlight go at once before that; other addresses
// are not concerned; a quiet address is forgiven.
func TestLoginThrottle(t *testing.T) {
	var l loginThrottle
	now := time.Unix(1000, 0)
	try := func(addr string, refused bool) *Error {
		t.Helper()
		if err := l.begin(addr, now); err != nil {
			return err
		}
		l.end(addr, refused, now)
		return nil
	}
	for i := range loginGrace {
		if err := try("a", true); err != nil {
			t.Fatalf("refusal %d within the grace: %v", i+1, err)
		}
	}
	if err := try("a", true); err == nil || err.Code != CodeRateLimited {
		t.Fatalf("a try right after %d refusals: %v, want 4051", loginGrace, err)
	}
	if err := try("b", true); err != nil {
		t.Fatalf("another address: %v", err)
	}
	for _, wait := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second} {
		now = now.Add(wait - time.Millisecond)
		if err := try("a", true); err == nil {
			t.Fatalf("a try %v after the last refusal went through, want a wait of %v", wait-time.Millisecond, wait)
		}
		now = now.Add(time.Millisecond)
		if err := try("a", true); err != nil {
			t.Fatalf("a try %v after the last refusal: %v", wait, err)
		}
	}
	// Tries at once from one address (a page's clients, a NAT): up to
	// loginInFlight go while none was refused; once refusals count, a try
	// under way holds back the next.
	now = now.Add(time.Hour)
	for i := range loginInFlight {
		if err := l.begin("c", now); err != nil {
			t.Fatalf("try %d under way at once, none refused: %v", i+1, err)
		}
	}
	if err := l.begin("c", now); err == nil || err.Code != CodeRateLimited {
		t.Fatalf("%d tries under way let another through: %v", loginInFlight, err)
	}
	for range loginGrace {
		l.end("c", true, now)
	}
	now = now.Add(loginDelayMax)
	if err := l.begin("c", now); err == nil || err.Code != CodeRateLimited {
		t.Fatalf("past %d refusals, a try while others are under way: %v, want 4051", loginGrace, err)
	}
	// The delay stops growing, and a quiet address starts afresh.
	for range 30 {
		now = now.Add(loginDelayMax)
		if err := try("a", true); err != nil {
			t.Fatalf("a try loginDelayMax after the last refusal: %v", err)
		}
	}
	now = now.Add(loginForget + time.Second)
	for range loginGrace {
		if err := try("a", true); err != nil {
			t.Fatalf("an address quiet for loginForget: %v", err)
		}
	}
}
