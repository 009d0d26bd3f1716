package mqttgateway

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/eclipse/paho.golang/paho"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// adminCaddy runs Caddy with its admin API on a loopback port and returns a
// function that loads a new Caddyfile through that API, as `caddy reload`
// does.
func adminCaddy(t *testing.T, site func() string) (reload func()) {
	t.Helper()
	try := adminCaddyTry(t, site)
	return func() {
		t.Helper()
		if status, body := try(); status != http.StatusOK {
			t.Fatalf("reload: %d %s", status, body)
		}
	}
}

// dialAfterReload is dial right after a reload that Caddy applied, which
// tries again, for up to 5 s, a connection reset or closed before its
// WebSocket handshake answered. The old config's server shares the
// listening socket with the new one until it has stopped, and a
// connection that its last Accept took is closed with it: a client that
// connects during a reload meets this (the JavaScript client tries again).
func dialAfterReload(t testing.TB, url string) *gwclient.Client {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := gwclient.Dial(ctx10(t), url, nil)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		lost := errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
		if !lost || time.Now().After(deadline) {
			t.Fatalf("dial %s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// adminCaddyTry is adminCaddy for reloads that may fail: it returns the
// admin API's status and answer.
func adminCaddyTry(t *testing.T, site func() string) (tryReload func() (int, string)) {
	t.Helper()
	return adminCaddyTryWith(t, func() string { return "" }, site)
}

// adminCaddyTryWith is adminCaddyTry with global options of the test's
// (globals) besides the admin API's.
func adminCaddyTryWith(t *testing.T, globals, site func() string) (tryReload func() (int, string)) {
	t.Helper()
	post := adminCaddyLoader(t, globals, site)
	return func() (int, string) {
		t.Helper()
		return post(false)
	}
}

// adminCaddyLoader is adminCaddyTryWith whose reloads may be forced, as
// `caddy reload --force` does: Caddy loads an unchanged config again (its
// files may have changed).
func adminCaddyLoader(t *testing.T, globals, site func() string) (load func(force bool) (int, string)) {
	t.Helper()
	adminPort := freePort(t)
	cfg := func() string {
		return string(caddyfile.Format([]byte(fmt.Sprintf("{\n\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n%s\n}\n%s", adminPort, globals(), site()))))
	}
	loadCaddy(t, adaptCaddyfile(t, cfg()))
	return func(force bool) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/load", adminPort), strings.NewReader(cfg()))
		req.Header.Set("Content-Type", "text/caddyfile")
		if force {
			req.Header.Set("Cache-Control", "must-revalidate")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("reload: %v", err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
}

// Reloads through the admin API while 50 sessions stream: no session
// drops, no message is lost or repeated.
func TestReloadKeepsSessions(t *testing.T) {
	mq := startMosquitto(t)
	httpPort := freePort(t)
	heartbeat := 20
	reload := adminCaddy(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n broker main mqtt://127.0.0.1:%d\n heartbeat %ds\n }\n}\n", httpPort, mq.port, heartbeat)
	})
	url := fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
	const sessions, messages = 50, 300
	clients := make([]*gwclient.Client, sessions)
	for i := range clients {
		clients[i] = dial(t, url)
		connectSubscribe(t, clients[i], "reload/#", 1)
	}
	pub := mqttPublisher(t, mq.port)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		publishAt(t, pub, []string{"reload/x"}, messages, 100, 8, 1)
	}()
	for i := 0; i < 2; i++ {
		time.Sleep(700 * time.Millisecond)
		heartbeat++ // a real change, so Caddy does reload
		reload()
	}
	wg.Wait()
	for i, c := range clients {
		for want := uint64(0); want < messages; want++ {
			f := nextMessage(t, c)
			if f.Type != transport.TypeMessage {
				t.Fatalf("session %d: %+v instead of message %d", i, f, want)
			}
			if got := binary.BigEndian.Uint64(f.Publish.Payload); got != want {
				t.Fatalf("session %d: message %d, want %d", i, got, want)
			}
		}
		select {
		case f := <-c.Ended:
			t.Fatalf("session %d ended: %+v", i, f)
		default:
		}
	}
}

// A reload that changes one broker's address reconnects only that broker:
// its clients hear it go and come back and then receive from the new
// address; the other broker's clients notice nothing.
func TestReloadChangingOneBroker(t *testing.T) {
	a, b1, b2 := startMosquitto(t), startMosquitto(t), startMosquitto(t)
	httpPort := freePort(t)
	bPort := b1.port
	reload := adminCaddy(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n broker a mqtt://127.0.0.1:%d\n broker b mqtt://127.0.0.1:%d\n }\n}\n", httpPort, a.port, bPort)
	})
	url := fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
	ctx := ctx10(t)
	ca, cb := dial(t, url), dial(t, url)
	ha, _, err := ca.Connect(ctx, session.ConnectParams{Broker: "a"})
	if err != nil {
		t.Fatal(err)
	}
	hb, _, err := cb.Connect(ctx, session.ConnectParams{Broker: "b"})
	if err != nil {
		t.Fatal(err)
	}
	ca.Subscribe(ctx, ha, "t", 0)
	cb.Subscribe(ctx, hb, "t", 0)

	bPort = b2.port
	reload()
	expectOutageNotices(t, cb, "client of b")
	publishUntilReceived(t, b2.port, cb, "t", "new b", "client of b")
	mosquittoPub(t, a.port, "-t", "t", "-m", "a still")
	if f := nextMessage(t, ca); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "a still" {
		t.Fatalf("client of a saw %+v first: it should have noticed nothing", f)
	}
}

// A reload that only spells out a default (mqtt_version 5) changes no
// broker: its clients notice nothing. (The JSON differed, "" against "5",
// and the broker's connection was closed and made again.)
func TestReloadSpellingOutTheDefaultMQTTVersion(t *testing.T) {
	mq := startMosquitto(t)
	httpPort := freePort(t)
	options := ""
	reload := adminCaddy(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n broker main mqtt://127.0.0.1:%d {\n%s\n }\n }\n}\n", httpPort, mq.port, options)
	})
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	connectSubscribe(t, c, "t", 0)

	options = "mqtt_version 5"
	reload()
	mosquittoPub(t, mq.port, "-t", "t", "-m", "after the reload")
	if f := nextMessage(t, c); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "after the reload" {
		t.Fatalf("the client saw %+v first: it should have noticed nothing", f)
	}
}

// A reload that removes a broker takes its series out of the metrics: left
// at 0, broker_connections_up kept an alert firing for a broker no longer
// configured, until Caddy restarted. The other broker's stay, and the
// removed broker's clients leaving do not bring them back.
func TestReloadRemovingABrokerDropsItsMetrics(t *testing.T) {
	a, b := startMosquitto(t), startMosquitto(t)
	httpPort, metricsPort := freePort(t), freePort(t)
	brokers := fmt.Sprintf("broker a mqtt://127.0.0.1:%d\n broker b mqtt://127.0.0.1:%d", a.port, b.port)
	reload := adminCaddy(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n name g\n %s\n }\n}\nhttp://127.0.0.1:%d {\n metrics\n}\n", httpPort, brokers, metricsPort)
	})
	url := fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
	ctx := ctx10(t)
	ca, cb := dial(t, url), dial(t, url)
	for c, broker := range map[*gwclient.Client]string{ca: "a", cb: "b"} {
		h, _, err := c.Connect(ctx, session.ConnectParams{Broker: broker})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe(ctx, h, "t", 0); err != nil {
			t.Fatal(err)
		}
	}
	expectMetrics(t, metricsPort, []string{`mqtt_gateway_broker_connections_up{broker="b",gateway="g"} 1`,
		`mqtt_gateway_broker_clients{broker="b",gateway="g",mode="shared"} 1`})

	brokers = fmt.Sprintf("broker a mqtt://127.0.0.1:%d", a.port)
	reload()
	if f := nextMessage(t, cb); f.Type != transport.TypeLost || f.Code != session.CodeUnknownBroker {
		t.Fatalf("client of b: %+v, want LOST 4040", f)
	}
	time.Sleep(200 * time.Millisecond) // its client has left
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "mqtt_gateway_") && strings.Contains(line, `broker="b"`) {
			t.Errorf("a series of the removed broker: %s", line)
		}
	}
	expectMetrics(t, metricsPort, []string{`mqtt_gateway_broker_connections_up{broker="a",gateway="g"} 1`})
}

