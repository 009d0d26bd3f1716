package session

import (
	"context"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/zap"
)

// The reconciler is the only goroutine that sends SUBSCRIBE and UNSUBSCRIBE
// for a hub. Sessions change the desired state (the filters' reference
// counts) and mark filters dirty; the reconciler converges the broker to it,
// one operation at a time. Serialising here is what makes a quick
// unsubscribe-then-subscribe by two sessions safe: the broker can never see
// them reordered.

// batchLimit bounds the filters sent in one SUBSCRIBE, so a resubscription
// after a reconnect stays well under brokers' packet size limits.
const batchLimit = 64

func (h *Hub) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

func (h *Hub) reconcile(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			h.failWaiters(Errorf(CodeBrokerUnavailable, "broker connection closed"))
			return
		case <-h.wake:
		}
		for h.reconcileOnce(ctx) {
		}
		h.restored()
	}
}

// reconcileOnce performs one batch of work and reports whether more remains.
func (h *Hub) reconcileOnce(ctx context.Context) bool {
	var subs []subscribeOp
	var unsubs []string
	h.mu.Lock()
	if !h.up || h.closed {
		h.mu.Unlock()
		return false // onUp marks everything dirty again
	}
	unsubBytes := 0
	for f := range h.dirty {
		if len(subs) >= batchLimit || len(unsubs) >= batchLimit ||
			len(unsubs) > 0 && !h.unsubscribeFits(unsubBytes, f) {
			break
		}
		delete(h.dirty, f)
		fs := h.filters[f]
		if fs == nil {
			continue
		}
		want := fs.want()
		if want >= 0 && h.dedicated {
			// The latest SUBSCRIBE's QoS, not the highest: it replaces the
			// one before, which may not be released yet.
			want = int8(fs.qos)
		}
		if want >= 0 && !h.dedicated {
			// A shared connection receives every message at the QoS it was
			// published with; each session then gets the lower of that and
			// its own subscription's QoS (the client applies it). One
			// SUBSCRIBE per filter, never an upgrade, and every copy of a
			// message alike.
			want = 2
		}
		switch {
		case want >= 0 && (want > fs.asked || fs.reask):
			fs.asked, fs.reask = want, false
			subs = append(subs, subscribeOp{h.subscribeOptions(f, fs, byte(want)), fs.subID})
			// Set before the SUBSCRIBE goes: its answer may be handled
			// before subscribeOne sees the SUBACK.
			fs.answering = time.Now().Add(time.Duration(h.br().cfg.ConnectTimeout) + retainedWindow)
		case want >= 0:
			h.notify(fs, nil) // already held at a sufficient QoS
		case fs.asked >= 0:
			unsubs = append(unsubs, f)
			unsubBytes += 2 + len(f)
		default:
			h.forgetFilterLocked(f)
		}
	}
	more := len(h.dirty) > 0
	h.mu.Unlock()

	if len(subs) > 0 && !h.sendSubscribe(ctx, subs) {
		// The broker did not answer; pause before retrying so a failing
		// connection does not turn into a busy loop.
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
		more = true
	}
	if len(unsubs) > 0 {
		h.sendUnsubscribe(ctx, unsubs)
	}
	return more
}

// subscribeOptions are the options the broker gets for filter: a
// dedicated connection's are its client's; a shared connection's are the
// hub's, the same for every session.
func (h *Hub) subscribeOptions(f string, fs *filterState, qos byte) paho.SubscribeOptions {
	if h.dedicated {
		return paho.SubscribeOptions{Topic: f, QoS: qos, NoLocal: fs.opts.NoLocal,
			RetainAsPublished: fs.opts.RetainAsPublished, RetainHandling: fs.opts.RetainHandling}
	}
	// Retain As Published: the hub must see which live messages are
	// retained to keep its copy current (retained.go); it clears the flag
	// for web clients itself.
	return paho.SubscribeOptions{Topic: f, QoS: qos, RetainAsPublished: true}
}

type subscribeOp struct {
	opts  paho.SubscribeOptions
	subID int
}

// sendSubscribe subscribes each filter in a SUBSCRIBE of its own, since the
// subscription identifier is a property of the packet. It reports false
// when the broker gave no answer.
func (h *Hub) sendSubscribe(ctx context.Context, subs []subscribeOp) bool {
	ok := true
	for _, s := range subs {
		if !h.subscribeOne(ctx, s) {
			ok = false
		}
	}
	return ok
}

func (h *Hub) subscribeOne(ctx context.Context, s subscribeOp) bool {
	id := s.subID
	sub := &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{s.opts}}
	if !h.noSubIDs.Load() {
		sub.Properties = &paho.SubscribeProperties{SubscriptionIdentifier: &id}
	}
	var suback *paho.Suback
	var err error
	refused := h.tooLarge("SUBSCRIBE", func() int { return packetSize(sub.Packet().Buffers()) })
	if refused == nil {
		h.dups.subscribing(id, h.subEpoch.Add(1))
		c := h.call(ctx, time.Duration(h.br().cfg.ConnectTimeout))
		suback, err = c.cm.Subscribe(c.ctx, sub)
		c.stop()
		refused = refusedByBroker("subscription", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	f := s.opts.Topic
	fs := h.filters[f]
	if fs == nil {
		return true
	}
	switch {
	case refused != nil: // by the broker's CONNACK: sending it again would not help
		fs.asked = -1
		h.notify(fs, refused)
	case suback != nil && len(suback.Reasons) == 1 && suback.Reasons[0] < 0x80:
		fs.granted = suback.Reasons[0]
		fs.answering = time.Now().Add(retainedWindow)
		h.notify(fs, nil)
	case suback != nil && len(suback.Reasons) == 1:
		fs.asked = -1
		h.notify(fs, Errorf(CodeBrokerRejected, "broker rejected the subscription to %q: %s", TrimText(f), reason(suback.Reasons[0], "")))
	default:
		// No answer: the connection dropped or timed out. Waiters keep
		// waiting (until their own deadline) and the filter is retried.
		fs.asked = -1
		h.dirty[f] = struct{}{}
		h.log.Debug("subscribe failed", zap.String("filter", f), zap.Error(err))
		return false
	}
	return true
}

func (h *Hub) sendUnsubscribe(ctx context.Context, filters []string) {
	c := h.call(ctx, time.Duration(h.br().cfg.ConnectTimeout))
	_, err := c.cm.Unsubscribe(c.ctx, &paho.Unsubscribe{Topics: filters})
	c.stop()
	if err != nil {
		h.log.Debug("unsubscribe failed", zap.Strings("filters", filters), zap.Error(err))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range filters {
		fs := h.filters[f]
		if fs == nil {
			continue
		}
		fs.asked = -1
		// Answered, or given up on: a dedicated client's UNSUBSCRIBE
		// waits no longer.
		unsubscribedLocked(fs)
		if fs.want() >= 0 { // subscribed again meanwhile
			h.dirty[f] = struct{}{}
		} else {
			h.forgetFilterLocked(f)
		}
	}
	if len(h.dirty) > 0 {
		h.poke()
	}
}

// notify answers every session waiting on fs. Called with h.mu held.
func (h *Hub) notify(fs *filterState, err *Error) {
	for _, ch := range fs.waiters {
		ch <- err
	}
	fs.waiters = nil
}

func (h *Hub) failWaiters(err *Error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, fs := range h.filters {
		h.notify(fs, err)
	}
}
