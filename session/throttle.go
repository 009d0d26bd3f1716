package session

import (
	"fmt"
	"math"
	"time"

	"github.com/caddy-mqtt/mqttgateway/throttle"
)

// Frequency limits: a subscription may ask for at most f messages per second
// (the server caps it with max_frequency). The limit applies to each topic
// the subscription matches, and only to QoS 0: a wildcard subscription
// keeps the latest value of every topic, and the latest value of every topic
// is always delivered in the end, and last. QoS 1/2 messages are never held
// back, and a value held for their topic, being older, is dropped. QoS 0 is
// the QoS the session's clients get a message at: one published at QoS 1
// or 2 that reaches them at QoS 0, as every matching subscription of the
// session is QoS 0, is a QoS 0 value like the others.
//
// When several subscriptions of a session match a topic, the least
// restrictive wins, since the session receives a message once.

// MinFrequency is the lowest frequency limit a setting or a hook may give:
// one message per 1000 s, the wire's unit. Much lower, the spacing
// between messages would not fit a time.Duration: 1e-10 overflowed to a
// negative spacing, which meant no limit at all.
const MinFrequency = 0.001

// CheckFrequency refuses a frequency limit that is not a number of
// messages per second of at least MinFrequency (NaN and infinities
// included: they were taken as no limit).
func CheckFrequency(f float64) error {
	if !(f >= MinFrequency) || math.IsInf(f, 0) {
		return fmt.Errorf("%v is not a number of messages per second of at least %v", f, MinFrequency)
	}
	return nil
}

// capped applies caps (0: none) to a rate (0: unlimited): the lowest wins.
func capped(rate float64, caps ...float64) float64 {
	for _, c := range caps {
		if c > 0 && (rate <= 0 || rate > c) {
			rate = c
		}
	}
	return rate
}

// interval turns messages per second into the spacing between deliveries,
// applying the server's cap, the session's (the authenticate hook's) and
// the subscription's (the authorize hook's), 0 for none; 0 means
// unlimited.
func (m *Manager) interval(perSecond, sessionCap, subscriptionCap float64) time.Duration {
	perSecond = capped(perSecond, m.config().MaxFrequency, sessionCap, subscriptionCap)
	if perSecond <= 0 {
		return 0
	}
	// A 2% margin (at most 20 ms) keeps deliveries under the rate as the
	// client measures it, whatever the network's jitter.
	iv := time.Duration(float64(time.Second) / perSecond)
	return iv + min(iv/50, 20*time.Millisecond)
}

// releaseHeld sends the values held under limits that just changed: under
// the new ones they may be due already (a limit raised or lifted), the
// client asked for the change to take effect, and deliver no longer
// consults the gate once no limit is left (a newer value would overtake
// the held one). Called with s.mu held.
func (s *Session) releaseHeld() {
	if s.gate != nil && s.gate.Waiting() > 0 {
		s.gateBuf = s.gate.Drain(s.gateBuf[:0], time.Now())
		s.pushHeld()
	}
}

// admit passes a QoS 0 message through the frequency gate, or holds it as
// its topic's latest value: it returns the message to send now, or nil. A
// message that goes past the gate (QoS 1/2, a topic without a limit now)
// drops the value held for its topic: that one is older and must not
// arrive after it. Called with s.mu held.
//
// A client's own publish, which one client of the session must not get
// (Message.Except), supersedes the held value for the others only: for
// that client the held value is the latest. So that value goes out first,
// early, and the echo takes its place.
func (s *Session) admit(m *Message) *Message {
	interval, qos, matched := s.freqs.of(m.Stream).limit(m.Topic)
	if !matched || interval <= 0 {
		s.supersedeHeld(m)
		return m
	}
	if m.QoS > 0 {
		// The shared connection receives messages at the QoS they were
		// published at, and a client gets one at the lower of that and its
		// subscription's. When every subscription of the session that
		// matches is QoS 0, the message is a QoS 0 value for the session,
		// and its limit applies: a sensor publishing at QoS 1 was not
		// limited at all. A copy, at QoS 0 (the message is shared): held,
		// it is conflated like any QoS 0 value, in the gate and in the
		// queue. Not on a dedicated stream, whose broker sends at the
		// subscription's QoS already and awaits the ACK of what it sent.
		if qos > 0 || m.PacketID != 0 {
			s.supersedeHeld(m)
			return m
		}
		m = m.atQoS0()
	}
	now := time.Now()
	key := conflationKey{m.Stream, m.Topic}
	if m.Except != 0 {
		s.sendHeldNow(key)
	}
	ok, replaced := s.gate.Offer(key, interval, m, now)
	if replaced {
		s.mgr.metrics.Conflated.Inc()
		s.conflated++
	}
	if ok {
		return m
	}
	if l := s.out.limits; s.gate.Waiting() > l.pendingFrames || s.gate.Held() > l.pendingBytes {
		s.heldOverflow(key, m)
		return nil
	}
	s.armGate(now)
	return nil
}