// A reload that removes the gateway ends its sessions with 4090, the code
// that tells clients to reconnect.
func TestReloadRemovingTheGateway(t *testing.T) {
	mq := startMosquitto(t)
	httpPort := freePort(t)
	withGateway := true
	reload := adminCaddy(t, func() string {
		if !withGateway {
			return fmt.Sprintf("http://127.0.0.1:%d {\n respond \"gone\"\n}\n", httpPort)
		}
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n broker main mqtt://127.0.0.1:%d\n }\n}\n", httpPort, mq.port)
	})
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	connectSubscribe(t, c, "x", 0)
	withGateway = false
	reload()
	// Not "shutting down", which sent on call looking for a restart.
	select {
	case f := <-c.Ended:
		if f.Code != session.CodeShuttingDown || !strings.Contains(f.Message, "removed by a config reload") {
			t.Fatalf("after removing its gateway the session ended with %d (%s), want %d saying why", f.Code, f.Message, session.CodeShuttingDown)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("removing its gateway did not end the session")
	}
}

// A reload that makes a new gateway of an old one (here: a broker added to
// a gateway without a name, which is named after its brokers) keeps its
// embedded broker at a fixed address running, retained messages and all:
// the new gateway cannot bind the address while the old one holds it, so
// it takes the running broker over.
func TestReloadNewGatewayKeepsEmbeddedBroker(t *testing.T) {
	mq := startMosquitto(t)
	httpPort, brokerPort := freePort(t), freePort(t)
	second := ""
	reload := adminCaddy(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n broker local embedded {\n listen 127.0.0.1:%d\n }\n %s\n }\n}\n",
			httpPort, brokerPort, second)
	})
	mosquittoPub(t, brokerPort, "-t", "kept", "-m", "retained before", "-r", "-q", "1")
	second = fmt.Sprintf("broker other mqtt://127.0.0.1:%d", mq.port)
	reload()

	c := dialAfterReload(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	h, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "local"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx10(t), h, "kept", 0); err != nil {
		t.Fatal(err)
	}
	if f := nextMessage(t, c); string(f.Publish.Payload) != "retained before" {
		t.Fatalf("after the reload the embedded broker gave %+v", f.Publish)
	}
	if _, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "other"}); err != nil {
		t.Fatalf("the added broker: %v", err)
	}
}

