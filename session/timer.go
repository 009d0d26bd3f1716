package session

import "time"

// sessionTimer is a session's one timer for a kind of wake-up (the
// frequency gate's next release, the bandwidth budget's next frame): set
// for the earliest time asked, reused rather than started anew each time.
// A capped or throttled session is asked for a wake-up by nearly every
// message, and a timer per request would pile up. Guarded by the session's
// mutex; fn clears it with fired, under that mutex, when it runs.
type sessionTimer struct {
	at time.Time // when it fires; zero: not set
	t  *time.Timer
}

// arm sets the timer for at, unless it is set for earlier already. fn is
// what the timer runs; it is asked for only when the timer is made, so
// callers pass a method value's maker and the method value (a closure on
// the heap) is not built again for every message.
func (st *sessionTimer) arm(at, now time.Time, fn func() func()) {
	if !st.at.IsZero() && !at.Before(st.at) {
		return
	}
	st.at = at
	if st.t == nil {
		st.t = time.AfterFunc(at.Sub(now), fn())
	} else {
		st.t.Reset(at.Sub(now))
	}
}

// fired records that the timer ran: the next arm sets it again.
func (st *sessionTimer) fired() { st.at = time.Time{} }

func (st *sessionTimer) stop() {
	if st.t != nil {
		st.t.Stop()
	}
}
