package mqttgateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/gorilla/websocket"
)

// A client back from a spell away, on a slow link, gets its topics' latest
// values soon. What came while it was away waits unconflated, so that a
// client back on a good link loses nothing; once this one falls behind,
// that backlog is conflated too, as what comes after is. Before, it read
// the whole backlog first: a phone on 40 KB/s back from 45 s away was 50 s
// behind, and caught up slowly.
func TestASlowClientBackFromAwayGetsTheLatestValuesSoon(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	ctx := ctx10(t)
	away := rawSession(t, ctx, &websocket.Dialer{}, url) // subscribed to slow/#
	away.ws.Close()
	// 2,000 messages of 1 KiB while it is away (seq from 10,000, so that
	// none is taken for a value latestValuesSoon publishes).
	topics := []string{"slow/a", "slow/b", "slow/c", "slow/d"}
	publishRange(t, mqttPublisher(t, mq.port), topics, 10000, 12000, 1000, 1024, 0)

	d := tinyReceiveBuffer()
	d.Subprotocols = []string{transport.Subprotocol}
	ws, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	slow := &rawConn{ws: ws}
	// It had received the two RESULTs of its CONNECT and SUBSCRIBE.
	ws.WriteMessage(websocket.BinaryMessage, transport.AppendBind(nil, away.opened.Session, away.opened.Secret, 2))
	if f, ok := slow.next(5 * time.Second); !ok || f.Type != transport.TypeBound {
		t.Fatalf("BOUND: %+v %v", f, slow.err)
	}
	backlog := 0
	read, readAfter := latestValuesSoon(t, mq, func() []transport.Frame {
		f, ok := slow.next(10 * time.Second)
		if !ok {
			t.Fatalf("the slow client's connection failed: %v", slow.err)
		}
		if f.Type == transport.TypeMessage && seqOf(f.Publish.Payload) >= 10000 {
			backlog++
		}
		time.Sleep(10 * time.Millisecond) // about 100 KiB/s
		return []transport.Frame{f}
	})
	t.Logf("back from away, the slow client read %d messages, %d of them queued while it was away and %d after the publisher stopped", read, backlog, readAfter)
}
