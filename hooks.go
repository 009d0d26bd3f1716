package mqttgateway

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// hookPolicy runs the authenticate and authorize hooks (hookapi) for the
// gateway's sessions and transports. It belongs to one provisioned config;
// sessions that outlive a reload ask the newest one (the manager's config
// holds it).
type hookPolicy struct {
	authn   *hookapi.Runner // nil: no authentication, sessions are anonymous
	authz   *hookapi.Runner // nil: every action allowed
	cache   *hookapi.Cache
	metrics *session.Metrics
	log     *zap.Logger
	// aliveEvery is how often authz hears the instance runs (alive_interval).
	aliveEvery time.Duration
}

func (p *hookPolicy) decide(ctx context.Context, r *hookapi.Runner, o *hookapi.Origin, f hookapi.Facts) hookapi.Decision {
	return p.decideSettled(ctx, r, o, f, nil)
}

// decideSettled is decide with DecideSettled's settled.
func (p *hookPolicy) decideSettled(ctx context.Context, r *hookapi.Runner, o *hookapi.Origin, f hookapi.Facts, settled func()) hookapi.Decision {
	start := time.Now()
	d := r.DecideSettled(ctx, o, f, settled)
	p.count(f.Action, d)
	p.metrics.HookDuration.WithLabelValues(string(f.Action)).Observe(time.Since(start).Seconds())
	return d
}

// count counts a decision in hook_calls_total.
func (p *hookPolicy) count(a hookapi.Action, d hookapi.Decision) {
	result := "allow"
	if !d.Allow {
		result = strconv.Itoa(d.Code)
	}
	p.metrics.HookCalls.WithLabelValues(string(a), result).Inc()
}

// denial is a decision as the session's error: nil when it allows.
func denial(d hookapi.Decision) *session.Error {
	if d.Allow {
		return nil
	}
	return &session.Error{Code: session.Code(d.Code), Message: d.Message}
}

// authenticate implements transport.Server.Authenticate.
func (p *hookPolicy) authenticate(r *http.Request, user string, password []byte, sessionID string, settled func()) (transport.OpenResult, *session.Error) {
	if p.authn == nil {
		settled()
		return transport.OpenResult{}, nil
	}
	d := p.decideSettled(r.Context(), p.authn, hookapi.Snapshot(r), hookapi.Facts{Action: hookapi.ActionOpen, Instance: instanceID, SessionID: sessionID, Username: user, Password: password}, settled)
	if !d.Allow {
		return transport.OpenResult{}, denial(d)
	}
	limits, err := session.ParseLimits(d.Limits)
	if err != nil {
		// A limit the gateway cannot read must not become no limit.
		p.log.Error("the authenticate hook answered a limit the gateway cannot read; session refused", zap.String("user", d.User), zap.Error(err))
		return transport.OpenResult{}, session.Errorf(session.CodeHookUnavailable, "the authenticate hook answered an invalid session limit")
	}
	return transport.OpenResult{User: d.User, Limits: limits}, nil
}

// origin implements transport.Server.Origin.
func origin(r *http.Request) (any, string) {
	o := hookapi.Snapshot(r)
	return o, o.ClientIP
}

func (p *hookPolicy) facts(s *session.Session, a session.Action) (*hookapi.Origin, hookapi.Facts) {
	o, _ := s.Origin().(*hookapi.Origin)
	return o, hookapi.Facts{Action: hookapi.Action(a.Kind), Instance: instanceID, User: s.Info().User, SessionID: s.IDString(),
		Broker: a.Broker, ClientID: a.ClientID, Topic: a.Topic, QoS: a.QoS, Retain: a.Retain, Size: a.Size,
		ResponseTopic: a.ResponseTopic, Will: a.Will, CleanStart: a.CleanStart, SessionExpiry: a.SessionExpiry,
		Username: a.Username, Password: a.Password}
}

