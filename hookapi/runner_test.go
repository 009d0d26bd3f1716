package hookapi

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-mqtt/mqttgateway/throttle"
)

// webOrigin is the snapshot of a browser's WebSocket request behind a
// trusted proxy.
func webOrigin() *Origin {
	return &Origin{
		RemoteAddr:   "192.0.2.1:40000",
		ClientIP:     "203.0.113.7",
		TrustedProxy: true,
		Host:         "app.example.com",
		Proto:        "HTTP/1.1",
		Header: http.Header{
			"User-Agent":            {"test-browser"},
			"Origin":                {"https://app.example.com"},
			"Cookie":                {"sid=s3cret"},
			"X-Forwarded-For":       {"203.0.113.7"},
			"Connection":            {"Upgrade, X-Hop"},
			"Upgrade":               {"websocket"},
			"X-Hop":                 {"named by Connection"},
			"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
			"Sec-Websocket-Version": {"13"},
			"X-Mqtt-User":           {"admin"}, // forged by the client
			"X-Mqtt-Error-Code":     {"4000"},
		},
	}
}

func publish(user, topic string) Facts {
	return Facts{Action: ActionPublish, User: user, SessionID: "s1", Broker: "sensors", Topic: topic, QoS: 1, Size: 5}
}

func subscribe(user, filter string) Facts {
	return Facts{Action: ActionSubscribe, User: user, SessionID: "s1", Broker: "sensors", Topic: filter, QoS: 2}
}

func decide(r *Runner, f Facts) Decision {
	return r.Decide(context.Background(), webOrigin(), f)
}

func wantAllow(t *testing.T, d Decision) {
	t.Helper()
	if !d.Allow || d.Code != 0 {
		t.Errorf("decision = %+v, want allow", d)
	}
}

func wantDeny(t *testing.T, d Decision, code int, message string) {
	t.Helper()
	if d.Allow || d.Code != code || (message != "" && d.Message != message) {
		t.Errorf("decision = %+v, want deny %d %q", d, code, message)
	}
}

func TestRunnerRespondAndMatchers(t *testing.T) {
	r := authorizeRunner(t, `
		@own mqtt_topic users/{http.mqtt_gateway.user}/#
		respond @own 200
		@public {
			path /subscribe
			mqtt_topic public/#
		}
		respond @public 200
		respond 403`)
	wantAllow(t, decide(r, publish("alice", "users/alice/inbox")))
	wantAllow(t, decide(r, publish("alice", "users/alice")))
	wantAllow(t, decide(r, subscribe("alice", "users/alice/+/x")))
	wantAllow(t, decide(r, subscribe("bob", "public/news")))
	wantDeny(t, decide(r, publish("bob", "users/alice/inbox")), CodeNotAuthorized, "Forbidden")
	wantDeny(t, decide(r, subscribe("alice", "users/+/inbox")), CodeNotAuthorized, "")
	wantDeny(t, decide(r, subscribe("alice", "#")), CodeNotAuthorized, "")
	wantDeny(t, decide(r, publish("bob", "public/news")), CodeNotAuthorized, "") // subscribe only
	// The injection guard: a user named to widen the rule.
	wantDeny(t, decide(r, subscribe("+", "users/alice/x")), CodeNotAuthorized, "")
	wantDeny(t, decide(r, subscribe("bob/#", "users/bob/#")), CodeNotAuthorized, "")
	// A wildcard in a publish topic is never contained.
	wantDeny(t, decide(r, publish("alice", "users/alice/+")), CodeNotAuthorized, "")
}

func TestRunnerPathRouting(t *testing.T) {
	r := authorizeRunner(t, `
		respond /connect 204
		respond /subscribe 200
		respond /publish "no publishing here" 403
		respond /unsubscribe 500
		respond 403`)
	wantAllow(t, decide(r, Facts{Action: ActionConnect, SessionID: "s1", Broker: "sensors"}))
	wantAllow(t, decide(r, subscribe("alice", "a/b")))
	wantDeny(t, decide(r, publish("alice", "a/b")), CodeNotAuthorized, "no publishing here")
	wantDeny(t, decide(r, Facts{Action: ActionUnsubscribe, Topic: "a/b"}), CodeHookUnavailable, MessageUnavailable)
}

