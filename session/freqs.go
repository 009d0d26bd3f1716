package session

import (
	"time"

	"github.com/caddy-mqtt/mqttgateway/session/topic"
	"github.com/caddy-mqtt/mqttgateway/throttle"
)

// The frequency limits of a session's subscriptions, per stream: what each
// client asked for on each filter, and the interval in force after the
// server's and the user's caps. While any limit is in force, a topic index
// finds the filters that match a message's topic in time that does not
// grow with their number: a session may hold thousands of limited filters
// (16 clients × 256), and admit runs for every message on the broker
// connection's goroutine. Without limits admit does not run, and the index
// (a few hundred bytes per filter) is not kept: most sessions are idle
// dashboards, and their memory is the gateway's.

// freqLimit is one client's limit on one subscription. 16 bytes: every
// subscription of every session has one, in a small map, and a float32 is
// precise enough for a rate the wire gives in thousandths.
type freqLimit struct {
	interval time.Duration // in force after the caps, 0: unlimited
	asked    float32       // messages per second the client asked for, 0: none
	qos      byte          // the subscription's: what QoS its messages reach the client at, at most
}

type freqTable struct {
	byFilter map[string]map[*Client]freqLimit
	index    *topic.Index[*Client] // while the session has limits in force
	// aboveQoS0 counts the subscriptions above QoS 0: with none, the
	// session's clients get every message of the stream at QoS 0.
	aboveQoS0 int
}

// allQoS0 reports whether every subscription in the table is QoS 0 (and
// there is one): a message of the stream reaches the session's clients at
// QoS 0, whatever it was published at.
func (ft *freqTable) allQoS0() bool {
	return ft != nil && ft.aboveQoS0 == 0 && len(ft.byFilter) > 0
}

// limit is the least restrictive limit of the filters matching name (a
// session receives a message once), the highest QoS among them, and
// whether any matched. A nil table matches nothing.
func (ft *freqTable) limit(name string) (interval time.Duration, qos byte, matched bool) {
	if ft == nil {
		return 0, 0, false
	}
	take := func(filter string, c *Client) {
		lim := ft.byFilter[filter][c]
		if !matched || lim.interval < interval {
			interval = lim.interval
		}
		qos = max(qos, lim.qos)
		matched = true
	}
	if ft.index != nil {
		ft.index.Match(name, take)
		return interval, qos, matched
	}
	for filter, byClient := range ft.byFilter { // not indexed: no limit in force
		if topic.Match(filter, name) {
			for c := range byClient {
				take(filter, c)
			}
		}
	}
	return interval, qos, matched
}

// indexFreqs makes the index of every table that lacks one, once a limit
// is in force; dropFreqIndexes forgets them when none is. Called with s.mu
// held.
func (s *Session) indexFreqs() {
	for _, ft := range s.freqs {
		if ft.index != nil {
			continue
		}
		ft.index = new(topic.Index[*Client])
		for filter, byClient := range ft.byFilter {
			for c := range byClient {
				ft.index.Add(filter, c)
			}
		}
	}
}

func (s *Session) dropFreqIndexes() {
	for _, ft := range s.freqs {
		ft.index = nil
	}
}

// indexAsNeeded keeps the indexes while, and only while, a limit is in
// force. Called with s.mu held.
func (s *Session) indexAsNeeded() {
	if s.throttled > 0 {
		s.indexFreqs()
	} else {
		s.dropFreqIndexes()
	}
}

// setFrequency records a client's subscription limit, asked in messages
// per second (0: none), and the subscription's QoS. Called with s.mu held.
func (s *Session) setFrequency(c *Client, stream uint64, filter string, qos byte, asked float64) {
	s.clearFrequency(c, stream, filter)
	if s.freqs == nil {
		s.freqs = map[uint64]*freqTable{}
	}
	ft := s.freqs[stream]
	if ft == nil {
		ft = &freqTable{byFilter: map[string]map[*Client]freqLimit{}}
		s.freqs[stream] = ft
	}
	byClient := ft.byFilter[filter]
	if byClient == nil {
		byClient = map[*Client]freqLimit{}
		ft.byFilter[filter] = byClient
	}
	lim := freqLimit{asked: float32(asked), interval: s.mgr.interval(asked, s.capFrequency), qos: qos}
	byClient[c] = lim
	if qos > 0 {
		ft.aboveQoS0++
	}
	if ft.index != nil {
		ft.index.Add(filter, c)
	}
	if lim.interval > 0 {
		s.throttled++
		s.ensureGate()
	}
	s.indexAsNeeded()
	s.releaseHeld()
}

// clearFrequency forgets a client's subscription limit. Called with s.mu
// held.
func (s *Session) clearFrequency(c *Client, stream uint64, filter string) {
	ft := s.freqs[stream]
	if ft == nil {
		return
	}
	byClient := ft.byFilter[filter]
	lim, ok := byClient[c]
	if !ok {
		return
	}
	delete(byClient, c)
	if lim.qos > 0 {
		ft.aboveQoS0--
	}
	if ft.index != nil {
		ft.index.Remove(filter, c)
	}
	if lim.interval > 0 {
		s.throttled--
	}
	s.indexAsNeeded()
	if len(byClient) == 0 {
		delete(ft.byFilter, filter)
	}
	if len(ft.byFilter) == 0 {
		delete(s.freqs, stream)
	}
	s.releaseHeld()
}

// ensureGate makes the gate throttled subscriptions need. Called with s.mu
// held.
func (s *Session) ensureGate() {
	if s.gate == nil && s.closed == nil {
		s.gate = throttle.NewWeighedGate[conflationKey, *Message](messageSize)
	}
}

// reapplyLimits puts the server's caps, which a reload may have changed,
// on every limit the session's clients asked for, and on its bandwidth.
func (s *Session) reapplyLimits() {
	s.mu.Lock()
	for _, ft := range s.freqs {
		for _, byClient := range ft.byFilter {
			for c, lim := range byClient {
				iv := s.mgr.interval(float64(lim.asked), s.capFrequency)
				switch {
				case lim.interval <= 0 && iv > 0:
					s.throttled++
				case lim.interval > 0 && iv <= 0:
					s.throttled--
				}
				byClient[c] = freqLimit{asked: lim.asked, interval: iv, qos: lim.qos}
			}
		}
	}
	if s.throttled > 0 {
		s.ensureGate()
	}
	s.indexAsNeeded()
	s.releaseHeld()
	asked := s.askedBandwidth
	s.mu.Unlock()
	s.SetMaxBandwidth(asked)
}