// Authorize implements session.Policy.
func (p *hookPolicy) Authorize(ctx context.Context, s *session.Session, a session.Action) (session.Grant, *session.Error) {
	if p.authz == nil {
		return session.Grant{}, nil
	}
	o, f := p.facts(s, a)
	return p.grant(s, a, p.decide(ctx, p.authz, o, f))
}

// Cached implements session.CachedPolicy.
func (p *hookPolicy) Cached(s *session.Session, a session.Action) (session.Grant, *session.Error, bool) {
	if p.authz == nil {
		return session.Grant{}, nil, true
	}
	o, f := p.facts(s, a)
	d, ok := p.authz.Cached(o, f)
	if !ok {
		return session.Grant{}, nil, false
	}
	p.count(f.Action, d)
	g, err := p.grant(s, a, d)
	return g, err, true
}

// grant is a decision as what the action gets: the caps of an allowed
// subscribe (its X-Mqtt-Limit-Max-Frequency), or the denial. The limits
// of an answer to another action are not read: they are open's.
func (p *hookPolicy) grant(s *session.Session, a session.Action, d hookapi.Decision) (session.Grant, *session.Error) {
	if !d.Allow || a.Kind != "subscribe" || len(d.Limits) == 0 {
		return session.Grant{}, denial(d)
	}
	g, err := session.ParseGrant(d.Limits)
	if err != nil {
		// A cap the gateway cannot read must not become no cap.
		p.log.Error("the authorize hook answered a subscription limit the gateway cannot read; subscription refused",
			zap.String("session", s.IDString()), zap.String("filter", session.TrimText(a.Topic)), zap.Error(err))
		return session.Grant{}, session.Errorf(session.CodeHookUnavailable, "the authorize hook answered an invalid subscription limit")
	}
	return g, nil
}

// Notify implements session.Policy: the hook hears it and its answer is
// ignored. It returns when the hook has answered, or the runner's timeout
// has passed: the session's notifier calls it on a goroutine of its own,
// one notification at a time, so that a session's notifications reach the
// hook in order and never more than one at once.
func (p *hookPolicy) Notify(s *session.Session, a session.Action) {
	if a.Kind == "close" && p.cache != nil {
		p.cache.Forget(s.IDString())
	}
	if p.authz == nil {
		return
	}
	o, f := p.facts(s, a)
	p.decide(context.Background(), p.authz, o, f)
}

// alive tells the authorize hook that the instance runs
// (hookapi.ActionAlive). Its answer is ignored, as a notification's.
func (p *hookPolicy) alive() {
	p.decide(context.Background(), p.authz, &hookapi.Origin{}, hookapi.Facts{Action: hookapi.ActionAlive, Instance: instanceID})
}

var (
	_ session.Policy       = (*hookPolicy)(nil)
	_ session.CachedPolicy = (*hookPolicy)(nil)
)

// provisionHooks prepares the authenticate and authorize chains. The
// decision cache belongs to this config: a reload may change the policy.
func (h *Handler) provisionHooks(ctx caddy.Context) (*hookPolicy, error) {
	p := &hookPolicy{cache: hookapi.NewCache(0), log: h.logger, aliveEvery: time.Duration(h.AliveInterval)}
	timeout := time.Duration(h.HookTimeout)
	if timeout == 0 {
		timeout = hookapi.DefaultTimeout
	}
	for _, c := range []*hookapi.Chain{h.Authenticate, h.Authorize} {
		if c != nil {
			if err := c.Provision(ctx); err != nil {
				return nil, fmt.Errorf("mqtt_gateway: %v", err)
			}
		}
	}
	if h.Authenticate != nil {
		p.authn = &hookapi.Runner{Chain: h.Authenticate, Timeout: timeout, Logger: h.logger.Named("authenticate"), Cache: p.cache}
	}
	if h.Authorize != nil {
		p.authz = &hookapi.Runner{Chain: h.Authorize, Timeout: timeout, Logger: h.logger.Named("authorize"), Cache: p.cache}
	}
	return p, nil
}
