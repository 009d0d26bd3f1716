package session

import (
	"bytes"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session/topic"
)

// Retained messages on a shared connection.
//
// A late subscriber must see the retained messages of its filter, but the
// broker sends them only in answer to a SUBSCRIBE, and a second SUBSCRIBE on
// the shared connection would send them to every session again. So the hub
// keeps its own copy: it subscribes with Retain As Published, so every
// message published with the retain flag arrives flagged, and it tracks the
// latest retained message of each topic its filters cover.
//
// Web clients see standard MQTT semantics (Retain As Published off): a
// message carries the retain flag only when it is sent because the client
// subscribed. A late subscriber gets the hub's copy with the flag, at once;
// the first subscribers of a filter get the broker's answer to the
// SUBSCRIBE, which arrives within retainedWindow of the SUBACK, with the
// flag; everyone else gets live retained publishes without it, and not the
// answers to other filters' SUBSCRIBEs (onRetained).
//
// In a session that addresses retained messages (Session.AddressRetained),
// the hub's copy and an answer it can tell for one filter's SUBSCRIBE go to
// the clients that subscribed, not to every client of the session whose
// subscriptions match.

// retainedCopy is the hub's copy of a topic's retained message, and when
// it came: a message expiry interval counts from then.
type retainedCopy struct {
	msg  *Message
	at   time.Time
	conn uint64 // the hub's connection it came on (Hub.conns)
}

// fresh is the copy as a late subscriber must get it (MQTT 5, 3.3.2.3.3):
// with its expiry interval reduced by the time it has waited, or nothing
// once that has run out, as the broker would send it.
func (rc retainedCopy) fresh(now time.Time) (*Message, bool) {
	m := rc.msg
	if m.Props == nil || !m.Props.HasMessageExpiry {
		return m, true
	}
	waited := uint32(now.Sub(rc.at) / time.Second)
	if waited >= m.Props.MessageExpiry {
		return nil, false
	}
	props := *m.Props
	props.MessageExpiry -= waited
	return &Message{Stream: m.Stream, Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: true, Props: &props}, true
}

// retainedWindow is how long after a SUBACK messages with the retain flag
// count as the broker's answer to it.
const retainedWindow = 2 * time.Second

