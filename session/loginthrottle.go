package session

import (
	"fmt"
	"sync"
	"time"
)

// loginThrottle slows down the guessing of broker passwords through the
// gateway. A web client may give its own MQTT user name and password at
// CONNECT (the broker checks them: the policy often does not), and the
// broker answers at once, so a page could try a thousand passwords a
// second. Per client address (limitKey), past loginGrace refused CONNECTs
// with a client's own credentials, the next waits loginDelay after the
// last refusal, doubling with each one up to loginDelayMax, and one tried
// meanwhile, or while another is under way, is refused with 4051. Before
// that, up to loginInFlight may be under way at once: a page's several
// clients, or colleagues behind one NAT address, connecting together to a
// distant broker (it was loginGrace, and the fourth of a page's clients
// got 4051 with no refusal at all). An address's refusals are forgotten
// loginForget after its last. The zero value is ready to use.
type loginThrottle struct {
	mu     sync.Mutex
	byAddr map[string]*loginRecord
	// sweepAt is how many addresses it holds before the next sweep: twice
	// as many as the last one kept, so that sweeps cost O(1) per address.
	// Each new address swept them all once there were loginSweepAt with
	// recent refusals (guesses from a botnet's addresses): 0.48 ms a try
	// among 20,000. A sweep also comes loginForget after the last, when
	// every address it kept may be forgotten.
	sweepAt   int
	lastSweep time.Time
}

type loginRecord struct {
	refused  int       // refused CONNECTs since the record began
	last     time.Time // the last refusal
	underWay int       // CONNECTs tried and not yet answered
}

const (
	loginGrace = 3 // refusals that cost nothing: typing mistakes
	// loginInFlight bounds the tries under way at once from an address,
	// so that a guesser cannot start many before its refusals count.
	loginInFlight = 16
	loginDelay    = time.Second
	loginDelayMax = 30 * time.Second
	loginForget   = 10 * time.Minute
	// loginSweepAt is how many addresses the throttle holds before it
	// first drops those whose refusals are forgotten.
	loginSweepAt = 4096
)

// begin reports whether a CONNECT with a client's own credentials from
// addr may go to the broker at now; if it may, the caller must call end
// with the broker's answer.
func (l *loginThrottle) begin(addr string, now time.Time) *Error {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.byAddr[addr]
	if r != nil && r.underWay == 0 && now.Sub(r.last) > loginForget {
		delete(l.byAddr, addr)
		r = nil
	}
	if r == nil {
		if l.byAddr == nil {
			l.byAddr = map[string]*loginRecord{}
		}
		if n := len(l.byAddr); n >= loginSweepAt && (n >= l.sweepAt || now.Sub(l.lastSweep) > loginForget) {
			l.sweepLocked(now)
		}
		r = &loginRecord{}
		l.byAddr[addr] = r
	}
	if r.underWay >= loginInFlight {
		return Errorf(CodeRateLimited, "%d connections with credentials of the client's own from %s are under way: try again once they are answered",
			r.underWay, addr)
	}
	if n := r.refused; n >= loginGrace {
		wait := min(loginDelay<<min(n-loginGrace, 16), loginDelayMax)
		switch {
		case r.underWay > 0:
			return Errorf(CodeRateLimited, "a connection with credentials of the client's own from %s is under way, after %d the broker refused: try again once it is answered",
				addr, r.refused)
		case now.Before(r.last.Add(wait)):
			return Errorf(CodeRateLimited, "%d connections with credentials the broker refused from %s: try again in %s",
				r.refused, addr, fmt.Sprint(r.last.Add(wait).Sub(now).Round(time.Second)))
		}
	}
	r.underWay++
	return nil
}

// end records the broker's answer to a CONNECT begin let through.
func (l *loginThrottle) end(addr string, refused bool, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r := l.byAddr[addr]
	if r == nil {
		return
	}
	r.underWay--
	if refused {
		r.refused++
		r.last = now
	}
}

// sweepLocked drops the addresses whose refusals are forgotten, and sets
// the size of the next sweep.
func (l *loginThrottle) sweepLocked(now time.Time) {
	for a, r := range l.byAddr {
		if r.underWay == 0 && now.Sub(r.last) > loginForget {
			delete(l.byAddr, a)
		}
	}
	l.sweepAt, l.lastSweep = 2*len(l.byAddr), now
}
