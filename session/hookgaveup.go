package session

import "time"

// A client's requests run one at a time, each asking the authorize hook.
// When the hook does not answer one of them in time (hook_timeout: a hung
// hook service), the requests already waiting behind it are not sent to
// the hook again: they get the same 4022 at once (unless the hook let the
// gateway keep a decision on them: those need no hook). Each used to wait
// hook_timeout in turn, and 300 publishes queued behind a hung hook took
// 300 s to fail, holding up the client's later requests with them.
// Requests that arrive after the timeout ask the hook again, so a hook
// that recovers is heard at once; a slow hook that answers within
// hook_timeout changes nothing.

// authorize is Session.authorize for a request of c's that arrived at
// arrived. Request goroutine.
func (c *Client) authorize(arrived time.Time, a Action) (Grant, *Error) {
	s := c.sess
	if arrived.UnixNano() < c.hookGaveUp {
		// A decision the hook let the gateway keep needs no hook.
		if p, ok := s.mgr.config().Policy.(CachedPolicy); ok {
			if g, err, ok := p.Cached(s, a); ok {
				return g, err
			}
		}
		err := Errorf(CodeHookUnavailable, "hook unavailable: the gateway could not decide (the hook did not answer an earlier request of this client within hook_timeout)")
		s.refused(a.Kind, a.Broker, a.Topic, err)
		return Grant{}, err
	}
	// The policy and the timeout it runs with, of one config: a reload
	// during the call must not measure it against another timeout.
	cfg := s.mgr.config()
	if cfg.Policy == nil {
		return Grant{}, s.openPolicy(a)
	}
	start := time.Now()
	g, err := cfg.Policy.Authorize(c.ctx, s, a)
	if err != nil && err.Code == CodeHookUnavailable && time.Since(start) >= cfg.hookTimeout() {
		c.hookGaveUp = time.Now().UnixNano()
	}
	return g, err
}

// hookTimeout is HookTimeout with its default.
func (c *Config) hookTimeout() time.Duration {
	if c.HookTimeout <= 0 {
		return time.Second
	}
	return c.HookTimeout
}
