package mqttgateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// hookService is an external auth service on loopback, built on the hookapi
// helpers: alice/alice-pw may open sessions and use users/alice/#; bob and
// everyone else are told why not. slow makes it answer after 3 s.
func hookService(t *testing.T, slow *atomic.Bool) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slow != nil && slow.Load() {
			time.Sleep(3 * time.Second)
		}
		f, err := hookapi.ParseRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch f.Action {
		case hookapi.ActionOpen:
			if f.Username != "alice" || string(f.Password) != "alice-pw" {
				hookapi.Deny(w, 4020, "unknown user or wrong password")
				return
			}
			hookapi.Allow(w, hookapi.WithUser("alice"), hookapi.WithLimit("max_bandwidth", "2048"), hookapi.WithLimit("max_frequency", "5"))
		case hookapi.ActionSubscribe, hookapi.ActionPublish:
			if !strings.HasPrefix(f.Topic, "users/"+f.User+"/") {
				hookapi.Deny(w, 4021, "not your topic: "+f.Topic)
				return
			}
			hookapi.Allow(w)
		default:
			hookapi.Allow(w)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func gatewayWithHooks(t *testing.T, brokerPort int, hookAddr string, extra string) string {
	httpPort := freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d
		authenticate {
			reverse_proxy %s
		}
		authorize {
			reverse_proxy %s
		}
		%s
	}
}
`, httpPort, brokerPort, hookAddr, hookAddr, extra))
	return fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
}

func dialAs(ctx context.Context, url, user, password string) (*gwclient.Client, error) {
	return gwclient.DialAs(ctx, &websocket.Dialer{}, url, nil, user, []byte(password), nil)
}

func errCode(err error) session.Code {
	if e, ok := err.(*gwclient.Error); ok {
		return e.Code
	}
	return 0
}

// With a real hook service behind reverse_proxy: alice receives her own
// messages, is refused users/bob/# and # with the service's code and
// message, and cannot publish outside her tree; a wrong password cannot
// open a session.
func TestHooksAuthorizeEveryAction(t *testing.T) {
	mq := startMosquitto(t)
	hooks := hookService(t, nil)
	url := gatewayWithHooks(t, mq.port, strings.TrimPrefix(hooks.URL, "http://"), "")
	ctx := ctx10(t)

	if _, err := dialAs(ctx, url, "alice", "wrong"); err == nil || !strings.Contains(err.Error(), "4020") {
		t.Fatalf("wrong password: %v", err)
	}
	c, err := dialAs(ctx, url, "alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := connectMain(t, c)
	if _, err := c.Subscribe(ctx, h, "users/alice/#", 1); err != nil {
		t.Fatalf("own tree: %v", err)
	}
	for _, f := range []string{"users/bob/#", "#"} {
		_, err := c.Subscribe(ctx, h, f, 0)
		if errCode(err) != session.CodeNotAuthorized || !strings.Contains(err.Error(), "not your topic: "+f) {
			t.Fatalf("subscribe %s: %v", f, err)
		}
	}
	err = c.Publish(ctx, h, session.PublishParams{Topic: "users/bob/inbox", Payload: []byte("x")})
	if errCode(err) != session.CodeNotAuthorized {
		t.Fatalf("publish outside the tree: %v", err)
	}
	if err := c.Publish(ctx, h, session.PublishParams{Topic: "users/alice/notes", QoS: 1, Payload: []byte("mine")}); err != nil {
		t.Fatal(err)
	}
	if f := nextMessage(t, c); string(f.Publish.Payload) != "mine" {
		t.Fatalf("own message: %+v", f)
	}
	// The limits authenticate gave this user cap what the client asks for.
	for _, asked := range []uint64{0, 1 << 20} {
		if got, err := c.SetBandwidth(ctx, asked); err != nil || got != 2048 {
			t.Fatalf("bandwidth asked %d: in force %d, %v; want the user's cap 2048", asked, got, err)
		}
	}
	if got, err := c.SetBandwidth(ctx, 1000); err != nil || got != 1000 {
		t.Fatalf("bandwidth under the cap: %d, %v", got, err)
	}
	c.SetBandwidth(ctx, 0)
	// max_frequency 5 per user: an unlimited subscription gets at most ~5/s.
	if _, err := c.SubscribeLimited(ctx, h, "users/alice/fast", 0, 0); err != nil {
		t.Fatal(err)
	}
	pub := mqttPublisher(t, mq.port)
	done := make(chan []arrival)
	go func() { done <- collect(c, time.Now().Add(2500*time.Millisecond)) }()
	publishAt(t, pub, []string{"users/alice/fast"}, 100, 50, 8, 0) // 2 s at 50/s
	if got := <-done; len(got) < 6 || len(got) > 14 {
		t.Fatalf("%d messages in ~2 s at the user's max_frequency 5", len(got))
	}
}

// Broker clients and subscriptions per session are bounded, with codes.
func TestClientAndSubscriptionLimits(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "max_clients_per_session 1\n\t\tmax_subscriptions_per_client 2")
	c := dial(t, url)
	ctx := ctx10(t)
	h := connectSubscribe(t, c, "a", 0)
	if _, err := c.Subscribe(ctx, h, "b", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, h, "c", 0); errCode(err) != session.CodeTooManySubscriptions {
		t.Fatalf("third subscription: %v", err)
	}
	if _, err := c.Subscribe(ctx, h, "a", 1); err != nil {
		t.Fatalf("subscribing again to a held filter is no new subscription: %v", err)
	}
	if _, _, err := c.Connect(ctx, session.ConnectParams{Broker: "main"}); errCode(err) != session.CodeTooManyClients {
		t.Fatalf("second client: %v", err)
	}
}

// The hook service stopped or slow: every action is denied with 4022 within
// hook_timeout, and sessions that are already in keep working.
func TestHooksFailClosed(t *testing.T) {
	mq := startMosquitto(t)
	var slow atomic.Bool
	hooks := hookService(t, &slow)
	url := gatewayWithHooks(t, mq.port, strings.TrimPrefix(hooks.URL, "http://"), "hook_timeout 500ms")
	ctx := ctx10(t)
	c, err := dialAs(ctx, url, "alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := connectSubscribe(t, c, "users/alice/#", 0)

	slow.Store(true)
	if _, err := c.Subscribe(ctx, h, "users/alice/more", 0); errCode(err) != session.CodeHookUnavailable {
		t.Fatalf("subscribe with a slow hook: %v", err)
	}
	if _, err := dialAs(ctx, url, "alice", "alice-pw"); err == nil || !strings.Contains(err.Error(), "4022") {
		t.Fatalf("open with a slow hook: %v", err)
	}
	hooks.Close() // and now stopped
	if err := c.Publish(ctx, h, session.PublishParams{Topic: "users/alice/x"}); errCode(err) != session.CodeHookUnavailable {
		t.Fatalf("publish with the hook down: %v", err)
	}
	// The existing subscription still delivers.
	mosquittoPub(t, mq.port, "-t", "users/alice/news", "-m", "still flowing")
	if f := nextMessage(t, c); string(f.Publish.Payload) != "still flowing" {
		t.Fatalf("existing session: %+v", f)
	}
}

// allow_origins from the environment: a variable may hold a list; one that
// is unset or empty, or a placeholder only a request knows, is an error
// when the config loads, not a gateway that lets no page in.
func TestOriginsFromPlaceholders(t *testing.T) {
	t.Setenv("MQTTGW_TEST_ORIGIN_LIST", "https://a.example.com,https://b.example.com https://c.example.com")
	t.Setenv("MQTTGW_TEST_ORIGIN_EMPTY", " ")
	h := &Handler{AllowOrigins: []string{"https://own.example.com", "{env.MQTTGW_TEST_ORIGIN_LIST}"}}
	if err := h.expandOrigins(caddy.NewReplacer()); err != nil || strings.Join(h.AllowOrigins, " ") != "https://own.example.com https://a.example.com https://b.example.com https://c.example.com" {
		t.Fatalf("expanded to %q (%v)", h.AllowOrigins, err)
	}
	for placeholder, want := range map[string]string{
		"{env.MQTTGW_TEST_ORIGIN_UNSET}": "gives no origin (is its environment variable set?)",
		"{env.MQTTGW_TEST_ORIGIN_EMPTY}": "gives no origin",
		"{http.request.host}":            "only placeholders known when the config loads",
	} {
		h := &Handler{AllowOrigins: []string{placeholder}}
		if err := h.expandOrigins(caddy.NewReplacer()); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", placeholder, err, want)
		}
	}
}

// A page of another origin can neither upgrade to WebSocket nor drive the
// HTTP transports; the gateway's own origin and listed ones can, a listed
// default port and subdomain wildcards included. A refused page can read
// why over HTTP (403, CORS headers, a CLOSE frame 4021 naming its origin),
// and may load the client library.
func TestOriginsAreChecked(t *testing.T) {
	mq := startMosquitto(t)
	// The second from the environment, as a deployment gives its list.
	t.Setenv("MQTTGW_TEST_ORIGINS", " https://*.example.org, ")
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port),
		"allow_origins http://app.example.test:80 {env.MQTTGW_TEST_ORIGINS}")
	base := fmt.Sprintf("127.0.0.1:%d/mqtt", httpPort)
	ctx := ctx10(t)
	origins := map[string]bool{
		"http://evil.example.test": false, "http://app.example.test": true, "http://" + fmt.Sprintf("127.0.0.1:%d", httpPort): true,
		"https://a.example.org": true, "https://b.a.example.org": true, "https://example.org": false,
		"http://a.example.org": false, "https://a.example.org.evil.test": false, "https://aexample.org": false,
	}
	for origin, allowed := range origins {
		d := websocket.Dialer{Subprotocols: []string{transport.Subprotocol}}
		ws, resp, err := d.DialContext(ctx, "ws://"+base+"/ws", http.Header{"Origin": {origin}})
		if ws != nil {
			ws.Close()
		}
		if want := map[bool]int{true: 101, false: 403}[allowed]; resp == nil || resp.StatusCode != want {
			t.Errorf("websocket from %s: %v %v, want %d", origin, resp, err, want)
		}
		for _, path := range []string{"/stream", "/poll", "/send"} {
			for _, method := range []string{http.MethodOptions, http.MethodPost} {
				req, _ := http.NewRequest(method, "http://"+base+path, strings.NewReader(string(transport.AppendOpen(nil, "", nil, nil))))
				req.Header.Set("Origin", origin)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				var body []byte
				if resp.StatusCode == http.StatusForbidden {
					body, _ = io.ReadAll(resp.Body) // (an allowed /stream never ends)
				}
				resp.Body.Close()
				if cors := resp.Header.Get("Access-Control-Allow-Origin"); cors != origin {
					t.Errorf("%s %s from %s: CORS %q, want the origin (a refusal is readable too)", method, path, origin, cors)
				}
				refused := resp.StatusCode == http.StatusForbidden
				if method == http.MethodOptions {
					if resp.StatusCode != http.StatusNoContent {
						t.Errorf("preflight of %s from %s: %d", path, origin, resp.StatusCode)
					}
					continue
				}
				if refused == allowed {
					t.Errorf("%s %s from %s: %d, allowed %v", method, path, origin, resp.StatusCode, allowed)
				}
				if refused {
					var end transport.Frame
					err := transport.SplitUnit(body, func(b []byte) error { return transport.Decode(b, &end) })
					if err != nil || end.Type != transport.TypeEnd || end.Code != session.CodeNotAuthorized || !strings.Contains(end.Message, origin) {
						t.Errorf("%s %s from %s: body %+v (%v), want a CLOSE 4021 naming the origin", method, path, origin, end, err)
					}
				}
			}
		}
	}
	req, _ := http.NewRequest(http.MethodGet, "http://"+base+"/client.js", nil)
	req.Header.Set("Origin", "http://evil.example.test")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("client.js for a page of another origin: %d, CORS %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
}

// A flood of session opens from one IP is refused past max_sessions_per_ip
// while another IP still gets in.
func TestSessionLimitPerIP(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "max_sessions_per_ip 20")
	ctx := ctx10(t)
	from := func(ip string) *websocket.Dialer {
		return &websocket.Dialer{NetDialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}).DialContext}
	}
	refused := 0
	for i := 0; i < 50; i++ {
		c, err := gwclient.DialWith(ctx, from("127.0.0.1"), url, nil, nil)
		if err != nil {
			if !strings.Contains(err.Error(), "4013") {
				t.Fatalf("open %d: %v", i, err)
			}
			refused++
			continue
		}
		t.Cleanup(func() { c.Close() })
	}
	if refused != 30 {
		t.Fatalf("%d of 50 opens refused, want 30 past the limit of 20", refused)
	}
	other, err := gwclient.DialWith(ctx, from("127.0.0.2"), url, nil, nil)
	if err != nil {
		t.Fatalf("another IP is refused too: %v", err)
	}
	other.Close()
}

// Publishes beyond max_publish_rate are answered with 4051.
func TestPublishRateLimit(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "max_publish_rate 10")
	c := dial(t, url)
	ctx := ctx10(t)
	h := connectMain(t, c)
	limited := 0
	for i := 0; i < 30; i++ {
		if err := c.Publish(ctx, h, session.PublishParams{Topic: "rate/x"}); errCode(err) == session.CodeRateLimited {
			limited++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if limited == 0 {
		t.Fatal("30 quick publishes with max_publish_rate 10 were all accepted")
	}
}

// Opens past max_sessions_per_ip are refused before the authenticate hook
// runs: a refused open costs no hook call (with basic_auth, a second of CPU
// for each unknown user).
func TestSessionLimitComesBeforeTheHook(t *testing.T) {
	mq := startMosquitto(t)
	var calls atomic.Int32
	url := gatewayWithHook(t, mq.port, "authenticate", "max_sessions_per_ip 3", func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		hookapi.Allow(w)
	})
	refused := 0
	for i := 0; i < 10; i++ {
		c, err := gwclient.Dial(ctx10(t), url, nil)
		if err != nil {
			if errCode(err) != session.CodeTooManySessions {
				t.Fatalf("open %d: %v", i, err)
			}
			refused++
			continue
		}
		t.Cleanup(func() { c.Close() })
	}
	if refused != 7 || calls.Load() != 3 {
		t.Fatalf("%d of 10 opens refused with %d hook calls, want 7 refused and 3 calls", refused, calls.Load())
	}
}

// Opens whose authenticate hook is still running count against
// max_sessions_per_ip: with a slow hook (basic_auth's bcrypt of an unknown
// user), a client starting opens all at once got each one to the hook,
// refused or not. Past the limit they are refused at once, and a refused
// open gives its place back.
func TestOpensInFlightCountAgainstTheSessionLimit(t *testing.T) {
	mq := startMosquitto(t)
	var calls atomic.Int32
	release := make(chan struct{})
	url := gatewayWithHook(t, mq.port, "authenticate", "max_sessions_per_ip 3", func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 3 {
			<-release
			hookapi.Deny(w, 4020, "wrong password")
			return
		}
		hookapi.Allow(w)
	})
	var released sync.Once
	free := func() { released.Do(func() { close(release) }) }
	t.Cleanup(free) // before the gateway stops, which waits for its hook calls
	codes := make(chan session.Code, 10)
	for range 10 {
		go func() {
			c, err := gwclient.Dial(context.Background(), url, nil)
			if err == nil {
				c.Close()
			}
			codes <- errCode(err)
		}()
	}
	got := map[session.Code]int{}
	for range 7 { // the hook holds three
		got[<-codes]++
	}
	if got[session.CodeTooManySessions] != 7 {
		t.Fatalf("while the hook holds three opens: %v; want 7 refused with 4013", got)
	}
	for deadline := time.Now().Add(5 * time.Second); calls.Load() < 3 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond) // the three admitted opens reach the hook
	}
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d hook calls, want the 3 admitted opens'", n)
	}
	free()
	for range 3 {
		got[<-codes]++
	}
	if got[session.CodeNotAuthenticated] != 3 {
		t.Fatalf("the held opens ended with %v, want 3 refused by the hook (4020)", got)
	}
	c, err := gwclient.Dial(ctx10(t), url, nil)
	if err != nil {
		t.Fatalf("an open after the refused ones gave their places back: %v", err)
	}
	c.Close()
}

// An open whose authenticate hook outlives hook_timeout is refused then
// (4022), but keeps its place under max_sessions_per_ip until the hook is
// done: basic_auth's check of an unknown user goes on for a second of CPU
// after the timeout, and a client that opened again at each 4022 had ever
// more of them running.
func TestATimedOutOpenKeepsItsPlaceUntilItsHookIsDone(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), `max_sessions_per_ip 2
		hook_timeout 200ms
		authenticate {
			mqttgw_test_busy 3s
			respond 204
		}`)
	codes := make(chan session.Code, 2)
	for range 2 {
		go func() {
			_, err := gwclient.Dial(context.Background(), url, nil)
			codes <- errCode(err)
		}()
	}
	for range 2 {
		if code := <-codes; code != session.CodeHookUnavailable {
			t.Fatalf("an open whose hook outlived hook_timeout: code %d, want 4022", code)
		}
	}
	// The two hooks still work: no place for a third.
	if _, err := gwclient.Dial(ctx10(t), url, nil); errCode(err) != session.CodeTooManySessions {
		t.Fatalf("an open while both hooks still work: %v, want 4013", err)
	}
	// Once they are done, the places are free: the next open reaches the
	// hook (and times out in its turn).
	time.Sleep(3 * time.Second)
	if _, err := gwclient.Dial(ctx10(t), url, nil); errCode(err) != session.CodeHookUnavailable {
		t.Fatalf("an open once the hooks were done: %v, want it to reach the hook (4022)", err)
	}
}

// The authenticate hook's limits are read as the Caddyfile's are (2KiB,
// 16kbit, 2048), and one the gateway cannot read, or whose name it does not
// know, refuses the session (4022) instead of leaving it without a limit.
func TestHookLimitsWithUnits(t *testing.T) {
	mq := startMosquitto(t)
	url := gatewayWithHook(t, mq.port, "authenticate", "", func(w http.ResponseWriter, r *http.Request) {
		f, err := hookapi.ParseRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if string(f.Password) == "named" { // the user name is the limit's name
			hookapi.Allow(w, hookapi.WithLimit(f.Username, "2048"))
			return
		}
		hookapi.Allow(w, hookapi.WithLimit("max_bandwidth", f.Username))
	})
	for written, want := range map[string]uint64{"2KiB": 2048, "16kbit": 2000, "2048": 2048, "3kB/s": 3000} {
		c, err := dialAs(ctx10(t), url, written, "")
		if err != nil {
			t.Fatalf("max_bandwidth %q: %v", written, err)
		}
		if got, err := c.SetBandwidth(ctx10(t), 1<<20); err != nil || got != want {
			t.Errorf("max_bandwidth %q: the cap in force is %d (%v), want %d", written, got, err, want)
		}
		c.Close()
	}
	_, err := dialAs(ctx10(t), url, "lots", "")
	if errCode(err) != session.CodeHookUnavailable {
		t.Fatalf("an unreadable limit: %v, want the session refused with %d", err, session.CodeHookUnavailable)
	}
	c, err := dialAs(ctx10(t), url, "max_bandwidth", "named")
	if err != nil {
		t.Fatalf("max_bandwidth by name: %v", err)
	}
	if got, err := c.SetBandwidth(ctx10(t), 1<<20); err != nil || got != 2048 {
		t.Errorf("max_bandwidth by name: the cap in force is %d (%v), want 2048", got, err)
	}
	c.Close()
	_, err = dialAs(ctx10(t), url, "max_bandwith", "named")
	if errCode(err) != session.CodeHookUnavailable {
		t.Fatalf("a misspelt limit: %v, want the session refused with %d", err, session.CodeHookUnavailable)
	}
}

// A refused open is in the log (at most a line per 10 s, counting the
// ones left out), with the client's address as trusted_proxies resolve
// it: an operator saw 4013s only in the clients' answers, and behind a
// balancer every log line named the balancer.
func TestRefusedOpensAreLogged(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "gateway.log")
	url := onePerClientBehindAProxy(t, fmt.Sprintf("log {\n\t\toutput file %s\n\t}", logFile))
	forwarded := http.Header{"X-Forwarded-For": {"203.0.113.7"}}
	first, err := gwclient.Dial(ctx10(t), url, forwarded)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	for range 3 {
		if _, err := gwclient.Dial(ctx10(t), url, forwarded); err == nil || !strings.Contains(err.Error(), "4013") {
			t.Fatalf("second session from the same client: %v, want 4013", err)
		}
	}
	log := readFile(t, logFile)
	if n := bytes.Count(log, []byte(`"msg":"session refused"`)); n != 1 {
		t.Errorf("%d lines of refused sessions in the log, want 1 for 3 refusals within 10 s:\n%s", n, log)
	}
	if !bytes.Contains(log, []byte(`"msg":"session opened"`)) || bytes.Count(log, []byte(`"client_ip":"203.0.113.7"`)) < 2 {
		t.Errorf("the log does not name the client's address 203.0.113.7:\n%s", log)
	}
	// The session's end names it too, so an operator can pair the lines.
	first.Close()
	deadline := time.Now().Add(5 * time.Second)
	for !bytes.Contains(log, []byte(`"msg":"session closed"`)) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		log = readFile(t, logFile)
	}
	for _, line := range bytes.Split(log, []byte("\n")) {
		if bytes.Contains(line, []byte(`"msg":"session closed"`)) && !bytes.Contains(line, []byte(`"client_ip":"203.0.113.7"`)) {
			t.Errorf("the session's end does not name the client's address 203.0.113.7: %s", line)
		}
	}
	if !bytes.Contains(log, []byte(`"msg":"session closed"`)) {
		t.Errorf("no session closed line:\n%s", log)
	}
}

// max_sessions_per_ip counts an IPv6 client by its /64: a subscriber line
// gets a /64 at least and may pick any address in it, so counting whole
// addresses let one client open sessions without limit.
func TestSessionsPerIPCountIPv6By64(t *testing.T) {
	url := onePerClientBehindAProxy(t, "")
	from := func(ip string) error {
		c, err := gwclient.Dial(ctx10(t), url, http.Header{"X-Forwarded-For": {ip}})
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return err
	}
	if err := from("2001:db8:1:2::1"); err != nil {
		t.Fatal(err)
	}
	if err := from("2001:db8:1:2:abcd::7"); err == nil || !strings.Contains(err.Error(), "4013") {
		t.Errorf("another address of the same /64: %v, want 4013", err)
	}
	if err := from("2001:db8:1:3::1"); err != nil {
		t.Errorf("an address of another /64: %v", err)
	}
}

// onePerClientBehindAProxy is a gateway with max_sessions_per_ip 1 that
// trusts X-Forwarded-For from loopback, in front of a Mosquitto; globals
// go into Caddy's global options. It returns the WebSocket URL.
func onePerClientBehindAProxy(t *testing.T, globals string) string {
	mq := startMosquitto(t)
	httpPort := freePort(t)
	loadCaddy(t, adaptCaddyfile(t, fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	%s
	servers {
		trusted_proxies static 127.0.0.1/32
	}
}
http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d
		max_sessions_per_ip 1
	}
}
`, globals, httpPort, mq.port)))
	return fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
}

