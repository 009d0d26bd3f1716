package mqttgateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// A long-polling client on a slow link: each answer takes a while to reach
// it, and it polls again only then. Between two polls no connection is
// bound, and the gateway took the client for away rather than slow: its
// QoS 0 messages waited unconflated, and once the publisher stopped the
// client still had the whole backlog to read before any topic's latest
// value (a phone at 40 KB/s was 30 s behind after 45 s, and growing). As
// on a slow WebSocket, it must get every topic's latest value after
// reading little more than what waits past conflate_after.
func TestSlowLongPollerGetsTheLatestValuesSoon(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	s := openPolling(t, fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort))
	s.send(append(transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"}),
		transport.AppendSubscribe(nil, 2, 1, "slow/#", 0, 0)...))
	if r := s.pollUntil(2); r[0].Code != 0 || r[1].Code != 0 {
		t.Fatalf("connect and subscribe: %+v", r)
	}

	read, readAfter := latestValuesSoon(t, mq, func() []transport.Frame {
		frames := s.poll()
		time.Sleep(200 * time.Millisecond) // the answer on its way over a slow link
		return frames
	})
	t.Logf("the slow poller read %d of 2000 messages, %d of them after the publisher stopped", read, readAfter)
}
