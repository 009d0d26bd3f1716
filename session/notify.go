package session

import (
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// NotifyQueueLen bounds the notifications a session may have waiting for
// the policy, the one being delivered included. Past it unsubscribe and
// disconnect notifications are dropped: a session that unsubscribes faster
// than the hook answers must not hold a growing share of the hook's
// capacity, which every other session's decisions need.
const NotifyQueueLen = 64

// notifier delivers a session's notifications to the policy one at a time,
// in the order of the actions, on a goroutine that exists only while some
// are waiting: a hook that hears an unsubscribe before the close can trust
// that order, and a session has at most one hook request of its
// notifications in flight.
type notifier struct {
	mu      sync.Mutex
	queue   []Action // queue[0] is being delivered while running
	running bool
	// releasing counts the clients of a closing session whose queued
	// requests have yet to finish: the close waits for them, since they
	// may still notify (an UNSUBSCRIBE sent just before CLOSE).
	releasing int
}

// notify queues a notification for the policy in force, if any. It never
// blocks: past NotifyQueueLen the notification is dropped, counted and
// logged, except the close, which is always queued (once per session, so
// the queue stays bounded): a presence service must learn that a session
// ended.
func (s *Session) notify(a Action) {
	if s.mgr.config().Policy == nil {
		if a.Kind == "close" {
			s.mgr.closeNotes.Add(-1)
		}
		return
	}
	n := &s.notes
	n.mu.Lock()
	if len(n.queue) >= NotifyQueueLen && a.Kind != "close" {
		n.mu.Unlock()
		s.notificationDropped(a)
		return
	}
	var superseded []Action
	if a.Kind == "close" && s.mgr.stopping.Load() && len(n.queue) > 1 {
		// The gateway is stopping, and Caddy exits once Close returns: the
		// close must not wait behind unsubscribes (each up to the hook's
		// timeout), which it implies. The one in flight is let finish.
		superseded = slices.Clone(n.queue[1:])
		clear(n.queue[1:])
		n.queue = n.queue[:1]
	}
	n.queue = append(n.queue, a)
	start := !n.running
	n.running = true
	n.mu.Unlock()
	for _, d := range superseded {
		s.notificationDropped(d)
	}
	if start {
		go s.deliverNotifications()
	}
}

// deliverNotifications hands the queued notifications to the policy, each
// after the one before has been answered (or has timed out). The policy is
// the one in force at delivery, as for decisions: a session that outlives
// a reload notifies the new hook.
func (s *Session) deliverNotifications() {
	n := &s.notes
	for {
		n.mu.Lock()
		if len(n.queue) == 0 {
			n.queue = nil // a burst's backing array is not kept for an idle session
			n.running = false
			n.mu.Unlock()
			return
		}
		a := n.queue[0] // stays queued, and counted, while delivered
		n.mu.Unlock()
		if p := s.mgr.config().Policy; p != nil {
			p.Notify(s, a)
		}
		if a.Kind == "close" {
			s.mgr.closeNotes.Add(-1)
		}
		n.mu.Lock()
		n.queue[0] = Action{}
		n.queue = n.queue[1:]
		n.mu.Unlock()
	}
}

func (s *Session) notificationDropped(a Action) {
	s.mgr.metrics.NotificationsDropped.WithLabelValues(a.Kind).Inc()
	// The log is the gateway's, not the session's: one flooding session
	// must not flood it either.
	if skipped, ok := s.mgr.droppedNotes.Allow(); ok {
		s.log.Warn("authorize hook notification dropped: the session had too many waiting for the hook",
			zap.String("session", s.IDString()), zap.String("user", s.info.User), zap.String("action", a.Kind),
			zap.Int("waiting", NotifyQueueLen), zap.Int("not_logged_before", skipped))
	}
}

// closeAfter makes the session's close notification wait until the
// requests its clients had queued have run (clientReleased, once for each
// of them), so that it comes after their notifications.
func (s *Session) closeAfter(clients int) {
	s.mgr.closeNotes.Add(1)
	s.notes.mu.Lock()
	s.notes.releasing = clients
	s.notes.mu.Unlock()
	if clients == 0 {
		s.notify(Action{Kind: "close"})
	}
}

// clientReleased is called when a released client's queued requests have
// run; the last one queues the close.
func (s *Session) clientReleased() {
	s.notes.mu.Lock()
	s.notes.releasing--
	last := s.notes.releasing == 0
	s.notes.mu.Unlock()
	if last {
		s.notify(Action{Kind: "close"})
	}
}

// closeNotesWait bounds how long a shutdown waits for close notifications:
// the notification in flight, then the close, each up to the hook's
// timeout.
func (m *Manager) closeNotesWait() time.Duration {
	cfg := m.config()
	if cfg == nil || cfg.Policy == nil {
		return 0
	}
	return 2 * cfg.hookTimeout()
}

// awaitCloseNotes waits until every ended session's close notification has
// reached the policy, or the deadline: a presence service relies on the
// close, and a gateway that stops (Caddy exits once Close returns) would
// otherwise drop those still queued, or in flight.
func (m *Manager) awaitCloseNotes(deadline time.Time) {
	for m.closeNotes.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
}
