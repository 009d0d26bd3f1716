package mqttgateway

import (
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// notifyHook is an authorize hook service on loopback that allows every
// decision, records each session's notifications in the order they
// arrive, counts how many are in flight at once, and holds the requests
// hold picks until released (or the gateway gives up on them).
type notifyHook struct {
	hold           func(hookapi.Facts) bool // set before the gateway starts
	releaseOnClose bool                     // a close notification releases the held requests
	held           chan hookapi.Facts       // the first held request, once it waits
	release        chan struct{}
	releaseOnce    sync.Once

	inFlight, maxInFlight atomic.Int64 // notifications

	mu      sync.Mutex
	notes   map[string][]string // session → "action topic", in arrival order
	changed chan struct{}
}

func newNotifyHook(hold func(hookapi.Facts) bool) *notifyHook {
	return &notifyHook{hold: hold, held: make(chan hookapi.Facts, 1), release: make(chan struct{}),
		notes: map[string][]string{}, changed: make(chan struct{}, 1)}
}

func (h *notifyHook) serve(w http.ResponseWriter, r *http.Request) {
	f, err := hookapi.ParseRequest(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	note := f.Action.IsNotification()
	if note {
		n := h.inFlight.Add(1)
		for m := h.maxInFlight.Load(); n > m && !h.maxInFlight.CompareAndSwap(m, n); m = h.maxInFlight.Load() {
		}
		h.mu.Lock()
		h.notes[f.SessionID] = append(h.notes[f.SessionID], string(f.Action)+" "+f.Topic)
		h.mu.Unlock()
		select {
		case h.changed <- struct{}{}:
		default:
		}
		if h.releaseOnClose && f.Action == hookapi.ActionClose {
			h.releaseAll()
		}
	}
	if h.hold != nil && h.hold(f) {
		select {
		case h.held <- f:
		default:
		}
		// The gateway gives up on a request by closing its connection.
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
	}
	if note {
		// Out of flight before the answer is written: the gateway may
		// send the next notification as soon as it reads the answer.
		h.inFlight.Add(-1)
	}
	hookapi.Allow(w)
}

func (h *notifyHook) releaseAll() { h.releaseOnce.Do(func() { close(h.release) }) }

// waitHeld returns once a held request is waiting.
func (h *notifyHook) waitHeld(t *testing.T) hookapi.Facts {
	t.Helper()
	select {
	case f := <-h.held:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("no request reached the hook to be held")
	}
	return hookapi.Facts{}
}

// waitNotes returns the notifications of session id once done says they
// are complete.
func (h *notifyHook) waitNotes(t *testing.T, id string, done func([]string) bool) []string {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		h.mu.Lock()
		notes := slices.Clone(h.notes[id])
		h.mu.Unlock()
		if done(notes) {
			return notes
		}
		select {
		case <-h.changed:
		case <-deadline:
			t.Fatalf("the hook has, of session %s, only %q", id, notes)
		}
	}
}

// closed says whether notes end with the session's close.
func closed(notes []string) bool {
	return len(notes) > 0 && notes[len(notes)-1] == "close "
}

// gatewayWithNotifyHook starts a gateway named name whose authorize hook
// is h, with Caddy's metrics endpoint, and returns the WebSocket URL and
// the metrics port. A test that counts requests in flight needs a hook
// timeout longer than it runs: a request the gateway gave up on leaves the
// hook service's count only once the hook service sees its connection
// close, which need not be before the next request comes.
func gatewayWithNotifyHook(t *testing.T, name string, brokerPort int, timeout string, h *notifyHook) (wsURL string, metricsPort int) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(srv.Close)
	t.Cleanup(h.releaseAll) // before srv.Close, which waits for held requests
	url, metricsPort := gatewayWithMetrics(t, name, brokerPort, fmt.Sprintf(`hook_timeout %s
		authorize {
			reverse_proxy %s
		}`, timeout, srv.Listener.Addr()))
	return url, metricsPort
}

func sessionID(c *gwclient.Client) string { return hex.EncodeToString(c.Opened.Session[:]) }