// A reload that fails (here: a new site's port is taken, so the new config
// cannot start) changes nothing, as Caddy promises: the running gateway
// keeps its broker and settings, although the failed config had already
// applied its own to the gateway they share.
func TestFailedReloadChangesNothing(t *testing.T) {
	b1, b2 := startMosquitto(t), startMosquitto(t)
	httpPort := freePort(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	brokerPort, heartbeat, extraSite := b1.port, 20, ""
	tryReload := adminCaddyTry(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n broker main mqtt://127.0.0.1:%d\n heartbeat %ds\n }\n}\n%s",
			httpPort, brokerPort, heartbeat, extraSite)
	})
	url := fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
	c := dial(t, url)
	connectSubscribe(t, c, "t", 0)

	brokerPort, heartbeat = b2.port, 7
	extraSite = fmt.Sprintf("http://%s {\n respond \"never\"\n}\n", taken.Addr())
	if status, body := tryReload(); status == http.StatusOK || !strings.Contains(body, "address already in use") {
		t.Fatalf("the reload should fail, its port being taken: %d %s", status, body)
	}

	// The running client noticed nothing: its broker connection stayed,
	// and the next thing it gets is b1's message.
	mosquittoPub(t, b1.port, "-t", "t", "-m", "from b1")
	if f := nextMessage(t, c); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "from b1" {
		t.Fatalf("after the failed reload the client got %+v, want b1's message and nothing before it", f)
	}
	// A new session gets the running config's heartbeat, not the failed one's.
	c2 := dial(t, url)
	if hb := c2.Opened.Heartbeat; hb != 20000 {
		t.Fatalf("a session opened after the failed reload has heartbeat %d ms, want the running config's 20000", hb)
	}
}

