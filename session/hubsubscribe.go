package session

import (
	"context"
	"slices"
	"time"
)

// member is a session's presence in a hub: one entry in the index per
// filter the session holds, however many of its clients share that filter.
type member struct {
	sess    *Session
	mark    uint64
	filters map[string]int // filter → number of the session's subscriptions to it
	// never: per filter, the clients whose subscription to it asked for no
	// retained messages (Retain Handling 2), who do not get them again
	// after an outage either; nil in most sessions, which ask for none.
	never map[string][]uint64
	// awaiting holds, per filter, until when messages with the retain flag
	// are the broker's answer to this session's SUBSCRIBE and keep the
	// flag, and for which of its clients (retained.go).
	awaiting map[string]awaited
}

// filterState is the broker-side state of one distinct filter.
type filterState struct {
	subID   int    // MQTT 5 subscription identifier, unique in the hub
	refs    [3]int // subscriptions wanting each QoS
	asked   int8   // QoS the broker was last asked for; -1: not subscribed
	granted byte
	// qos and opts: the latest SUBSCRIBE's, which a dedicated connection
	// passes to the broker (a shared one asks for QoS 2 and applies the
	// options itself).
	qos     byte
	opts    SubscribeOptions
	waiters []chan *Error
	// unsubscribed: closed once the broker no longer holds the filter
	// (its UNSUBSCRIBE answered, or none needed); see unsubscribed.
	unsubscribed []chan struct{}
	// answering: until when retained messages with this filter's
	// identifier are the broker's answer to its SUBSCRIBE (retained.go).
	answering time.Time
	// late: the sessions that subscribed while the broker held the filter
	// and its answer may still have been on its way (awaitLate).
	late map[*member]awaited
	// linger: the timer that ends the broker's subscription a while after
	// its last holder left (lingerLocked); nil when none runs.
	linger *time.Timer
	// reask: the filter's SUBSCRIBE goes to the broker again, held as it
	// is, for its answer: an MQTT 3.1.1 broker's retained messages for a
	// late subscriber (retainedOnlyInAnswers). Not asked -1, which would
	// leave the broker's subscription unknown to the reconciler should
	// every session leave it first: no UNSUBSCRIBE would go.
	reask bool
}

func (f *filterState) want() int8 {
	for q := 2; q >= 0; q-- {
		if f.refs[q] > 0 {
			return int8(q)
		}
	}
	return -1
}

// subscribe registers filter for the client of sess with handle client at
// qos and waits until the broker holds it at that QoS or better. It returns
// the QoS the broker granted. retained tells whether this SUBSCRIBE gets
// the filter's retained messages (its Retain Handling).
func (h *Hub) subscribe(ctx context.Context, sess *Session, client uint64, filter string, qos byte, opts SubscribeOptions, retained bool) (byte, *Error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return 0, Errorf(CodeBrokerUnavailable, "broker connection closed")
	}
	mb := h.members[sess]
	if mb == nil {
		mb = &member{sess: sess, filters: map[string]int{}}
		h.members[sess] = mb
	}
	fs := h.filters[filter]
	if fs == nil {
		h.nextSubID = h.nextSubID%maxSubID + 1
		fs = &filterState{asked: -1, subID: h.nextSubID}
		h.filters[filter] = fs
		h.bySubID[fs.subID] = filter
		if !h.closed { // a closed hub is out of the gauge (retireLocked)
			h.metrics.Subscriptions.WithLabelValues(h.br().cfg.Name).Inc()
		}
	}
	if fs.linger != nil {
		fs.linger.Stop()
		fs.linger = nil
	}
	fs.refs[qos]++
	fs.qos, fs.opts = qos, opts
	if h.dedicated {
		// The client's own broker session: every SUBSCRIBE goes to the
		// broker, which replaces the subscription with the new QoS and
		// options and sends the retained messages its Retain Handling asks
		// for, as for a direct client.
		fs.asked = -1
	}
	// addressee: the client this SUBSCRIBE's retained messages are for; 0:
	// every client of the session (Session.AddressRetained).
	var addressee uint64
	if sess.addressRetained.Load() {
		addressee = client
	}
	// Index before the broker subscribes: retained messages arrive right
	// after the SUBACK and must find this session.
	mb.filters[filter]++
	first := mb.filters[filter] == 1
	if opts.RetainHandling == RetainNever && !h.dedicated {
		if mb.never == nil {
			mb.never = map[string][]uint64{}
		}
		mb.never[filter] = append(mb.never[filter], client)
	}
	if first {
		h.index.Add(filter, mb)
	}
	reask := h.up && fs.asked >= int8(qos) && fs.waiters == nil && retained && h.retainedOnlyInAnswers()
	if reask {
		// An MQTT 3.1.1 broker, whose live retained messages come without
		// the flag: no copy is current, so the broker answers again.
		fs.reask = true
		h.answeredBefore(filter, mb)
	}
	if h.up && fs.asked >= int8(qos) && fs.waiters == nil && !reask {
		// The broker holds the filter already: this session's retained
		// messages come from the hub's copy, and nobody else sees them.
		switch {
		case h.dedicated, !retained:
		case addressee != 0:
			h.sendRetained(mb, filter, addressee)
		case first:
			h.sendRetained(mb, filter, 0)
		}
		if retained && !h.dedicated && (addressee != 0 || first) {
			h.awaitLate(fs, mb, addressee)
		}
		granted := min(fs.granted, qos)
		h.mu.Unlock()
		return granted, nil
	}
	if !h.dedicated && retained {
		h.await(mb, filter, time.Now().Add(time.Duration(h.br().cfg.ConnectTimeout)), addressee)
	}
	ch := make(chan *Error, 1)
	fs.waiters = append(fs.waiters, ch)
	h.dirty[filter] = struct{}{}
	h.mu.Unlock()
	h.poke()

	timeout := time.NewTimer(time.Duration(h.br().cfg.ConnectTimeout))
	defer timeout.Stop()
	var err *Error
	select {
	case err = <-ch:
	case <-timeout.C:
		err = Errorf(CodeBrokerTimeout, "broker %q did not confirm the subscription in time", h.br().cfg.Name)
	case <-ctx.Done():
		err = Errorf(CodeBrokerUnavailable, "subscription cancelled")
	}
	if err != nil {
		h.unsubscribe(sess, client, filter, qos, opts)
		return 0, err
	}
	h.mu.Lock()
	granted := min(fs.granted, qos)
	if !h.dedicated && retained {
		// The broker sends retained messages right after the SUBACK.
		h.await(mb, filter, time.Now().Add(retainedWindow), addressee)
	}
	h.mu.Unlock()
	return granted, nil
}

