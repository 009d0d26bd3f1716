package session

import (
	"time"

	"go.uber.org/zap"
)

// A broker drops a connection over a packet it will not take, and paho
// resumes the shared connection's broker session after a reconnect, which
// sends every unacknowledged QoS 1/2 publish again: a publish the broker
// drops the connection for takes the shared connection down again and
// again, for every session on it, for as long as the gateway runs. The
// gateway refuses every such packet it knows of before it is sent
// (propcheck.go, brokerlimits.go, topic validation); this is the guard for
// the ones it cannot know of (a broker plugin's policy, a limit the broker
// does not announce).
//
// After poisonRuns connections in a row that each ended within
// shortConnection of coming up, the shared hub starts over on a new
// connection with a new broker session. The old session's unacknowledged
// publishes fail (their clients get 4041) and are not sent again; the
// subscriptions are made again, as after any outage. A broker that is
// merely flapping costs its in-flight publishes an error, which their
// clients see, rather than a silent loss.
const (
	poisonRuns      = 3
	shortConnection = time.Second
)

// noteShortConnection counts a connection that is going down and reports
// whether the hub should start afresh. Called with h.mu held, before up
// changes.
func (h *Hub) noteShortConnection() bool {
	if h.dedicated || !h.up {
		return false
	}
	if time.Since(h.since) >= shortConnection {
		h.shortLived = 0
		return false
	}
	h.shortLived++
	if h.shortLived < poisonRuns {
		return false
	}
	h.shortLived = 0
	return true
}

// startAfresh replaces the shared connection and its broker session.
func (h *Hub) startAfresh() {
	name := h.br().cfg.Name
	h.log.Warn("broker closed the connection right after each reconnect; starting a new broker session, unacknowledged publishes fail",
		zap.String("broker", name), zap.Int("connections", poisonRuns))
	err := h.replaceConnection(h.br(), Errorf(CodeBrokerUnavailable, "broker %q closed the connection right after each reconnect; the gateway starts a new broker session", name))
	if err != nil {
		h.log.Error("new broker connection", zap.String("broker", name), zap.Error(err))
	}
}