func TestRunnerErrorCode(t *testing.T) {
	r := authorizeRunner(t, `
		@reserved mqtt_topic reserved/#
		header @reserved X-Mqtt-Error-Code 4031
		header @reserved X-Mqtt-Error-Message "reserved topic"
		respond @reserved "ignored body" 403
		@outside mqtt_topic outside/#
		header @outside X-Mqtt-Error-Code 5000
		respond @outside 403
		@word mqtt_topic word/#
		header @word X-Mqtt-Error-Code abc
		respond @word "{http.mqtt_gateway.action} of {http.mqtt_gateway.topic} denied" 403
		@error mqtt_topic error/#
		error @error "no error topics" 403
		@html mqtt_topic html/#
		header @html Content-Type text/html
		respond @html "<h1>Forbidden</h1>" 404
		@long mqtt_topic long/#
		respond @long "`+strings.Repeat("é", 150)+`" 403
		respond 200`)
	wantDeny(t, decide(r, publish("alice", "reserved/x")), 4031, "reserved topic")
	wantDeny(t, decide(r, publish("alice", "outside/x")), CodeNotAuthorized, "Forbidden")
	wantDeny(t, decide(r, publish("alice", "word/x")), CodeNotAuthorized, "publish of word/x denied")
	wantDeny(t, decide(r, publish("alice", "error/x")), CodeNotAuthorized, "no error topics")
	wantDeny(t, decide(r, publish("alice", "html/x")), CodeNotAuthorized, "Not Found")
	d := decide(r, publish("alice", "long/x"))
	if len(d.Message) > maxMessage || !strings.HasPrefix(d.Message, "éé") || strings.ToValidUTF8(d.Message, "") != d.Message {
		t.Errorf("long message not clipped to %d bytes of UTF-8: %d bytes %q", maxMessage, len(d.Message), d.Message)
	}
	// Open denials default to 4020.
	rn := authorizeRunner(t, "respond 403")
	wantDeny(t, decide(rn, Facts{Action: ActionOpen, Username: "alice"}), CodeNotAuthenticated, "")
}

func TestRunnerFailClosed(t *testing.T) {
	for _, tt := range []struct{ name, block string }{
		{"500", "respond 500"},
		{"502 with body", `respond "upstream down" 502`},
		{"writes nothing", "header X-Foo bar"},
		{"no matching route", "respond /open 200"},
		{"redirect", "redir https://login.example.com/"},
		{"handler error 500", `error "boom" 500`},
		{"unreachable upstream", "reverse_proxy 127.0.0.1:9"},
		{"panic", "test_misbehave panic"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := authorizeRunner(t, tt.block)
			wantDeny(t, decide(r, publish("alice", "a/b")), CodeHookUnavailable, MessageUnavailable)
		})
	}
	t.Run("nil chain", func(t *testing.T) {
		wantDeny(t, decide(&Runner{}, publish("alice", "a/b")), CodeHookUnavailable, MessageUnavailable)
	})
	t.Run("unprovisioned chain", func(t *testing.T) {
		wantDeny(t, decide(&Runner{Chain: &Chain{}}, publish("alice", "a/b")), CodeHookUnavailable, MessageUnavailable)
	})
	t.Run("invalid action", func(t *testing.T) {
		r := authorizeRunner(t, "respond 200")
		wantDeny(t, decide(r, Facts{Action: "../admin"}), CodeHookUnavailable, MessageUnavailable)
	})
	t.Run("canceled", func(t *testing.T) {
		r := authorizeRunner(t, "respond 200")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		d := r.Decide(ctx, nil, publish("alice", "a/b"))
		// Either the chain or the cancellation wins the race; both are
		// correct, as long as a canceled decision is never an error.
		if !d.Allow {
			wantDeny(t, d, CodeHookUnavailable, MessageUnavailable)
		}
	})
}

