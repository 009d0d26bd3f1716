package main

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
)

// These tests run both example Caddyfiles in a real Caddy and check that
// they decide the same policy: Caddyfile with this hook service behind
// reverse_proxy, Caddyfile.policy with basic_auth and mqtt_topic.
//
// This binary does not link the gateway, so a stand-in for the
// mqtt_gateway directive keeps the hook chains (hookapi.ParseChain, as
// the real directive does) and skips the other options.

func init() {
	caddy.RegisterModule(new(standIn))
	httpcaddyfile.RegisterHandlerDirective("mqtt_gateway", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		g := new(standIn)
		h.Next()
		h.NextArg() // the matcher, if any
		for h.NextBlock(0) {
			var err error
			switch h.Val() {
			case "authenticate":
				g.Authenticate, err = hookapi.ParseChain(h)
			case "authorize":
				g.Authorize, err = hookapi.ParseChain(h)
			default:
				h.NextSegment()
			}
			if err != nil {
				return nil, err
			}
		}
		return g, nil
	})
	httpcaddyfile.RegisterDirectiveOrder("mqtt_gateway", httpcaddyfile.Before, "respond")
}

type standIn struct {
	Authenticate *hookapi.Chain `json:"authenticate,omitempty"`
	Authorize    *hookapi.Chain `json:"authorize,omitempty"`
}

var loaded atomic.Pointer[standIn]

func (*standIn) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.mqtt_gateway", New: func() caddy.Module { return new(standIn) }}
}

func (g *standIn) Provision(ctx caddy.Context) error {
	for _, c := range []*hookapi.Chain{g.Authenticate, g.Authorize} {
		if err := c.Provision(ctx); err != nil {
			return err
		}
	}
	loaded.Store(g)
	return nil
}

func (*standIn) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	return next.ServeHTTP(w, r)
}

// runExample loads an example Caddyfile into a real Caddy on a loopback
// port, with the hook address replaced by hookAddr, and returns runners
// for its two hooks.
func runExample(t *testing.T, file, hookAddr string) (authn, authz *hookapi.Runner) {
	t.Helper()
	text, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	site := "http://" + l.Addr().String()
	l.Close()
	s := strings.ReplaceAll(string(text), "127.0.0.1:9000", hookAddr)
	s = strings.Replace(s, "localhost:8443", site, 1)
	// The test's global options go into the example's global options block
	// (a Caddyfile has one, first), or make one.
	opts := "\tadmin off\n\tpersist_config off\n\tlog {\n\t\toutput discard\n\t}\n"
	if i := strings.Index(s, "\n{\n"); i >= 0 {
		s = s[:i+3] + opts + s[i+3:]
	} else {
		s = "{\n" + opts + "}\n" + s
	}
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(s), nil)
	if err != nil {
		t.Fatalf("adapting %s: %v", file, err)
	}
	loaded.Store(nil)
	if err := caddy.Load(cfg, true); err != nil {
		t.Fatalf("loading %s: %v", file, err)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	g := loaded.Load()
	// basic_auth's bcrypt is slow under the race detector.
	return &hookapi.Runner{Chain: g.Authenticate, Timeout: 10 * time.Second},
		&hookapi.Runner{Chain: g.Authorize, Timeout: 5 * time.Second}
}

