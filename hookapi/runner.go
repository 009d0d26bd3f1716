package hookapi

import (
	"bytes"
	"context"
	"net"
	"runtime/debug"
	"sync"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-mqtt/mqttgateway/throttle"
)

// DefaultTimeout is how long a Runner waits for a chain by default.
const DefaultTimeout = time.Second

// Runner asks a Chain for decisions. Its fields are set before the first
// Decide and not changed after; Decide is safe for concurrent use.
type Runner struct {
	// Chain is the hook. A nil or unprovisioned chain denies everything
	// with 4022: leaving authorization out is the caller's decision.
	Chain *Chain
	// Timeout bounds each decision; past it the decision is a 4022
	// denial. Default: DefaultTimeout.
	Timeout time.Duration
	// Logger gets decisions at debug level, denials at info and failures
	// at warn (at most 100 of those at once, then 10 a second, and 10 of
	// one session's in 10 s; the next line counts those left out in
	// not_logged_before). Never passwords,
	// cookies or Authorization headers. Default: no logging.
	Logger *zap.Logger
	// Cache, if set, keeps decisions whose answer had a max-age.
	Cache *Cache

	// Denials and failures logged at info and warn: a client provokes
	// them at will.
	budgetMu sync.Mutex
	budget   throttle.LogBudget
}

// Decide runs the chain for f on behalf of the web request o (nil for
// none) and returns the decision. It returns by the timeout even if a
// handler ignores its context: the chain then finishes in the
// background and its answer is dropped. For notifications (unsubscribe,
// disconnect, close) the caller ignores the decision.
func (r *Runner) Decide(ctx context.Context, o *Origin, f Facts) Decision {
	return r.DecideSettled(ctx, o, f, nil)
}

// DecideSettled is Decide that calls settled (if not nil) once the chain
// is done with the request: before it returns, or later, when the chain
// outlives the timeout and finishes in the background. A caller that
// counts the work in flight (the gateway's session limits count opens
// whose authenticate hook runs) holds it until then: a timed-out
// basic_auth check of an unknown user goes on burning a second of CPU.
func (r *Runner) DecideSettled(ctx context.Context, o *Origin, f Facts, settled func()) Decision {
	start := time.Now()
	d, cached, reason := r.decide(ctx, o, &f, settled)
	r.log(o, &f, d, cached, reason, time.Since(start))
	return d
}

// Cached returns the decision the runner's cache holds for f, logged as
// Decide logs it, without running the chain: ok is false when Decide
// would have to run it.
func (r *Runner) Cached(o *Origin, f Facts) (d Decision, ok bool) {
	if !f.Action.Valid() || !r.cacheable(&f) {
		return Decision{}, false
	}
	var key cacheKey
	if d, ok = r.Cache.lookup(&f, time.Now(), &key); ok {
		r.log(o, &f, d, true, "", 0)
	}
	return d, ok
}

// decide calls settled (if not nil) once no chain runs for the request.
func (r *Runner) decide(ctx context.Context, o *Origin, f *Facts, settled func()) (d Decision, cached bool, reason string) {
	ran := false
	defer func() {
		if !ran && settled != nil {
			settled()
		}
	}()
	if !f.Action.Valid() {
		return unavailable(), false, "invalid action"
	}
	if r.Chain == nil || r.Chain.handler == nil {
		return unavailable(), false, "no provisioned hook chain"
	}
	cacheable := r.cacheable(f)
	var key cacheKey // set by lookup, so that a miss is stored without hashing f again
	if cacheable {
		if d, ok := r.Cache.lookup(f, time.Now(), &key); ok {
			return d, true, ""
		}
	}
	ran = true
	d, reason = r.run(ctx, o, f, settled)
	if cacheable && reason == "" {
		r.Cache.putKey(key, d, time.Now()) // keeps only a decision with a max-age
	}
	return d, false, reason
}

// cacheable reports whether f's decision may come from the cache.
// Decisions are cached per session: one without a session could be about
// anyone's cookies. An open, which names the session it would make, is
// never asked twice for it. Notifications always run, since telling is
// their point.
func (r *Runner) cacheable(f *Facts) bool {
	return r.Cache != nil && f.SessionID != "" && f.Action != ActionOpen && !f.Action.IsNotification()
}

