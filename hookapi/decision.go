package hookapi

import (
	"errors"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The error codes of decisions, from the gateway protocol's table
// (transport/PROTOCOL.md). A hook may choose another code in 4000-4999
// with the X-Mqtt-Error-Code header.
const (
	CodeNotAuthenticated = 4020 // the authenticate hook denied the session
	CodeNotAuthorized    = 4021 // the authorize hook denied the action
	CodeHookUnavailable  = 4022 // the hook failed or timed out: fail closed
)

// MessageUnavailable is the message of CodeHookUnavailable decisions. The
// cause is logged, not told to the web client.
const MessageUnavailable = "hook unavailable: the gateway could not decide"

// maxMessage is the longest message passed on to the web client, in bytes.
const maxMessage = 200

// Decision is a hook's answer.
type Decision struct {
	// Allow is true when the chain answered 2xx.
	Allow bool
	// Code is the error code for the web client when Allow is false.
	Code int
	// Message is the error message for the web client when Allow is false.
	Message string
	// User is, for an allowed open, the session's user: the response
	// header X-Mqtt-User, or else the user a Caddy authentication handler
	// in the chain (basic_auth, a JWT plugin) identified. Empty when the
	// hook said neither: the session then has no user (not the user name
	// the client claimed, which nothing vouched for), and rules built on
	// {http.mqtt_gateway.user} match nothing.
	User string
	// Limits are the X-Mqtt-Limit-<Name> headers of an allowing answer,
	// keyed by name in snake case: X-Mqtt-Limit-Max-Bandwidth: 65536 is
	// "max_bandwidth": "65536". Nil when there are none. Read-only: a
	// cached decision shares it.
	Limits map[string]string
	// MaxAge is how long the answer may be reused for the same facts
	// (Cache-Control: max-age=N), or zero.
	MaxAge time.Duration
}

// unavailable is the fail-closed decision.
func unavailable() Decision {
	return Decision{Code: CodeHookUnavailable, Message: MessageUnavailable}
}

// outcome is what running the chain produced, besides the recorder.
type outcome struct {
	err   error // returned by the chain
	panic any   // recovered from the chain
	stack []byte
}

// result turns a finished subrequest into a decision, following Caddy's
// server: a handler error that nothing wrote a response for is answered
// with the error's status (500 if it has none). It reports why a decision
// is CodeHookUnavailable, for the log, in reason.
func result(a Action, s *subrequest, out outcome) (d Decision, reason string) {
	rec := s.rec
	status := rec.status
	var errMsg string
	if out.panic != nil {
		return unavailable(), "hook chain panicked"
	}
	if out.err != nil {
		var he caddyhttp.HandlerError
		switch {
		case status >= 200 && status < 300:
			// Allowed, then failed while writing: do not trust it.
			return unavailable(), "hook chain failed after answering: " + out.err.Error()
		case status != 0:
			// An answer was written; it stands, as it would for a client.
		case errors.As(out.err, &he):
			status = he.StatusCode
			if status == 0 {
				status = http.StatusInternalServerError
			}
			if he.Err != nil {
				errMsg = he.Err.Error()
			}
		default:
			status = http.StatusInternalServerError
		}
		if status < 400 || status >= 500 {
			return unavailable(), "hook chain error: " + out.err.Error()
		}
	}
	switch {
	case status == 0:
		return unavailable(), "hook chain wrote no response (end it with respond, reverse_proxy or another responding handler)"
	case status >= 200 && status < 300:
		d = Decision{Allow: true, Limits: limits(rec.header), MaxAge: maxAge(rec.header)}
		if a == ActionOpen {
			d.User = strings.TrimSpace(rec.header.Get(HeaderUser))
			if d.User == "" {
				d.User, _ = s.repl.GetString("http.auth.user.id")
			}
		}
		return d, ""
	case status >= 400 && status < 500:
		d = Decision{Code: CodeNotAuthorized, MaxAge: maxAge(rec.header)}
		if a == ActionOpen {
			d.Code = CodeNotAuthenticated
		}
		if c, err := strconv.Atoi(strings.TrimSpace(rec.header.Get(HeaderErrorCode))); err == nil && c >= 4000 && c <= 4999 {
			d.Code = c
		}
		d.Message = denyMessage(rec, errMsg, status)
		return d, ""
	}
	return unavailable(), "hook answered status " + strconv.Itoa(status)
}

// denyMessage picks the message of a denial: X-Mqtt-Error-Message, else
// the body (or the handler error's message), else the status text. An
// HTML body, such as a proxy's error page, is not a message.
func denyMessage(rec *recorder, errMsg string, status int) string {
	if m := clip(rec.header.Get(HeaderErrorMessage)); m != "" {
		return m
	}
	if mt, _, _ := mime.ParseMediaType(rec.header.Get("Content-Type")); mt != "text/html" {
		if m := clip(string(rec.body)); m != "" {
			return m
		}
	}
	if m := clip(errMsg); m != "" {
		return m
	}
	return http.StatusText(status)
}

// clip trims s and cuts it to maxMessage bytes of valid UTF-8.
func clip(s string) string {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "\uFFFD")
	if len(s) <= maxMessage {
		return s
	}
	cut := maxMessage
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.TrimSpace(s[:cut])
}

// maxAge reads max-age from Cache-Control; no-store and no-cache win over
// it.
func maxAge(h http.Header) time.Duration {
	var age time.Duration
	for _, v := range h.Values("Cache-Control") {
		for _, dir := range strings.Split(v, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(dir), "=")
			switch strings.ToLower(name) {
			case "no-store", "no-cache":
				return 0
			case "max-age":
				// At most a day: a longer cache is a configuration
				// mistake, and the product must not overflow.
				if n, err := strconv.Atoi(strings.Trim(val, `"`)); err == nil && n > 0 {
					age = time.Duration(min(n, 86400)) * time.Second
				}
			}
		}
	}
	return age
}

// limits collects the X-Mqtt-Limit-* headers.
func limits(h http.Header) map[string]string {
	var m map[string]string
	for k, v := range h {
		if len(k) <= len(HeaderLimitPrefix) || !strings.EqualFold(k[:len(HeaderLimitPrefix)], HeaderLimitPrefix) || len(v) == 0 {
			continue
		}
		if m == nil {
			m = make(map[string]string)
		}
		name := strings.ReplaceAll(strings.ToLower(k[len(HeaderLimitPrefix):]), "-", "_")
		m[name] = strings.TrimSpace(v[0])
	}
	return m
}
