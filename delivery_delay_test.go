package mqttgateway

import (
	"strings"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// "How stale are my dashboards?": delivery_delay_seconds shows how long
// the messages written to clients waited since they came from the broker,
// per transport. A message a long-polling client fetches a second and a
// half after it came is counted so; a retained message sent from the
// gateway's copy to a new subscriber is not a delivery late by its age,
// and is not counted.
func TestDeliveryDelayShowsHowLongMessagesWaited(t *testing.T) {
	mq := startMosquitto(t)
	url, metricsPort := gatewayWithMetrics(t, "delay-test", mq.port, "")
	base := strings.TrimSuffix(strings.Replace(url, "ws://", "http://", 1), "/ws")

	// A live message, on WebSocket, goes at once.
	c := dial(t, url)
	h := connectSubscribe(t, c, "delay/live", 0)
	if err := c.Publish(ctx10(t), h, session.PublishParams{Topic: "delay/live", QoS: 1, Payload: []byte("now")}); err != nil {
		t.Fatal(err)
	}
	if f := nextMessage(t, c); f.Type != transport.TypeMessage {
		t.Fatalf("got %+v", f)
	}

	// One that waits for a poll 1.5 s later.
	s := pollingSubscribed(t, base, "delay/late")
	if err := c.Publish(ctx10(t), h, session.PublishParams{Topic: "delay/late", QoS: 1, Payload: []byte("late")}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1500 * time.Millisecond)
	if got := s.pollUntil(1); got[0].Type != transport.TypeMessage || string(got[0].Publish.Payload) != "late" {
		t.Fatalf("poll: %+v", got)
	}

	// A retained message 1.5 s old, sent from the copy to a subscriber of
	// a filter the broker already holds.
	if err := c.Publish(ctx10(t), h, session.PublishParams{Topic: "delay/live", QoS: 1, Retain: true, Payload: []byte("kept")}); err != nil {
		t.Fatal(err)
	}
	if f := nextMessage(t, c); string(f.Publish.Payload) != "kept" {
		t.Fatalf("got %+v", f)
	}
	time.Sleep(1500 * time.Millisecond)
	const wsCount = `mqtt_gateway_delivery_delay_seconds_count{gateway="delay-test",transport="websocket"}`
	before := metricValue(t, scrape(t, metricsPort), wsCount)
	late := dial(t, url)
	connectSubscribe(t, late, "delay/live", 0)
	if f := nextMessage(t, late); string(f.Publish.Payload) != "kept" || !f.Publish.Retain {
		t.Fatalf("got %+v, want the retained message", f)
	}
	if after := metricValue(t, scrape(t, metricsPort), wsCount); before < 1 || after != before {
		t.Errorf("WebSocket deliveries counted: %v before the retained copy, %v after", before, after)
	}
	expectMetrics(t, metricsPort, []string{
		`mqtt_gateway_delivery_delay_seconds_count{gateway="delay-test",transport="polling"} 1`,
		`mqtt_gateway_delivery_delay_seconds_bucket{gateway="delay-test",transport="polling",le="1"} 0`,
	})
}
