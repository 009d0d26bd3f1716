package mqttgateway

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/throttle"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// originSet is allow_origins: exact origins, subdomain wildcards
// (https://*.example.com), or any.
type originSet struct {
	any   bool
	exact map[string]bool
	wild  []wildOrigin
}

// wildOrigin is https://*.example.com: the scheme, and what the host
// (with its port) must end with.
type wildOrigin struct{ scheme, suffix string }

// parseOrigins checks and normalizes allow_origins. An origin is what a
// browser sends: scheme://host[:port], no path, no default port; written
// otherwise it could never match, so it is an error (or, for a default
// port or a trailing slash, normalized).
func parseOrigins(list []string) (*originSet, error) {
	set := &originSet{exact: map[string]bool{}}
	for _, raw := range list {
		if raw == "*" {
			set.any = true
			continue
		}
		o, err := normalizeOrigin(raw)
		if err != nil {
			return nil, fmt.Errorf("allow_origins: %q %v; write an origin like https://app.example.com or https://*.example.com", raw, err)
		}
		scheme, host, _ := strings.Cut(o, "//")
		if rest, ok := strings.CutPrefix(host, "*."); ok {
			set.wild = append(set.wild, wildOrigin{scheme: scheme + "//", suffix: "." + rest})
			continue
		}
		if strings.Contains(o, "*") {
			return nil, fmt.Errorf("allow_origins: %q: a wildcard may only begin the host (https://*.example.com)", raw)
		}
		set.exact[o] = true
	}
	return set, nil
}

// normalizeOrigin is origin in the form browsers send it.
func normalizeOrigin(raw string) (string, error) {
	u, err := url.Parse(strings.TrimSuffix(strings.ToLower(strings.TrimSpace(raw)), "/"))
	switch {
	case err != nil:
		return "", fmt.Errorf("is not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return "", fmt.Errorf("has no http:// or https:// scheme")
	case u.Host == "" || u.User != nil:
		return "", fmt.Errorf("has no host")
	case u.Path != "" || u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("has a path: an origin is only scheme://host[:port]")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("has port %s, not one of 1-65535", p)
		}
	}
	host := u.Host
	if p := u.Port(); p == "443" && u.Scheme == "https" || p == "80" && u.Scheme == "http" {
		host = strings.TrimSuffix(host, ":"+p) // browsers leave default ports out
	}
	return u.Scheme + "://" + host, nil
}

// allows reports whether a page of origin (the Origin header) may open
// sessions.
func (s *originSet) allows(origin string) bool {
	if s.any || s.exact[origin] {
		return true
	}
	for _, w := range s.wild {
		if host, ok := strings.CutPrefix(origin, w.scheme); ok && strings.HasSuffix(host, w.suffix) && len(host) > len(w.suffix) {
			return true
		}
	}
	return false
}

// refusedOrigins logs refused origins within a budget (throttle.LogBudget),
// so a page cannot flood the log; each origin has a share of it, so one
// page's refusals leave room for another's: a single line every 10 s named
// the first origin only.
type refusedOrigins struct {
	mu     sync.Mutex
	budget throttle.LogBudget
}

func (l *refusedOrigins) log(logger *zap.Logger, origin string, r *http.Request) {
	l.mu.Lock()
	skipped, ok := l.budget.Take(time.Now(), origin)
	l.mu.Unlock()
	if !ok {
		return
	}
	fields := []zap.Field{zap.String("origin", origin), zap.String("path", r.URL.Path), zap.String("remote", r.RemoteAddr)}
	if skipped > 0 {
		fields = append(fields, zap.Int("not_logged_before", skipped))
	}
	logger.Warn("origin not allowed: add it to allow_origins if its pages should use the gateway", fields...)
}

// refuseOrigin answers a request from a page of an origin allow_origins
// does not list. The HTTP transports answer so that the page can read why
// (PROTOCOL.md, Errors on HTTP transports): its preflight passes, and the
// request itself gets 403 with a CLOSE frame 4021, CORS headers included.
// Nothing of the gateway is reached. Browsers hide a refused WebSocket
// upgrade's answer; the client then tries HTTP and learns it there.
func (h *Handler) refuseOrigin(w http.ResponseWriter, r *http.Request, origin, endpoint string) {
	h.refused.log(h.logger, origin, r)
	if m := h.manager; m != nil {
		m.Metrics().Refusals.WithLabelValues("open", "4021").Inc()
	}
	if endpoint == "ws" {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	allowCORS(w, origin)
	if r.Method == http.MethodOptions {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	transport.AnswerError(w, http.StatusForbidden,
		session.Errorf(session.CodeNotAuthorized, "origin %s is not allowed (allow_origins)", session.TrimText(origin)))
}