// TestRunnerTimeout runs a handler that sleeps 3 s and ignores its
// context: the decision is a 4022 denial by the hook timeout.
func TestRunnerTimeout(t *testing.T) {
	r := authorizeRunner(t, "test_misbehave sleep 3s")
	r.Timeout = 100 * time.Millisecond
	wantDeny(t, decide(r, publish("alice", "a/b")), CodeHookUnavailable, MessageUnavailable)
}

// DecideSettled says when the chain is done with the request: with the
// decision when it answered in time (or was cached, or had no chain to
// run), later when it outlived the timeout, as a handler that ignores its
// context does.
func TestRunnerDecideSettled(t *testing.T) {
	r := authorizeRunner(t, "test_misbehave sleep 2s")
	r.Timeout = 50 * time.Millisecond
	settled := make(chan struct{})
	d := r.DecideSettled(context.Background(), webOrigin(), publish("alice", "a/b"), func() { close(settled) })
	wantDeny(t, d, CodeHookUnavailable, MessageUnavailable)
	select {
	case <-settled:
		t.Fatal("settled when the decision timed out, with the chain still running")
	default:
	}
	select {
	case <-settled:
	case <-time.After(10 * time.Second):
		t.Fatal("never settled once the chain was done")
	}

	quick := authorizeRunner(t, `header Cache-Control max-age=60
		respond 403`)
	quick.Cache = NewCache(10)
	for i := range 2 { // run, then cached
		calls := 0
		quick.DecideSettled(context.Background(), webOrigin(), publish("alice", "a/b"), func() { calls++ })
		if calls != 1 {
			t.Errorf("decision %d: settled %d times before it returned, want once", i+1, calls)
		}
	}
	calls := 0
	(&Runner{}).DecideSettled(context.Background(), nil, publish("alice", "a/b"), func() { calls++ })
	if calls != 1 {
		t.Errorf("no chain: settled %d times, want once", calls)
	}
}

// TestRunnerTimeoutUpstream is the same with a slow hook service behind
// reverse_proxy, which does honour the context.
func TestRunnerTimeoutUpstream(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(3 * time.Second):
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	defer close(release)
	r := authorizeRunner(t, "reverse_proxy "+srv.Listener.Addr().String())
	r.Timeout = 100 * time.Millisecond
	wantDeny(t, decide(r, publish("alice", "a/b")), CodeHookUnavailable, MessageUnavailable)
}

