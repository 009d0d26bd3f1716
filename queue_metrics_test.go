package mqttgateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// queuedMetrics scrapes the gateway's queue gauges: frames, bytes and the
// largest session's frames.
func queuedMetrics(t *testing.T, port int) (frames, bytes, most float64) {
	t.Helper()
	body := scrape(t, port)
	value := func(name string) float64 { return metricValue(t, body, "mqtt_gateway_"+name+`{gateway="queues"}`) }
	return value("queued_frames"), value("queued_bytes"), value("queued_frames_max")
}

// On call, "it is slow": the metrics say how much live sessions have
// queued and not written, in all and for the session with the most. One
// client behind its bandwidth cap shows as that client's queue; it is
// gone once the client keeps up.
func TestQueuedFramesAreInTheMetrics(t *testing.T) {
	mq := startMosquitto(t)
	url, metricsPort, _ := gatewayWithLogAndMetrics(t, "queues", fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	ctx := ctx10(t)
	slow, quick := dial(t, url), dial(t, url)
	connectSubscribe(t, slow, "q/#", 1)
	hq := connectSubscribe(t, quick, "q/#", 1)
	if _, err := slow.SetBandwidth(ctx, 300); err != nil {
		t.Fatal(err)
	}
	if frames, _, most := queuedMetrics(t, metricsPort); frames != 0 || most != 0 {
		t.Fatalf("queued before any message: %v frames, %v at most", frames, most)
	}
	const n = 40
	for i := range n {
		if err := quick.Publish(ctx, hq, session.PublishParams{Topic: fmt.Sprintf("q/%d", i), QoS: 1, Payload: make([]byte, 100)}); err != nil {
			t.Fatal(err)
		}
	}
	for range n {
		nextMessage(t, quick) // the quick client has them all
	}
	frames, bytes, most := queuedMetrics(t, metricsPort)
	// At 300 B/s the slow client takes about 3 of the 40 a second.
	if frames == 0 || most != frames || bytes < frames*100 {
		t.Fatalf("with one client behind: %v frames, %v bytes, %v at most; want the slow client's backlog (about %d frames of 100 bytes)", frames, bytes, most, n)
	}

	if _, err := slow.SetBandwidth(ctx, 0); err != nil { // no cap: it catches up
		t.Fatal(err)
	}
	for range n {
		nextMessage(t, slow)
	}
	deadline := time.Now().Add(10 * time.Second)
	for frames, _, most := queuedMetrics(t, metricsPort); frames != 0 || most != 0; frames, _, most = queuedMetrics(t, metricsPort) {
		if time.Now().After(deadline) {
			t.Fatalf("after the client caught up: %v frames, %v at most still queued", frames, most)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