// One session that unsubscribes and subscribes again and again, while the
// hook is slow to hear it, has one notification in flight at a time; past
// the bound the rest are dropped and counted, and another session's
// decisions go on meanwhile.
func TestNotificationsOfOneSessionAreBounded(t *testing.T) {
	mq := startMosquitto(t)
	hook := newNotifyHook(func(f hookapi.Facts) bool { return f.Action == hookapi.ActionUnsubscribe })
	url, metricsPort := gatewayWithNotifyHook(t, "notify-bound", mq.port, "60s", hook)
	ctx := ctx10(t)

	other, err := gwclient.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	ho := connectSubscribe(t, other, "flood/f", 0) // so that the flood never waits for the broker

	flooder, err := gwclient.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := connectSubscribe(t, flooder, "flood/f", 0)
	const pairs = 3 * session.NotifyQueueLen
	for i := range pairs {
		if err := flooder.Unsubscribe(ctx, h, "flood/f"); err != nil {
			t.Fatalf("unsubscribe %d: %v", i, err)
		}
		if _, err := flooder.Subscribe(ctx, h, "flood/f", 0); err != nil {
			t.Fatalf("subscribe %d: %v", i, err)
		}
	}
	hook.waitHeld(t)

	// Meanwhile, the other session's decisions are made.
	if _, err := other.Subscribe(ctx, ho, "other/t", 0); err != nil {
		t.Fatalf("the other session's subscribe: %v", err)
	}
	if err := other.Publish(ctx, ho, session.PublishParams{Topic: "other/t", Payload: []byte("still here")}); err != nil {
		t.Fatalf("the other session's publish: %v", err)
	}
	if f := nextMessage(t, other); string(f.Publish.Payload) != "still here" {
		t.Fatalf("the other session received %+v", f)
	}
	// Each UNSUBSCRIBE's notification was queued or dropped before its
	// RESULT: the count is final.
	expectMetrics(t, metricsPort, []string{fmt.Sprintf(`mqtt_gateway_hook_notifications_dropped_total{action="unsubscribe",gateway="notify-bound"} %d`,
		pairs-session.NotifyQueueLen)})

	hook.releaseAll()
	flooder.Close()
	notes := hook.waitNotes(t, sessionID(flooder), closed)
	if n := len(notes) - 1; n != session.NotifyQueueLen {
		t.Errorf("the hook heard %d unsubscribes of %d, want the %d queued", n, pairs, session.NotifyQueueLen)
	}
	if m := hook.maxInFlight.Load(); m != 1 {
		t.Errorf("%d notifications were in flight at once, want 1", m)
	}
}

