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

	topics := []string{"slow/a", "slow/b", "slow/c", "slow/d"}
	const n = 2000 // 2 s at 1,000 msg/s of 1 KiB: about 30 answers of 64 KiB
	published := make(chan struct{})
	go func() {
		defer close(published)
		publishAt(t, mqttPublisher(t, mq.port), topics, n, 1000, 1024, 0)
	}()

	last := map[string]int{}
	read, readAfter := 0, 0
	ended := false
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if !ended {
			select {
			case <-published:
				ended = true
			default:
			}
		}
		for _, f := range s.poll() {
			if f.Type != transport.TypeMessage {
				continue
			}
			read++
			if ended {
				readAfter++
			}
			last[f.Publish.Topic] = seqOf(f.Publish.Payload)
		}
		latest := ended
		for i, topic := range topics {
			latest = latest && last[topic] == n-len(topics)+i
		}
		if latest {
			t.Logf("the slow poller read %d of %d messages, %d of them after the publisher stopped", read, n, readAfter)
			return
		}
		if readAfter > 600 { // conflated: about 70 (what waits past conflate_after); unconflated, some 1,500
			t.Fatalf("after the publisher stopped, the slow poller read %d messages and still lacks a latest value: %v", readAfter, last)
		}
		time.Sleep(200 * time.Millisecond) // the answer on its way over a slow link
	}
	t.Fatalf("no latest value of every topic within 30 s: %v", last)
}
