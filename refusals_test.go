package mqttgateway

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// "Publishing fails for me": the gateway's own refusals (an invalid topic
// or filter, a payload over max_message_size, max_publish_rate) are
// counted by action and code, and logged with the session and the cause.
// They were one "refused" count, mixed with the hooks' denials, and no line
// at any level.
func TestTheGatewaysRefusalsAreCountedAndLogged(t *testing.T) {
	mq := startMosquitto(t)
	url, metricsPort, logFile := gatewayWithLogAndMetrics(t, "refusals", fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "max_message_size 100B\n\t\tmax_publish_rate 1")
	c := dial(t, url)
	h := connectMain(t, c)
	ctx := ctx10(t)
	for _, tc := range []struct {
		p    session.PublishParams
		want session.Code
	}{
		{session.PublishParams{Topic: "a/b"}, 0},
		{session.PublishParams{Topic: "a/b"}, session.CodeRateLimited}, // the second within a second
		{session.PublishParams{Topic: "a/+"}, session.CodeInvalidTopic},
		{session.PublishParams{Topic: "a/b", Payload: make([]byte, 200)}, session.CodeMessageTooLarge},
	} {
		if err := c.Publish(ctx, h, tc.p); errCode(err) != tc.want {
			t.Fatalf("publish %q of %d bytes: %v, want code %d", tc.p.Topic, len(tc.p.Payload), err, tc.want)
		}
	}
	if _, err := c.Subscribe(ctx, h, "a/#/b", 0); errCode(err) != session.CodeInvalidFilter {
		t.Fatalf("subscribe a/#/b: %v", err)
	}
	expectMetrics(t, metricsPort, []string{
		`mqtt_gateway_refusals_total{action="publish",code="4030",gateway="refusals"} 1`,
		`mqtt_gateway_refusals_total{action="publish",code="4032",gateway="refusals"} 1`,
		`mqtt_gateway_refusals_total{action="publish",code="4051",gateway="refusals"} 1`,
		`mqtt_gateway_refusals_total{action="subscribe",code="4031",gateway="refusals"} 1`,
	})
	awaitLogLines(t, logFile, `"msg":"request refused"`, 4)
	data, _ := os.ReadFile(logFile)
	for _, want := range []string{`"action":"publish","broker":"main","topic":"a/b","code":4051,"message":"more than max_publish_rate`,
		`"action":"publish","broker":"main","topic":"a/+","code":4030`, `"topic":"a/b","code":4032,"message":"payload of 200 bytes exceeds max_message_size 100"`,
		`"action":"subscribe","broker":"main","topic":"a/#/b","code":4031`} {
		found := false
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, `"msg":"request refused","session":"`+sessionID(c)+`"`) && strings.Contains(line, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no refusal line of the session with %s in:\n%s", want, data)
		}
	}
}

// Pages of origins allow_origins does not list are refused, counted, and
// each origin named in the log: one line every 10 s named the first only,
// and nothing counted them.
func TestRefusedOriginsAreEachLoggedAndCounted(t *testing.T) {
	mq := startMosquitto(t)
	url, metricsPort, logFile := gatewayWithLogAndMetrics(t, "origins", fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "allow_origins https://app.example.com")
	for _, origin := range []string{"https://partner.example", "https://partner.example", "https://staging.example.com"} {
		_, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {origin}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("a page of %s: %v, want 403", origin, err)
		}
	}
	expectMetrics(t, metricsPort, []string{`mqtt_gateway_refusals_total{action="open",code="4021",gateway="origins"} 3`})
	awaitLogLines(t, logFile, `"origin":"https://staging.example.com"`, 1)
	if n := logLines(logFile, `"origin":"https://partner.example"`); n != 2 {
		t.Errorf("%d lines for https://partner.example, want 2", n)
	}
}

