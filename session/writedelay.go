package session

import (
	"sync"
	"time"
)

// Write delay (Config.WriteDelay): a broker message queued for a session
// does not wake the transport at once. The wake waits the delay, and every
// message queued meanwhile leaves in the same write.
//
// Why: one small write to a socket costs the sender several microseconds of
// kernel time however little it carries (the TCP stack, not the copy; on
// loopback the sender also runs the receiver's input path). When every
// message fans out to thousands of clients, those writes are most of the
// gateway's CPU. Batching k messages per write divides that cost by k, at
// the price of up to the delay in latency. Control frames (results,
// notices, the session's end, an overflow notice) still wake the writer at
// once, and take the waiting messages with them. Messages held by the delay
// do not count as a slow client's backlog (conflate_after), but they do
// count towards the queue's bounds (max_queued_frames and _bytes), which
// must hold what a session receives within the delay.
//
// Every session of a manager waits the same delay, so wakes fall due in the
// order they were queued: a FIFO and one timer do the scheduling, with no
// heap and no timer per session. (After a reload that shortens the delay,
// a new wake may wait behind older ones, for at most the old delay.)

// wakeQueue holds the sessions whose transport is to be woken, in due
// order.
type wakeQueue struct {
	mu      sync.Mutex
	ring    []delayedWake
	head, n int
	timer   *time.Timer
	armed   bool // the timer is set, or fire is running
}

type delayedWake struct {
	sess *Session
	due  time.Time
}

// add schedules s's wake after delay. Called with s.mu held (the order is
// always session, then queue).
func (q *wakeQueue) add(s *Session, delay time.Duration) {
	due := time.Now().Add(delay)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.n == len(q.ring) {
		q.grow()
	}
	q.ring[(q.head+q.n)%len(q.ring)] = delayedWake{s, due}
	q.n++
	if q.armed {
		return
	}
	q.armed = true
	if q.timer == nil {
		q.timer = time.AfterFunc(delay, q.fire)
	} else {
		q.timer.Reset(delay)
	}
}

func (q *wakeQueue) grow() {
	ring := make([]delayedWake, max(64, 2*len(q.ring)))
	for i := 0; i < q.n; i++ {
		ring[i] = q.ring[(q.head+i)%len(q.ring)]
	}
	q.ring, q.head = ring, 0
}

// wakeChunk is how many sessions fire takes from the queue per lock.
const wakeChunk = 64

// fire wakes the sessions that are due, then sets the timer for the next
// one. It takes due sessions from the queue only while armed is set, so
// no two fires take the same ones; a new fire may start while this one
// wakes its last chunk, which is harmless.
func (q *wakeQueue) fire() {
	var due [wakeChunk]*Session // woken with the queue unlocked: Wake takes the transport's locks
	for {
		now := time.Now()
		q.mu.Lock()
		k := 0
		for k < wakeChunk && q.n > 0 && !q.ring[q.head].due.After(now) {
			due[k] = q.ring[q.head].sess
			q.ring[q.head] = delayedWake{}
			q.head = (q.head + 1) % len(q.ring)
			q.n--
			k++
		}
		more := k == wakeChunk
		if !more {
			if q.n == 0 {
				q.armed = false
				if len(q.ring) > 4096 {
					q.ring, q.head = nil, 0 // after a burst, do not pin a large queue
				}
			} else {
				q.timer.Reset(q.ring[q.head].due.Sub(now))
			}
		}
		q.mu.Unlock()
		for i := range due[:k] {
			due[i].delayedWake()
			due[i] = nil
		}
		if !more {
			return
		}
	}
}

// delayedWake is the wake a message's arrival put off: it wakes whatever
// transport the session has now.
func (s *Session) delayedWake() {
	s.mu.Lock()
	s.wakeQueued, s.held = false, 0
	s.overSince = time.Time{} // the held frames start waiting for the transport now
	conn := s.conn
	s.mu.Unlock()
	if conn != nil {
		conn.Wake()
	}
}