// TestRunnerReverseProxy sends decisions to a real hook service on
// loopback, which checks what it receives.
func TestRunnerReverseProxy(t *testing.T) {
	var problems atomic.Value
	problems.Store("")
	fail := func(format string, args ...any) {
		problems.Store(problems.Load().(string) + fmt.Sprintf(format, args...) + "\n")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(raw))
		f, err := ParseRequest(r)
		if err != nil {
			fail("ParseRequest: %v", err)
			Deny(w, 0, "bad request")
			return
		}
		if r.URL.Path != "/"+string(f.Action) || r.Method != http.MethodPost {
			fail("request line %s %s", r.Method, r.URL.Path)
		}
		for name, want := range map[string]string{
			"Cookie":            "sid=s3cret",
			"User-Agent":        "test-browser",
			"Origin":            "https://app.example.com",
			"X-Forwarded-For":   "203.0.113.7, 192.0.2.1",
			"X-Hook-Secret":     "shared",
			"Upgrade":           "",
			"X-Hop":             "",
			"Sec-Websocket-Key": "",
			HeaderAction:        string(f.Action),
			HeaderSession:       f.SessionID,
			HeaderBroker:        f.Broker,
		} {
			if got := strings.Join(r.Header.Values(name), ","); got != want {
				fail("header %s = %q, want %q", name, got, want)
			}
		}
		var b map[string]any
		if err := json.Unmarshal(raw, &b); err != nil {
			fail("body: %v", err)
		}
		for _, k := range []string{"action", "user", "session", "broker", "client_id", "topic", "qos", "retain", "size", "username", "password"} {
			if _, ok := b[k]; !ok {
				fail("body has no %q: %s", k, raw)
			}
		}
		for name := range r.Header {
			if strings.Contains(strings.ToLower(strings.Join(r.Header[name], ",")), "pa55") && name != "Authorization" {
				fail("password in header %s", name)
			}
		}
		switch f.Action {
		case ActionOpen:
			if r.Header.Get(HeaderUser) != "" {
				fail("forged X-Mqtt-User reached the hook: %q", r.Header.Get(HeaderUser))
			}
			u, p, ok := r.BasicAuth()
			if !ok || u != f.Username || p != string(f.Password) {
				fail("authorization %q does not carry the open credentials", r.Header.Get("Authorization"))
			}
			if f.Username == "alice" && string(f.Password) == "pa55" {
				Allow(w, WithUser("alice"), WithLimit("max_bandwidth", "65536"), WithLimit("max_frequency", "10"))
				return
			}
			Deny(w, 0, "wrong password")
		case ActionPublish:
			if f.User != "alice" || f.Topic != "users/alice/x" || f.QoS != 1 || !f.Retain || f.Size != 5 {
				fail("publish facts %+v", f)
			}
			Allow(w, WithMaxAge(time.Minute))
		default:
			Deny(w, 4031, "not here")
		}
	}))
	defer srv.Close()
	t.Setenv("HOOK_SECRET", "shared")
	g, _ := startGateway(t, `
		authenticate {
			reverse_proxy `+srv.Listener.Addr().String()+` {
				header_up X-Hook-Secret {env.HOOK_SECRET}
			}
		}
		authorize {
			reverse_proxy `+srv.Listener.Addr().String()+` {
				header_up X-Hook-Secret {env.HOOK_SECRET}
			}
		}`)
	open := &Runner{Chain: g.Authenticate}
	az := &Runner{Chain: g.Authorize}

	d := decide(open, Facts{Action: ActionOpen, SessionID: "s1", Username: "alice", Password: []byte("pa55")})
	wantAllow(t, d)
	if d.User != "alice" || d.Limits["max_bandwidth"] != "65536" || d.Limits["max_frequency"] != "10" || len(d.Limits) != 2 {
		t.Errorf("open decision = %+v, want user alice and two limits", d)
	}
	wantDeny(t, decide(open, Facts{Action: ActionOpen, SessionID: "s1", Username: "alice", Password: []byte("nope")}), CodeNotAuthenticated, "wrong password")

	p := publish("alice", "users/alice/x")
	p.Retain = true
	d = decide(az, p)
	wantAllow(t, d)
	if d.MaxAge != time.Minute {
		t.Errorf("MaxAge = %v, want 1m", d.MaxAge)
	}
	wantDeny(t, decide(az, subscribe("alice", "x/#")), 4031, "not here")
	if s := problems.Load().(string); s != "" {
		t.Error(s)
	}
}

func TestRunnerPlaceholdersAndHeaders(t *testing.T) {
	r := authorizeRunner(t, `
		respond "{http.mqtt_gateway.action}|{http.mqtt_gateway.user}|{http.mqtt_gateway.session}|{http.mqtt_gateway.broker}|{http.mqtt_gateway.client_id}|{http.mqtt_gateway.topic}|{http.mqtt_gateway.qos}|{http.mqtt_gateway.retain}|{http.mqtt_gateway.size}|{http.mqtt_gateway.username}|{http.request.header.X-Mqtt-Topic}|{http.request.header.X-Mqtt-User}|{http.request.host}|{http.request.remote.host}|{http.request.header.Cookie}|{http.vars.client_ip}|{http.request.uri}" 403`)
	f := Facts{Action: ActionConnect, User: "alice", SessionID: "s1", Broker: "sensors", ClientID: "c1",
		Topic: "t/x", QoS: 2, Retain: true, Size: 7, Username: "mqtt-alice", Password: []byte("pa55")}
	d := decide(r, f)
	want := "connect|alice|s1|sensors|c1|t/x|2|true|7|mqtt-alice|t/x|alice|app.example.com|192.0.2.1|sid=s3cret|203.0.113.7|/connect"
	if d.Message != want {
		t.Errorf("message = %q\nwant      %q", d.Message, want)
	}
}