// Reload after reload: the second one renames the gateway (a broker added
// to a gateway without a name), and the old gateway's sessions end with
// 4090 and nothing before it: the earlier, successful reload is not taken
// for a failed one and undone.
func TestReloadAfterReloadEndsTheOldGatewayCleanly(t *testing.T) {
	mq, other := startMosquitto(t), startMosquitto(t)
	httpPort := freePort(t)
	keepalive, second := 20, ""
	reload := adminCaddy(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n broker main mqtt://127.0.0.1:%d {\n keepalive %ds\n }\n %s\n }\n}\n",
			httpPort, mq.port, keepalive, second)
	})
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	connectSubscribe(t, c, "t", 0)
	keepalive = 25 // the broker's settings change: it reconnects, as documented
	reload()
	expectOutageNotices(t, c, "the client")
	second = fmt.Sprintf("broker other mqtt://127.0.0.1:%d", other.port)
	reload()
	// Messages closes when the session has ended.
	select {
	case f, ok := <-c.Messages:
		if ok {
			t.Fatalf("before the end of its session the client got %+v", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the old gateway's session did not end")
	}
	if f := <-c.Ended; f.Code != session.CodeShuttingDown {
		t.Fatalf("the old gateway's session ended with %d (%s), want %d", f.Code, f.Message, session.CodeShuttingDown)
	}
}

// A reload that tightens max_frequency or max_bandwidth reaches the
// sessions that were open before it, not only new ones: sessions outlive
// reloads, and a limit that never reached the long-lived dashboards would
// not limit much. (They kept receiving 20 messages a second under a new
// 400 B/s cap.)
func TestReloadedLimitsReachOpenSessions(t *testing.T) {
	mq := startMosquitto(t)
	httpPort := freePort(t)
	limits := ""
	reload := adminCaddy(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n broker main mqtt://127.0.0.1:%d\n %s\n }\n}\n", httpPort, mq.port, limits)
	})
	url := fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
	freq, band := dial(t, url), dial(t, url)
	connectSubscribe(t, freq, "lim/one", 0)
	connectSubscribe(t, band, "lim/many/+", 0)
	pub := mqttPublisher(t, mq.port)
	burst := func() (one, many int) {
		for i := range 40 {
			pub.Publish(context.Background(), &paho.Publish{Topic: "lim/one", Payload: numbered(i, 8)})
			pub.Publish(context.Background(), &paho.Publish{Topic: fmt.Sprintf("lim/many/%d", i), Payload: numbered(i, 500)})
			time.Sleep(10 * time.Millisecond)
		}
		until := time.Now().Add(time.Second)
		done := make(chan int)
		go func() { done <- len(collect(band, until)) }()
		one = len(collect(freq, until))
		return one, <-done
	}
	if one, many := burst(); one != 40 || many != 40 {
		t.Fatalf("before the reload: %d and %d of 40 messages, want all", one, many)
	}
	limits = "max_frequency 2\n max_bandwidth 1000B"
	reload()
	one, many := burst()
	// 2 a second over a 1.4 s burst, and the last value; 1,000 B/s of
	// 500-byte messages, plus the bucket's first second.
	if one > 6 {
		t.Errorf("after max_frequency 2: %d of 40 messages on one topic", one)
	}
	if many > 8 {
		t.Errorf("after max_bandwidth 1000B: %d of 40 500-byte messages within 1.4 s", many)
	}
}

// A reload that changes where the gateway logs (its output, level or
// format) applies to the sessions of a gateway the reload keeps: before,
// "session opened" and every session's and broker connection's lines went
// on to the first config's log.
func TestReloadMovesTheLog(t *testing.T) {
	mq := startMosquitto(t)
	httpPort := freePort(t)
	dir := t.TempDir()
	logFile := filepath.Join(dir, "a.log")
	try := adminCaddyTryWith(t, func() string {
		return gatewayLog(logFile)
	}, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n name logs\n broker main mqtt://127.0.0.1:%d\n }\n}\n", httpPort, mq.port)
	})
	url := fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
	before := dial(t, url)
	connectMain(t, before)
	awaitLogLines(t, filepath.Join(dir, "a.log"), "session opened", 1)

	logFile = filepath.Join(dir, "b.log")
	if status, body := try(); status != http.StatusOK {
		t.Fatalf("reload: %d %s", status, body)
	}
	after := dial(t, url)
	connectMain(t, after)
	awaitLogLines(t, filepath.Join(dir, "b.log"), "session opened", 1)
	before.Close() // a session of before the reload logs its end to the new log too
	awaitLogLines(t, filepath.Join(dir, "b.log"), "session closed", 1)
	if n := logLines(filepath.Join(dir, "a.log"), `"msg":"session`); n != 1 {
		t.Fatalf("the first log has %d session lines, want only the one from before the reload", n)
	}
	// The reload is in the new log, naming the gateway as its metrics do.
	awaitLogLines(t, filepath.Join(dir, "b.log"), `"msg":"gateway reconfigured","gateway":"logs"`, 1)
}

