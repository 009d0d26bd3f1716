package mqttgateway

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// 1,000 QoS 2 publishes from a web client while the gateway's link to the
// broker is cut and restored twice: mosquitto_sub sees each exactly once.
// The link is MQTT over TCP, then over WebSocket.
func TestExactlyOnceAcrossBrokerLinkCuts(t *testing.T) {
	for _, scheme := range []string{"mqtt", "ws"} {
		t.Run(scheme, func(t *testing.T) { exactlyOnceAcrossLinkCuts(t, scheme) })
	}
}

func exactlyOnceAcrossLinkCuts(t *testing.T, scheme string) {
	wsPort := freePort(t)
	mq := startMosquittoWith(t, func(string) string {
		return fmt.Sprintf("allow_anonymous true\nlistener %d 127.0.0.1\nprotocol websockets\n", wsPort)
	})
	brokerPort := mq.port
	if scheme == "ws" {
		waitPort(t, wsPort)
		brokerPort = wsPort
	}
	proxy := startProxy(t, fmt.Sprintf("127.0.0.1:%d", brokerPort))
	url, _ := gatewayWithBroker(t, fmt.Sprintf("%s://127.0.0.1:%d", scheme, proxy.port()), "")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	sub := exec.CommandContext(ctx, "mosquitto_sub", "-h", "127.0.0.1", "-p", fmt.Sprint(mq.port), "-t", "eo/#", "-q", "2", "-C", "1000", "-W", "50")
	out, _ := sub.StdoutPipe()
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)

	c := dial(t, url)
	h := connectMain(t, c)
	const n = 1000
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := c.Publish(ctx, h, session.PublishParams{Topic: "eo/x", QoS: 2, Payload: []byte(fmt.Sprint(i))}); err != nil {
				errs <- fmt.Errorf("publish %d: %w", i, err)
			}
		}(i)
		if i == 300 || i == 650 {
			// The second cut hits the connection that replaced the first
			// (over WebSocket, Mosquitto can take longer to accept it than
			// the publishes in between take).
			awaitLog(t, mq.log, "New client connected from", 2+i/650)
			proxy.cut()
		}
		if i%50 == 0 {
			time.Sleep(20 * time.Millisecond) // spread the publishes over the cuts
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	seen := map[string]int{}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		seen[sc.Text()]++
	}
	sub.Wait()
	for i := 0; i < n; i++ {
		if seen[fmt.Sprint(i)] != 1 {
			t.Errorf("message %d seen %d times", i, seen[fmt.Sprint(i)])
		}
	}
	// The cuts did happen: mosquitto_sub connected once, the gateway three
	// times.
	log, _ := os.ReadFile(mq.log)
	if n := bytes.Count(log, []byte("New client connected from")); n < 4 {
		t.Fatalf("the broker saw %d connections, want at least 4: the cuts did not hit", n)
	}
}

// awaitLog waits until Mosquitto's log at path has count lines with text.
func awaitLog(t *testing.T, path, text string, count int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		log, _ := os.ReadFile(path)
		if bytes.Count(log, []byte(text)) >= count {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Mosquitto's log has fewer than %d %q", count, text)
		}
	}
}

// Mosquitto killed and restarted while 100 sessions hold a subscription on
// the shared connection: all 100 receive what is published after the
// restart, with no action of theirs, and were told of the outage.
func TestBrokerRestartRestoresSubscriptions(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	const sessions = 100
	clients := make([]*gwclient.Client, sessions)
	for i := range clients {
		clients[i] = dial(t, url)
		connectSubscribe(t, clients[i], "restart/#", 0)
	}
	mq.stop()
	mq.start(t)
	// Each session hears that the broker went away and came back.
	for i, c := range clients {
		expectOutageNotices(t, c, fmt.Sprintf("session %d", i))
	}
	// "Available again" comes once the gateway has subscribed again: one
	// message published after it reaches everyone.
	mosquittoPub(t, mq.port, "-t", "restart/x", "-m", "after")
	for i, c := range clients {
		if f := nextMessage(t, c); string(f.Publish.Payload) != "after" {
			t.Fatalf("session %d: %+v", i, f)
		}
	}
}