// A publish's response topic and will flag reach the hook as headers and
// placeholders, so that a Caddyfile policy can keep answers to a user's
// requests within the user's topics, and tell a will from a publish.
func TestRunnerResponseTopicAndWill(t *testing.T) {
	r := authorizeRunner(t, `
		respond "[{http.mqtt_gateway.response_topic}][{http.request.header.X-Mqtt-Response-Topic}][{http.mqtt_gateway.will}][{http.request.header.X-Mqtt-Will}]" 403`)
	f := publish("alice", "dev/1/cmd")
	f.ResponseTopic = "users/alice/replies"
	wantDeny(t, decide(r, f), CodeNotAuthorized, "[users/alice/replies][users/alice/replies][false][false]")
	f.ResponseTopic, f.Will = "", true
	wantDeny(t, decide(r, f), CodeNotAuthorized, "[][][true][true]")
	// Only publishes have a will flag.
	wantDeny(t, decide(r, Facts{Action: ActionSubscribe, User: "alice", SessionID: "s1", Broker: "b", Topic: "t"}), CodeNotAuthorized, "[][][][]")

	// The client-id rule's idiom, for the response topic.
	r = authorizeRunner(t, `
		@foreign expression `+"`"+`{http.mqtt_gateway.response_topic} != "" && !{http.mqtt_gateway.response_topic}.startsWith("users/" + {http.mqtt_gateway.user} + "/")`+"`"+`
		respond @foreign "answers go to your own topics" 403
		respond 204`)
	for rt, allow := range map[string]bool{"": true, "users/alice/replies": true, "users/bob/replies": false, "users/alice": false} {
		f := publish("alice", "dev/1/cmd")
		f.ResponseTopic = rt
		if d := decide(r, f); d.Allow != allow {
			t.Errorf("response topic %q: allowed %v, want %v (%+v)", rt, d.Allow, allow, d)
		}
	}
}

// TestRunnerUnsafeHeaderValues checks that facts a header cannot carry
// are left out of the headers but reach placeholders, the body and the
// matcher.
func TestRunnerUnsafeHeaderValues(t *testing.T) {
	r := authorizeRunner(t, `
		@t mqtt_topic "a/ b"
		respond @t "[{http.request.header.X-Mqtt-Topic}][{http.mqtt_gateway.topic}]" 403
		respond "[{http.request.header.X-Mqtt-Topic}][{http.mqtt_gateway.topic}]" 401`)
	wantDeny(t, decide(r, publish("alice", "a/ b")), CodeNotAuthorized, "[a/ b][a/ b]")
	wantDeny(t, decide(r, publish("alice", "a/b\n")), CodeNotAuthorized, "[][a/b\n]")
	wantDeny(t, decide(r, publish("alice", " a")), CodeNotAuthorized, "[][ a]")
}

func TestRunnerTLSAndClientIP(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "alice"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	r := authorizeRunner(t, `
		@inside client_ip 203.0.113.0/24
		respond @inside "{http.request.tls.client.subject}" 403
		respond 200`)
	o := webOrigin()
	o.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true, PeerCertificates: []*x509.Certificate{cert}}
	d := r.Decide(context.Background(), o, publish("alice", "a/b"))
	wantDeny(t, d, CodeNotAuthorized, "CN=alice")
	o.ClientIP = "198.51.100.1"
	wantAllow(t, r.Decide(context.Background(), o, publish("alice", "a/b")))
}

