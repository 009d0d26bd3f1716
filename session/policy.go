package session

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/caddy-mqtt/mqttgateway/throttle"
)

// Policy decides what a session may do: the authorize hook. The Caddy
// module implements it over hookapi; the session package only asks, so it
// knows nothing of Caddy's handler chains.
type Policy interface {
	// Authorize decides an action; a nil error allows it, with the
	// grant's caps.
	Authorize(ctx context.Context, s *Session, a Action) (Grant, *Error)
	// Notify reports an action whose outcome does not depend on the hook
	// (unsubscribe, disconnect, close). A session calls it for one
	// notification at a time, in the order of the actions, from a
	// goroutine of its own (notify.go): it may take as long as the hook
	// takes to answer, and the session's next notification waits for it.
	Notify(s *Session, a Action)
}

// CachedPolicy is a Policy that may know a decision without asking its
// hook (one the hook let it keep for a while).
type CachedPolicy interface {
	// Cached returns the decision on a, and whether it had one; it never
	// asks the hook.
	Cached(s *Session, a Action) (g Grant, err *Error, ok bool)
}

// Grant is what an allowed action comes with from the authorize hook.
type Grant struct {
	// MaxFrequency caps an allowed subscription's messages per second per
	// topic, whatever its client asks for then or later (0: no cap): the
	// hook's X-Mqtt-Limit-Max-Frequency, for a plan's or a role's rate on
	// some topics. Like the client's own limit, it holds for QoS 0
	// messages only.
	MaxFrequency float64
}

// ParseGrant reads the limits of the authorize hook's answer to a
// subscribe: max_frequency, in messages per second. A name it does not
// know (a misspelt one) or a value it cannot read is an error, and the
// caller refuses the subscription (fail closed): an operator's cap must
// not silently be no cap. max_bandwidth is the session's, set when it
// opens, and ignored here: a hook service may send the same limits with
// every answer.
func ParseGrant(limits map[string]string) (Grant, error) {
	var g Grant
	for name, v := range limits {
		if name == "max_bandwidth" {
			continue
		}
		if name != "max_frequency" {
			return g, fmt.Errorf("unknown limit %q on a subscribe (X-Mqtt-Limit-Max-Frequency caps a subscription)", TrimText(name))
		}
		f, err := parseFrequencyLimit(v)
		if err != nil {
			return g, err
		}
		g.MaxFrequency = f
	}
	return g, nil
}

// parseFrequencyLimit reads a hook's max_frequency, in messages per second.
func parseFrequencyLimit(v string) (float64, error) {
	f, err := strconv.ParseFloat(v, 64)
	if err == nil {
		err = CheckFrequency(f)
	}
	if err != nil {
		return 0, fmt.Errorf("max_frequency %q is not a number of messages per second of at least %v", TrimText(v), MinFrequency)
	}
	return f, nil
}

// Action is what a client wants to do, with the facts a policy decides on.
type Action struct {
	Kind     string // connect, subscribe, publish, unsubscribe, disconnect, close
	Broker   string
	ClientID string
	Topic    string // topic name (publish) or filter (subscribe, unsubscribe)
	QoS      byte
	Retain   bool
	Size     int
	Username string // MQTT credentials the client gave at connect
	Password []byte
	// ResponseTopic is a publish's (or will's) MQTT 5 response topic: where
	// a responder publishes its answer, on the sender's behalf, so a policy
	// may want it within the sender's reach.
	ResponseTopic string
	// Will marks the publish a CONNECT's will asks the broker to make
	// later, authorized when the client connects.
	Will bool
	// A connect's clean start and session expiry (seconds): what it may
	// leave on the broker after it goes.
	CleanStart    bool
	SessionExpiry uint32
}

