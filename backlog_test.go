package mqttgateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// The requests a session has received and not yet handled are bounded
// like its outbound queue (session/backlog.go). The gateways below allow
// 64 KiB: six publishes of backlogPayload bytes fit with their overhead,
// a seventh does not, so of backlogSent sent at once while the first
// waits, exactly backlogSent-6 are refused; of small ones, all past
// backlogFrames.
const (
	backlogFrames  = 100 // max_queued_frames in backlogLimits
	backlogLimits  = "max_queued_frames 100\nmax_queued_bytes 64KiB"
	backlogPayload = 10000
	backlogSent    = 40
	backlogFit     = 6
)

// holdingHook is an authorize hook that holds publishes to held/# and
// connects with the client id "held" until the test lets them go, then
// allows or denies them; it allows everything else at once.
type holdingHook struct {
	mu      sync.Mutex
	gate    chan struct{}
	deny    bool
	arrived chan struct{} // told when a held request reaches the hook
}

// hold makes the hook hold the next requests, until release, and returns
// a channel that tells when the first reaches the hook.
func (h *holdingHook) hold() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.gate, h.deny, h.arrived = make(chan struct{}), false, make(chan struct{}, 1)
	return h.arrived
}

// release answers the held requests, and lets later ones through at once.
func (h *holdingHook) release(deny bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.deny = deny
	close(h.gate)
}

func (h *holdingHook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f, err := hookapi.ParseRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	held := (f.Action == hookapi.ActionPublish && strings.HasPrefix(f.Topic, "held/")) ||
		(f.Action == hookapi.ActionConnect && f.ClientID == "held")
	if !held {
		hookapi.Allow(w)
		return
	}
	h.mu.Lock()
	gate, arrived := h.gate, h.arrived
	h.mu.Unlock()
	select {
	case arrived <- struct{}{}:
	default:
	}
	select {
	case <-gate:
	case <-r.Context().Done():
		return
	}
	h.mu.Lock()
	deny := h.deny
	h.mu.Unlock()
	if deny {
		hookapi.Deny(w, 4021, "denied by the test")
		return
	}
	hookapi.Allow(w)
}

// publishAll sends n publishes of size bytes to topic, one after another
// without waiting, and returns their results as they come.
func publishAll(t *testing.T, c *gwclient.Client, handle uint64, topic string, n, size int) <-chan error {
	t.Helper()
	results := make(chan error, n)
	for range n {
		r, err := c.PublishAsync(handle, session.PublishParams{Topic: topic, QoS: 1, Payload: make([]byte, size)})
		if err != nil {
			t.Fatal(err)
		}
		go func() { results <- <-r }()
	}
	return results
}