// TestRunnerBasicAuth authenticates opens with Caddy's basic_auth against
// the credentials of the open.
func TestRunnerBasicAuth(t *testing.T) {
	g, _ := startGateway(t, `
		authenticate {
			basic_auth {
				alice $2a$04$EhrFqfuDYje5tGcNRIFLu./WTh7EbPuM81XbRGMNOoT3X62QCzdOK
			}
			respond 204
		}`)
	r := &Runner{Chain: g.Authenticate, Timeout: 5 * time.Second}
	open := func(user, pass string) Decision {
		return decide(r, Facts{Action: ActionOpen, Username: user, Password: []byte(pass)})
	}
	d := open("alice", "alice-secret")
	wantAllow(t, d)
	if d.User != "alice" {
		t.Errorf("user = %q, want alice from {http.auth.user.id}", d.User)
	}
	wantDeny(t, open("alice", "wrong"), CodeNotAuthenticated, "not authenticated")
	// (An unknown user is denied too, after a comparison with a cost-14
	// bcrypt hash that hides which users exist: seconds under the race
	// detector, so not here.)
	// Without credentials in the open, the page's own Authorization
	// header is what basic_auth sees.
	o := webOrigin()
	o.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte("alice:alice-secret")))
	wantAllow(t, r.Decide(context.Background(), o, Facts{Action: ActionOpen}))
	// Credentials Basic cannot carry do not fall back on the page's.
	wantDeny(t, r.Decide(context.Background(), o, Facts{Action: ActionOpen, Username: "a:b", Password: []byte("x")}), CodeNotAuthenticated, "")
	// A subscribe never carries credentials: the page's header stays.
	if h := hookHeader(o.Header, &Facts{Action: ActionSubscribe, Username: "x", Password: []byte("y")}); h.Get("Authorization") != o.Header.Get("Authorization") {
		t.Errorf("authorization replaced on subscribe: %q", h.Get("Authorization"))
	}
}

func TestRunnerCache(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		f, err := ParseRequest(r)
		switch {
		case err != nil:
			Deny(w, 0, err.Error())
		case strings.HasPrefix(f.Topic, "nocache/"):
			Allow(w)
		case strings.HasPrefix(f.Topic, "deny/"):
			Deny(w, 0, "no", WithMaxAge(time.Minute))
		case strings.HasPrefix(f.Topic, "fail/"):
			w.Header().Set("Cache-Control", "max-age=60")
			w.WriteHeader(http.StatusBadGateway)
		default:
			Allow(w, WithMaxAge(time.Minute))
		}
	}))
	defer srv.Close()
	r := authorizeRunner(t, "reverse_proxy "+srv.Listener.Addr().String())
	r.Cache = NewCache(100)
	count := func(f Facts, times int) int64 {
		before := hits.Load()
		for range times {
			decide(r, f)
		}
		return hits.Load() - before
	}
	if n := count(publish("alice", "a/b"), 3); n != 1 {
		t.Errorf("max-age allow: %d hook calls for 3 decisions, want 1", n)
	}
	if n := count(publish("alice", "deny/b"), 3); n != 1 {
		t.Errorf("max-age deny: %d hook calls, want 1", n)
	}
	wantDeny(t, decide(r, publish("alice", "deny/b")), CodeNotAuthorized, "no")
	if n := count(publish("alice", "nocache/b"), 3); n != 3 {
		t.Errorf("no max-age: %d hook calls, want 3", n)
	}
	if n := count(publish("alice", "fail/b"), 2); n != 2 {
		t.Errorf("failed answers are cached: %d hook calls, want 2", n)
	}
	// Other facts, other session: not the cached answer.
	other := publish("alice", "a/b")
	other.SessionID = "s2"
	if n := count(other, 1) + count(publish("alice", "a/c"), 1) + count(publish("bob", "a/b"), 1); n != 3 {
		t.Errorf("distinct facts: %d hook calls, want 3", n)
	}
	// The size is not part of the key.
	big := publish("alice", "a/b")
	big.Size = 1 << 20
	if n := count(big, 1); n != 0 {
		t.Errorf("size-only change: %d hook calls, want 0", n)
	}
	// Notifications and decisions without a session always run.
	unsub := Facts{Action: ActionUnsubscribe, SessionID: "s1", Topic: "a/b"}
	nosess := publish("alice", "a/b")
	nosess.SessionID = ""
	if n := count(unsub, 2) + count(nosess, 2); n != 4 {
		t.Errorf("uncacheable decisions: %d hook calls, want 4", n)
	}
	r.Cache.Forget("s1")
	if n := count(publish("alice", "a/b"), 2); n != 1 {
		t.Errorf("after Forget: %d hook calls, want 1", n)
	}
}