// A session's notifications reach the hook in the order of its actions,
// one after the other; a full queue drops unsubscribes and disconnects,
// never the close, which comes last.
func TestNotificationsArriveInOrder(t *testing.T) {
	mq := startMosquitto(t)
	var first atomic.Bool
	hook := newNotifyHook(func(f hookapi.Facts) bool { return f.Action.IsNotification() && first.CompareAndSwap(false, true) })
	url, metricsPort := gatewayWithNotifyHook(t, "notify-order", mq.port, "60s", hook)
	ctx := ctx10(t)

	c, err := gwclient.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	h1 := connectMain(t, c)
	h2 := connectSubscribe(t, c, "order/x", 0)
	if err := c.Disconnect(ctx, h2); err != nil {
		t.Fatal(err)
	}
	if f := hook.waitHeld(t); f.Action != hookapi.ActionDisconnect {
		t.Fatalf("held %s, want the disconnect", f.Action)
	}
	const n = session.NotifyQueueLen + 10
	want := []string{"disconnect "}
	for i := range n {
		filter := fmt.Sprintf("order/%d", i)
		if _, err := c.Subscribe(ctx, h1, filter, 0); err != nil {
			t.Fatal(err)
		}
		if err := c.Unsubscribe(ctx, h1, filter); err != nil {
			t.Fatal(err)
		}
		if len(want) < session.NotifyQueueLen {
			want = append(want, "unsubscribe "+filter)
		}
	}
	if err := c.Disconnect(ctx, h1); err != nil { // dropped: the queue is full
		t.Fatal(err)
	}
	// With no client left, the session queues its close as it ends, and
	// before it writes END.
	if err := c.WriteRaw(transport.AppendClose(nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the session did not end")
	}
	expectMetrics(t, metricsPort, []string{
		fmt.Sprintf(`mqtt_gateway_hook_notifications_dropped_total{action="unsubscribe",gateway="notify-order"} %d`, n-(session.NotifyQueueLen-1)),
		`mqtt_gateway_hook_notifications_dropped_total{action="disconnect",gateway="notify-order"} 1`,
	})

	hook.releaseAll()
	want = append(want, "close ")
	if got := hook.waitNotes(t, sessionID(c), closed); !slices.Equal(got, want) {
		t.Fatalf("the hook heard\n%q\nwant\n%q", got, want)
	}
}

// An UNSUBSCRIBE sent just before CLOSE is carried out after the session
// has ended (its client's requests run to the end); its notification
// still comes before the close.
func TestCloseNotificationComesAfterQueuedRequests(t *testing.T) {
	mq := startMosquitto(t)
	// The hook answers the publish once it has heard the close: never,
	// unless the close comes too soon. Meanwhile the publish holds the
	// client's requests until the gateway gives up on it (4022).
	hook := newNotifyHook(func(f hookapi.Facts) bool { return f.Action == hookapi.ActionPublish })
	hook.releaseOnClose = true
	url, _ := gatewayWithNotifyHook(t, "notify-close", mq.port, "2s", hook)
	ctx := ctx10(t)

	c, err := gwclient.Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	h := connectSubscribe(t, c, "last/f", 0)
	// The UNSUBSCRIBE and the CLOSE come behind the publish. No RESULT is
	// awaited (request numbers gwclient does not use).
	const req = 1 << 40
	if err := c.WriteRaw(transport.AppendPublish(nil, req, h, &session.PublishParams{Topic: "last/p", Payload: []byte("bye")})); err != nil {
		t.Fatal(err)
	}
	hook.waitHeld(t)
	if err := c.WriteRaw(transport.AppendUnsubscribe(nil, req+1, h, "last/f")); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteRaw(transport.AppendClose(nil)); err != nil {
		t.Fatal(err)
	}
	want := []string{"unsubscribe last/f", "close "}
	if got := hook.waitNotes(t, sessionID(c), closed); !slices.Equal(got, want) {
		t.Fatalf("the hook heard %q, want %q", got, want)
	}
}

// A gateway that stops (Caddy exits once it returns) first lets every
// session's close reach the hook: the notification in flight finishes, or
// times out, and the unsubscribes queued behind it, which the close
// implies, are dropped. (The closes were still queued when Caddy exited:
// a presence service kept every session of a deploy as a ghost.)
func TestCloseNotificationsReachTheHookBeforeTheGatewayStops(t *testing.T) {
	mq := startMosquitto(t)
	hook := newNotifyHook(func(f hookapi.Facts) bool { return f.Action == hookapi.ActionUnsubscribe })
	url, _ := gatewayWithNotifyHook(t, "notify-stop", mq.port, "1s", hook)
	ctx := ctx10(t)

	var ids []string
	for range 3 {
		c, err := gwclient.Dial(ctx, url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		h := connectMain(t, c)
		for i := range 5 {
			filter := fmt.Sprintf("stop/%d", i)
			if _, err := c.Subscribe(ctx, h, filter, 0); err != nil {
				t.Fatal(err)
			}
			if err := c.Unsubscribe(ctx, h, filter); err != nil {
				t.Fatal(err)
			}
		}
		ids = append(ids, sessionID(c))
	}
	hook.waitHeld(t) // a first unsubscribe is in flight, the others wait behind it

	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	hook.mu.Lock()
	defer hook.mu.Unlock()
	for _, id := range ids {
		if notes := hook.notes[id]; !closed(notes) {
			t.Errorf("once Caddy stopped, the hook had of session %s only %q, without its close", id, notes)
		}
	}
}
