package session

import (
	"encoding/hex"
	"slices"
	"strings"
	"time"
)

// What an operator can look up about live sessions (Caddy's admin API, GET
// /mqtt_gateway/sessions): on call, "my dashboard stopped updating" starts
// with the user's sessions, whether a connection is bound, what they hold
// and whether their messages are conflated or dropped. The logs have the
// opens and closes; this is the state in between.

// SessionStatus is one live session as the admin API lists it.
type SessionStatus struct {
	Session   string    `json:"session"` // hex, as hooks and logs give it
	User      string    `json:"user"`
	Remote    string    `json:"remote"`    // the connection's address at open
	ClientIP  string    `json:"client_ip"` // as Caddy's trusted_proxies resolved it
	Transport string    `json:"transport"` // at open
	Opened    time.Time `json:"opened"`
	// LastRemote, LastClientIP and LastTransport are the latest
	// connection's (the same as at open until the client rebinds: a
	// dropped connection, a move to another transport, every long poll).
	// Behind a balancer LastRemote is the balancer's; LastClientIP is the
	// client's, as trusted_proxies resolves it.
	LastRemote    string `json:"last_remote"`
	LastClientIP  string `json:"last_client_ip"`
	LastTransport string `json:"last_transport"`
	// Connected: a connection is bound; false: the session waits for the
	// client to rebind, until session_timeout.
	Connected bool `json:"connected"`
	// MaxBandwidth is the bandwidth cap in force, in bytes a second (the
	// least of the gateway's, the authenticate hook's and the client's); 0:
	// none. MaxFrequency is the hook's cap on subscriptions' frequency.
	MaxBandwidth float64 `json:"max_bandwidth,omitempty"`
	MaxFrequency float64 `json:"max_frequency,omitempty"`
	// Frames: data frames queued for the client since the open (messages,
	// results, notices); QueuedFrames and QueuedBytes: those not written
	// yet. Conflated: messages a newer value of their topic replaced (a
	// bandwidth or frequency limit, a slow client); Dropped: messages lost
	// at the queue's bounds, which the client was told of.
	Frames        uint64               `json:"frames"`
	QueuedFrames  uint64               `json:"queued_frames"`
	QueuedBytes   int                  `json:"queued_bytes"`
	Conflated     uint64               `json:"conflated"`
	Dropped       uint64               `json:"dropped"`
	Clients       []ClientStatus       `json:"clients"`
	Subscriptions []SubscriptionStatus `json:"subscriptions"`
}

// ClientStatus is a session's client connected to a broker.
type ClientStatus struct {
	Broker   string `json:"broker"`
	Mode     string `json:"mode"`                // shared or dedicated
	ClientID string `json:"client_id,omitempty"` // a dedicated client's
}

// SubscriptionStatus is a filter a session holds on a broker (for one of
// its clients or several).
type SubscriptionStatus struct {
	Broker string `json:"broker"`
	Filter string `json:"filter"`
}

// SessionStatuses returns the live sessions match selects (all if nil), oldest
// first.
func (m *Manager) SessionStatuses(match func(info OpenInfo, id [16]byte) bool) []SessionStatus {
	chosen := m.sessionsMatching(match)
	byID := make(map[*Session]*SessionStatus, len(chosen))
	list := make([]SessionStatus, len(chosen))
	for i, s := range chosen {
		list[i] = s.status()
		byID[s] = &list[i]
	}
	m.mu.Lock()
	hubs := make([]*Hub, 0, len(m.hubs))
	for _, h := range m.hubs {
		hubs = append(hubs, h)
	}
	m.mu.Unlock()
	for _, h := range hubs {
		h.listSubscriptions(byID)
	}
	for i := range list {
		slices.SortFunc(list[i].Subscriptions, func(a, b SubscriptionStatus) int {
			return strings.Compare(a.Broker+"\x00"+a.Filter, b.Broker+"\x00"+b.Filter)
		})
	}
	slices.SortFunc(list, func(a, b SessionStatus) int { return a.Opened.Compare(b.Opened) })
	return list
}

// status is the session's state, but for its subscriptions (the hubs
// hold them).
func (s *Session) status() SessionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SessionStatus{
		Session:       hex.EncodeToString(s.id[:]),
		User:          s.info.User,
		Remote:        s.info.RemoteAddr,
		ClientIP:      s.ip,
		Transport:     s.info.Transport,
		Opened:        s.created,
		Connected:     s.conn != nil,
		MaxFrequency:  s.capFrequency,
		Frames:        s.out.next - 1,
		QueuedFrames:  s.out.next - 1 - s.out.sent,
		QueuedBytes:   s.out.pendingBytes,
		Conflated:     s.conflated,
		Dropped:       s.dropped,
		Clients:       []ClientStatus{},
		Subscriptions: []SubscriptionStatus{},
	}
	now := s.whereLocked()
	st.LastRemote, st.LastClientIP, st.LastTransport = now.remote, now.clientIP, now.transport
	if s.bucket != nil {
		st.MaxBandwidth = s.bucket.Rate
	}
	for _, c := range s.clients {
		if h := c.ackHub; h != nil { // connected
			st.Clients = append(st.Clients, ClientStatus{Broker: h.br().cfg.Name, Mode: h.mode(), ClientID: c.clientID})
		}
	}
	slices.SortFunc(st.Clients, func(a, b ClientStatus) int {
		return strings.Compare(a.Broker+"\x00"+a.ClientID, b.Broker+"\x00"+b.ClientID)
	})
	return st
}

// listSubscriptions adds the hub's filters to the statuses of the sessions
// that hold them.
func (h *Hub) listSubscriptions(byID map[*Session]*SessionStatus) {
	broker := h.br().cfg.Name
	h.mu.RLock()
	defer h.mu.RUnlock()
	for sess, mb := range h.members {
		st := byID[sess]
		if st == nil {
			continue
		}
		for f := range mb.filters {
			st.Subscriptions = append(st.Subscriptions, SubscriptionStatus{Broker: broker, Filter: f})
		}
	}
}