// expectRefused reads n results, which must all be the bound's refusal:
// they come at once, while the requests admitted wait.
func expectRefused(t *testing.T, results <-chan error, n int, what string) {
	t.Helper()
	for i := range n {
		select {
		case err := <-results:
			if errCode(err) != session.CodeRateLimited || !strings.Contains(err.Error(), "waiting for the broker or a hook") {
				t.Fatalf("%s: result %d is %v, want the refusal of a request past the bound (%d)", what, i, err, session.CodeRateLimited)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: %d requests refused, want %d: the others were queued", what, i, n)
		}
	}
}

// expectResults reads n results, which must all be want (0: success).
func expectResults(t *testing.T, results <-chan error, n int, want session.Code, what string) {
	t.Helper()
	for i := range n {
		select {
		case err := <-results:
			if errCode(err) != want || (want == 0 && err != nil) {
				t.Fatalf("%s: result %d of the requests admitted is %v, want code %d", what, i, err, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: %d of the %d requests admitted answered", what, i, n)
		}
	}
}

// Publishes held by a slow authorize hook: past the bound they are
// refused at once with 4051, the session goes on (its subscription still
// delivers) and another session publishes meanwhile. Every way the
// admitted requests end gives their room back, so the same session is
// bounded to exactly as many again: when they succeed, when the hook
// denies them, when they wait behind a DISCONNECT, and behind a CONNECT
// that waits for the hook.
func TestRequestsWaitingForAHookAreBounded(t *testing.T) {
	mq := startMosquitto(t)
	hook := &holdingHook{}
	url := gatewayWithHook(t, mq.port, "authorize", backlogLimits+"\nhook_timeout 1m", hook.ServeHTTP)
	ctx := ctx10(t)
	a, other := dial(t, url), dial(t, url)
	ha := connectSubscribe(t, a, "free/#", 0)
	ho := connectMain(t, other)

	// Succeeded, then denied.
	for _, deny := range []bool{false, true} {
		what := fmt.Sprintf("hook denies: %v", deny)
		hook.hold()
		results := publishAll(t, a, ha, "held/x", backlogSent, backlogPayload)
		expectRefused(t, results, backlogSent-backlogFit, what)
		if err := other.Publish(ctx, ho, session.PublishParams{Topic: "free/other", QoS: 1, Payload: []byte("meanwhile")}); err != nil {
			t.Fatalf("%s: another session's publish: %v", what, err)
		}
		if f := nextMessage(t, a); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "meanwhile" {
			t.Fatalf("%s: the session whose requests wait got %+v, want the other's message", what, f)
		}
		hook.release(deny)
		want := session.Code(0)
		if deny {
			want = session.CodeNotAuthorized
		}
		expectResults(t, results, backlogFit, want, what)
	}

	// Small requests: the bound on their number holds.
	hook.hold()
	results := publishAll(t, a, ha, "held/x", backlogFrames+30, 0)
	expectRefused(t, results, 30, "small publishes")
	hook.release(false)
	expectResults(t, results, backlogFrames, 0, "small publishes")

	// Behind a DISCONNECT: the publish sent after it is answered as for a
	// client that is gone.
	hook.hold()
	results = publishAll(t, a, ha, "held/x", backlogSent, backlogPayload)
	expectRefused(t, results, backlogSent-backlogFit, "before a disconnect")
	disconnected, err := a.DisconnectAsync(ha)
	if err != nil {
		t.Fatal(err)
	}
	late, err := a.PublishAsync(ha, session.PublishParams{Topic: "held/x"})
	if err != nil {
		t.Fatal(err)
	}
	hook.release(false)
	expectResults(t, results, backlogFit, 0, "before a disconnect")
	if err := <-disconnected; err != nil {
		t.Fatalf("disconnect: %v", err)
	}
	if err := <-late; errCode(err) != session.CodeBadRequest {
		t.Fatalf("publish after the disconnect: %v, want %d", err, session.CodeBadRequest)
	}

	// Behind a CONNECT the hook holds, as behind one to a broker that
	// does not answer.
	arrived := hook.hold()
	connected := make(chan error, 1)
	go func() {
		_, _, err := a.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: "held"})
		connected <- err
	}()
	<-arrived    // the CONNECT is queued, and the publishes come after it
	hc := ha + 1 // gwclient numbers handles in turn
	results = publishAll(t, a, hc, "free/x", backlogSent, backlogPayload)
	expectRefused(t, results, backlogSent-backlogFit, "behind a connect")
	hook.release(false)
	if err := <-connected; err != nil {
		t.Fatalf("connect: %v", err)
	}
	expectResults(t, results, backlogFit, 0, "behind a connect")
}

// Publishes during a broker outage wait for the broker: past the bound
// they are refused at once with 4051; those admitted succeed once the
// broker is back, and the session publishes again.
func TestRequestsWaitingForTheBrokerAreBounded(t *testing.T) {
	c, h, mq := clientInAnOutageWith(t, "1m", backlogLimits)
	results := publishAll(t, c, h, "out/x", backlogSent, backlogPayload)
	expectRefused(t, results, backlogSent-backlogFit, "during the outage")
	mq.start(t)
	expectResults(t, results, backlogFit, 0, "once the broker is back")
	if err := c.Publish(ctx10(t), h, session.PublishParams{Topic: "out/after", QoS: 1, Payload: make([]byte, backlogPayload)}); err != nil {
		t.Fatalf("publish after the backlog drained: %v", err)
	}
}

// A client whose publishes filled the bound can still let go: its
// UNSUBSCRIBEs and DISCONNECT have as much room again, and are answered
// in order once the publishes before them are, so it leaves (a DISCONNECT
// refused would leave its broker connection up, and its will to fire when
// the session ends). That room is bounded too. Every refusal is counted
// in requests_refused_total.
func TestReleasesPassTheBound(t *testing.T) {
	mq := startMosquitto(t)
	hook := &holdingHook{}
	url, metricsPort := gatewayWithHookAndMetrics(t, "releases", mq.port, backlogLimits, hook)
	c := dial(t, url)
	h := connectSubscribe(t, c, "free/#", 0)

	hook.hold()
	published := publishAll(t, c, h, "held/x", backlogFrames, 0)
	expectRefused(t, publishAll(t, c, h, "held/x", 1, 0), 1, "a publish past the bound")
	var unsubscribed []<-chan error
	for i := range backlogFrames - 1 {
		r, err := c.UnsubscribeAsync(h, fmt.Sprintf("free/%d", i))
		if err != nil {
			t.Fatal(err)
		}
		unsubscribed = append(unsubscribed, r)
	}
	disconnected, err := c.DisconnectAsync(h)
	if err != nil {
		t.Fatal(err)
	}
	// Twice the bound now waits: a release too is refused.
	over, err := c.UnsubscribeAsync(h, "free/#")
	if err != nil {
		t.Fatal(err)
	}
	expectRefused(t, over, 1, "an unsubscribe past twice the bound")

	hook.release(false)
	expectResults(t, published, backlogFrames, 0, "publishes admitted")
	for i, r := range unsubscribed {
		if err := <-r; err != nil {
			t.Fatalf("unsubscribe %d behind the publishes: %v", i, err)
		}
	}
	if err := <-disconnected; err != nil {
		t.Fatalf("disconnect behind the publishes: %v, want it done", err)
	}
	expectMetrics(t, metricsPort, []string{
		`mqtt_gateway_requests_refused_total{action="publish",gateway="releases"} 1`,
		`mqtt_gateway_requests_refused_total{action="unsubscribe",gateway="releases"} 1`,
	})
}

// A publish refused at the bound gives its max_publish_rate token back:
// the client is told to try again, and its retry must not be refused for
// a rate spent by a publish that never went out. At 2 publishes a second,
// the retry finds the token given back; without it the next comes only
// 500 ms after the refusal.
func TestPublishRefusedAtTheBoundKeepsItsRate(t *testing.T) {
	mq := startMosquitto(t)
	hook := &holdingHook{}
	url, _ := gatewayWithHookAndMetrics(t, "rate-back", mq.port, "max_queued_frames 1\nmax_publish_rate 2", hook)
	c := dial(t, url)
	h := connectMain(t, c)

	hook.hold()
	admitted := publishAll(t, c, h, "held/x", 1, 0)
	expectRefused(t, publishAll(t, c, h, "held/x", 1, 0), 1, "a publish past the bound")
	hook.release(false)
	expectResults(t, admitted, 1, 0, "the publish admitted")
	if err := c.Publish(ctx10(t), h, session.PublishParams{Topic: "free/retry", QoS: 1}); err != nil {
		t.Fatalf("the retry of the refused publish: %v, want it sent (the refusal spent its rate)", err)
	}
}

// gatewayWithHookAndMetrics starts a gateway named name, with extra
// options and hook as its authorize hook (with a minute to decide), and
// Caddy's metrics endpoint on a port of its own.
func gatewayWithHookAndMetrics(t *testing.T, name string, brokerPort int, extra string, hook *holdingHook) (wsURL string, metricsPort int) {
	t.Helper()
	hooks := httptest.NewServer(http.HandlerFunc(hook.ServeHTTP))
	t.Cleanup(hooks.Close)
	httpPort := freePort(t)
	metricsPort = freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		name %s
		broker main mqtt://127.0.0.1:%d
		%s
		hook_timeout 1m
		authorize {
			reverse_proxy %s
		}
	}
}
http://127.0.0.1:%d {
	metrics
}
`, httpPort, name, brokerPort, extra, hooks.Listener.Addr(), metricsPort))
	return fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort), metricsPort
}

// A hung authorize hook: the first of a client's queued publishes fails
// with 4022 after hook_timeout, and the ones already waiting behind it
// fail with it, at once (within 10 s), without asking the hook
// again: each used to wait hook_timeout in turn (here 30 s in all), and
// the client's later requests behind them. A request that comes after
// asks the hook again, and one the hook answers goes through.
func TestRequestsBehindAHungHookFailWithIt(t *testing.T) {
	mq := startMosquitto(t)
	hook := &holdingHook{}
	url := gatewayWithHook(t, mq.port, "authorize", "hook_timeout 1s", hook.ServeHTTP)
	ctx := ctx10(t)
	a := dial(t, url)
	ha := connectSubscribe(t, a, "free/#", 0)

	arrived := hook.hold() // and never released: a hung hook service
	const n = 30
	results := publishAll(t, a, ha, "held/x", n, 10)
	<-arrived
	deadline := time.After(10 * time.Second)
	for i := range n {
		select {
		case err := <-results:
			if errCode(err) != session.CodeHookUnavailable {
				t.Fatalf("publish %d behind the hung hook: %v, want %d", i, err, session.CodeHookUnavailable)
			}
		case <-deadline:
			t.Fatalf("%d of %d publishes behind a hung hook answered in 10 s (hook_timeout 1s each)", i, n)
		}
	}
	if err := a.Publish(ctx, ha, session.PublishParams{Topic: "free/x", QoS: 1, Payload: []byte("after")}); err != nil {
		t.Fatalf("a publish after the others failed, which the hook answers: %v", err)
	}
	if f := nextMessage(t, a); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "after" {
		t.Fatalf("got %+v, want the later publish", f)
	}
}

// A request queued behind one the hook did not answer in time fails with
// it only if it would have asked the hook: one whose decision the hook
// let the gateway cache (max-age) needs no hook and goes through. Here
// the client's publishes to cached/x, allowed for a minute, failed with
// 4022 because a publish to held/x before them hung.
func TestACachedDecisionBehindAHungHookStillHolds(t *testing.T) {
	mq := startMosquitto(t)
	hook := &holdingHook{}
	var cachedCalls atomic.Int32
	url := gatewayWithHook(t, mq.port, "authorize", "hook_timeout 1s", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		f, err := hookapi.ParseRequest(r)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err == nil && f.Action == hookapi.ActionPublish && strings.HasPrefix(f.Topic, "cached/") {
			cachedCalls.Add(1)
			hookapi.Allow(w, hookapi.WithMaxAge(time.Minute))
			return
		}
		hook.ServeHTTP(w, r)
	})
	ctx := ctx10(t)
	a := dial(t, url)
	ha := connectMain(t, a)
	if err := a.Publish(ctx, ha, session.PublishParams{Topic: "cached/x", QoS: 1}); err != nil {
		t.Fatal(err)
	}

	arrived := hook.hold() // and never released
	held := publishAll(t, a, ha, "held/x", 1, 10)
	<-arrived
	const n = 5
	behind := publishAll(t, a, ha, "cached/x", n, 10)
	expectResults(t, held, 1, session.CodeHookUnavailable, "the publish the hook did not answer")
	expectResults(t, behind, n, 0, "publishes behind it whose decision is cached")
	if c := cachedCalls.Load(); c != 1 {
		t.Fatalf("the hook was asked %d times about cached/x, want once", c)
	}
}

// A hook that answers, however slowly, did not time out: a reload that
// lowers hook_timeout while a request waits for the hook must not make
// that request's failure (here a 500 after 1.5 s, within the 20 s it was
// given) count as a hook that did not answer, failing the client's
// requests behind it with 4022 without asking the hook.
func TestASlowHookFailureThroughAReloadIsNotAHungHook(t *testing.T) {
	mq := startMosquitto(t)
	asked, release := make(chan struct{}, 1), make(chan struct{})
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if f, err := hookapi.ParseRequest(r); err == nil && f.Action == hookapi.ActionPublish && f.Topic == "slow/x" {
			asked <- struct{}{}
			<-release
			http.Error(w, "the hook's database is down", http.StatusInternalServerError)
			return
		}
		hookapi.Allow(w)
	}))
	t.Cleanup(hooks.Close)
	httpPort, timeout := freePort(t), "20s"
	reload := adminCaddy(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n name slowhook\n broker main mqtt://127.0.0.1:%d\n hook_timeout %s\n authorize {\n reverse_proxy %s\n }\n }\n}\n",
			httpPort, mq.port, timeout, hooks.Listener.Addr())
	})
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	h := connectMain(t, c)
	slow := publishAll(t, c, h, "slow/x", 1, 10)
	<-asked
	behind := publishAll(t, c, h, "free/x", 3, 10)
	timeout = "1s"
	reload()
	time.Sleep(1500 * time.Millisecond)
	close(release)
	expectResults(t, slow, 1, session.CodeHookUnavailable, "the publish the hook failed")
	expectResults(t, behind, 3, 0, "publishes behind it, which the hook allows")
}