// logLines counts the lines of file that contain text.
func logLines(file, text string) int {
	data, _ := os.ReadFile(file)
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, text) {
			n++
		}
	}
	return n
}

// awaitLogLines waits until file has n lines containing text.
func awaitLogLines(t *testing.T, file, text string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for logLines(file, text) < n {
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(file)
			t.Fatalf("%s has %d lines with %q, want %d:\n%s", filepath.Base(file), logLines(file, text), text, n, data)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A reload that moves an embedded broker to an address already taken is
// refused with the broker named, and changes nothing: the broker goes on
// at its address with its clients. (It used to be accepted, the old
// broker stopped and the new one never listened, and every later reload
// was refused for that broker.) A move to a free address then works, and
// so does moving back.
func TestReloadMovingEmbeddedBrokerToATakenAddress(t *testing.T) {
	httpPort, first := freePort(t), freePort(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	listen := fmt.Sprintf("127.0.0.1:%d", first)
	tryReload := adminCaddyTry(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n name moves\n broker local embedded {\n listen %s\n }\n }\n}\n", httpPort, listen)
	})
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	h, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "local"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx10(t), h, "moves/#", 0); err != nil {
		t.Fatal(err)
	}

	listen = taken.Addr().String()
	if status, body := tryReload(); status == http.StatusOK || !strings.Contains(body, `broker \"local\"`) || !strings.Contains(body, "address already in use") {
		t.Fatalf("moving the broker to a taken address: %d %s, want it refused with the broker named", status, body)
	}
	mosquittoPub(t, first, "-t", "moves/a", "-m", "still here")
	if f := nextMessage(t, c); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "still here" {
		t.Fatalf("after the refused reload the client got %+v, want the broker's message", f)
	}

	// A free port picked just before it is used: picked at the start, it
	// was once taken meanwhile (by mosquitto_pub's own end of a connection).
	for _, port := range []int{0, first} {
		if port == 0 {
			port = freePort(t)
		}
		listen = fmt.Sprintf("127.0.0.1:%d", port)
		if status, body := tryReload(); status != http.StatusOK {
			t.Fatalf("moving the broker to %s: %d %s", listen, status, body)
		}
		c2 := dialAfterReload(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
		h2, _, err := c2.Connect(ctx10(t), session.ConnectParams{Broker: "local"})
		if err != nil {
			t.Fatalf("after moving the broker to %s: %v", listen, err)
		}
		if _, err := c2.Subscribe(ctx10(t), h2, "moves/#", 0); err != nil {
			t.Fatal(err)
		}
		mosquittoPub(t, port, "-t", "moves/b", "-m", listen)
		// (A client that came while the gateway moved to the broker may
		// hear it is available again.)
		f := nextMessage(t, c2)
		for f.Type == transport.TypeNotice && f.Code == session.CodeOK {
			f = nextMessage(t, c2)
		}
		if string(f.Publish.Payload) != listen {
			t.Fatalf("after moving the broker to %s the client got %+v", listen, f)
		}
		c2.Close()
	}
}

// A broker that was embedded and is an external one after a reload: the
// embedded broker stops, its address free again, and the clients reach the
// external broker. (It went on listening.)
func TestReloadEmbeddedBrokerBecomesExternal(t *testing.T) {
	mq := startMosquitto(t)
	httpPort, listen := freePort(t), freePort(t)
	broker := fmt.Sprintf("embedded {\n listen 127.0.0.1:%d\n }", listen)
	tryReload := adminCaddyTry(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n name switches\n broker main %s\n }\n}\n", httpPort, broker)
	})
	waitPort(t, listen)
	broker = fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port)
	if status, body := tryReload(); status != http.StatusOK {
		t.Fatalf("reload: %d %s", status, body)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", listen))
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the embedded broker still listens on %d after the reload made the broker an external one", listen)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c := dialAfterReload(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	connectSubscribe(t, c, "switched", 0)
	mosquittoPub(t, mq.port, "-t", "switched", "-m", "from mosquitto")
	if f := nextMessage(t, c); string(f.Publish.Payload) != "from mosquitto" {
		t.Fatalf("after the reload the client got %+v", f)
	}
}

