package hookapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// This file is for hook services written in Go, which the gateway reaches
// through reverse_proxy: read the facts with ParseRequest, answer with
// Allow or Deny.

// maxRequestBody bounds what ParseRequest reads: a topic and a password
// are at most 64 KiB each, the rest is small.
const maxRequestBody = 256 << 10

// ParseRequest reads the facts of a hook request: the JSON body, checked
// against the X-Mqtt-* headers, which must agree with it where present
// (the body is the reference; a header the gateway could not send
// unchanged is absent). It requires the X-Mqtt-Action header and a valid
// action. It does not authenticate the caller: let only the gateway reach
// the hook service (a private address, or a shared secret in a header
// set with reverse_proxy's header_up).
func ParseRequest(r *http.Request) (Facts, error) {
	if r.Method != http.MethodPost {
		return Facts{}, fmt.Errorf("hookapi: method %s, want POST", r.Method)
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return Facts{}, errors.New("hookapi: content type is not application/json")
	}
	if r.Body == nil {
		return Facts{}, errors.New("hookapi: no body")
	}
	data, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil {
		return Facts{}, fmt.Errorf("hookapi: reading body: %w", err)
	}
	if len(data) > maxRequestBody {
		return Facts{}, errors.New("hookapi: body too large")
	}
	return parseFacts(data, r.Header)
}

// parseFacts decodes a body and checks it against header.
func parseFacts(data []byte, header http.Header) (Facts, error) {
	var b body
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&b); err != nil {
		return Facts{}, fmt.Errorf("hookapi: decoding body: %w", err)
	}
	if dec.More() {
		return Facts{}, errors.New("hookapi: data after the JSON body")
	}
	if !b.Action.Valid() {
		return Facts{}, fmt.Errorf("hookapi: unknown action %q", b.Action)
	}
	if b.QoS < 0 || b.QoS > 2 {
		return Facts{}, fmt.Errorf("hookapi: invalid qos %d", b.QoS)
	}
	if b.Size < 0 {
		return Facts{}, fmt.Errorf("hookapi: invalid size %d", b.Size)
	}
	f := Facts{
		Action:        b.Action,
		Instance:      b.Instance,
		User:          b.User,
		SessionID:     b.Session,
		Broker:        b.Broker,
		ClientID:      b.ClientID,
		Topic:         b.Topic,
		QoS:           byte(b.QoS),
		Retain:        b.Retain,
		Size:          b.Size,
		ResponseTopic: b.ResponseTopic,
		Will:          b.Will,
		CleanStart:    b.CleanStart,
		SessionExpiry: b.SessionExpiry,
		Username:      b.Username,
	}
	switch {
	case b.PasswordBase64 != "" && b.Password != "":
		return Facts{}, errors.New("hookapi: both password and password_base64")
	case b.PasswordBase64 != "":
		var err error
		if f.Password, err = base64.StdEncoding.DecodeString(b.PasswordBase64); err != nil {
			return Facts{}, errors.New("hookapi: invalid password_base64")
		}
	case b.Password != "":
		f.Password = []byte(b.Password)
	}
	if len(header.Values(HeaderAction)) == 0 {
		return Facts{}, errors.New("hookapi: no " + HeaderAction + " header: not a gateway hook request")
	}
	for _, h := range factHeaders {
		vals := header.Values(h.name)
		switch {
		case len(vals) > 1:
			return Facts{}, fmt.Errorf("hookapi: several %s headers", h.name)
		case len(vals) == 1 && vals[0] != h.value(&f):
			return Facts{}, fmt.Errorf("hookapi: header %s does not agree with the body", h.name)
		}
	}
	return f, nil
}

// An Option adds to an Allow or Deny answer.
type Option func(http.Header)

// WithUser names the session's user in an answer to open (X-Mqtt-User).
// Authorize requests then carry it as X-Mqtt-User and the
// {http.mqtt_gateway.user} placeholder.
func WithUser(user string) Option {
	return func(h http.Header) { h.Set(HeaderUser, headerValue(user)) }
}

// WithLimit sets a limit in an answer to open (X-Mqtt-Limit-<Name>), such
// as WithLimit("max_bandwidth", "65536"), or the cap of a subscription in
// an answer to subscribe: WithLimit("max_frequency", "1"). The name is
// snake case.
func WithLimit(name, value string) Option {
	return func(h http.Header) {
		h.Set(HeaderLimitPrefix+strings.ReplaceAll(name, "_", "-"), headerValue(value))
	}
}

// WithMaxAge lets the gateway reuse the answer for the same facts of the
// same session for d (Cache-Control: max-age), rounded down to seconds.
func WithMaxAge(d time.Duration) Option {
	return func(h http.Header) {
		if s := int64(d / time.Second); s > 0 {
			h.Set("Cache-Control", "private, max-age="+strconv.FormatInt(s, 10))
		}
	}
}

// Allow answers 204 No Content: the action is allowed.
func Allow(w http.ResponseWriter, opts ...Option) {
	for _, o := range opts {
		o(w.Header())
	}
	w.WriteHeader(http.StatusNoContent)
}

// Deny answers 403 Forbidden: the action is denied with code (4000-4999;
// 0 lets the gateway choose 4020 for open and 4021 otherwise) and message,
// which reach the web client.
func Deny(w http.ResponseWriter, code int, message string, opts ...Option) {
	h := w.Header()
	for _, o := range opts {
		o(h)
	}
	if code != 0 {
		h.Set(HeaderErrorCode, strconv.Itoa(code))
	}
	if message != "" {
		h.Set(HeaderErrorMessage, headerValue(message))
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	_, _ = io.WriteString(w, message)
}

// headerValue makes s a valid header value: control characters become
// spaces.
func headerValue(s string) string {
	if headerSafe(s) {
		return s
	}
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s))
}