// unsubscribe releases a subscription of the client of sess with handle
// client to filter, made at qos with opts.
func (h *Hub) unsubscribe(sess *Session, client uint64, filter string, qos byte, opts SubscribeOptions) {
	h.mu.Lock()
	defer h.mu.Unlock()
	mb := h.members[sess]
	fs := h.filters[filter]
	if mb == nil || fs == nil || mb.filters[filter] == 0 {
		return
	}
	if opts.RetainHandling == RetainNever {
		if i := slices.Index(mb.never[filter], client); i >= 0 {
			mb.never[filter] = slices.Delete(mb.never[filter], i, i+1)
		}
		if len(mb.never[filter]) == 0 {
			delete(mb.never, filter)
		}
	}
	fs.refs[qos]--
	if mb.filters[filter]--; mb.filters[filter] == 0 {
		delete(mb.filters, filter)
		delete(mb.awaiting, filter)
		delete(fs.late, mb)
		h.index.Remove(filter, mb)
		if len(mb.filters) == 0 {
			delete(h.members, sess)
		}
	}
	if fs.want() < 0 {
		if !h.dedicated && fs.asked >= 0 {
			h.lingerLocked(filter, fs)
			return
		}
		h.dirty[filter] = struct{}{}
		h.poke()
	}
}

// subscriptionLinger is how long a shared connection keeps a filter at the
// broker after its last holder left. Pages unsubscribe and subscribe again
// as users move between views, and sessions come back after a drop: within
// the linger, the next SUBSCRIBE is served at once from the hub, with the
// retained messages from its copy, and the broker is asked nothing. Without
// it, each such turn cost two round trips to the broker and, on a filter
// with many retained messages, the broker's whole answer again on the
// shared connection, where every other session's messages waited behind it
// (2,000 retained messages of 1 KB, a filter four sessions subscribed to
// and left in turn for 2 s: 70 SUBSCRIBEs to the broker and 8-38 ms for a
// bystander's messages, against 1 SUBSCRIBE and 0.8-5 ms with the linger).
// The cost is a couple of seconds of the filter's messages, which no
// session takes. (A SUBSCRIBE that meets the UNSUBSCRIBE on its way, at
// the end of the linger, is served as the broker still held the filter:
// the copies stay until the broker confirms; see forgetFilterLocked.)
const subscriptionLinger = 2 * time.Second

// lingerLocked keeps filter, which nobody holds any more, at the broker for
// subscriptionLinger (but a dedicated connection, whose UNSUBSCRIBE is the
// client's own and must go when it asks). Called with h.mu held.
func (h *Hub) lingerLocked(filter string, fs *filterState) {
	fs.linger = time.AfterFunc(subscriptionLinger, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.closed {
			return
		}
		if h.filters[filter] != fs || fs.want() >= 0 {
			return // forgotten by a reconnection, or subscribed again as the timer fired
		}
		fs.linger = nil
		h.dirty[filter] = struct{}{}
		h.poke()
	})
}

// unsubscribed returns a channel closed once the broker no longer holds
// filter for the hub: at once if nobody wants it to, or it is not
// subscribed. A dedicated client's UNSUBSCRIBE waits for it before its
// answer, as a direct client gets its UNSUBACK after the messages the
// broker sent before it.
func (h *Hub) unsubscribed(filter string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	fs := h.filters[filter]
	if fs == nil || fs.want() >= 0 {
		return closedChan
	}
	ch := make(chan struct{})
	fs.unsubscribed = append(fs.unsubscribed, ch)
	return ch
}

// closedChan is a channel closed for good: what is done already.
var closedChan = func() chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}()

// unsubscribedLocked closes fs's unsubscribed channels. Called with h.mu
// held.
func unsubscribedLocked(fs *filterState) {
	for _, ch := range fs.unsubscribed {
		close(ch)
	}
	fs.unsubscribed = nil
}

// forgetFilterLocked drops a filter nobody wants any more, once the broker
// no longer has it, and the copies of retained messages only it covered.
// (Not before: a subscription that comes while the UNSUBSCRIBE is on its
// way is served as the broker still holds the filter, from the copies.)
// Called with h.mu held.
func (h *Hub) forgetFilterLocked(f string) {
	defer h.pruneRetained(f)
	if fs := h.filters[f]; fs != nil {
		unsubscribedLocked(fs)
		if h.bySubID[fs.subID] == f {
			delete(h.bySubID, fs.subID)
			h.dups.dropped(fs.subID)
		}
	}
	delete(h.filters, f)
	if !h.closed { // a closed hub is out of the gauge (retireLocked)
		h.metrics.Subscriptions.WithLabelValues(h.br().cfg.Name).Dec()
	}
}