// A CONNECT that waits for its authorize hook while a reload moves its
// broker connects to the broker as configured by then. (It connected to
// the old address, which the reload's restart of the broker's connections
// had already passed by, and stayed there.)
func TestConnectWaitingForItsHookThroughAReloadGetsTheNewBroker(t *testing.T) {
	before, after := startMosquitto(t), startMosquitto(t)
	asked, release := make(chan struct{}, 1), make(chan struct{})
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/connect") {
			asked <- struct{}{}
			<-release
		}
	}))
	t.Cleanup(hooks.Close)
	httpPort, brokerPort := freePort(t), before.port
	reload := adminCaddy(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n name moving\n broker main mqtt://127.0.0.1:%d\n hook_timeout 20s\n authorize {\n reverse_proxy %s\n }\n }\n}\n",
			httpPort, brokerPort, hooks.Listener.Addr())
	})
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	connected := make(chan error, 1)
	var h uint64
	go func() {
		var err error
		h, _, err = c.Connect(ctx10(t), session.ConnectParams{Broker: "main"})
		connected <- err
	}()
	<-asked
	brokerPort = after.port
	reload()
	close(release)
	if err := <-connected; err != nil {
		t.Fatalf("connect: %v", err)
	}
	if _, err := c.Subscribe(ctx10(t), h, "moved/#", 0); err != nil {
		t.Fatal(err)
	}
	publishUntilReceived(t, after.port, c, "moved/x", "at the new broker", "client connected through the reload")
}

// A reload whose authorize hook fails to provision (here: a CA file that
// does not exist) is refused, and changes nothing: the running gateway's
// sessions go on. Caddy calls Cleanup on a handler whose Provision failed,
// and Cleanup gave back a reference to the gateway that this Provision had
// not taken yet: the running config's own, so the gateway was destroyed
// and every live session ended with 4090.
func TestReloadWithABrokenHookKeepsSessions(t *testing.T) {
	mq := startMosquitto(t)
	httpPort := freePort(t)
	hook := "respond 204"
	tryReload := adminCaddyTry(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n broker main mqtt://127.0.0.1:%d\n authorize {\n %s\n }\n }\n}\n",
			httpPort, mq.port, hook)
	})
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	connectSubscribe(t, c, "t", 0)

	hook = "reverse_proxy 127.0.0.1:9 {\n transport http {\n tls_trust_pool file /nonexistent/ca.pem\n }\n }"
	if status, body := tryReload(); status == http.StatusOK || !strings.Contains(body, "/nonexistent/ca.pem") {
		t.Fatalf("the reload should fail on its hook: %d %s", status, body)
	}
	mosquittoPub(t, mq.port, "-t", "t", "-m", "still here")
	if f := nextMessage(t, c); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "still here" {
		t.Fatalf("after the failed reload the client got %+v, want the message and nothing before it", f)
	}
	// The running config still opens sessions on a live gateway.
	c2 := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	connectSubscribe(t, c2, "t", 0)
}

