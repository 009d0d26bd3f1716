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
// (a few hundred bytes per filter) is kept only for a large table that
// mixes QoS 0 subscriptions with others (receivedQoS): most sessions are
// idle dashboards, and their memory is the gateway's.
//
// A shared subscription ($share/<share name>/<filter>, a dedicated
// client's: shared.go) matches topics by the filter after its share name,
// and is limited as any other subscription: by what its client asks, and
// by the server's, the session's and the hook's caps (a session capped by
// its plan must not lift its cap by joining a group of its own).

// freqLimit is one client's limit on one subscription. 24 bytes: every
// subscription of every session has one, and a float32 is precise enough
// for a rate the wire gives in thousandths.
type freqLimit struct {
	interval time.Duration // in force after the caps, 0: unlimited
	asked    float32       // messages per second the client asked for, 0: none
	hookCap  float32       // the authorize hook's cap on the subscription (Grant), 0: none
	qos      byte          // the subscription's: what QoS its messages reach the client at, at most
}

// hookCap is the authorize hook's cap on c's subscription to filter, which
// a change of the client's own limit keeps; 0 for none. Called with s.mu
// held.
func (ft *freqTable) hookCap(filter string, c *Client) float64 {
	if ft == nil {
		return 0
	}
	if i := ft.find(filter, c); i >= 0 {
		return float64(ft.entries[i].hookCap)
	}
	return 0
}

// freqEntry is one client's limit on one filter.
type freqEntry struct {
	filter string
	client *Client
	freqLimit
}

// freqKey finds a freqEntry: in a large table's map, and as the index
// holds the entry, under the filter its topics match (a shared
// subscription's inner one: topic.SharedFilter).
type freqKey struct {
	filter string
	client *Client
}

// smallFreqTable is how many entries a table holds before it keeps a map
// to find them: an idle dashboard holds one or a few subscriptions, and
// the maps that held them (a table by stream, one by filter, one by
// client) took about 750 bytes of a session's 10 KB.
const smallFreqTable = 8

// freqTable is the limits of a session's subscriptions on one stream.
type freqTable struct {
	stream  uint64
	entries []freqEntry
	at      map[freqKey]int       // where each entry is in entries, past smallFreqTable of them
	index   *topic.Index[freqKey] // while needed (indexAsNeeded), by the filter topics match
	// aboveQoS0 counts the subscriptions above QoS 0: with none, the
	// session's clients get every message of the stream at QoS 0.
	aboveQoS0 int
}

// freqTables is a session's tables, one per stream it subscribed on: a
// handful at most (a broker's shared stream, and each dedicated client's),
// so a slice, searched as fast as a map is read for that many.
type freqTables []*freqTable

// of is stream's table, or nil.
func (ts freqTables) of(stream uint64) *freqTable {
	for _, ft := range ts {
		if ft.stream == stream {
			return ft
		}
	}
	return nil
}

// without is ts without ft.
func (ts freqTables) without(ft *freqTable) freqTables {
	for i, t := range ts {
		if t == ft {
			last := len(ts) - 1
			ts[i], ts[last] = ts[last], nil
			return ts[:last]
		}
	}
	return ts
}

// find is where c's entry for filter is in entries, or -1.
func (ft *freqTable) find(filter string, c *Client) int {
	if ft.at != nil {
		if i, ok := ft.at[freqKey{filter, c}]; ok {
			return i
		}
		return -1
	}
	for i := range ft.entries {
		if e := &ft.entries[i]; e.client == c && e.filter == filter {
			return i
		}
	}
	return -1
}

// add appends an entry, which is not in the table yet.
func (ft *freqTable) add(e freqEntry) {
	ft.entries = append(ft.entries, e)
	switch {
	case ft.at != nil:
		ft.at[freqKey{e.filter, e.client}] = len(ft.entries) - 1
	case len(ft.entries) > smallFreqTable:
		ft.at = make(map[freqKey]int, len(ft.entries))
		for i, e := range ft.entries {
			ft.at[freqKey{e.filter, e.client}] = i
		}
	}
}

// remove takes out the entry at i; the last one takes its place.
func (ft *freqTable) remove(i int) {
	last := len(ft.entries) - 1
	if ft.at != nil {
		delete(ft.at, freqKey{ft.entries[i].filter, ft.entries[i].client})
		if i != last {
			moved := ft.entries[last]
			ft.at[freqKey{moved.filter, moved.client}] = i
		}
	}
	ft.entries[i] = ft.entries[last]
	ft.entries[last] = freqEntry{}
	ft.entries = ft.entries[:last]
	if len(ft.entries) <= smallFreqTable {
		ft.at = nil
	}
	// A session that held thousands of subscriptions and went back to a
	// few gives the memory back.
	if c := cap(ft.entries); c > 4*smallFreqTable && len(ft.entries) <= c/4 {
		ft.entries = append(make([]freqEntry, 0, 2*len(ft.entries)), ft.entries...)
	}
}