func TestRunnerLogsNoSecrets(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	r := authorizeRunner(t, `
		respond /open 200
		respond /connect 403
		respond 500`)
	r.Logger = zap.New(core)
	o := webOrigin()
	o.Header.Set("Authorization", "Bearer tok3n")
	for _, f := range []Facts{
		{Action: ActionOpen, Username: "alice", Password: []byte("pa55word")},
		{Action: ActionConnect, User: "alice", Username: "alice", Password: []byte("pa55word"), Broker: "b"},
		publish("alice", "a/b"),
	} {
		r.Decide(context.Background(), o, f)
	}
	levels := map[string]string{}
	for _, e := range logs.All() {
		levels[e.ContextMap()["action"].(string)] = e.Level.String()
		line := fmt.Sprint(e.Message, e.ContextMap())
		for _, secret := range []string{"pa55word", "tok3n", "s3cret"} {
			if strings.Contains(line, secret) {
				t.Errorf("log line holds a secret: %s", line)
			}
		}
	}
	if levels["open"] != "debug" || levels["connect"] != "info" || levels["publish"] != "warn" {
		t.Errorf("log levels = %v, want open debug, connect info, publish warn", levels)
	}
}

// A refused open logs the user name it gave (there is no session user).
func TestRunnerLogsTheNameOfARefusedOpen(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	r := authorizeRunner(t, `respond /open 403`)
	r.Logger = zap.New(core)
	r.Decide(context.Background(), webOrigin(), Facts{Action: ActionOpen, Username: "mallory", Password: []byte("guess")})
	denied := logs.FilterMessage("hook denied").All()
	if len(denied) != 1 || denied[0].ContextMap()["username"] != "mallory" {
		t.Fatalf("refused open logged as %v", logs.All())
	}
}

// A client provokes denials at will: with topics of its choosing (up to
// 65,535 bytes) and as fast as it likes. Lines hold at most 256 bytes of
// its topic, and come at most throttle.LogBurst at once; the next line let through
// counts those left out.
func TestOneSessionsDenialsDoNotHideAnothers(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	r := authorizeRunner(t, `respond 403`)
	r.Logger = zap.New(core)
	for i := range 300 {
		decide(r, subscribe("mallory", fmt.Sprint("flood/", i)))
	}
	bob := subscribe("bob", "room/1")
	bob.SessionID = "s2"
	decide(r, bob)
	denied := logs.FilterMessage("hook denied").All()
	byUser := map[string]int{}
	for _, e := range denied {
		byUser[e.ContextMap()["user"].(string)]++
	}
	if byUser["mallory"] != throttle.LogShare || byUser["bob"] != 1 {
		t.Fatalf("logged %v, want mallory's session's share (%d) and bob's denial", byUser, throttle.LogShare)
	}
	last := denied[len(denied)-1].ContextMap()
	if last["session"] != "s2" || last["client_ip"] != "203.0.113.7" || last["not_logged_before"] != int64(300-throttle.LogShare) {
		t.Errorf("bob's line: %v, want his session, client IP and mallory's %d left out", last, 300-throttle.LogShare)
	}
}