// A reload that fails after it provisioned a new gateway (here: the
// gateway is renamed, and a new site's port is taken) leaves the running
// gateway alone, and the log does not say that a gateway was removed: the
// new one never ran, and an operator reading "gateway removed by a reload"
// after a refused reload looks for sessions that were never lost. (`caddy
// validate` printed the same line for every gateway it checked.)
func TestFailedReloadLogsNoGatewayRemoved(t *testing.T) {
	mq := startMosquitto(t)
	httpPort := freePort(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	logFile := filepath.Join(t.TempDir(), "gw.log")
	name, extraSite := "running", ""
	try := adminCaddyTryWith(t, func() string {
		return gatewayLog(logFile)
	}, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n name %s\n broker main mqtt://127.0.0.1:%d\n }\n}\n%s", httpPort, name, mq.port, extraSite)
	})
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	connectSubscribe(t, c, "t", 0)

	name, extraSite = "fresh", fmt.Sprintf("http://%s {\n respond \"never\"\n}\n", taken.Addr())
	if status, body := try(); status == http.StatusOK || !strings.Contains(body, "address already in use") {
		t.Fatalf("the reload should fail, its port being taken: %d %s", status, body)
	}
	mosquittoPub(t, mq.port, "-t", "t", "-m", "still here")
	if f := nextMessage(t, c); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "still here" {
		t.Fatalf("after the failed reload the client got %+v", f)
	}
	if n := logLines(logFile, "gateway removed by a reload"); n != 0 {
		data, _ := os.ReadFile(logFile)
		t.Fatalf("the log says a gateway was removed by a reload that failed:\n%s", data)
	}
}

// A reload that changes a broker which has stopped answering (a frozen
// process, a silent network) ends its dedicated connections at once, all
// together: each DISCONNECT may wait 2 s for a broker that never reads it,
// and one after the other they held the reload, and Caddy's admin API with
// it, 2 s per dedicated client (a soak saw `caddy reload` take 10 s with
// five). The clients hear LOST 4041 as after any reconfiguration.
func TestReloadChangingAHungBrokerIsNotHeldUpByItsClients(t *testing.T) {
	mq := startMosquitto(t)
	httpPort := freePort(t)
	keepalive := 30
	reload := adminCaddy(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n broker main mqtt://127.0.0.1:%d {\n keepalive %ds\n }\n }\n}\n", httpPort, mq.port, keepalive)
	})
	url := fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
	const dedicated = 6
	clients := make([]*gwclient.Client, dedicated)
	for i := range clients {
		clients[i] = dial(t, url)
		if _, _, err := clients[i].Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: fmt.Sprintf("hung-%d", i), CleanStart: true}); err != nil {
			t.Fatal(err)
		}
	}
	shared := dial(t, url)
	connectSubscribe(t, shared, "hung/#", 0)

	if err := mq.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer mq.cmd.Process.Signal(syscall.SIGCONT)
	keepalive++
	start := time.Now()
	reload()
	// Not a speed target: one DISCONNECT after the other takes 2 s each,
	// 12 s for six, and all at once 2 s; the bound lies well between, so a
	// loaded machine's slower reload does not cross it.
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("the reload took %s with %d dedicated clients of a hung broker: their connections ended one after the other", took.Round(time.Millisecond), dedicated)
	}
	for i, c := range clients {
		select {
		case f := <-c.Messages:
			if f.Type != transport.TypeLost || f.Code != session.CodeBrokerUnavailable {
				t.Errorf("client %d: %+v, want LOST %d", i, f, session.CodeBrokerUnavailable)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("client %d: no LOST after the reload", i)
		}
	}
}

// An embedded broker that a reload keeps running is not said to start
// listening again: "embedded broker listening" came at every reload, and
// twice for a broker the reload added.
func TestReloadSaysOnceThatAnEmbeddedBrokerListens(t *testing.T) {
	logFile := filepath.Join(t.TempDir(), "gateway.log")
	httpPort := freePort(t)
	brokers := "broker one embedded"
	heartbeat := 20
	load := adminCaddyLoader(t, func() string { return gatewayLog(logFile) }, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n name kept\n %s\n heartbeat %ds\n }\n}\n", httpPort, brokers, heartbeat)
	})
	reload := func() {
		t.Helper()
		if status, body := load(false); status != 200 {
			t.Fatalf("reload: %d %s", status, body)
		}
	}
	awaitLogLines(t, logFile, `"msg":"embedded broker listening","broker":"one"`, 1)
	heartbeat = 10
	reload()
	brokers = "broker one embedded\n broker two embedded"
	reload()
	awaitLogLines(t, logFile, `"msg":"embedded broker listening","broker":"two"`, 1)
	heartbeat = 5
	reload()
	for broker, want := range map[string]int{"one": 1, "two": 1} {
		if n := logLines(logFile, `"msg":"embedded broker listening","broker":"`+broker+`"`); n != want {
			data, _ := os.ReadFile(logFile)
			t.Errorf("broker %s said it listens %d times, want %d:\n%s", broker, n, want, data)
		}
	}
}
