package session

import (
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mqtt/mqttgateway/throttle"
)

// The gateway's own refusals of a client's request: an invalid topic or
// filter, a message too large, max_publish_rate, too many subscriptions or
// requests waiting. The client hears the code; on call, "publishing fails
// for me but not for my colleague" needs to find it too. Each is counted
// by action and code (refusals_total) and logged at info, "request
// refused", within a budget (throttle.LogBudget): a client provokes them
// at will. The hooks' denials are the hooks' lines ("hook denied"), the
// broker's answers are "error" results.

// refusalLog is the manager's budget for "request refused" lines.
type refusalLog struct {
	mu     sync.Mutex
	budget throttle.LogBudget
}

// refused counts and logs the gateway's refusal of a client's action on
// topic (a topic or a filter). Any goroutine.
func (s *Session) refused(action, broker, topic string, err *Error) {
	m := s.mgr
	m.metrics.Refusals.WithLabelValues(action, strconv.Itoa(int(err.Code))).Inc()
	ce := m.log.Check(zap.InfoLevel, "request refused")
	if ce == nil {
		return
	}
	m.refusals.mu.Lock()
	skipped, ok := m.refusals.budget.Take(time.Now(), s.IDString())
	m.refusals.mu.Unlock()
	if !ok {
		return
	}
	fields := []zap.Field{zap.String("session", s.IDString()), zap.String("user", s.info.User),
		zap.String("client_ip", s.info.ip()), zap.String("action", action), zap.String("broker", broker),
		zap.String("topic", TrimText(topic)), zap.Uint32("code", uint32(err.Code)), zap.String("message", err.Message)}
	if len(topic) > maxEchoed {
		fields = append(fields, zap.Int("topic_bytes", len(topic)))
	}
	if skipped > 0 {
		fields = append(fields, zap.Int("not_logged_before", skipped))
	}
	ce.Write(fields...)
}