// reachesAtQoS0 reports whether a message of the stream on topic name
// reaches the session's clients at QoS 0, whatever it was published at:
// every subscription in the table that matches it is QoS 0 (and one
// does). Without a topic match when every subscription is QoS 0, or none.
func (ft *freqTable) reachesAtQoS0(name string) bool {
	switch {
	case ft == nil || len(ft.entries) == 0 || ft.aboveQoS0 == len(ft.entries):
		return false
	case ft.aboveQoS0 == 0:
		return true
	}
	_, qos, matched := ft.limit(name)
	return matched && qos == 0
}

// limit is the least restrictive limit of the filters matching name (a
// session receives a message once), the highest QoS among them, and
// whether any matched. A nil table matches nothing.
func (ft *freqTable) limit(name string) (interval time.Duration, qos byte, matched bool) {
	if ft == nil {
		return 0, 0, false
	}
	take := func(lim freqLimit) {
		if !matched || lim.interval < interval {
			interval = lim.interval
		}
		qos = max(qos, lim.qos)
		matched = true
	}
	if ft.index != nil {
		ft.index.Match(name, func(_ string, k freqKey) {
			if i := ft.find(k.filter, k.client); i >= 0 {
				take(ft.entries[i].freqLimit)
			}
		})
		return interval, qos, matched
	}
	for i := range ft.entries { // not indexed: no limit in force, or a few entries
		if e := &ft.entries[i]; topic.Match(topic.SharedFilter(e.filter), name) {
			take(e.freqLimit)
		}
	}
	return interval, qos, matched
}

// indexAsNeeded keeps a table's index while, and only while, it is needed
// for every message: while a limit is in force (admit), or while the
// table mixes QoS 0 subscriptions with others and is more than a few
// (receivedQoS asks which ones match a message's topic, for a session that
// conflates). Called with s.mu held.
func (s *Session) indexAsNeeded() {
	for _, ft := range s.freqs {
		mixed := ft.aboveQoS0 > 0 && ft.aboveQoS0 < len(ft.entries) && len(ft.entries) > smallFreqTable
		switch {
		case s.throttled == 0 && !mixed:
			ft.index = nil
		case ft.index == nil:
			ft.index = new(topic.Index[freqKey])
			for _, e := range ft.entries {
				ft.index.Add(topic.SharedFilter(e.filter), freqKey{e.filter, e.client})
			}
		}
	}
}

// setFrequency records a client's subscription limit, asked in messages
// per second (0: none), the authorize hook's cap on it (0: none), and the
// subscription's QoS. Called with s.mu held.
func (s *Session) setFrequency(c *Client, stream uint64, filter string, qos byte, asked, hookCap float64) {
	s.clearFrequency(c, stream, filter)
	ft := s.freqs.of(stream)
	if ft == nil {
		ft = &freqTable{stream: stream}
		s.freqs = append(s.freqs, ft)
	}
	lim := freqLimit{asked: float32(asked), hookCap: float32(hookCap), interval: s.mgr.interval(asked, s.capFrequency, hookCap), qos: qos}
	ft.add(freqEntry{filter: filter, client: c, freqLimit: lim})
	if qos > 0 {
		ft.aboveQoS0++
	}
	if ft.index != nil {
		ft.index.Add(topic.SharedFilter(filter), freqKey{filter, c})
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
	ft := s.freqs.of(stream)
	if ft == nil {
		return
	}
	i := ft.find(filter, c)
	if i < 0 {
		return
	}
	lim := ft.entries[i].freqLimit
	ft.remove(i)
	if lim.qos > 0 {
		ft.aboveQoS0--
	}
	if ft.index != nil {
		ft.index.Remove(topic.SharedFilter(filter), freqKey{filter, c})
	}
	if lim.interval > 0 {
		s.throttled--
	}
	s.indexAsNeeded()
	if len(ft.entries) == 0 {
		s.freqs = s.freqs.without(ft)
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
		for i := range ft.entries {
			lim := &ft.entries[i].freqLimit
			iv := s.mgr.interval(float64(lim.asked), s.capFrequency, float64(lim.hookCap))
			switch {
			case lim.interval <= 0 && iv > 0:
				s.throttled++
			case lim.interval > 0 && iv <= 0:
				s.throttled--
			}
			lim.interval = iv
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