// onRetained handles a message that arrived with the retain flag: it
// updates the hub's copy and delivers the message, flagged only to the
// sessions that await their subscription's retained messages.
//
// The broker's answer to a new filter's SUBSCRIBE repeats retained
// messages the hub has already passed on to the holders of other filters
// covering the topic: to them it is not news, and delivered as a live
// message it would take their latest value back to an older one. So a
// message that carries the identifier of a filter in its answer window
// and equals the hub's copy goes only to the sessions awaiting it. Should
// it in fact be a live republication of the same value, the broker sends a
// copy per matching subscription (Mosquitto does) and the next one, with
// another identifier, is not taken for a duplicate and reaches everyone.
//
// echoSess and echoClient: the client whose own publish m is, or nil
// (echo.go); it does not get m as a live message.
func (h *Hub) onRetained(m *Message, id int, echoSess *Session, echoClient uint64) {
	// The copy may be kept as long as the hub lives: its payload gets a slice
	// of its own size, since paho reads m's with io.ReadAll, into a buffer of
	// 512 bytes or more (4-5 times a 100-byte payload).
	flagged := &Message{Stream: m.Stream, Topic: m.Topic, Payload: bytes.Clone(m.Payload), QoS: m.QoS, Retain: true, Props: m.Props}
	live := m // not shared yet
	live.Retain = false
	var asPublished *Message // live, marked for Retain As Published; made when needed
	liveFor := func(sess *Session) *Message {
		if sess.asPublished.Load() == 0 {
			return live
		}
		if asPublished == nil {
			asPublished = live.variant()
			asPublished.PublishedRetain = true
		}
		return asPublished
	}
	// notOwn keeps msg from the client whose own publish m is.
	notOwn := func(sess *Session, msg *Message) *Message {
		if sess == echoSess {
			return msg.except(echoClient)
		}
		return msg
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	// The filter whose SUBSCRIBE m answers, or "". A web client's own
	// publish is live, whatever window it falls in.
	answers := ""
	if echoSess == nil {
		answers = h.answers(m, id, now)
	}
	var answering *filterState // the filter whose answer m is
	if answers != "" {
		h.dups.forget()
		answering = h.filters[answers]
	}
	answersOnly := h.retainedOnlyInAnswers()
	switch {
	case answersOnly: // no copies: none could be kept current
	case len(m.Payload) == 0:
		delete(h.retained, m.Topic) // an empty retained message clears the topic
	default:
		h.retained[m.Topic] = retainedCopy{flagged, now, h.conns}
	}
	h.seq++
	seq := h.seq
	h.index.Match(m.Topic, func(_ string, mb *member) {
		if mb.mark == seq {
			return
		}
		mb.mark = seq
		switch {
		case answers != "":
			a, ok := mb.awaiting[answers]
			late, lateOK := answering.lateFor(mb, now)
			if a, ok := joined(a, ok && now.Before(a.until), late, lateOK); ok {
				a.deliver(mb.sess, flagged)
			}
		case mb.awaits(m.Topic, now):
			mb.sess.deliver(notOwn(mb.sess, flagged))
		case answersOnly:
			// An answer to another session's SUBSCRIBE: this one had the
			// message already.
		default:
			mb.sess.deliver(notOwn(mb.sess, liveFor(mb.sess)))
		}
	})
}

// retainedOnlyInAnswers reports whether the hub is a shared connection to
// an MQTT 3.1.1 broker, which flags a retained message only in answer to a
// SUBSCRIBE (MQTT 3.1.1, 3.3.1.3: a live one comes without the flag), so
// its copies could not be kept current (mqtt311.go).
func (h *Hub) retainedOnlyInAnswers() bool {
	return !h.dedicated && h.br().cfg.speaks311()
}

// answeredBefore ends the windows in which the sessions other than mb
// take retained messages for filter as the answer to their SUBSCRIBE, when
// a SUBSCRIBE of filter goes to the broker again for mb (an MQTT 3.1.1
// broker, which has no subscription identifiers to tell the answers
// apart): the broker answered theirs first, right after its SUBACK, and
// what comes now is mb's. A window opened less than answerSettle ago is
// left open: its answer may be on its way still, and a retained message
// twice is better than none. Called with h.mu held.
func (h *Hub) answeredBefore(filter string, mb *member) {
	settled := time.Now().Add(-answerSettle)
	for _, other := range h.members {
		if a, ok := other.awaiting[filter]; ok && other != mb && a.until.Add(-retainedWindow).Before(settled) {
			delete(other.awaiting, filter)
		}
	}
}

// answerSettle is how long after its SUBACK a broker's answer to a
// SUBSCRIBE (the retained messages that follow it) is taken to be in.
const answerSettle = 250 * time.Millisecond

// answers returns the filter whose SUBSCRIBE m, with subscription
// identifier id, answers by repeating the hub's copy, or "". Called with
// h.mu held, before the copy is updated. Without identifiers (a broker that
// has none) it cannot tell, and the message goes to everyone, as before.
//
// A topic the hub has no copy of, and no other filter covers, is new to
// the gateway: the message goes only to the sessions that just subscribed
// f. Those that asked for retained messages get it flagged, and one that
// asked for none (Retain Handling) does not get it. Should it in fact be a
// retained message published within the answer window, such a session
// misses it (README). With another filter covering the topic, it may be a
// live message those holders must get, and goes to everyone as before;
// unless those filters are new too, awaiting their own answers (two
// overlapping filters subscribed at once), and the broker sends a copy per
// subscription: their holders get the message in their answer, and would
// get it twice. (A live one then reaches them as an answer, through the
// copy their filter's identifier brings. A broker that sends one copy for
// all, with the identifiers of which paho keeps the last, would bring them
// none.)
func (h *Hub) answers(m *Message, id int, now time.Time) string {
	if id == 0 {
		return ""
	}
	f := h.bySubID[id]
	fs := h.filters[f]
	if fs == nil || !now.Before(fs.answering) {
		return ""
	}
	prev, ok := h.retained[m.Topic]
	switch {
	case ok && !bytes.Equal(prev.msg.Payload, m.Payload):
		return ""
	case !ok && h.coveredByAnother(m.Topic, f, now):
		return ""
	}
	return f
}

// coveredByAnother reports whether a filter of the hub other than f, and
// not awaiting the broker's answer to its own SUBSCRIBE (sent or still to
// send) from a broker that sends copies per subscription, matches topic
// name. Called with h.mu held.
func (h *Hub) coveredByAnother(name, f string, now time.Time) bool {
	ownCopies := h.br().copiesPerSub.Load()
	covered := false
	h.index.Match(name, func(filter string, _ *member) {
		if !covered && filter != f {
			fs := h.filters[filter]
			// (asked -1: its SUBSCRIBE has not gone yet.)
			awaiting := fs != nil && (fs.asked < 0 || now.Before(fs.answering))
			covered = !ownCopies || !awaiting
		}
	})
	return covered
}

// sendRetained delivers the hub's retained messages matching filter to a
// session that just subscribed to a filter the broker already holds:
// addressed to its client with handle client, or to every client whose
// subscriptions match (0). Called with h.mu held, so no live update can
// overtake them.
func (h *Hub) sendRetained(mb *member, filter string, client uint64) {
	now := time.Now()
	for name, rc := range h.retained {
		if !topic.Match(filter, name) {
			continue
		}
		if m, ok := rc.fresh(now); ok {
			if client != 0 {
				m = addressed(m, client)
			}
			mb.sess.deliver(m)
		} else {
			delete(h.retained, name) // expired: the broker has dropped it too
		}
	}
}

// sweepStaleRetainedLater forgets, once the broker's answers to the
// SUBSCRIBEs that restored the hub's filters have come, the copies they did
// not bring again: the broker no longer has them (it restarted without
// persistence, or a device cleared them during the outage), and a late
// subscriber must not get them. Called with h.mu held, when the filters
// are subscribed again.
func (h *Hub) sweepStaleRetainedLater() {
	conn := h.conns
	time.AfterFunc(retainedWindow, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.conns != conn || h.closed {
			return // another connection sweeps after its own restore
		}
		for name, rc := range h.retained {
			if rc.conn < conn {
				delete(h.retained, name)
			}
		}
	})
}

// pruneRetained forgets retained messages no filter covers any more, after
// filter lost its last subscriber. Called with h.mu held.
func (h *Hub) pruneRetained(filter string) {
	for name := range h.retained {
		if !topic.Match(filter, name) {
			continue
		}
		covered := false
		h.index.Match(name, func(string, *member) { covered = true })
		if !covered {
			delete(h.retained, name)
		}
	}
}