func TestRunnerLogsDenialsWithinABudget(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	r := authorizeRunner(t, `respond 403`)
	r.Logger = zap.New(core)
	long := strings.Repeat("é", 30000) // 60,000 bytes
	start := time.Now()
	for i := range 3 * throttle.LogBurst {
		f := subscribe("mallory", fmt.Sprintf("%d/%s", i, long))
		f.SessionID = fmt.Sprint("s", i) // many sessions: one has its share only (below)
		decide(r, f)
	}
	// A few more than the burst as the budget refills meanwhile: throttle.LogRate a
	// second of the time the denials took (over a second on a busy machine).
	refilled := int(time.Since(start).Seconds()*throttle.LogRate) + 1
	denied := logs.FilterMessage("hook denied").All()
	if len(denied) < throttle.LogBurst || len(denied) > throttle.LogBurst+refilled {
		t.Fatalf("%d of %d denials logged, want %d and at most %d more", len(denied), 3*throttle.LogBurst, throttle.LogBurst, refilled)
	}
	first := denied[0].ContextMap()
	if topic := first["topic"].(string); len(topic) > logTextMax+len("…") || !utf8.ValidString(topic) || !strings.HasSuffix(topic, "…") {
		t.Errorf("logged topic of %d bytes (valid UTF-8: %v): %.40q", len(topic), utf8.ValidString(topic), topic)
	}
	if first["topic_bytes"] != int64(len("0/"+long)) {
		t.Errorf("topic_bytes = %v, want %d", first["topic_bytes"], len("0/"+long))
	}
	// Once the budget refills, the next line says how many were left out:
	// every denial is a line or counted in one.
	time.Sleep(200 * time.Millisecond) // throttle.LogRate 10/s: a line's worth and more
	late := subscribe("mallory", "late")
	late.SessionID = "late"
	decide(r, late)
	all := logs.FilterMessage("hook denied").All()
	if all[len(all)-1].ContextMap()["topic"] != "late" {
		t.Fatal("the denial after the refill was not logged")
	}
	seen := 0
	for _, e := range all {
		left, _ := e.ContextMap()["not_logged_before"].(int64)
		seen += 1 + int(left)
	}
	if seen != 3*throttle.LogBurst+1 {
		t.Errorf("%d lines account for %d denials, want %d", len(all), seen, 3*throttle.LogBurst+1)
	}
}

// A connect's clean start and session expiry reach the hook as headers,
// placeholders and the body, so that a policy can bound the sessions a
// user leaves on the broker (the README's idiom: an int() of the
// placeholder); other actions have neither.
func TestRunnerCleanStartAndSessionExpiry(t *testing.T) {
	r := authorizeRunner(t, `
		respond "[{http.mqtt_gateway.clean_start}][{http.request.header.X-Mqtt-Clean-Start}][{http.mqtt_gateway.session_expiry}][{http.request.header.X-Mqtt-Session-Expiry}]" 403`)
	connect := Facts{Action: ActionConnect, User: "alice", SessionID: "s1", Broker: "b", ClientID: "alice/1", SessionExpiry: 4294967295}
	wantDeny(t, decide(r, connect), CodeNotAuthorized, "[false][false][4294967295][4294967295]")
	connect.CleanStart, connect.SessionExpiry = true, 0
	wantDeny(t, decide(r, connect), CodeNotAuthorized, "[true][true][0][0]")
	wantDeny(t, decide(r, publish("alice", "t")), CodeNotAuthorized, "[][][][]")

	r = authorizeRunner(t, `
		@lasting expression `+"`"+`int({http.mqtt_gateway.session_expiry}) > 86400`+"`"+`
		respond @lasting "a broker session may last a day at most" 403
		respond 204`)
	for expiry, allow := range map[uint32]bool{0: true, 86400: true, 86401: false, 4294967295: false} {
		f := Facts{Action: ActionConnect, User: "alice", SessionID: "s1", Broker: "b", ClientID: "alice/1", SessionExpiry: expiry}
		if d := decide(r, f); d.Allow != allow {
			t.Errorf("session expiry %d: allowed %v, want %v (%+v)", expiry, d.Allow, allow, d)
		}
	}
}