// run runs the chain in its own goroutine, so that the timeout holds even
// for a handler that ignores its context; settled (if not nil) is called
// when that goroutine ends.
func (r *Runner) run(ctx context.Context, o *Origin, f *Facts, settled func()) (Decision, string) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if o == nil {
		o = &Origin{}
	}
	// The chain may hold on to the facts past the timeout, when the
	// caller may reuse them: give it a copy.
	fc := *f
	fc.Password = bytes.Clone(f.Password)
	s := newSubrequest(ctx, o, &fc)
	done := make(chan outcome, 1)
	// Settled once: by the goroutine when the chain ends, or here, before
	// returning, when its answer came in time (the chain is done then).
	var once sync.Once
	settle := func() {
		if settled != nil {
			once.Do(settled)
		}
	}
	go func() {
		defer settle()
		defer func() {
			if p := recover(); p != nil {
				done <- outcome{panic: p, stack: debug.Stack()}
			}
		}()
		done <- outcome{err: r.Chain.handler.ServeHTTP(s.rec, s.req)}
	}()
	select {
	case out := <-done:
		settle()
		if out.panic != nil && r.Logger != nil {
			r.Logger.Error("hook chain panicked",
				zap.String("action", string(f.Action)),
				zap.Any("panic", out.panic),
				zap.ByteString("stack", out.stack))
		}
		return result(f.Action, s, out)
	case <-ctx.Done():
		if ctx.Err() == context.DeadlineExceeded {
			return unavailable(), "hook timed out after " + timeout.String()
		}
		return unavailable(), reasonCanceled
	}
}

// reasonCanceled is the reason of decisions whose caller gave up (the
// session ended): not the hook's fault, so not worth a warning.
const reasonCanceled = "decision canceled"

// logTextMax is the most bytes of a client's string (a topic, a user
// name) a log line holds: a topic may be up to 65,535 bytes, and a line
// per denied subscribe would otherwise be as long.
const logTextMax = 256

// logText is s cut to logTextMax bytes, at a rune boundary.
func logText(s string) string {
	if len(s) <= logTextMax {
		return s
	}
	cut := logTextMax
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// log writes one line per decision. Fields are the facts a reader needs to
// follow a denial, never credentials, and a client's strings cut to
// logTextMax. Denials and failures spend the budget; a line that finds it
// spent is left out, and counted in the next.
func (r *Runner) log(o *Origin, f *Facts, d Decision, cached bool, reason string, took time.Duration) {
	if r.Logger == nil {
		return
	}
	level, msg := zapcore.DebugLevel, "hook decision"
	switch {
	case reason == reasonCanceled:
	case reason != "":
		level, msg = zapcore.WarnLevel, "hook failed"
	case !d.Allow && !f.Action.IsNotification():
		level, msg = zapcore.InfoLevel, "hook denied"
	}
	ce := r.Logger.Check(level, msg)
	if ce == nil {
		return
	}
	var left int
	if level > zapcore.DebugLevel {
		r.budgetMu.Lock()
		skipped, ok := r.budget.Take(time.Now(), f.SessionID)
		r.budgetMu.Unlock()
		if !ok {
			return
		}
		left = skipped
	}
	user := f.User
	if f.Action == ActionOpen {
		user = d.User // who the session will be, if allowed
	}
	fields := []zap.Field{
		zap.String("action", string(f.Action)),
		zap.String("user", user),
		zap.String("session", f.SessionID),
		zap.String("client_ip", clientIP(o)),
		zap.String("broker", f.Broker),
		zap.String("topic", logText(f.Topic)),
		zap.Bool("allow", d.Allow),
		zap.Bool("cached", cached),
		zap.Duration("duration", took),
	}
	if !d.Allow {
		fields = append(fields, zap.Int("code", d.Code), zap.String("message", d.Message))
		if f.Action == ActionOpen {
			// No session user for a refused open: the name it gave is what
			// an operator (or fail2ban) looks for.
			fields = append(fields, zap.String("username", logText(f.Username)))
		}
	}
	if reason != "" {
		fields = append(fields, zap.String("reason", reason))
	}
	if len(f.Topic) > logTextMax {
		fields = append(fields, zap.Int("topic_bytes", len(f.Topic)))
	}
	if left > 0 {
		fields = append(fields, zap.Int("not_logged_before", left))
	}
	ce.Write(fields...)
}

// clientIP is the web client's address as Caddy resolved it, for the log:
// a refused open has no session or user to name it by.
func clientIP(o *Origin) string {
	if o == nil {
		return ""
	}
	if o.ClientIP != "" {
		return o.ClientIP
	}
	if host, _, err := net.SplitHostPort(o.RemoteAddr); err == nil {
		return host
	}
	return o.RemoteAddr
}
