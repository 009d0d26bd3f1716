package session

import (
	"fmt"
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

// Many addresses with recent refusals (guesses spread over a botnet's
// addresses): the throttle keeps each one's refusals, and forgets those of
// a quiet address once it holds many. Its sweep of the addresses is
// amortized: a new address among 20,000 held does not cost a pass over
// them all (BenchmarkLoginThrottleManyAddresses).
func TestLoginThrottleForgetsQuietAddressesAmongMany(t *testing.T) {
	var l loginThrottle
	now := time.Unix(1000, 0)
	const many = 3 * loginSweepAt
	for i := range many {
		addr := fmt.Sprint("10.0.", i/256, ".", i%256)
		if err := l.begin(addr, now); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		l.end(addr, true, now)
	}
	if len(l.byAddr) != many {
		t.Fatalf("%d addresses held, want all %d: their refusals are recent", len(l.byAddr), many)
	}
	if l.sweepAt <= many {
		t.Fatalf("the next sweep at %d addresses: each new one would sweep the %d held", l.sweepAt, many)
	}
	now = now.Add(loginForget + time.Second)
	for i := range loginSweepAt {
		addr := fmt.Sprint("10.1.", i/256, ".", i%256)
		if err := l.begin(addr, now); err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		l.end(addr, false, now)
	}
	if len(l.byAddr) > loginSweepAt {
		t.Fatalf("%d addresses held %s after the first %d were refused, want the quiet ones forgotten (at most %d left)",
			len(l.byAddr), loginForget+time.Second, many, loginSweepAt)
	}
}

// BenchmarkLoginThrottleManyAddresses is the cost of a refused try from a
// new address while 20,000 others have recent refusals.
func BenchmarkLoginThrottleManyAddresses(b *testing.B) {
	var l loginThrottle
	now := time.Unix(1000, 0)
	for i := range 20000 {
		addr := fmt.Sprint("held-", i)
		l.begin(addr, now)
		l.end(addr, true, now)
	}
	addrs := make([]string, 1<<16)
	for i := range addrs {
		addrs[i] = fmt.Sprint("new-", i)
	}
	i := 0
	for b.Loop() {
		addr := addrs[i%len(addrs)]
		i++
		if l.begin(addr, now) == nil {
			l.end(addr, true, now)
		}
	}
}