// receivedQoS is m as the session's clients receive it, for the queue to
// conflate under a bandwidth cap or for a slow client: a message published
// at QoS 1 or 2 on the shared connection is a QoS 0 value when every
// subscription of the session that matches its topic is QoS 0 (a copy, as
// in admit), and is conflated as one: a sensor's values published at
// QoS 1 to a dashboard that also holds a QoS 1 subscription for alarms
// are conflated, the alarms are not. Otherwise m. Called with s.mu held.
func (s *Session) receivedQoS(m *Message) *Message {
	if m.QoS == 0 || m.PacketID != 0 || m.Client != 0 || m.Except != 0 || !s.freqs.of(m.Stream).reachesAtQoS0(m.Topic) {
		return m
	}
	return m.atQoS0()
}

// heldOverflow drops m, the value just held for key: the values a session's
// frequency limits hold (the latest of each topic, until its time comes)
// may take what its queue may, max_queued_frames and max_queued_bytes, as
// a queue of their own. Past that it is a drop like the queue's, counted in
// an overflow NOTICE. Without the bound, a subscription limited to one
// message per 1,000 s to a wildcard held a value of every topic it matched
// for that long: 1 GB from 500 topics of 1 MiB. Called with s.mu held.
func (s *Session) heldOverflow(key conflationKey, m *Message) {
	s.gate.Drop(key)
	s.droppedLocked(m)
	if s.conn != nil {
		s.conn.Wake()
	}
}

// armGate makes sure the session's one gate timer fires when the earliest
// held value is due. Called with s.mu held.
func (s *Session) armGate(now time.Time) {
	next, ok := s.gate.Next()
	if ok {
		s.gateTimer.arm(next, now, func() func() { return s.flushGate })
	}
}

// supersedeHeld discards the value held for m's topic, which m
// supersedes, or sends it first if one client must not get m. Called with
// s.mu held.
func (s *Session) supersedeHeld(m *Message) {
	key := conflationKey{m.Stream, m.Topic}
	switch {
	case s.gate.Waiting() == 0:
	case m.Except != 0:
		s.sendHeldNow(key)
	case s.gate.Drop(key):
		s.mgr.metrics.Conflated.Inc()
		s.conflated++
	}
}

// sendHeldNow queues the value held for key at once, if any. Called with s.mu
// held.
func (s *Session) sendHeldNow(key conflationKey) {
	if s.gate == nil {
		return
	}
	if v, ok := s.gate.Take(key); ok {
		s.pushLocked(Event{Kind: EventMessage, Msg: v})
	}
}

// pushHeld queues the values in gateBuf, released by the gate. Called with
// s.mu held.
func (s *Session) pushHeld() {
	for i, m := range s.gateBuf {
		s.pushLocked(Event{Kind: EventMessage, Msg: m})
		s.gateBuf[i] = nil
	}
}

func (s *Session) flushGate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gate == nil || s.closed != nil {
		return
	}
	now := time.Now()
	s.gateTimer.fired()
	s.gateBuf = s.gate.Due(s.gateBuf[:0], now)
	s.pushHeld()
	s.gate.Tidy(now) // and Offer prunes as new keys come
	s.armGate(now)
}

// SetMaxBandwidth caps the bytes per second sent to the client (0: no
// limit of its own); the server's max_bandwidth caps it in turn. It returns
// the cap in force.
func (s *Session) SetMaxBandwidth(bytesPerSecond uint64) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.askedBandwidth = bytesPerSecond
	rate := capped(float64(bytesPerSecond), float64(s.mgr.config().MaxBandwidth), float64(s.capBandwidth))
	now := time.Now()
	switch {
	case rate <= 0:
		s.bucket = nil
	case s.bucket == nil:
		s.bucket = throttle.NewBucket(rate, now)
	default:
		s.bucket.SetRate(rate, now)
	}
	if s.conn != nil {
		s.conn.Wake()
	}
	return uint64(rate)
}

// Bandwidth answers a BANDWIDTH request: the RESULT's value is the cap in
// force.
func (s *Session) Bandwidth(req, bytesPerSecond uint64) {
	s.result(req, nil, s.SetMaxBandwidth(bytesPerSecond))
}