// checkPolicy runs the example policy's cases through both hooks.
func checkPolicy(t *testing.T, authn, authz *hookapi.Runner) {
	t.Helper()
	ctx := context.Background()
	origin := &hookapi.Origin{RemoteAddr: "127.0.0.1:5000", Host: "localhost", Proto: "HTTP/1.1", Header: http.Header{}}
	for _, tt := range []struct {
		user, password string
		allow          bool
	}{
		{"alice", "alice-secret", true},
		{"bob", "bob-secret", true},
		{"alice", "bob-secret", false},
		{"alice", "", false},
	} {
		d := authn.Decide(ctx, origin, hookapi.Facts{Action: hookapi.ActionOpen, Username: tt.user, Password: []byte(tt.password)})
		if d.Allow != tt.allow || (d.Allow && (d.User != tt.user || d.Limits["max_bandwidth"] != "65536")) {
			t.Errorf("open %s/%q: %+v, want allow=%v", tt.user, tt.password, d, tt.allow)
		}
		if !d.Allow && d.Code != hookapi.CodeNotAuthenticated {
			t.Errorf("open %s/%q denied with code %d, want %d", tt.user, tt.password, d.Code, hookapi.CodeNotAuthenticated)
		}
	}
	for _, tt := range []struct {
		action      hookapi.Action
		user, topic string
		allow       bool
	}{
		{hookapi.ActionConnect, "alice", "", true},
		{hookapi.ActionSubscribe, "alice", "users/alice/#", true},
		{hookapi.ActionSubscribe, "alice", "users/alice/+/temp", true},
		{hookapi.ActionSubscribe, "alice", "users/bob/x", false},
		{hookapi.ActionSubscribe, "alice", "users/+/x", false},
		{hookapi.ActionSubscribe, "alice", "#", false},
		{hookapi.ActionSubscribe, "bob", "public/#", true},
		{hookapi.ActionSubscribe, "bob", "public/news", true},
		{hookapi.ActionSubscribe, "bob", "$SYS/#", false},
		{hookapi.ActionPublish, "bob", "users/bob/status", true},
		{hookapi.ActionPublish, "bob", "users/alice/status", false},
		{hookapi.ActionPublish, "bob", "public/news", false},
		{hookapi.ActionSubscribe, "+", "users/+/x", false},
		{hookapi.ActionSubscribe, "bob/#", "users/bob/#", false},
	} {
		f := hookapi.Facts{Action: tt.action, User: tt.user, SessionID: "s1", Broker: "local", Topic: tt.topic}
		d := authz.Decide(ctx, origin, f)
		if d.Allow != tt.allow {
			t.Errorf("%s %q as %q: %+v, want allow=%v", tt.action, tt.topic, tt.user, d, tt.allow)
		}
		if !d.Allow && (d.Code != hookapi.CodeNotAuthorized || d.Message == "") {
			t.Errorf("%s %q as %q: denied with %d %q", tt.action, tt.topic, tt.user, d.Code, d.Message)
		}
	}
	// Response topics: whoever answers a request publishes there, on the
	// user's behalf, so they are the user's own topics too.
	for _, tt := range []struct {
		user, topic, response string
		allow                 bool
	}{
		{"alice", "users/alice/cmd", "users/alice/replies", true},
		{"alice", "users/alice/cmd", "users/bob/replies", false},
		{"alice", "users/alice/cmd", "public/replies", false},
		{"al/ice", "users/al/ice/cmd", "users/al/ice/replies", false},
		{"bob", "users/alice/cmd", "users/bob/replies", false},
	} {
		f := hookapi.Facts{Action: hookapi.ActionPublish, User: tt.user, SessionID: "s1", Broker: "local", Topic: tt.topic, ResponseTopic: tt.response}
		d := authz.Decide(ctx, origin, f)
		if d.Allow != tt.allow {
			t.Errorf("publish %q answered on %q as %q: %+v, want allow=%v", tt.topic, tt.response, tt.user, d, tt.allow)
		}
		if !d.Allow && (d.Code != hookapi.CodeNotAuthorized || d.Message == "") {
			t.Errorf("publish %q answered on %q as %q: denied with %d %q", tt.topic, tt.response, tt.user, d.Code, d.Message)
		}
	}
	// Client IDs: a dedicated connection may only take up a broker session
	// of the user's own.
	for _, tt := range []struct {
		user, clientID string
		allow          bool
	}{
		{"alice", "", true},
		{"alice", "alice/phone", true},
		{"bob", "alice/phone", false},
		{"bob", "alice", false},
		{"bob", "bob", false},
		{"al", "al/ice/phone", true},
		{"al/ice", "al/ice/phone", false},
		{"", "alice/phone", false},
	} {
		f := hookapi.Facts{Action: hookapi.ActionConnect, User: tt.user, SessionID: "s1", Broker: "local", ClientID: tt.clientID}
		d := authz.Decide(ctx, origin, f)
		if d.Allow != tt.allow {
			t.Errorf("connect with client ID %q as %q: %+v, want allow=%v", tt.clientID, tt.user, d, tt.allow)
		}
		if !d.Allow && (d.Code != hookapi.CodeNotAuthorized || !strings.Contains(d.Message, "client ID")) {
			t.Errorf("connect with client ID %q as %q: denied with %d %q", tt.clientID, tt.user, d.Code, d.Message)
		}
	}
	// MQTT credentials of the page's own: the gateway logs in with its own.
	for _, f := range []hookapi.Facts{
		{Action: hookapi.ActionConnect, User: "alice", SessionID: "s1", Broker: "local", Username: "device"},
		{Action: hookapi.ActionConnect, User: "alice", SessionID: "s1", Broker: "local", Username: "alice", ClientID: "alice/phone"},
	} {
		if d := authz.Decide(ctx, origin, f); d.Allow || d.Code != hookapi.CodeNotAuthorized || !strings.Contains(d.Message, "credentials") {
			t.Errorf("connect with the MQTT user name %q: %+v, want it refused", f.Username, d)
		}
	}
	// Notifications are answered too (and ignored by the gateway).
	for _, a := range []hookapi.Action{hookapi.ActionUnsubscribe, hookapi.ActionDisconnect, hookapi.ActionClose} {
		if d := authz.Decide(ctx, origin, hookapi.Facts{Action: a, User: "alice", SessionID: "s1"}); !d.Allow {
			t.Errorf("%s: %+v", a, d)
		}
	}
}

func TestHookService(t *testing.T) {
	srv := httptest.NewServer(newHandler(defaultUsers, newPresence(time.Minute)))
	defer srv.Close()
	authn, authz := runExample(t, "Caddyfile", srv.Listener.Addr().String())
	checkPolicy(t, authn, authz)
}

func TestCaddyfilePolicy(t *testing.T) {
	authn, authz := runExample(t, "Caddyfile.policy", "")
	checkPolicy(t, authn, authz)
}

// TestHookServiceRefusesOthers checks that requests that are not the
// gateway's are refused.
func TestHookServiceRefusesOthers(t *testing.T) {
	h := newHandler(defaultUsers, newPresence(time.Minute))
	for _, r := range []*http.Request{
		httptest.NewRequest(http.MethodPost, "/open", strings.NewReader(`{"action":"open","username":"alice","password":"alice-secret"}`)),
		httptest.NewRequest(http.MethodGet, "/open", nil),
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code < 400 || w.Code >= 500 {
			t.Errorf("%s %s: status %d, want 4xx", r.Method, r.URL, w.Code)
		}
	}
}
