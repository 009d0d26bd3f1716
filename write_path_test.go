package mqttgateway

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/transport"
)

// The WebSocket writer writes data messages itself, without blocking, and
// leaves the rest of a message the socket could not take to a goroutine,
// which must write it before anything else; pongs to the client's pings go
// between messages. A client with a tiny receive buffer that does not read
// during a flood, then reads while pinging every millisecond, makes all of
// it happen: every message must arrive whole and in order, and the pings
// be answered while the flood goes on.
func TestWebSocketMessagesStayWholeAcrossPartialWritesAndPongs(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	ctx := ctx10(t)

	c := rawSession(t, ctx, tinyReceiveBuffer(), url) // subscribed to slow/# at QoS 1
	// QoS 1, so the gateway neither conflates nor drops: every message
	// must come through. 8 MiB published while the client does not read
	// (more than the socket buffers hold, so writes stop part way), then 4
	// MiB more while it reads.
	const before, n, size = 2000, 3000, 4096
	pub := mqttPublisher(t, mq.port)
	publishAt(t, pub, []string{"slow/whole"}, before, 5000, size, 1)
	time.Sleep(time.Second)
	go publishRange(t, pub, []string{"slow/whole"}, before, n, 2000, size, 1)

	// While the client reads, it pings every millisecond.
	var pongs atomic.Int64
	c.ws.SetPongHandler(func(string) error { pongs.Add(1); return nil })
	every(t, time.Millisecond, func() bool {
		return c.ws.WriteControl(websocket.PingMessage, []byte("are you there"), time.Now().Add(time.Second)) == nil
	})

	for i := 0; i < n; i++ {
		if i%50 == 0 { // slowly enough for pings to come in between
			time.Sleep(2 * time.Millisecond)
		}
		f, ok := c.next(5 * time.Second)
		if !ok {
			t.Fatalf("the connection failed after %d of %d messages (a broken frame ends it): %v", i, n, c.err)
		}
		if f.Type != transport.TypeMessage {
			t.Fatalf("message %d: got frame type %d", i, f.Type)
		}
		want := numbered(i, size)
		if !bytes.Equal(f.Publish.Payload, want) {
			t.Fatalf("message %d: payload differs (seq %d, %d bytes)", i, binary.BigEndian.Uint64(f.Publish.Payload), len(f.Publish.Payload))
		}
	}
	// What is pending goes out in WebSocket messages of at most 16 KiB
	// (a few of these), so the pongs come between them. Whole, the flood
	// went out as one message of megabytes on a loaded machine, and every
	// pong waited behind it.
	if pongs.Load() == 0 {
		t.Fatal("no pong came back during the flood: the gateway left the pings it got unanswered until the backlog was written")
	}
	t.Logf("%d messages whole and in order, %d pongs between them", n, pongs.Load())
}
