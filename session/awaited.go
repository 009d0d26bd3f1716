package session

import (
	"slices"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session/topic"
)

// What a session awaits of the broker's answers to SUBSCRIBEs (the
// retained messages it sends right after a SUBACK), and for which of its
// clients: retained.go decides what is an answer, this file who gets it.

// awaited is a session's expectation of the broker's retained messages
// for one filter: until when, and for which of its clients.
type awaited struct {
	until   time.Time
	all     bool     // every client of the session whose subscriptions match
	but     uint64   // with all: but this one (Message.Except), 0: none
	clients []uint64 // else these (Message.Client)
}

// await marks mb as expecting the broker's retained messages for filter
// until the given time, for its client with handle client, or for all of
// them (0). Called with h.mu held.
func (h *Hub) await(mb *member, filter string, until time.Time, client uint64) {
	if mb.awaiting == nil {
		mb.awaiting = map[string]awaited{}
	}
	a, ok := mb.awaiting[filter]
	mb.awaiting[filter] = a.with(ok, until, client)
}

// with is a, if ok, or else nothing awaited, with client (0: all) added
// until the given time.
func (a awaited) with(ok bool, until time.Time, client uint64) awaited {
	switch {
	case client == 0:
		a = awaited{all: true}
	case !ok || time.Now().After(a.until):
		a = awaited{clients: []uint64{client}}
	case !a.all && !slices.Contains(a.clients, client):
		a.clients = append(a.clients, client)
	}
	a.until = until
	return a
}

// joined is what a and b, either of which may be absent, await together.
func joined(a awaited, aok bool, b awaited, bok bool) (awaited, bool) {
	switch {
	case !bok:
		return a, aok
	case !aok:
		return b, bok
	case a.all && a.but == 0 || b.all && b.but == 0:
		return awaited{all: true, until: a.until}, true
	case a.all || b.all: // all but one, and some: all but one, unless it is among them
		all, some := a, b
		if b.all {
			all, some = b, a
		}
		if slices.Contains(some.clients, all.but) {
			all.but = 0
		}
		return all, true
	}
	for _, c := range b.clients {
		if !slices.Contains(a.clients, c) {
			a.clients = append(a.clients, c)
		}
	}
	return a, true
}

// awaitLate is await for a session that subscribes a filter the broker
// holds while its answer to the SUBSCRIBE before may still be on its way:
// the hub has no copy of it yet to send, so the answer is this one's too.
// The expectation is the filter's, not the session's: it goes with the
// answer window, and sessions keep nothing once it is over (many may
// subscribe in a burst). Called with h.mu held.
func (h *Hub) awaitLate(fs *filterState, mb *member, client uint64) {
	if !time.Now().Before(fs.answering) {
		fs.late = nil // the window is over
		return
	}
	if fs.late == nil {
		fs.late = map[*member]awaited{}
	}
	a, ok := fs.late[mb]
	fs.late[mb] = a.with(ok, fs.answering, client)
}

// lateFor is what the session of mb awaits of filter fs's answer as a late
// subscriber. Called with h.mu held.
func (fs *filterState) lateFor(mb *member, now time.Time) (awaited, bool) {
	if fs == nil || fs.late == nil {
		return awaited{}, false
	}
	if !now.Before(fs.answering) {
		fs.late = nil // the window is over
		return awaited{}, false
	}
	a, ok := fs.late[mb]
	return a, ok
}

// awaitAllBut marks mb as expecting the broker's retained messages for
// filter until the given time, for all its clients but the one with handle
// but. Called with h.mu held.
func (h *Hub) awaitAllBut(mb *member, filter string, until time.Time, but uint64) {
	if mb.awaiting == nil {
		mb.awaiting = map[string]awaited{}
	}
	mb.awaiting[filter] = awaited{until: until, all: true, but: but}
}

// deliver gives a session m, flagged retained, as the clients a awaits it
// for must get it.
func (a awaited) deliver(sess *Session, m *Message) {
	switch {
	case a.all && a.but != 0:
		sess.deliver(m.except(a.but))
		return
	case a.all:
		sess.deliver(m)
		return
	}
	for _, c := range a.clients {
		sess.deliver(addressed(m, c))
	}
}

// addressed is a copy of the retained message m for one client (an
// encoding of its own, with the client's handle).
func addressed(m *Message, client uint64) *Message {
	return &Message{Stream: m.Stream, Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: true, Props: m.Props, Client: client}
}

// awaits reports whether mb expects retained messages of topic now.
func (mb *member) awaits(name string, now time.Time) bool {
	for f, a := range mb.awaiting {
		if now.After(a.until) {
			delete(mb.awaiting, f)
			continue
		}
		if topic.Match(f, name) {
			return true
		}
	}
	return false
}
