package session

import (
	"sync"

	"github.com/caddy-mqtt/mqttgateway/session/topic"
)

// Ending subscriptions from outside the session: a policy's decisions apply
// to actions as they come, so a member removed from a room keeps the
// subscription made while a member. The service that removes the member
// ends it (Caddy's admin API, POST /mqtt_gateway/unsubscribe), without
// ending the user's sessions and everything else they hold.

// ReportUnsubscribed makes the session tell its client of each
// subscription the gateway ends on its own (EndSubscriptions) with an
// UNSUBSCRIBED frame. A client asks with the OPEN option unsubscribed;
// older ones, which could not read the frame, are not told, and their
// subscription ends all the same (a fresh session's re-subscription then
// meets the policy).
func (s *Session) ReportUnsubscribed() { s.reportUnsubscribed.Store(true) }

// EndSubscriptions ends, in every session match selects, each subscription
// that could deliver a name filter matches (topic.Overlaps: "room/+/msg"
// for "room/42/#", not only those inside it), on the broker named, or on
// every broker if broker is empty. Each ends as an UNSUBSCRIBE would (the
// authorize hook is told), after the client's requests already waiting,
// and the client is told why with reason. It returns the sessions selected
// and the subscriptions ended; it waits for the clients' queues, which a
// slow hook may hold up to its timeout. A shared subscription ends by the
// filter after its share name; a shared filter,
// $share/<share name>/<filter>, ends only that group's.
func (m *Manager) EndSubscriptions(match func(info OpenInfo, id [16]byte) bool, filter, broker string, reason *Error) (sessions, ended int) {
	// A shared subscription delivers what its inner filter matches; a
	// shared filter names one share group's subscriptions.
	overlapping := func(f string) bool { return topic.Overlaps(topic.SharedFilter(f), filter) }
	if group, inner, ok := topic.SplitShared(filter); ok {
		overlapping = func(f string) bool {
			name, fInner, ok := topic.SplitShared(f)
			return ok && name == group && topic.Overlaps(fInner, inner)
		}
	}
	return m.endSubscriptionsWhere(match, overlapping, broker, reason)
}

// endSubscriptionsWhere is EndSubscriptions for the subscriptions whose
// filter ending says.
func (m *Manager) endSubscriptionsWhere(match func(info OpenInfo, id [16]byte) bool, ending func(filter string) bool, broker string, reason *Error) (sessions, ended int) {
	chosen := m.sessionsMatching(match)
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, s := range chosen {
		s.mu.Lock()
		clients := s.clientsLocked()
		s.mu.Unlock()
		for _, c := range clients {
			wg.Add(1)
			c.enqueue(func() {
				defer wg.Done()
				n := s.endSubscriptions(c, ending, broker, reason)
				mu.Lock()
				ended += n
				mu.Unlock()
			})
		}
	}
	wg.Wait()
	return len(chosen), ended
}

// endSubscriptions ends c's subscriptions whose filter ending says, and
// tells the client of each. Run in the client's queue.
func (s *Session) endSubscriptions(c *Client, ending func(filter string) bool, broker string, reason *Error) int {
	if c.hub == nil || broker != "" && c.hub.br().cfg.Name != broker {
		return 0
	}
	var ended []string
	for f := range c.subs {
		if ending(f) {
			ended = append(ended, f)
		}
	}
	for _, f := range ended {
		s.dropSubscription(c, f)
		if s.reportUnsubscribed.Load() {
			s.push(Event{Kind: EventUnsubscribed, Handle: c.handle, Filter: f, Code: reason.Code, Text: reason.Message})
		}
	}
	return len(ended)
}