// A retained message the broker loses in a restart (Mosquitto without
// persistence) is not given to late subscribers afterwards: the gateway's
// copy goes once the broker's answers to its SUBSCRIBEs again have come
// without it (it used to be kept while any filter covered the topic). A
// retained message the broker does have after the restart is given.
func TestRetainedCopyGoesWithTheBrokersRestart(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	mosquittoPub(t, mq.port, "-t", "stale/a", "-m", "before", "-r")
	holder := dial(t, url)
	connectSubscribe(t, holder, "stale/#", 0)
	if f := nextMessage(t, holder); string(f.Publish.Payload) != "before" {
		t.Fatalf("the first subscriber got %+v", f.Publish)
	}
	mq.stop()
	mq.start(t)
	expectOutageNotices(t, holder, "the holder")
	mosquittoPub(t, mq.port, "-t", "stale/b", "-m", "after", "-r")
	if f := nextMessage(t, holder); string(f.Publish.Payload) != "after" {
		t.Fatalf("the holder got %+v after the restart", f.Publish)
	}

	// A late subscriber of the filter the gateway holds gets what the
	// broker has: stale/b only, once the copy of stale/a has had the time
	// the broker's answers take (retainedWindow) to come again.
	deadline := time.Now().Add(10 * time.Second)
	for {
		late := dial(t, url)
		connectSubscribe(t, late, "stale/#", 0)
		mosquittoPub(t, mq.port, "-t", "stale/mark", "-m", "mark")
		var got []string
		for f := nextMessage(t, late); string(f.Publish.Payload) != "mark"; f = nextMessage(t, late) {
			got = append(got, string(f.Publish.Payload))
		}
		late.Close()
		if slices.Equal(got, []string{"after"}) {
			return
		}
		if !slices.Equal(got, []string{"before", "after"}) && !slices.Equal(got, []string{"after", "before"}) || time.Now().After(deadline) {
			t.Fatalf("a late subscriber got the retained messages %q, want only [after]", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A QoS 1 publish made through the gateway while its broker is down waits
// for the broker and then reaches the gateway's own subscribers too: the
// gateway releases it only once its subscriptions are restored (the broker
// gets the SUBSCRIBEs first, on the same connection).
func TestPublishDuringOutageReachesTheGatewaysSubscribers(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	sub, pub := dial(t, url), dial(t, url)
	ctx := ctx10(t)
	h := connectMain(t, sub)
	// Many filters: resubscribing them takes a while, time enough for a
	// publish released too early to overtake them.
	const filters = 100
	for i := 0; i < filters; i++ {
		if _, err := sub.Subscribe(ctx, h, fmt.Sprintf("out/%d", i), 1); err != nil {
			t.Fatal(err)
		}
	}
	ph := connectMain(t, pub)
	mq.stop()
	if f := nextMessage(t, sub); f.Type != transport.TypeNotice || f.Code != session.CodeBrokerUnavailable {
		t.Fatalf("%+v, want the outage NOTICE", f)
	}
	done := make(chan error, filters)
	for i := 0; i < filters; i++ {
		go func() {
			done <- pub.Publish(ctx, ph, session.PublishParams{Topic: fmt.Sprintf("out/%d", i), QoS: 1, Payload: []byte(fmt.Sprint(i))})
		}()
	}
	time.Sleep(300 * time.Millisecond) // the publishes wait for the broker
	mq.start(t)
	for i := 0; i < filters; i++ {
		if err := <-done; err != nil {
			t.Fatalf("publish during the outage: %v", err)
		}
	}
	got := map[string]bool{}
	for len(got) < filters {
		f := nextMessage(t, sub)
		if f.Type == transport.TypeMessage {
			got[f.Publish.Topic] = true
		} else if f.Type != transport.TypeNotice || f.Code != session.CodeOK {
			t.Fatalf("%+v, want the messages and the NOTICE that the broker is back", f)
		}
	}
}

// Payloads of 0 bytes, 1 MiB and invalid UTF-8, and MQTT 5 user
// properties, both ways, compared with mosquitto_pub and mosquitto_sub.
func TestInteropPayloadsAndProperties(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "max_message_size 2MiB")
	c := dial(t, url)
	ctx := ctx10(t)
	h := connectSubscribe(t, c, "interop/in/#", 1)
	big := bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 1<<18) // 1 MiB
	cases := map[string][]byte{"empty": {}, "big": big, "invalid-utf8": {0xff, 0xfe, 0xc3, 0x28, 0}}
	dir := t.TempDir()
	for name, payload := range cases {
		file := filepath.Join(dir, name)
		os.WriteFile(file, payload, 0o600)
		// Inbound: mosquitto_pub (MQTT 5, with a user property) → gateway → web client.
		mosquittoPub(t, mq.port, "-V", "mqttv5", "-t", "interop/in/"+name, "-q", "1", "-f", file, "-D", "publish", "user-property", "origin", "mosquitto")
		f := nextMessage(t, c)
		if f.Publish.Topic != "interop/in/"+name || !bytes.Equal(f.Publish.Payload, payload) {
			t.Fatalf("%s inbound: topic %s, %d bytes", name, f.Publish.Topic, len(f.Publish.Payload))
		}
		if p := f.Publish.Props; p == nil || len(p.User) != 1 || p.User[0] != (session.UserProperty{Key: "origin", Value: "mosquitto"}) {
			t.Fatalf("%s inbound: user properties %+v", name, f.Publish.Props)
		}
		// Outbound: web client → gateway → mosquitto_sub (-F %p prints the
		// payload raw, %P the user properties).
		wait := mosquittoSub(t, mq.port, "-V", "mqttv5", "-t", "interop/out/"+name, "-C", "1", "-F", "%P|%p")
		time.Sleep(300 * time.Millisecond)
		err := c.Publish(ctx, h, session.PublishParams{Topic: "interop/out/" + name, QoS: 1, Payload: payload,
			Props: &session.Props{User: []session.UserProperty{{Key: "origin", Value: "web"}}}})
		if err != nil {
			t.Fatalf("%s outbound: %v", name, err)
		}
		got := wait()
		want := append([]byte("origin:web|"), payload...)
		if !bytes.Equal(bytes.TrimSuffix(got, []byte("\n")), want) {
			t.Fatalf("%s outbound: mosquitto_sub printed %d bytes, want %d (%q...)", name, len(got), len(want), got[:min(len(got), 40)])
		}
	}
}

// Two brokers over one web session: createClient("a") and ("b") on the
// same connection, each receiving its own broker's messages.
func TestSeveralBrokersOneSession(t *testing.T) {
	a, b := startMosquitto(t), startMosquitto(t)
	httpPort := freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker sensors mqtt://127.0.0.1:%d
		broker cloud mqtt://127.0.0.1:%d
	}
}
`, httpPort, a.port, b.port))
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	ctx := ctx10(t)
	ha, sa, err := c.Connect(ctx, session.ConnectParams{Broker: "sensors"})
	if err != nil {
		t.Fatal(err)
	}
	hb, sb, err := c.Connect(ctx, session.ConnectParams{Broker: "cloud"})
	if err != nil {
		t.Fatal(err)
	}
	c.Subscribe(ctx, ha, "t", 0)
	c.Subscribe(ctx, hb, "t", 0)
	mosquittoPub(t, a.port, "-t", "t", "-m", "from a")
	mosquittoPub(t, b.port, "-t", "t", "-m", "from b")
	got := map[uint64]string{}
	for i := 0; i < 2; i++ {
		f := nextMessage(t, c)
		got[f.Stream] = string(f.Publish.Payload)
	}
	if got[sa] != "from a" || got[sb] != "from b" {
		t.Fatalf("streams %d/%d got %v", sa, sb, got)
	}
}

// A dedicated client subscribes at QoS 1 with a persistent session, goes
// away, 50 messages are published, and when it comes back with the same
// client ID it receives all 50: the broker kept them, and the gateway
// acknowledged none that the web client had not.
func TestPersistentDedicatedSessionGetsWhatWasQueued(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	ctx := ctx10(t)
	params := session.ConnectParams{Broker: "main", ClientID: "persistent-web-client", CleanStart: true, SessionExpiry: 300}
	first := dial(t, url)
	h, _, err := first.Connect(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Subscribe(ctx, h, "kept/#", 1); err != nil {
		t.Fatal(err)
	}
	first.Close() // the web client goes away; the broker session stays

	time.Sleep(200 * time.Millisecond)
	for i := 0; i < 50; i++ {
		mosquittoPub(t, mq.port, "-q", "1", "-t", "kept/x", "-m", fmt.Sprint(i))
	}

	second := dial(t, url)
	params.CleanStart = false
	_, stream, err := second.Connect(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		f := nextMessage(t, second)
		if f.Stream != stream || f.Publish.QoS != 1 || string(f.Publish.Payload) != fmt.Sprint(i) {
			t.Fatalf("message %d: %+v", i, f)
		}
		second.Ack(f.Stream, f.PacketID)
	}
}

// A clean shutdown does not fire a dedicated client's will; with
// wills_on_shutdown it does.
func TestWillsOnShutdown(t *testing.T) {
	for _, fire := range []bool{false, true} {
		t.Run(fmt.Sprint("wills_on_shutdown=", fire), func(t *testing.T) {
			mq := startMosquitto(t)
			extra := ""
			if fire {
				extra = "wills_on_shutdown"
			}
			url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), extra)
			c := dial(t, url)
			_, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: "will-client", CleanStart: true,
				Will: &session.PublishParams{Topic: "wills/will-client", QoS: 1, Payload: []byte("gone")}})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			sub := exec.CommandContext(ctx, "mosquitto_sub", "-h", "127.0.0.1", "-p", fmt.Sprint(mq.port), "-t", "wills/#", "-C", "1", "-W", "2")
			var out bytes.Buffer
			sub.Stdout = &out
			sub.Start()
			time.Sleep(300 * time.Millisecond)
			caddy.Stop() // the gateway shuts down
			sub.Wait()
			if got := strings.TrimSpace(out.String()) == "gone"; got != fire {
				t.Fatalf("will delivered: %v, want %v (mosquitto_sub printed %q)", got, fire, out.String())
			}
		})
	}
}

// A web client that vanishes is a connection lost without DISCONNECT: when
// its session expires, the broker publishes its dedicated client's will.
// One whose session the client closed leaves cleanly, without its will;
// it closes first, so its will, if sent, would be the first to arrive.
func TestWillWhenTheSessionExpires(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "session_timeout 1s")
	connectWithWill := func(id string) *gwclient.Client {
		c := dial(t, url)
		_, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: id, CleanStart: true,
			Will: &session.PublishParams{Topic: "wills/" + id, QoS: 1, Payload: []byte(id + " gone")}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	clean, vanishing := connectWithWill("clean"), connectWithWill("vanishing")
	wait := mosquittoSub(t, mq.port, "-t", "wills/#", "-C", "1", "-W", "15", "-v")
	time.Sleep(300 * time.Millisecond) // mosquitto_sub has subscribed
	clean.Close()
	vanishing.Drop() // the connection breaks; the session waits for a rebind, then expires
	if got := strings.TrimSpace(string(wait())); got != "wills/vanishing vanishing gone" {
		t.Fatalf("first will published: %q, want the vanished client's alone", got)
	}
}

// A web client that goes away (CLOSE with its "left" flag: a page closed,
// reloaded or left) did not disconnect its dedicated clients, so their
// wills fire at once, as a page's own MQTT connection's do; a client it
// disconnected first has none, and a session closed on purpose (plain
// CLOSE) ends cleanly. The two clean ends come first, so a will of theirs,
// if sent, would be the first to arrive.
func TestWillWhenThePageGoes(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	connectWithWill := func(id string) (*gwclient.Client, uint64) {
		c := dial(t, url)
		h, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: id, CleanStart: true,
			Will: &session.PublishParams{Topic: "wills/" + id, QoS: 1, Payload: []byte(id + " gone")}})
		if err != nil {
			t.Fatal(err)
		}
		return c, h
	}
	closed, _ := connectWithWill("closed")
	disconnected, h := connectWithWill("disconnected")
	leaving, _ := connectWithWill("leaving")
	wait := mosquittoSub(t, mq.port, "-t", "wills/#", "-C", "1", "-W", "5", "-v")
	time.Sleep(300 * time.Millisecond) // mosquitto_sub has subscribed
	closed.Close()
	if _, err := disconnected.DisconnectAsync(h); err != nil { // as a pagehide listener would
		t.Fatal(err)
	}
	disconnected.Leave()
	time.Sleep(200 * time.Millisecond)
	leaving.Leave()
	if got := strings.TrimSpace(string(wait())); got != "wills/leaving leaving gone" {
		t.Fatalf("first will published: %q, want the will of the client whose page went", got)
	}
}

// A will reaches the broker with every property the web client gave it
// (paho.golang v0.23.0 alone drops all but the user properties), and comes
// back to a web client subscribed to it.
func TestWillKeepsItsProperties(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "session_timeout 1s")
	listener := dial(t, url)
	connectSubscribe(t, listener, "wills/#", 1)
	props := &session.Props{PayloadFormat: 1, HasPayloadFormat: true, MessageExpiry: 300, HasMessageExpiry: true,
		ContentType: "application/json", ResponseTopic: "wills/reply", CorrelationData: []byte{0, 1, 2, 0xff},
		User: []session.UserProperty{{Key: "a", Value: "1"}, {Key: "a", Value: "2"}}}
	c := dial(t, url)
	_, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: "will-props", CleanStart: true,
		Will: &session.PublishParams{Topic: "wills/will-props", QoS: 1, Props: props, Payload: []byte(`{"gone":true}`)}})
	if err != nil {
		t.Fatal(err)
	}
	c.Drop() // the session expires after 1 s, and the broker publishes the will
	f := nextMessage(t, listener)
	got := f.Publish.Props
	if f.Publish.Topic != "wills/will-props" || got == nil || got.PayloadFormat != 1 || !got.HasPayloadFormat ||
		!got.HasMessageExpiry || got.MessageExpiry == 0 || got.MessageExpiry > 300 || got.ContentType != props.ContentType ||
		got.ResponseTopic != props.ResponseTopic || !bytes.Equal(got.CorrelationData, props.CorrelationData) ||
		len(got.User) != 2 || got.User[1] != props.User[1] {
		t.Fatalf("the will came as %+v with properties %+v", f.Publish, got)
	}
}

// A will with a delay waits for it (MQTT 5 Will Delay Interval): a web
// client that comes back in time with the same client id, as a page does
// on a reload, leaves no will. One without a delay leaves its will at
// once; it vanishes after the other, so its will must be the first.
func TestWillDelayLetsAClientComeBack(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "session_timeout 1s")
	connect := func(id string, delay uint32, clean bool) *gwclient.Client {
		t.Helper()
		c := dial(t, url)
		var props *session.Props
		if delay > 0 {
			props = &session.Props{WillDelay: delay, HasWillDelay: true}
		}
		_, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: id, CleanStart: clean, SessionExpiry: 300,
			Will: &session.PublishParams{Topic: "wills/" + id, QoS: 1, Props: props, Payload: []byte(id + " gone")}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	wait := mosquittoSub(t, mq.port, "-t", "wills/#", "-C", "1", "-W", "15", "-v")
	time.Sleep(300 * time.Millisecond) // mosquitto_sub has subscribed
	connect("reloading", 60, true).Drop()
	// The session expires after 1 s, and the gateway ends its broker
	// connection without DISCONNECT: without the delay, the will goes now.
	time.Sleep(2 * time.Second)
	connect("reloading", 60, false) // back in time: the broker drops the will
	connect("vanishing", 0, true).Drop()
	if got := strings.TrimSpace(string(wait())); got != "wills/vanishing vanishing gone" {
		t.Fatalf("first will published: %q, want the vanished client's", got)
	}
}

// A CONNECT's result says whether the broker kept a session for the client
// ID, as a CONNACK's Session Present does: not at first, yes when a client
// comes back without clean start within the session's expiry, not after a
// clean start, and never on the shared connection.
func TestConnectResultSaysWhetherTheBrokerKeptASession(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	connect := func(clientID string, clean bool) bool {
		t.Helper()
		c, err := gwclient.DialWith(ctx10(t), &websocket.Dialer{}, url, nil, []transport.KV{{Key: "session_present", Value: "1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close() // a clean end: the broker keeps the session for its expiry
		p := session.ConnectParams{Broker: "main", ClientID: clientID, CleanStart: clean}
		if clientID != "" {
			p.SessionExpiry = 60
		}
		_, _, present, err := c.ConnectSession(ctx10(t), p)
		if err != nil {
			t.Fatal(err)
		}
		return present
	}
	for i, step := range []struct {
		clientID string
		clean    bool
		want     bool
	}{
		{"kept", false, false}, // nothing to resume yet
		{"kept", false, true},
		{"kept", true, false},
		{"", false, false},
	} {
		if got := connect(step.clientID, step.clean); got != step.want {
			t.Fatalf("step %d (client ID %q, clean start %v): session present %v, want %v", i, step.clientID, step.clean, got, step.want)
		}
	}
}

// Every MQTT 5 property the gateway carries survives the trip web client →
// gateway → Mosquitto → gateway → web client.
func TestAllPropertiesRoundTrip(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	c := dial(t, url)
	h := connectSubscribe(t, c, "props/#", 1)
	props := &session.Props{PayloadFormat: 1, HasPayloadFormat: true, MessageExpiry: 300, HasMessageExpiry: true,
		ContentType: "application/json", ResponseTopic: "props/reply", CorrelationData: []byte{0, 1, 2, 0xff},
		User: []session.UserProperty{{Key: "a", Value: "1"}, {Key: "a", Value: "2"}}}
	if err := c.Publish(ctx10(t), h, session.PublishParams{Topic: "props/x", QoS: 1, Props: props, Payload: []byte("{}")}); err != nil {
		t.Fatal(err)
	}
	got := nextMessage(t, c).Publish.Props
	if got == nil || got.PayloadFormat != 1 || !got.HasPayloadFormat || !got.HasMessageExpiry || got.MessageExpiry == 0 ||
		got.MessageExpiry > 300 || got.ContentType != props.ContentType || got.ResponseTopic != props.ResponseTopic ||
		!bytes.Equal(got.CorrelationData, props.CorrelationData) || len(got.User) != 2 || got.User[1] != props.User[1] {
		t.Fatalf("properties came back as %+v", got)
	}
}

// A dedicated client whose broker goes away gets LOST with the broker code,
// as a direct MQTT client would lose its connection.
func TestDedicatedClientLostOnBrokerOutage(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	c := dial(t, url)
	h, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: "dedicated-outage"})
	if err != nil {
		t.Fatal(err)
	}
	mq.stop()
	f := nextMessage(t, c)
	if f.Type != transport.TypeLost || f.Handle != h || f.Code != session.CodeBrokerUnavailable {
		t.Fatalf("%+v, want LOST for handle %d with code %d", f, h, session.CodeBrokerUnavailable)
	}
}

// A dedicated client hears at once that its broker went away, publishing
// or not: its connection does not come back by itself, yet LOST waited
// behind the publish in flight, which waited connect_timeout for it (10 s
// by default, 60 s here). Mosquitto stopped with SIGTERM, as a service
// manager stops it, says DISCONNECT first.
func TestDedicatedClientLostAtOnceWhilePublishing(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d {\n connect_timeout 60s\n }", mq.port), "")
	c := dial(t, url)
	h, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: "busy-outage"})
	if err != nil {
		t.Fatal(err)
	}
	failed := make(chan error, 1)
	go func() { // back to back, QoS 1, until one fails
		for {
			if err := c.Publish(context.Background(), h, session.PublishParams{Topic: "busy/x", QoS: 1, Payload: make([]byte, 1000)}); err != nil {
				failed <- err
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	mq.cmd.Process.Signal(syscall.SIGTERM)
	mq.cmd.Wait()
	// Not the 10 s the publish in flight waited for its acknowledgment.
	select {
	case f := <-c.Messages:
		if f.Type != transport.TypeLost || f.Handle != h || f.Code != session.CodeBrokerUnavailable {
			t.Fatalf("%+v, want LOST for handle %d with code %d", f, h, session.CodeBrokerUnavailable)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no LOST within 5 s of the broker's end")
	}
	// The publish in flight failed as the connection went (4041), or, had
	// it completed, the next one, after LOST (4003); not with a timeout.
	if code := errCode(<-failed); code != session.CodeBrokerUnavailable && code != session.CodeBadRequest {
		t.Errorf("publishing ended with code %d, want 4041 or 4003", code)
	}
}

// A shared connection the gateway closes (its last client left) ends its
// broker session: the broker keeps no subscriptions and queues nothing for
// it, while the session expiry of a connection that merely dropped still
// bridges a cut.
func TestClosedSharedConnectionLeavesNoBrokerSession(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	c := dial(t, url)
	h := connectSubscribe(t, c, "gone/#", 1)
	log, _ := os.ReadFile(mq.log)
	id := regexp.MustCompile(`as (mqttgw-[0-9a-f]+)`).FindSubmatch(log)
	if id == nil {
		t.Fatalf("no shared connection in the broker's log:\n%s", log)
	}
	if err := c.Disconnect(ctx10(t), h); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // the gateway closes the connection
	// The broker says whether it kept a session for that client ID.
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", mq.port))
	if err != nil {
		t.Fatal(err)
	}
	pc := paho.NewClient(paho.ClientConfig{Conn: conn})
	defer pc.Disconnect(&paho.Disconnect{})
	ca, err := pc.Connect(ctx10(t), &paho.Connect{ClientID: string(id[1]), CleanStart: false, KeepAlive: 30})
	if err != nil {
		t.Fatal(err)
	}
	if ca.SessionPresent {
		t.Fatalf("the broker kept the session of %s after the gateway closed that connection", id[1])
	}
}

// A web client that acknowledges a QoS 1 message and closes its session at
// once, and a new session that connects with the same client ID right
// after (a page reloaded): the broker gets the acknowledgment and the old
// connection's clean DISCONNECT before it hands the session on, so the
// message does not come again. (paho sends manual acknowledgments on a
// 50 ms tick, and a newer connection with the client ID would close the
// old one before it.)
func TestAckRightBeforeCloseReachesTheBroker(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	params := session.ConnectParams{Broker: "main", ClientID: "acker", SessionExpiry: 60}
	c := dial(t, url)
	ctx := ctx10(t)
	h, stream, err := c.Connect(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, h, "ack/#", 1); err != nil {
		t.Fatal(err)
	}
	mosquittoPub(t, mq.port, "-t", "ack/x", "-m", "once", "-q", "1")
	f := nextMessage(t, c)
	if f.Type != transport.TypeMessage || f.PacketID == 0 {
		t.Fatalf("%+v, want a QoS 1 message to acknowledge", f)
	}
	if err := c.WriteRaw(transport.AppendClose(transport.AppendAck(nil, stream, f.PacketID))); err != nil {
		t.Fatal(err)
	}
	expectEnd(t, c, session.CodeOK, 5*time.Second, "CLOSE")

	again := dial(t, url)
	if _, _, err := again.Connect(ctx, params); err != nil {
		t.Fatal(err)
	}
	mosquittoPub(t, mq.port, "-t", "ack/y", "-m", "next", "-q", "1")
	if f := nextMessage(t, again); string(f.Publish.Payload) != "next" {
		t.Fatalf("the next connection with the client ID got %q first: the broker never had the acknowledgment", f.Publish.Payload)
	}
}

// A QoS 1 message the broker sends again, because the client never
// acknowledged it, arrives with its duplicate flag set (Message.duplicate
// in the JavaScript client): the gateway used to drop the broker's DUP.
func TestRedeliveryCarriesTheDuplicateFlag(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	params := session.ConnectParams{Broker: "main", ClientID: "dup-flag", SessionExpiry: 60}
	c := dial(t, url)
	ctx := ctx10(t)
	h, _, err := c.Connect(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, h, "dup/#", 1); err != nil {
		t.Fatal(err)
	}
	mosquittoPub(t, mq.port, "-t", "dup/x", "-m", "unacked", "-q", "1")
	if f := nextMessage(t, c); f.Type != transport.TypeMessage || f.Dup {
		t.Fatalf("first delivery %+v, want a message without the duplicate flag", f)
	}
	if err := c.WriteRaw(transport.AppendClose(nil)); err != nil { // without acknowledging it
		t.Fatal(err)
	}
	expectEnd(t, c, session.CodeOK, 5*time.Second, "CLOSE")

	again := dial(t, url)
	if _, _, err := again.Connect(ctx, params); err != nil {
		t.Fatal(err)
	}
	if f := nextMessage(t, again); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "unacked" || !f.Dup {
		t.Fatalf("redelivery %+v, want the message with the duplicate flag", f)
	}
}

// A late subscriber served from the gateway's copy of the retained
// messages gets them as the broker would: an expired one not at all, and
// the others with their expiry interval reduced by the time they waited.
// The copy ignored expiry, so a message that had expired for every direct
// client still reached web clients, again and again.
func TestRetainedCopyKeepsToMessageExpiry(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	for topic, expiry := range map[string]string{"exp/short": "1", "exp/long": "60"} {
		mosquittoPub(t, mq.port, "-V", "mqttv5", "-t", topic, "-m", topic, "-r", "-D", "publish", "message-expiry-interval", expiry)
	}
	first := dial(t, url)
	connectSubscribe(t, first, "exp/#", 0) // the broker answers this one
	time.Sleep(retainedSettle)
	late := dial(t, url)
	connectSubscribe(t, late, "exp/#", 0) // the gateway's copy answers this one
	mosquittoPub(t, mq.port, "-t", "exp/end", "-m", "end")
	var got []string
	for {
		f := nextMessage(t, late)
		if f.Publish.Topic == "exp/end" {
			break
		}
		got = append(got, f.Publish.Topic)
		if f.Publish.Topic == "exp/long" {
			p := f.Publish.Props
			if p == nil || !p.HasMessageExpiry || p.MessageExpiry > 58 || p.MessageExpiry < 50 {
				t.Errorf("exp/long came with properties %+v, want an expiry of 60 s less the time it waited", p)
			}
		}
	}
	if !slices.Equal(got, []string{"exp/long"}) {
		t.Errorf("the late subscriber got %q, want only exp/long (exp/short expired)", got)
	}
}

// The broker's answer to a new filter's SUBSCRIBE on the shared connection
// goes to the sessions that asked, not as a live message to the holders
// of other filters covering the topic: their latest value went back from
// v2 to the older retained v1 whenever anyone subscribed an overlapping
// filter.
func TestRetainedAnswerDoesNotReachOtherSubscribers(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	mosquittoPub(t, mq.port, "-t", "ans/temp", "-m", "v1", "-r")
	holder := dial(t, url)
	connectSubscribe(t, holder, "ans/#", 0)
	if f := nextMessage(t, holder); string(f.Publish.Payload) != "v1" || !f.Publish.Retain {
		t.Fatalf("holder got %+v, want retained v1", f)
	}
	time.Sleep(retainedSettle)                             // the holder's own answer window is over
	mosquittoPub(t, mq.port, "-t", "ans/temp", "-m", "v2") // not retained
	if f := nextMessage(t, holder); string(f.Publish.Payload) != "v2" {
		t.Fatalf("holder got %+v, want v2", f)
	}
	newcomer := dial(t, url)
	connectSubscribe(t, newcomer, "ans/+", 0)
	if f := nextMessage(t, newcomer); string(f.Publish.Payload) != "v1" || !f.Publish.Retain {
		t.Fatalf("newcomer got %+v, want retained v1", f)
	}
	mosquittoPub(t, mq.port, "-t", "ans/end", "-m", "end")
	if f := nextMessage(t, holder); string(f.Publish.Payload) != "end" {
		t.Fatalf("holder got %q (retain %v) after the newcomer subscribed, want the next live message", f.Publish.Payload, f.Publish.Retain)
	}
	// A live republication of the same retained value still reaches
	// everyone, also right after a new overlapping subscription.
	other := dial(t, url)
	connectSubscribe(t, other, "ans/temp", 0)
	nextMessage(t, other) // its answer, v1
	mosquittoPub(t, mq.port, "-t", "ans/temp", "-m", "v1", "-r")
	if f := nextMessage(t, holder); string(f.Publish.Payload) != "v1" || f.Publish.Retain {
		t.Fatalf("holder got %+v, want the republished v1 as a live message", f)
	}
}

// A dedicated connection tells the broker how many QoS 1/2 messages it may
// have unacknowledged (Receive Maximum): the gateway keeps each until the
// web client acknowledges it, and with paho's default of 65,535 a client
// that never acknowledged made the gateway hold everything a broker that
// allows many in flight sent (2.6 GB of 1 MiB messages in the trial).
// Once acknowledged, the rest arrive, in order: nothing is lost.
func TestDedicatedClientHasAtMostReceiveMaximumUnacknowledged(t *testing.T) {
	mq := startMosquittoWith(t, func(string) string {
		return "allow_anonymous true\nmax_inflight_messages 1000\nmax_queued_messages 10000\n"
	})
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	ctx := ctx10(t)
	c := dial(t, url)
	h, _, err := c.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: "receive-maximum", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, h, "rm/#", 1); err != nil {
		t.Fatal(err)
	}
	const total = 3 * session.DedicatedReceiveMaximum
	pub := dial(t, url)
	ph := connectMain(t, pub)
	for i := 0; i < total; i++ {
		if err := pub.Publish(ctx, ph, session.PublishParams{Topic: "rm/x", QoS: 1, Payload: []byte(strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	next := func() transport.Frame {
		for {
			select {
			case f := <-c.Messages:
				if f.Type == transport.TypeMessage {
					return f
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no message for 10 s; %d distinct arrived", len(seen))
			}
		}
	}
	var unacked []transport.Frame
	for len(unacked) < session.DedicatedReceiveMaximum {
		unacked = append(unacked, next())
	}
	select {
	case f := <-c.Messages:
		t.Fatalf("%+v arrived with %d messages unacknowledged", f, len(unacked))
	case <-time.After(time.Second): // the broker holds the rest, as asked
	}
	for i, f := range unacked {
		if string(f.Publish.Payload) != strconv.Itoa(i) {
			t.Fatalf("message %q arrived as number %d", f.Publish.Payload, i)
		}
		seen[string(f.Publish.Payload)] = true
		c.Ack(f.Stream, f.PacketID)
	}
	for i := len(seen); i < total; i++ {
		f := next()
		if string(f.Publish.Payload) != strconv.Itoa(i) {
			t.Fatalf("message %q arrived as number %d", f.Publish.Payload, i)
		}
		seen[string(f.Publish.Payload)] = true
		c.Ack(f.Stream, f.PacketID)
	}
}