// The hook sees a publish's response topic, where whoever answers the
// request publishes on the sender's behalf, and can refuse one outside
// the sender's topics; a will comes as a publish marked as a will. (Both
// were hidden: alice could have a device answer into another tenant.)
func TestHookSeesResponseTopicAndWill(t *testing.T) {
	mq := startMosquitto(t)
	publishes, connects := make(chan hookapi.Facts, 8), make(chan hookapi.Facts, 8)
	url := gatewayWithHook(t, mq.port, "authorize", "", func(w http.ResponseWriter, r *http.Request) {
		f, err := hookapi.ParseRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if f.Action == hookapi.ActionConnect && f.ClientID != "" {
			connects <- f
		}
		if f.Action != hookapi.ActionPublish {
			hookapi.Allow(w)
			return
		}
		publishes <- f
		if f.ResponseTopic != "" && !strings.HasPrefix(f.ResponseTopic, "users/alice/") {
			hookapi.Deny(w, 4021, "answers go to your own topics")
			return
		}
		hookapi.Allow(w)
	})
	ctx := ctx10(t)
	c := dial(t, url)
	h := connectMain(t, c)
	if err := c.Publish(ctx, h, session.PublishParams{Topic: "dev/1/cmd", Payload: []byte("on"),
		Props: &session.Props{ResponseTopic: "users/alice/replies"}}); err != nil {
		t.Fatalf("a request answered into alice's topics: %v", err)
	}
	if f := <-publishes; f.ResponseTopic != "users/alice/replies" || f.Will {
		t.Errorf("the hook saw %+v, want the response topic and no will", f)
	}
	err := c.Publish(ctx, h, session.PublishParams{Topic: "dev/1/cmd", Payload: []byte("on"),
		Props: &session.Props{ResponseTopic: "tenants/globex/devices/g1/cmd"}})
	var e *gwclient.Error
	if !errors.As(err, &e) || e.Code != 4021 {
		t.Fatalf("a request answered into another's topics: %v, want 4021", err)
	}
	<-publishes

	d := dial(t, url)
	if _, _, err := d.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: "alice/phone", SessionExpiry: 3600,
		Will: &session.PublishParams{Topic: "users/alice/status", QoS: 1, Retain: true, Payload: []byte("offline"),
			Props: &session.Props{ResponseTopic: "users/alice/status-replies"}}}); err != nil {
		t.Fatal(err)
	}
	// The connect's broker session: what it leaves on the broker.
	if f := <-connects; f.CleanStart || f.SessionExpiry != 3600 {
		t.Errorf("the hook saw the connect as clean start %v, session expiry %d; want false, 3600", f.CleanStart, f.SessionExpiry)
	}
	if f := <-publishes; !f.Will || f.Topic != "users/alice/status" || f.ResponseTopic != "users/alice/status-replies" || f.ClientID != "alice/phone" {
		t.Errorf("the hook saw the will as %+v", f)
	}
}

