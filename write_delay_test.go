package mqttgateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/transport"
)

// With write_delay, a broker message waits the delay before it is written,
// and the messages that arrive meanwhile share its WebSocket message (one
// write); a request's RESULT is not delayed, and takes the waiting messages
// with it.
func TestWriteDelayBatchesMessagesButNotResults(t *testing.T) {
	const delay = 2 * time.Second
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "write_delay "+delay.String())
	ctx := ctx10(t)
	c := rawSession(t, ctx, &websocket.Dialer{}, url) // subscribed to slow/# at QoS 1
	pub := mqttPublisher(t, mq.port)

	// 20 messages in about 200 ms, well inside the delay.
	const n = 20
	start := time.Now()
	publishAt(t, pub, []string{"slow/batch"}, n, 100, 16, 1)
	units, seen := 0, 0
	var first time.Duration
	for seen < n {
		frames := c.nextUnit(t, 3*delay)
		if units == 0 {
			first = time.Since(start)
		}
		units++
		for _, f := range frames {
			if f.Type != transport.TypeMessage {
				t.Fatalf("unexpected frame %+v", f)
			}
			if got := seqOf(f.Publish.Payload); got != seen {
				t.Fatalf("message %d arrived as number %d", got, seen)
			}
			seen++
		}
	}
	if first < delay {
		t.Fatalf("the first message arrived %v after it was published: it did not wait the write delay (%v)", first, delay)
	}
	// Without the delay each message is a write of its own (the client
	// reads as fast as they come); with it, they travel together.
	if units > n/4 {
		t.Fatalf("%d messages came in %d WebSocket messages: the delay did not batch them", n, units)
	}
	t.Logf("%d messages in %d WebSocket message(s), the first %v after publishing began", n, units, first.Round(time.Millisecond))

	// A message waits; a SUBSCRIBE's RESULT does not, and the message
	// comes with it, long before its own delay is over.
	if _, err := pub.Publish(context.Background(), &paho.Publish{Topic: "slow/batch", QoS: 1, Payload: numbered(n, 16)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the message is at the gateway, waiting
	sent := time.Now()
	c.ws.WriteMessage(websocket.BinaryMessage, transport.AppendSubscribe(nil, 3, 1, "other/#", 0, 0))
	var gotResult, gotMessage bool
	for !gotResult || !gotMessage {
		for _, f := range c.nextUnit(t, 3*delay) {
			switch {
			case f.Type == transport.TypeResult && f.Req == 3:
				gotResult = true
			case f.Type == transport.TypeMessage && seqOf(f.Publish.Payload) == n:
				gotMessage = true
			default:
				t.Fatalf("unexpected frame %+v", f)
			}
		}
	}
	if waited := time.Since(sent); waited >= delay {
		t.Fatalf("the RESULT came %v after the request: results must not wait the write delay (%v)", waited, delay)
	}
}

// nextUnit reads one WebSocket message and returns its frames (PINGs
// left out; a unit of only PINGs is skipped).
func (c *rawConn) nextUnit(t *testing.T, timeout time.Duration) []transport.Frame {
	t.Helper()
	for {
		c.ws.SetReadDeadline(time.Now().Add(timeout))
		_, unit, err := c.ws.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var frames []transport.Frame
		if err := transport.SplitUnit(unit, func(b []byte) error {
			var f transport.Frame
			if err := transport.Decode(b, &f); err != nil {
				return err
			}
			if f.Type != transport.TypePing {
				frames = append(frames, f)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(frames) > 0 {
			return frames
		}
	}
}
