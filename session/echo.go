package session

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// No Local on a shared connection.
//
// The broker sees one connection for every web client of the gateway, so
// it sends a client's own publishes back like anyone else's. A client whose
// subscriptions have No Local must not get them. The hub knows which of the
// messages it receives are such a client's: before it publishes one, it
// notes the topic and payload as an expected echo, and the first message
// the broker sends with that topic and payload takes the note. The message
// goes to the publisher's session marked with the one client that must not
// get it (Message.Except); every other session gets it as it is.
//
// Which of two identical messages on a topic is the echo cannot be told,
// and need not be: they are the same message. A note whose echo does not
// come (the broker dropped the publish, or did not deliver it to the
// gateway) lapses after echoTTL; lapsed notes are swept every echoTTL.
// Notes keep a hash, not the message. A session may have at most
// maxEchoesPerSession waiting, so one that publishes what the broker never
// echoes (Mosquitto drops client publishes to $SYS) harms only its own No
// Local; past that, and past maxEchoes per hub, an echo reaches its
// publisher.

const (
	echoTTL             = 30 * time.Second
	maxEchoes           = 65536
	maxEchoesPerSession = 256
)

type echoNote struct {
	sess   *Session
	client uint64
	until  time.Time
}

// echoes are a hub's notes, by the hash of topic and payload, oldest first.
type echoes struct {
	seed      maphash.Seed
	count     atomic.Int32 // notes kept, read without the lock for every message
	mu        sync.Mutex
	notes     map[uint64][]*echoNote
	bySession map[*Session]int
	nextSweep time.Time
}

func newEchoes() *echoes {
	return &echoes{seed: maphash.MakeSeed(), notes: map[uint64][]*echoNote{}, bySession: map[*Session]int{}}
}

func (e *echoes) sum(topic string, payload []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(e.seed)
	h.WriteString(topic)
	h.WriteByte(0) // a topic has no NUL (MQTT 5, 4.7.3): the split is unambiguous
	h.Write(payload)
	return h.Sum64()
}

// expect notes that the client of sess with handle client publishes topic
// and payload and must not get it back. withdraw takes the note back, for
// a publish that did not reach the broker. Past the bounds it notes
// nothing: the client gets that echo.
func (e *echoes) expect(sess *Session, client uint64, topic string, payload []byte) (withdraw func()) {
	sum := e.sum(topic, payload)
	now := time.Now()
	n := &echoNote{sess: sess, client: client, until: now.Add(echoTTL)}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sweepIfDueLocked(now)
	if int(e.count.Load()) >= maxEchoes || e.bySession[sess] >= maxEchoesPerSession {
		return func() {}
	}
	e.notes[sum] = append(e.notes[sum], n)
	e.bySession[sess]++
	e.count.Add(1)
	return func() { e.take(sum, func(m *echoNote) bool { return m == n }) }
}

// echoOf returns the session and client a message from the broker echoes,
// and takes the note; nil when it echoes none.
func (e *echoes) echoOf(topic string, payload []byte) (*Session, uint64) {
	if e.count.Load() == 0 {
		return nil, 0
	}
	if n := e.take(e.sum(topic, payload), func(*echoNote) bool { return true }); n != nil {
		return n.sess, n.client
	}
	return nil, 0
}

// take removes and returns the oldest live note under sum that match
// accepts, dropping lapsed ones on the way.
func (e *echoes) take(sum uint64, match func(*echoNote) bool) *echoNote {
	now := time.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sweepIfDueLocked(now)
	list := e.notes[sum]
	var found *echoNote
	kept := list[:0]
	for _, n := range list {
		switch {
		case !now.Before(n.until): // lapsed
			e.droppedLocked(n)
		case found == nil && match(n):
			found = n
			e.droppedLocked(n)
		default:
			kept = append(kept, n)
		}
	}
	e.setLocked(sum, list, kept)
	return found
}

// sweepIfDueLocked drops every lapsed note, once per echoTTL: notes no
// message takes must not stay, with their sessions, nor keep every message
// of the hub hashed. Called with e.mu held.
func (e *echoes) sweepIfDueLocked(now time.Time) {
	if now.Before(e.nextSweep) {
		return
	}
	e.nextSweep = now.Add(echoTTL)
	for sum, list := range e.notes {
		kept := list[:0]
		for _, n := range list {
			if now.Before(n.until) {
				kept = append(kept, n)
			} else {
				e.droppedLocked(n)
			}
		}
		e.setLocked(sum, list, kept)
	}
}

// droppedLocked counts a note out of its session's share.
func (e *echoes) droppedLocked(n *echoNote) {
	if e.bySession[n.sess]--; e.bySession[n.sess] <= 0 {
		delete(e.bySession, n.sess)
	}
	e.count.Add(-1)
}

// setLocked stores kept, the notes of list that stay (in list's array),
// under sum.
func (e *echoes) setLocked(sum uint64, list, kept []*echoNote) {
	clear(list[len(kept):]) // no stale pointers to sessions past the end
	if len(kept) == 0 {
		delete(e.notes, sum)
	} else {
		e.notes[sum] = kept
	}
}