// A member removed from a room subscribes to it again and is refused: the
// subscription the refused one would have replaced ends too. The client
// forgets the filter on any failure, so one kept by the gateway would go on
// sending the room's messages to a session whose application believes the
// removal worked (found by a chat app's trial, where they showed on the wire).
func TestARefusedResubscribeEndsTheSubscriptionItReplaced(t *testing.T) {
	mq := startMosquitto(t)
	var member atomic.Bool
	member.Store(true)
	var unsubscribes atomic.Int32
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := hookapi.ParseRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch {
		case f.Action == hookapi.ActionSubscribe && strings.HasPrefix(f.Topic, "room/1/") && !member.Load():
			hookapi.Deny(w, 4021, "not a member of room 1")
		case f.Action == hookapi.ActionUnsubscribe && f.Topic == "room/1/#":
			unsubscribes.Add(1)
			hookapi.Allow(w)
		default:
			hookapi.Allow(w)
		}
	}))
	t.Cleanup(hooks.Close)
	addr := strings.TrimPrefix(hooks.URL, "http://")
	url := gatewayWithHooks(t, mq.port, addr, "")
	ctx := ctx10(t)
	c, err := dialAs(ctx, url, "carol", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h := connectMain(t, c)
	for _, f := range []string{"room/1/#", "users/carol/#"} {
		if _, err := c.Subscribe(ctx, h, f, 0); err != nil {
			t.Fatalf("subscribe %s: %v", f, err)
		}
	}
	pub := mqttPublisher(t, mq.port)
	send := func(topic, payload string) {
		t.Helper()
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	send("room/1/msg", "while a member")
	if f := nextMessage(t, c); string(f.Publish.Payload) != "while a member" {
		t.Fatalf("member: %+v", f)
	}

	member.Store(false)
	if _, err := c.Subscribe(ctx, h, "room/1/#", 1); errCode(err) != session.CodeNotAuthorized {
		t.Fatalf("subscribe after removal: %v, want 4021", err)
	}
	// The room's next message must not come; the marker on a topic still
	// held shows that anything sent before it would have arrived.
	send("room/1/msg", "after removal")
	send("users/carol/marker", "marker")
	if f := nextMessage(t, c); string(f.Publish.Payload) != "marker" {
		t.Fatalf("after the refused resubscribe the session got %q on %s; want only the marker", f.Publish.Payload, f.Publish.Topic)
	}
	// The authorize hook is told of the end, as of an UNSUBSCRIBE (a
	// presence or membership service keeping count).
	deadline := time.Now().Add(5 * time.Second)
	for unsubscribes.Load() != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := unsubscribes.Load(); n != 1 {
		t.Fatalf("the hook heard of %d unsubscribes of room/1/#, want 1", n)
	}
	// Back in the room, a subscription works as a first one.
	member.Store(true)
	if _, err := c.Subscribe(ctx, h, "room/1/#", 0); err != nil {
		t.Fatal(err)
	}
	send("room/1/msg", "member again")
	if f := nextMessage(t, c); string(f.Publish.Payload) != "member again" {
		t.Fatalf("member again: %+v", f)
	}
}

// The authenticate hook is told the id the session will have, so a
// presence service can pair an open (who, from where) with the session's
// later actions and its close; before, an open had no session id and such a
// service had to key presence on the first connect.
func TestTheOpenHookKnowsTheSessionsID(t *testing.T) {
	mq := startMosquitto(t)
	seen := make(chan hookapi.Facts, 16)
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := hookapi.ParseRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		seen <- f
		hookapi.Allow(w, hookapi.WithUser(f.Username))
	}))
	t.Cleanup(hooks.Close)
	url := gatewayWithHooks(t, mq.port, strings.TrimPrefix(hooks.URL, "http://"), "")
	ctx := ctx10(t)
	ids := map[hookapi.Action]string{}
	for round := 0; round < 2; round++ { // two sessions: two ids
		c, err := dialAs(ctx, url, "dana", "pw")
		if err != nil {
			t.Fatal(err)
		}
		connectMain(t, c)
		c.Close()
		for _, want := range []hookapi.Action{hookapi.ActionOpen, hookapi.ActionConnect, hookapi.ActionClose} {
			for f := range seen {
				if f.Action == want {
					ids[want] = f.SessionID
					break
				}
			}
		}
		if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(ids[hookapi.ActionOpen]) {
			t.Fatalf("the open hook was told session %q", ids[hookapi.ActionOpen])
		}
		if ids[hookapi.ActionConnect] != ids[hookapi.ActionOpen] || ids[hookapi.ActionClose] != ids[hookapi.ActionOpen] {
			t.Fatalf("session ids: open %s, connect %s, close %s; want one", ids[hookapi.ActionOpen], ids[hookapi.ActionConnect], ids[hookapi.ActionClose])
		}
		if round == 0 {
			ids["first"] = ids[hookapi.ActionOpen]
		} else if ids[hookapi.ActionOpen] == ids["first"] {
			t.Fatal("two sessions were told the same id")
		}
	}
}

