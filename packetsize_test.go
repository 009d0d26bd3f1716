package mqttgateway

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// A broker with a Maximum Packet Size drops a client that sends a larger
// packet. On the shared connection that was everyone's connection, again
// after every reconnect (paho resends the QoS 1 publish, the reconciler
// the SUBSCRIBE): one 3,000-byte publish to a broker with a 2,048-byte
// limit took it down 10,000 times in 6 seconds. The gateway now refuses
// what would not fit, with 4032, and the broker never sees it.
func TestPacketsOverTheBrokersLimitAreRefused(t *testing.T) {
	mq := startMosquittoWith(t, func(string) string {
		return "allow_anonymous true\nmax_packet_size 2048\n"
	})
	// Filters as long as MQTT allows, so that the broker's limit is the one met.
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "max_topic_length 65535")
	victim, attacker := dial(t, url), dial(t, url)
	connectSubscribe(t, victim, "big/#", 1)
	ctx := ctx10(t)
	for _, clientID := range []string{"", "attacker-1"} {
		h, _, err := attacker.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: clientID})
		if err != nil {
			t.Fatal(err)
		}
		for _, qos := range []byte{0, 1} {
			err = attacker.Publish(ctx, h, session.PublishParams{Topic: "big/x", QoS: qos, Payload: make([]byte, 3000)})
			if errCode(err) != session.CodeMessageTooLarge || !strings.Contains(err.Error(), "at most 2048 bytes") {
				t.Errorf("client %q: a QoS %d publish of 3,000 bytes gave %v, want %d naming the broker's limit", clientID, qos, err, session.CodeMessageTooLarge)
			}
		}
		_, err = attacker.Subscribe(ctx, h, "big/"+strings.Repeat("f", 3000), 0)
		if errCode(err) != session.CodeMessageTooLarge {
			t.Errorf("client %q: subscribing a 3,000-byte filter gave %v, want %d", clientID, err, session.CodeMessageTooLarge)
		}
		// What fits goes through.
		if err := attacker.Publish(ctx, h, session.PublishParams{Topic: "big/x", QoS: 1, Payload: make([]byte, 1900)}); err != nil {
			t.Errorf("client %q: a publish within the limit: %v", clientID, err)
		}
		if f := nextMessage(t, victim); f.Type != transport.TypeMessage || len(f.Publish.Payload) != 1900 {
			t.Fatalf("client %q: the other session got %+v, want the 1,900-byte message", clientID, f)
		}
	}
	// Filters that fit one by one are unsubscribed in packets that fit
	// too: a session that held three 900-byte filters closes, and the
	// shared connection drops all three at once.
	leaver := dial(t, url)
	h := connectMain(t, leaver)
	for i := range 3 {
		if _, err := leaver.Subscribe(ctx, h, fmt.Sprintf("big/%d/%s", i, strings.Repeat("f", 900)), 0); err != nil {
			t.Fatal(err)
		}
	}
	leaver.Close()
	unsubscribed := func() bool { return bytes.Count(readFile(t, mq.log), []byte("Received UNSUBSCRIBE")) >= 2 }
	for deadline := time.Now().Add(10 * time.Second); !unsubscribed(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the shared connection did not unsubscribe the closed session's filters within 10 s")
		}
	}
	mosquittoPub(t, mq.port, "-t", "big/y", "-m", "after")
	if f := nextMessage(t, victim); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "after" {
		t.Fatalf("after the unsubscribe the other session got %+v, want the next message", f)
	}
	if n := bytes.Count(readFile(t, mq.log), []byte("oversize packet")); n > 0 {
		t.Errorf("the broker dropped %d connections for oversize packets", n)
	}
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