// gatewayWithLogAndMetrics starts a gateway named name (broker "main" at
// brokerURL, extra options) whose log goes to a JSON file, and Caddy's
// metrics endpoint on a port of its own; it returns the gateway's
// WebSocket URL, the metrics port and the log file.
func gatewayWithLogAndMetrics(t *testing.T, name, brokerURL, extra string) (url string, metricsPort int, logFile string) {
	t.Helper()
	logFile = filepath.Join(t.TempDir(), "gateway.log")
	httpPort := freePort(t)
	metricsPort = freePort(t)
	loadCaddy(t, adaptCaddyfile(t, fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	%s
}
http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		name %s
		broker main %s
		%s
	}
}
http://127.0.0.1:%d {
	metrics
}
`, gatewayLog(logFile), httpPort, name, brokerURL, extra, metricsPort)))
	return fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort), metricsPort, logFile
}

// A frozen broker (its process stopped: the kernel still takes the TCP
// connection, nothing answers CONNECT): the client hears 4041 after
// connect_timeout, and operators read "broker connect failed" each time.
// The line used to be lost when the client gave up first: the hub closed
// with its last client before the attempt's own timeout reported.
func TestAFrozenBrokerIsLogged(t *testing.T) {
	mq := startMosquitto(t)
	if err := mq.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mq.cmd.Process.Signal(syscall.SIGCONT) })
	url, _, logFile := gatewayWithLogAndMetrics(t, "frozen", fmt.Sprintf("mqtt://127.0.0.1:%d {\n\t\t\tconnect_timeout 1s\n\t\t}", mq.port), "")
	for i := range 3 {
		c := dial(t, url)
		if _, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main"}); errCode(err) != session.CodeBrokerUnavailable {
			t.Fatalf("connect %d to a frozen broker: %v, want 4041", i, err)
		}
		c.Close() // its hub closes with it
		awaitLogLines(t, logFile, `"msg":"broker connect failed","broker":"main"`, i+1)
	}
}

// A broker that goes down: each of its dedicated clients loses its
// connection, and fails to connect again at each retry. One warning of
// each kind per 10 s says so for all of them (the next counts those left
// out), and the shared connection's own warnings stay. (Each wrote its
// own: hundreds of lines an outage with hundreds of dedicated clients,
// burying the shared connection's.)
func TestDedicatedClientsOfABrokerThatWentDownLogAFewWarnings(t *testing.T) {
	mq := startMosquitto(t)
	url, _, logFile := gatewayWithLogAndMetrics(t, "outage", fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	connectSubscribe(t, dial(t, url), "outage/#", 0)
	const dedicated = 8
	clients := make([]*gwclient.Client, dedicated)
	for i := range clients {
		clients[i] = dial(t, url)
		if _, _, err := clients[i].Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: fmt.Sprintf("outage-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	mq.stop()
	for i, c := range clients {
		for f := nextMessage(t, c); f.Type != transport.TypeLost; f = nextMessage(t, c) {
		}
		if _, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: fmt.Sprintf("outage-%d", i)}); errCode(err) != session.CodeBrokerUnavailable {
			t.Fatalf("dedicated client %d connecting to the broker that went down: %v, want 4041", i, err)
		}
	}
	// The shared connection's and one dedicated connection's, of each.
	awaitLogLines(t, logFile, `"level":"warn"`, 4)
	time.Sleep(200 * time.Millisecond) // lines written late would show
	for _, msg := range []string{"broker connection lost", "broker connect failed"} {
		// 3 if the dedicated ones' lines spread over more than 10 s (a
		// loaded machine); 9 before.
		if n := warnLines(logFile, msg); n < 2 || n > 3 {
			data, _ := os.ReadFile(logFile)
			t.Errorf("%d %q warnings for a shared connection and %d dedicated ones, want 2:\n%s", n, msg, dedicated, data)
		}
	}
}

// warnLines counts the warnings of file whose message is msg.
func warnLines(file, msg string) int {
	data, _ := os.ReadFile(file)
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, `"msg":"`+msg+`"`) {
			n++
		}
	}
	return n
}

// A /send that was on its way when its session ended (close_sessions, a
// session timeout) is told the session ended, and is no sign of a load
// balancer without affinity: the gateway logged "is the load balancer
// sticky?" for it, as for a session it never held. One for a session it
// never held still gets the hint.
func TestASendForASessionThatEndedIsNoStickinessHint(t *testing.T) {
	mq := startMosquitto(t)
	url, _, logFile := gatewayWithLogAndMetrics(t, "ended-sends", fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	base := strings.TrimSuffix(strings.Replace(url, "ws://", "http://", 1), "/ws")
	stream := openStream(t, base, transport.AppendOpen(nil, "", nil, nil))
	opened := <-stream
	if opened.Type != transport.TypeOpened {
		t.Fatalf("got %+v, want OPENED", opened)
	}
	// The client ends its session; a /send it had sent before comes late.
	if status, _ := post(t, base+"/send", transport.AppendClose(transport.AppendSend(nil, opened.Session, opened.Secret, 0, false)), nil); status != http.StatusNoContent {
		t.Fatalf("/send with CLOSE: %d", status)
	}
	for range stream { // the stream ends with the session
	}
	status, frames := post(t, base+"/send", transport.AppendPing(transport.AppendSend(nil, opened.Session, opened.Secret, 0, false)), nil)
	if status != http.StatusNotFound || len(frames) != 1 || frames[0].Code != session.CodeSessionUnknown || frames[0].Message != "session ended" {
		t.Fatalf("/send for the ended session: %d %+v, want 404 and 4010 \"session ended\"", status, frames)
	}
	time.Sleep(100 * time.Millisecond)
	if n := logLines(logFile, "is the load balancer sticky?"); n != 0 {
		t.Fatalf("%d stickiness hints for a /send of a session that ended here", n)
	}
	var never [16]byte
	status, frames = post(t, base+"/send", transport.AppendSend(nil, never, never, 0, false), nil)
	if status != http.StatusNotFound || len(frames) != 1 || frames[0].Message != "unknown or expired session" {
		t.Fatalf("/send for a session never held: %d %+v, want 404 and 4010", status, frames)
	}
	awaitLogLines(t, logFile, "is the load balancer sticky?", 1)
}
