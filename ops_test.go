package mqttgateway

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// The metrics endpoint, after a scripted scenario, shows the expected
// counts: sessions, broker clients, subscriptions, messages in and out,
// publishes, hook-free decisions. The gateway's name comes from a
// placeholder.
func TestMetricsAfterScenario(t *testing.T) {
	mq := startMosquitto(t)
	// The name from the environment, as a deployment may give it: the
	// labels below show it replaced.
	t.Setenv("MQTTGW_TEST_GATEWAY", "metrics-test")
	url, metricsPort := gatewayWithMetrics(t, "{env.MQTTGW_TEST_GATEWAY}", mq.port, "")
	ctx := ctx10(t)
	clients := []*gwclient.Client{dial(t, url), dial(t, url), dial(t, url)}
	for _, c := range clients {
		h := connectSubscribe(t, c, "m/#", 0)
		if _, err := c.Subscribe(ctx, h, "m/+/x", 0); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 4; i++ {
		mosquittoPub(t, mq.port, "-t", "m/a/x", "-m", "v")
	}
	for _, c := range clients {
		for i := 0; i < 4; i++ {
			nextMessage(t, c)
		}
	}
	if err := clients[0].Publish(ctx, 1, session.PublishParams{Topic: "m/up", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	nextMessage(t, clients[0]) // its own publish comes back (m/#), to all three sessions
	clients[2].Close()
	time.Sleep(200 * time.Millisecond)

	expectMetrics(t, metricsPort, []string{
		`mqtt_gateway_sessions{gateway="metrics-test"} 2`,
		`mqtt_gateway_sessions_opened_total{gateway="metrics-test",transport="websocket"} 3`,
		`mqtt_gateway_sessions_closed_total{code="0",gateway="metrics-test"} 1`,
		`mqtt_gateway_connections{gateway="metrics-test",transport="websocket"} 2`,
		`mqtt_gateway_broker_clients{broker="main",gateway="metrics-test",mode="shared"} 2`,
		`mqtt_gateway_broker_connections_up{broker="main",gateway="metrics-test"} 1`,
		`mqtt_gateway_broker_subscriptions{broker="main",gateway="metrics-test"} 2`,
		`mqtt_gateway_messages_in_total{broker="main",gateway="metrics-test"} 5`,
		`mqtt_gateway_messages_out_total{gateway="metrics-test"} 15`,
		`mqtt_gateway_publishes_total{gateway="metrics-test",result="ok"} 1`,
	})

	// Publishes the gateway refuses are counted too.
	if err := clients[0].Publish(ctx, 1, session.PublishParams{Topic: "m/+"}); errCode(err) != session.CodeInvalidTopic {
		t.Fatalf("publish to a wildcard: %v", err)
	}
	// Shared connections opened and closed again and again (each time the
	// last client leaves): the gauges come back to zero, not below.
	handles := []uint64{1, 1}
	for round := 0; round < 3; round++ {
		for i, c := range clients[:2] {
			if err := c.Disconnect(ctx, handles[i]); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(300 * time.Millisecond) // the broker's UNSUBACK, the close
		expectMetrics(t, metricsPort, []string{
			`mqtt_gateway_broker_clients{broker="main",gateway="metrics-test",mode="shared"} 0`,
			`mqtt_gateway_broker_connections_up{broker="main",gateway="metrics-test"} 0`,
			`mqtt_gateway_broker_subscriptions{broker="main",gateway="metrics-test"} 0`,
			`mqtt_gateway_publishes_total{gateway="metrics-test",result="refused"} 1`,
		})
		if t.Failed() {
			t.Fatalf("round %d", round)
		}
		for i, c := range clients[:2] {
			handles[i] = connectSubscribe(t, c, "m/#", 0)
			if _, err := c.Subscribe(ctx, handles[i], fmt.Sprintf("m/%d", round), 0); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// gatewayWithMetrics starts Caddy with a gateway named name (broker
// "main" on brokerPort, extra options) and Caddy's metrics endpoint on a
// port of its own.
func gatewayWithMetrics(t *testing.T, name string, brokerPort int, extra string) (wsURL string, metricsPort int) {
	t.Helper()
	httpPort, metricsPort := freePort(t), freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		name %s
		broker main mqtt://127.0.0.1:%d
		%s
	}
}
http://127.0.0.1:%d {
	metrics
}
`, httpPort, name, brokerPort, extra, metricsPort))
	return fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort), metricsPort
}

// expectMetrics fails the test unless Caddy's metrics endpoint on port
// shows every line of want; then it logs the gateway's metrics.
func expectMetrics(t *testing.T, port int, want []string) {
	t.Helper()
	metrics := scrape(t, port)
	for _, w := range want {
		if !strings.Contains(metrics, w+"\n") {
			t.Errorf("metrics lack %s", w)
		}
	}
	if t.Failed() {
		for _, line := range strings.Split(metrics, "\n") {
			if strings.HasPrefix(line, "mqtt_gateway_") {
				t.Log(line)
			}
		}
	}
}

// scrape returns the metrics served on port.
func scrape(t *testing.T, port int) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// testPKI writes a CA and a broker certificate for the given names to dir,
// and a client certificate (client.pem, client.key) the CA signs.
func testPKI(t *testing.T, dir string, names ...string) (caFile, certFile, keyFile string) {
	t.Helper()
	caFile, certFile, keyFile, _ = testPKIIssuing(t, dir, names...)
	return caFile, certFile, keyFile
}

// testPKIIssuing is testPKI, and issue writes a new client certificate for
// name over the one in dir.
func testPKIIssuing(t *testing.T, dir string, names ...string) (caFile, certFile, keyFile string, issue func(name string)) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mqtt_gateway test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, _ := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	// A client certificate from the same CA, for brokers that ask for one.
	issue = func(name string) { issueClientCert(dir, name, ca, caKey) }
	issue("mqtt_gateway")
	return writePEM(dir, "ca.pem", "CERTIFICATE", caDER), writePEM(dir, "broker.pem", "CERTIFICATE", der), writePEM(dir, "broker.key", "EC PRIVATE KEY", keyDER), issue
}

// issueClientCert writes a client certificate for name, which ca signs, to
// dir's client.pem and client.key (over the ones there).
func issueClientCert(dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	writePEM(dir, "client.pem", "CERTIFICATE", der)
	writePEM(dir, "client.key", "EC PRIVATE KEY", keyDER)
}

func writePEM(dir, name, typ string, der []byte) string {
	p := filepath.Join(dir, name)
	os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644)
	return p
}

// startTLSMosquitto runs mosquitto with one TLS listener; with clientCA it
// requires client certificates signed by that CA.
func startTLSMosquitto(t *testing.T, dir, cert, key, clientCA string) int {
	t.Helper()
	m := &mosquitto{bin: mosquittoBin(t), port: freePort(t), conf: filepath.Join(dir, "tls.conf")}
	text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\ncertfile %s\nkeyfile %s\n", m.port, cert, key)
	if clientCA != "" {
		text += fmt.Sprintf("cafile %s\nrequire_certificate true\n", clientCA)
	}
	os.WriteFile(m.conf, []byte(text), 0o644)
	os.Chmod(key, 0o644) // mosquitto drops to its own user
	m.start(t)
	t.Cleanup(m.stop)
	return m.port
}

// mqtts:// to a Mosquitto whose certificate a custom CA signs: verification
// on, messages flow; a certificate for another host is refused with an
// error that says so, as are mqtts:// to a plain port and mqtt:// to a TLS
// one.
func TestBrokerTLS(t *testing.T) {
	dir := brokerDir(t, "mqttgw-tls-", 0o755)
	good, wrong := filepath.Join(dir, "good"), filepath.Join(dir, "wrong")
	os.Mkdir(good, 0o755)
	os.Mkdir(wrong, 0o755)
	ca, cert, key := testPKI(t, good, "127.0.0.1")
	wrongCA, wrongCert, wrongKey := testPKI(t, wrong, "broker.elsewhere.test")
	goodPort := startTLSMosquitto(t, good, cert, key, "")
	wrongPort := startTLSMosquitto(t, wrong, wrongCert, wrongKey, "")
	mutualPort := startTLSMosquitto(t, good, cert, key, ca) // wants a client certificate
	plainPort := startMosquitto(t).port
	clientCert, clientKey := filepath.Join(good, "client.pem"), filepath.Join(good, "client.key")

	httpPort := freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker secure mqtts://127.0.0.1:%d {
			tls {
				ca %s
			}
		}
		broker misnamed mqtts://127.0.0.1:%d {
			connect_timeout 1h
			tls {
				ca %s
			}
		}
		broker untrusted mqtts://127.0.0.1:%d {
			connect_timeout 1h
			tls {
				ca %s
			}
		}
		broker mutual mqtts://127.0.0.1:%d {
			tls {
				ca %s
				cert %s
				key %s
			}
		}
		broker anonymous mqtts://127.0.0.1:%d {
			connect_timeout 2s
			tls {
				ca %s
			}
		}
		broker plainport mqtts://127.0.0.1:%d {
			connect_timeout 2s
		}
		broker tlsport mqtt://127.0.0.1:%d {
			connect_timeout 2s
		}
	}
}
`, httpPort, goodPort, ca, wrongPort, wrongCA, goodPort, wrongCA, mutualPort, ca, clientCert, clientKey, mutualPort, ca, plainPort, goodPort))
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	ctx := ctx10(t)
	h, _, err := c.Connect(ctx, session.ConnectParams{Broker: "secure"})
	if err != nil {
		t.Fatalf("mqtts with a custom CA: %v", err)
	}
	c.Subscribe(ctx, h, "tls/#", 1)
	if err := c.Publish(ctx, h, session.PublishParams{Topic: "tls/x", QoS: 1, Payload: []byte("over tls")}); err != nil {
		t.Fatal(err)
	}
	if f := nextMessage(t, c); string(f.Publish.Payload) != "over tls" {
		t.Fatalf("%+v", f)
	}
	// A certificate the gateway does not trust will be the same on every
	// attempt: the client is told at once (within ctx's 10 s), not after
	// connect_timeout (an hour here). The cause, not the broker's address:
	// web clients are not told where it is.
	for broker, want := range map[string]string{
		"misnamed":  "certificate not valid for the broker's name",
		"untrusted": "certificate signed by an unknown authority",
	} {
		_, _, err = c.Connect(ctx, session.ConnectParams{Broker: broker})
		if errCode(err) != session.CodeBrokerUnavailable || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "127.0.0.1") {
			t.Fatalf("%s: %v, want %q", broker, err, want)
		}
		t.Logf("%s: refused with: %v", broker, err)
	}

	// A broker that wants a client certificate gets the configured one; a
	// connection without it is refused.
	hm, _, err := c.Connect(ctx, session.ConnectParams{Broker: "mutual"})
	if err != nil {
		t.Fatalf("mqtts with a client certificate: %v", err)
	}
	if err := c.Publish(ctx, hm, session.PublishParams{Topic: "tls/mutual", QoS: 1}); err != nil {
		t.Fatal(err)
	}
	// (Not always at once: under TLS 1.3 the broker refuses the certificate
	// after the handshake, and its alert comes as a reset in some runs,
	// which waits connect_timeout like any reset.)
	if _, _, err := c.Connect(ctx, session.ConnectParams{Broker: "anonymous"}); errCode(err) != session.CodeBrokerUnavailable {
		t.Fatalf("no client certificate for a broker that requires one: %v", err)
	}

	// The scheme and the port disagree, a common slip: the error says so,
	// where it used to say "connection reset".
	_, _, err = c.Connect(ctx, session.ConnectParams{Broker: "plainport"})
	if errCode(err) != session.CodeBrokerUnavailable || !strings.Contains(err.Error(), "closed the connection in the handshake (is the port a TLS one?") {
		t.Fatalf("mqtts:// to a plain MQTT port: %v", err)
	}
	_, _, err = c.Connect(ctx, session.ConnectParams{Broker: "tlsport"})
	if errCode(err) != session.CodeBrokerUnavailable || !strings.Contains(err.Error(), "without answering CONNECT (a TLS port, which needs mqtts://") {
		t.Fatalf("mqtt:// to a TLS port: %v", err)
	}
}

// ws:// and wss:// brokers: Mosquitto's WebSocket listeners, one with TLS
// from a custom CA. Messages flow both ways, a large one too (a broker's
// WebSocket messages need not follow MQTT packets), and messages published
// straight to the broker reach web clients through them. A scheme that
// does not fit the port (ws:// to the TLS or the MQTT port, mqtt:// to the
// WebSocket one) is refused with an error that says so.
func TestBrokerOverWebSocket(t *testing.T) {
	dir := brokerDir(t, "mqttgw-wss-", 0o755)
	ca, cert, key := testPKI(t, dir, "127.0.0.1")
	os.Chmod(key, 0o644) // mosquitto drops to its own user
	wsPort, wssPort := freePort(t), freePort(t)
	mq := startMosquittoWith(t, func(string) string {
		return fmt.Sprintf("allow_anonymous true\nlistener %d 127.0.0.1\nprotocol websockets\nlistener %d 127.0.0.1\nprotocol websockets\ncertfile %s\nkeyfile %s\n", wsPort, wssPort, cert, key)
	})
	waitPort(t, wsPort)
	waitPort(t, wssPort)

	httpPort := freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker plain ws://127.0.0.1:%d
		broker secure wss://127.0.0.1:%d {
			tls {
				ca %s
			}
		}
		broker tlsport ws://127.0.0.1:%d {
			connect_timeout 2s
		}
		broker mqttport ws://127.0.0.1:%d {
			connect_timeout 2s
		}
		broker wsport mqtt://127.0.0.1:%d {
			connect_timeout 1h
		}
	}
}
`, httpPort, wsPort, wssPort, ca, wssPort, mq.port, wsPort))
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	ctx := ctx10(t)
	// Larger than a WebSocket read buffer on either side. (Not much larger:
	// Mosquitto's listener takes a service tick of up to 100 ms for each
	// 4 KB of an incoming message, its issue 2252.)
	large := bytes.Repeat([]byte("0123456789"), 2_000)
	for _, broker := range []string{"plain", "secure"} {
		h, _, err := c.Connect(ctx, session.ConnectParams{Broker: broker})
		if err != nil {
			t.Fatalf("%s: %v", broker, err)
		}
		if _, err := c.Subscribe(ctx, h, broker+"/#", 1); err != nil {
			t.Fatalf("%s: %v", broker, err)
		}
		for _, payload := range [][]byte{[]byte("small"), large} {
			if err := c.Publish(ctx, h, session.PublishParams{Topic: broker + "/x", QoS: 1, Payload: payload}); err != nil {
				t.Fatalf("%s: %v", broker, err)
			}
			if f := nextMessage(t, c); !bytes.Equal(f.Publish.Payload, payload) {
				t.Fatalf("%s: got %d bytes on %q, want %d", broker, len(f.Publish.Payload), f.Publish.Topic, len(payload))
			}
		}
		mosquittoPub(t, mq.port, "-t", broker+"/direct", "-m", "from the broker")
		if f := nextMessage(t, c); string(f.Publish.Payload) != "from the broker" {
			t.Fatalf("%s: %+v", broker, f)
		}
	}

	// A scheme that does not fit the port is named, where the error used to
	// say "connection reset" or "connection failed". A port that answers in
	// HTTP will answer so again: the client hears it at once, not after
	// connect_timeout (an hour for wsport).
	for broker, want := range map[string]string{
		"tlsport":  "without answering the WebSocket upgrade (not a WebSocket port? a TLS one needs wss://)",
		"mqttport": "without answering the WebSocket upgrade (not a WebSocket port? a TLS one needs wss://)",
		"wsport":   "the broker answered in HTTP (a WebSocket port? it needs ws:// or wss://)",
	} {
		_, _, err := c.Connect(ctx, session.ConnectParams{Broker: broker})
		if errCode(err) != session.CodeBrokerUnavailable || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", broker, err, want)
		}
	}
}

// eventRecorder is a Caddy event handler for tests: it keeps the names of
// the events it sees.
type eventRecorder struct{}

var recordedEvents = make(chan string, 100)

func (eventRecorder) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "events.handlers.mqttgw_test_recorder", New: func() caddy.Module { return eventRecorder{} }}
}

func (eventRecorder) Handle(_ context.Context, e caddy.Event) error {
	recordedEvents <- fmt.Sprintf("%s of %v", e.Name(), e.Data["gateway"])
	return nil
}

func init() { caddy.RegisterModule(eventRecorder{}) }

// The gateway emits Caddy events when sessions open and close and when
// brokers come up and go down, each naming the gateway.
func TestCaddyEvents(t *testing.T) {
	mq := startMosquitto(t)
	httpPort := freePort(t)
	js := adaptCaddyfile(t, testGlobals+fmt.Sprintf("http://127.0.0.1:%d {\n\tmqtt_gateway /mqtt/* {\n\t\tbroker main mqtt://127.0.0.1:%d\n\t}\n}\n", httpPort, mq.port))
	var cfg map[string]any
	json.Unmarshal(js, &cfg)
	cfg["apps"].(map[string]any)["events"] = map[string]any{"subscriptions": []any{map[string]any{
		"events":   []string{"session_opened", "session_closed", "broker_up", "broker_down"},
		"handlers": []any{map[string]any{"handler": "mqttgw_test_recorder"}},
	}}}
	js, _ = json.Marshal(cfg)
	loadCaddy(t, js)
	wait := func(name string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case e := <-recordedEvents:
				if e == name+" of brokers=main" {
					return
				}
			case <-deadline:
				t.Fatalf("no %s event", name)
			}
		}
	}
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	wait("session_opened")
	if _, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main"}); err != nil {
		t.Fatal(err)
	}
	wait("broker_up")
	mq.stop()
	wait("broker_down")
	c.Close()
	wait("session_closed")
}

// Hook decisions are counted by action and result, and timed: one connect
// and two subscribes allowed, one subscribe denied (4021), one publish
// allowed, as the authorize chain decides them.
func TestHookMetricsCountDecisions(t *testing.T) {
	mq := startMosquitto(t)
	url, metricsPort := gatewayWithMetrics(t, "hook-metrics", mq.port, `authorize {
			@open mqtt_topic open/#
			respond @open 204
			respond /connect 204
			respond 403
		}`)
	c := dial(t, url)
	ctx := ctx10(t)
	h := connectSubscribe(t, c, "open/a", 0)
	if _, err := c.Subscribe(ctx, h, "open/b", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, h, "secret/x", 0); err == nil {
		t.Fatal("subscribe to secret/x allowed")
	}
	if err := c.Publish(ctx, h, session.PublishParams{Topic: "open/a", QoS: 1}); err != nil {
		t.Fatal(err)
	}

	expectMetrics(t, metricsPort, []string{
		`mqtt_gateway_hook_calls_total{action="connect",gateway="hook-metrics",result="allow"} 1`,
		`mqtt_gateway_hook_calls_total{action="subscribe",gateway="hook-metrics",result="allow"} 2`,
		`mqtt_gateway_hook_calls_total{action="subscribe",gateway="hook-metrics",result="4021"} 1`,
		`mqtt_gateway_hook_calls_total{action="publish",gateway="hook-metrics",result="allow"} 1`,
		`mqtt_gateway_hook_duration_seconds_count{action="subscribe",gateway="hook-metrics"} 3`,
	})
}

// A /send for a session this gateway does not hold is counted by code:
// behind a load balancer without affinity they come in streams, and the
// operator saw nothing of them.
func TestRefusedSendsAreCounted(t *testing.T) {
	mq := startMosquitto(t)
	url, metricsPort := gatewayWithMetrics(t, "sends-test", mq.port, "")
	send := strings.Replace(strings.Replace(url, "ws://", "http://", 1), "/ws", "/send", 1)
	var unknown [16]byte
	for range 2 {
		body := transport.AppendSend(nil, unknown, unknown, 0, false)
		if status, frames := post(t, send, body, nil); status != http.StatusNotFound || len(frames) != 1 || frames[0].Code != session.CodeSessionUnknown {
			t.Fatalf("/send for an unknown session: %d %+v, want 404 and 4010", status, frames)
		}
	}
	expectMetrics(t, metricsPort, []string{`mqtt_gateway_sends_refused_total{code="4010",gateway="sends-test"} 2`})
}

// metricValue reads the value of the sample named line (name and labels)
// in a scrape, or fails the test.
func metricValue(t *testing.T, metrics, line string) float64 {
	t.Helper()
	for _, l := range strings.Split(metrics, "\n") {
		if rest, ok := strings.CutPrefix(l, line+" "); ok {
			v, err := strconv.ParseFloat(rest, 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no %s in the metrics", line)
	return 0
}