// A web client cannot take the client ID of the gateway's shared broker
// connection. A broker that discloses client IDs (Mosquitto's log_dest
// topic here, as EMQX's client events on $SYS) let any client with a
// client ID of its own allowed (the default policy) connect as the shared
// connection: the broker ended the gateway's (MQTT's session takeover),
// every session on it got the outage notice 4041 and lost what was
// published meanwhile, and the gateway took the ID back at once, so a
// client connecting again and again kept the connection of every session
// down. Such IDs, beginning with client_id_prefix, are now refused with
// 4003, and the broker never sees them.
func TestClientsCannotTakeTheSharedConnectionsID(t *testing.T) {
	mq := startMosquittoWith(t, func(string) string { return "allow_anonymous true\nlog_dest topic\n" })
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	victim := dial(t, url)
	connectSubscribe(t, victim, "v/#", 1)
	ctx := ctx10(t)
	att := dial(t, url)
	// What the broker tells of the shared connection's ID: its log, where
	// each SUBSCRIBE names the client that made it.
	h := connectSubscribe(t, att, "$SYS/broker/log/#", 0)
	if _, err := att.Subscribe(ctx, h, "new/filter", 0); err != nil {
		t.Fatal(err)
	}
	id := ""
	for id == "" {
		f := nextMessage(t, att)
		if i := strings.Index(string(f.Publish.Payload), session.DefaultClientIDPrefix); i >= 0 {
			id = strings.Fields(string(f.Publish.Payload[i:]))[0]
		}
	}
	_, _, err := att.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: id})
	if errCode(err) != session.CodeBadRequest || !strings.Contains(err.Error(), "client_id_prefix") {
		t.Errorf("a CONNECT with the shared connection's ID %s: %v, want 4003 naming client_id_prefix", id, err)
	}
	mosquittoPub(t, mq.port, "-t", "v/x", "-m", "still", "-q", "1")
	if f := nextMessage(t, victim); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "still" {
		t.Errorf("the victim got %#x %d %q, want the message and no outage", f.Type, f.Code, f.Message)
	}
	// Other client IDs still connect.
	if _, _, err := att.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: "device-1"}); err != nil {
		t.Errorf("an ordinary client ID: %v", err)
	}
}

