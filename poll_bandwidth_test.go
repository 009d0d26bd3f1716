package mqttgateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/transport"
)

// A long-polling session under a bandwidth cap stays under it on the wire,
// the HTTP head of each answer included, and its answers are not mostly
// heads: each carries more than a frame or two.
func TestLongPollingStaysUnderTheBandwidthCap(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "max_bandwidth 4000")
	proxy := startProxy(t, fmt.Sprintf("127.0.0.1:%d", httpPort))
	s := pollingSubscribed(t, fmt.Sprintf("http://127.0.0.1:%d/mqtt", proxy.port()), "cap/+")
	topics := []string{"cap/0", "cap/1", "cap/2", "cap/3", "cap/4", "cap/5", "cap/6", "cap/7", "cap/8", "cap/9"} // 100 msg/s × 100 B: 2.5 × the cap
	var polls, frames, frameBytes int
	rate := pollWhilePublishing(t, mq, proxy, s, topics, func(data []transport.Frame, size int) {
		polls++
		frames += len(data)
		frameBytes += size
	})
	t.Logf("%d polls, %d frames (%d bytes): %.0f B/s on the wire against a cap of 4000 B/s", polls, frames, frameBytes, rate)
	if rate > 4000*1.1 {
		t.Errorf("%.0f B/s on the wire, over the cap of 4000 B/s by more than 10%%", rate)
	}
	if frames < 3*polls {
		t.Errorf("%d polls carried %d frames: the cap went on HTTP heads", polls, frames)
	}
}

// pollWhilePublishing polls s, through proxy, while 800 messages of 100 B
// go to topics at 100 msg/s (10 KB/s for 8 s), calling each with every
// poll's data frames and size. It returns the bytes per second the proxy
// carried to the client meanwhile.
func pollWhilePublishing(t *testing.T, mq *mosquitto, proxy *tcpProxy, s *httpSession, topics []string, each func(data []transport.Frame, size int)) float64 {
	t.Helper()
	pub := mqttPublisher(t, mq.port)
	done := make(chan time.Duration)
	start := proxy.back.Load()
	t0 := time.Now()
	go func() {
		publishRange(t, pub, topics, 0, 800, 100, 100, 0)
		done <- time.Since(t0)
	}()
	for {
		select {
		case elapsed := <-done:
			return float64(proxy.back.Load()-start) / elapsed.Seconds()
		default:
			each(s.pollSized())
		}
	}
}

// Over a long round trip, a long-polling session under a bandwidth cap
// still gets its cap: what the cap granted while the next poll was on its
// way goes with that poll's answer. Without that, each answer carried a
// quarter second of the cap, once per round trip.
func TestLongPollingOverALongRoundTripGetsItsCap(t *testing.T) {
	const capBytes = 4000
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), fmt.Sprintf("max_bandwidth %d", capBytes))
	proxy := startProxy(t, fmt.Sprintf("127.0.0.1:%d", httpPort))
	s := pollingSubscribed(t, fmt.Sprintf("http://127.0.0.1:%d/mqtt", proxy.port()), "far/+")
	proxy.delay.Store(int64(500 * time.Millisecond)) // each poll reaches the gateway 500 ms after it left
	// 40 topics, so that what waits after conflation (a value per topic)
	// is more than a round trip of the cap.
	topics := make([]string, 40)
	for i := range topics {
		topics[i] = fmt.Sprintf("far/%d", i)
	}
	polls := 0
	rate := pollWhilePublishing(t, mq, proxy, s, topics, func([]transport.Frame, int) { polls++ }) // 2.5 × the cap
	t.Logf("%d polls: %.0f B/s on the wire against a cap of %d B/s", polls, rate, capBytes)
	if rate < capBytes*0.8 || rate > capBytes*1.1 {
		t.Errorf("%.0f B/s on the wire, want the cap of %d B/s within -20%% and +10%%", rate, capBytes)
	}
}