// authorize asks the current policy, if any. The policy comes from the
// config in force, so sessions that outlive a reload follow the new rules.
func (s *Session) authorize(ctx context.Context, a Action) (Grant, *Error) {
	p := s.mgr.config().Policy
	if p == nil {
		return Grant{}, s.openPolicy(a)
	}
	return p.Authorize(ctx, s, a)
}

// openPolicy is what a gateway without an authorize hook allows: every
// action, but a publish (or will) to a topic that begins with $. Those
// topics are the broker's own (MQTT 5, 4.7.2): $SYS, and on Mosquitto
// $CONTROL, whose dynamic-security commands a client would publish with
// the gateway's broker account, which may be an administrator's. A hook
// that allows them lets them through. The refusal is the gateway's own,
// counted and logged as such.
func (s *Session) openPolicy(a Action) *Error {
	if a.Kind != "publish" || !strings.HasPrefix(a.Topic, "$") {
		return nil
	}
	err := Errorf(CodeNotAuthorized, "publishing to %q, a topic of the broker's own ($), needs an authorize hook that allows it", TrimText(a.Topic))
	s.refused(a.Kind, a.Broker, a.Topic, err)
	return err
}

// SetOrigin keeps what the policy needs to know of the web request that
// opened or rebound the session (hookapi's snapshot).
func (s *Session) SetOrigin(o any) {
	s.mu.Lock()
	s.origin = o
	s.mu.Unlock()
}

// Origin returns what SetOrigin kept.
func (s *Session) Origin() any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.origin
}

// Limits are per-session caps from the authenticate hook (0: none). They
// can only lower the server's caps.
type Limits struct {
	MaxFrequency float64 // messages per second
	MaxBandwidth uint64  // bytes per second
}

// ParseLimits reads the hook's limits: max_bandwidth written as for the
// Caddyfile (65536, 64KiB, 512kbit), max_frequency in messages per second.
// A value it cannot read, or a name it does not know (a misspelt
// X-Mqtt-Limit-Max-Bandwith), is an error, not a limit silently dropped:
// the caller refuses the session (fail closed).
func ParseLimits(limits map[string]string) (Limits, error) {
	var l Limits
	for name := range limits {
		if name != "max_frequency" && name != "max_bandwidth" {
			return l, fmt.Errorf("unknown limit %q (X-Mqtt-Limit-Max-Bandwidth and X-Mqtt-Limit-Max-Frequency are known)", TrimText(name))
		}
	}
	if v, ok := limits["max_frequency"]; ok {
		f, err := parseFrequencyLimit(v)
		if err != nil {
			return l, err
		}
		l.MaxFrequency = f
	}
	if v, ok := limits["max_bandwidth"]; ok {
		n, err := throttle.ParseBandwidth(v)
		if err != nil {
			return l, fmt.Errorf("max_bandwidth: %v", err)
		}
		l.MaxBandwidth = n
	}
	return l, nil
}

// ApplyLimits applies the authenticate hook's caps to the session.
func (s *Session) ApplyLimits(l Limits) {
	s.mu.Lock()
	s.capFrequency, s.capBandwidth = l.MaxFrequency, l.MaxBandwidth
	s.mu.Unlock()
	if l.MaxBandwidth > 0 {
		s.SetMaxBandwidth(0)
	}
}

// allowPublish applies max_publish_rate.
func (s *Session) allowPublish() bool {
	rate := s.mgr.config().MaxPublishRate
	if rate <= 0 {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.publishes == nil {
		s.publishes = throttle.NewCounter(rate, now)
	}
	return s.publishes.Allow(1, now)
}

// givePublishBack returns the max_publish_rate token of a publish refused
// before it was handled (too many requests waiting): the client is told
// to try again, and its retry should not find the rate spent by a
// publish that never went out.
func (s *Session) givePublishBack() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.publishes.GiveBack(1)
}

// clientIP is the host part of a remote address.
func clientIP(remote string) string {
	if host, _, err := net.SplitHostPort(remote); err == nil {
		return host
	}
	return remote
}