// A gateway without an authorize hook lets its clients do everything but
// publish to the broker's own topics, those beginning with $: on Mosquitto
// $CONTROL takes dynamic-security commands, which would go with the
// gateway's broker account (an administrator's, on some setups). A client
// learns why (4021), as for a will to such a topic, and may still read
// $SYS and publish anywhere else.
func TestWithoutAuthorizeBrokerTopicsTakeNoPublishes(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	c := dial(t, url)
	h := connectMain(t, c)
	ctx := ctx10(t)
	for _, topic := range []string{"$CONTROL/dynamic-security/v1", "$SYS/broker/x", "$anything"} {
		err := c.Publish(ctx, h, session.PublishParams{Topic: topic, QoS: 1, Payload: []byte(`{"commands":[]}`)})
		if errCode(err) != session.CodeNotAuthorized || !strings.Contains(err.Error(), "needs an authorize hook") {
			t.Errorf("publish to %s: %v, want %d", topic, err, session.CodeNotAuthorized)
		}
	}
	will := &session.PublishParams{Topic: "$CONTROL/dynamic-security/v1", Payload: []byte("x")}
	if _, _, err := c.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: "with-a-will", Will: will}); errCode(err) != session.CodeNotAuthorized {
		t.Errorf("a will to $CONTROL: %v, want %d", err, session.CodeNotAuthorized)
	}
	if _, err := c.Subscribe(ctx, h, "$SYS/broker/uptime", 0); err != nil {
		t.Fatalf("subscribe to $SYS: %v", err)
	}
	if f := nextMessage(t, c); f.Type != transport.TypeMessage || f.Publish.Topic != "$SYS/broker/uptime" {
		t.Fatalf("got %+v, want the broker's uptime", f)
	}
	if err := c.Publish(ctx, h, session.PublishParams{Topic: "plain/topic", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
}
