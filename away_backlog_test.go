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
// client back that takes it at once loses nothing; once this one falls
// behind, that backlog is conflated too, whether new values come or its
// topics have gone quiet. Before, it read the whole backlog first: a phone
// on 40 KB/s back from 45 s away was 50 s behind, and caught up slowly.
func TestASlowClientBackFromAwayGetsTheLatestValuesSoon(t *testing.T) {
	topics := []string{"slow/a", "slow/b", "slow/c", "slow/d"}
	t.Run("new values come", func(t *testing.T) {
		mq, slow, backlog := slowClientBackFromAway(t, topics, 0)
		read, readAfter := latestValuesSoon(t, mq, func() []transport.Frame {
			return []transport.Frame{slow.nextSlowly(t, backlog)}
		})
		t.Logf("back from away, the slow client read %d messages, %d of them queued while it was away and %d after the publisher stopped", read, *backlog, readAfter)
	})
	// Sensors often publish at QoS 1; a dashboard's QoS 0 subscription
	// gets their values at QoS 0, and they are conflated as such.
	for _, qos := range []byte{0, 1} {
		name := map[byte]string{0: "its topics have gone quiet", 1: "its topics have gone quiet, published at QoS 1 to a QoS 0 subscription"}[qos]
		t.Run(name, func(t *testing.T) {
			_, slow, backlog := slowClientBackFromAway(t, topics, qos)
			last := map[string]int{}
			for read := 0; ; read++ {
				if read > 600 {
					t.Fatalf("the slow client read %d of the 2,000 messages queued while it was away and still lacks a latest value: %v", read, last)
				}
				if f := slow.nextSlowly(t, backlog); f.Type == transport.TypeMessage {
					last[f.Publish.Topic] = seqOf(f.Publish.Payload)
				}
				latest := true
				for i, topic := range topics {
					latest = latest && last[topic] == 12000-len(topics)+i
				}
				if latest {
					t.Logf("back from away, the slow client read %d of the 2,000 messages queued meanwhile before it had the latest values", *backlog)
					return
				}
			}
		})
	}
}

// slowClientBackFromAway subscribes a session to slow/# (at QoS 1, or at
// QoS 0 when the messages are published at QoS 1), drops its connection,
// publishes 2,000 messages of 1 KiB to topics at qos while it is away (seq
// from 10,000, so that none is taken for a value latestValuesSoon
// publishes), and rebinds it on a slow reader. backlog counts the messages
// of the spell away that the reader reads.
func slowClientBackFromAway(t *testing.T, topics []string, qos byte) (mq *mosquitto, slow *rawConn, backlog *int) {
	mq = startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	ctx := ctx10(t)
	away := rawSessionAt(t, ctx, &websocket.Dialer{}, url, 1-qos)
	away.ws.Close()
	publishRange(t, mqttPublisher(t, mq.port), topics, 10000, 12000, 1000, 1024, qos)

	d := tinyReceiveBuffer()
	d.Subprotocols = []string{transport.Subprotocol}
	ws, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	slow = &rawConn{ws: ws}
	// It had received the two RESULTs of its CONNECT and SUBSCRIBE.
	ws.WriteMessage(websocket.BinaryMessage, transport.AppendBind(nil, away.opened.Session, away.opened.Secret, 2))
	if f, ok := slow.next(5 * time.Second); !ok || f.Type != transport.TypeBound {
		t.Fatalf("BOUND: %+v %v", f, slow.err)
	}
	return mq, slow, new(int)
}

// nextSlowly reads the next frame at about 100 KiB/s, counting in backlog,
// if not nil, the messages published while the client was away
// (slowClientBackFromAway).
func (c *rawConn) nextSlowly(t *testing.T, backlog *int) transport.Frame {
	f, ok := c.next(10 * time.Second)
	if !ok {
		t.Fatalf("the slow client's connection failed: %v", c.err)
	}
	if backlog != nil && f.Type == transport.TypeMessage && seqOf(f.Publish.Payload) >= 10000 {
		*backlog++
	}
	time.Sleep(10 * time.Millisecond)
	return f
}
