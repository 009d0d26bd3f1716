package mqttgateway

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// countFilter counts the SUBSCRIBEs and UNSUBSCRIBEs of one filter that
// reach mochi from network clients (the gateway's).
type countFilter struct {
	mqtt.HookBase
	filter              string
	subscribes, unsubed atomic.Int64
}

func (h *countFilter) ID() string { return "count-filter" }

func (h *countFilter) Provides(b byte) bool { return b == mqtt.OnSubscribe || b == mqtt.OnUnsubscribe }

func (h *countFilter) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	h.count(cl, pk, &h.subscribes)
	return pk
}

func (h *countFilter) OnUnsubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	h.count(cl, pk, &h.unsubed)
	return pk
}

func (h *countFilter) count(cl *mqtt.Client, pk packets.Packet, n *atomic.Int64) {
	for _, f := range pk.Filters {
		if f.Filter == h.filter && !cl.Net.Inline {
			n.Add(1)
		}
	}
}

// retainedValues reads the n retained messages a SUBSCRIBE brings, each
// flagged retained as MQTT has it, and returns them by topic.
func retainedValues(t *testing.T, c *gwclient.Client, n int) map[string]string {
	t.Helper()
	got := map[string]string{}
	for len(got) < n {
		f := nextMessage(t, c)
		if f.Type != transport.TypeMessage || !f.Publish.Retain {
			t.Fatalf("got %+v, want the filter's retained messages, flagged", f)
		}
		got[f.Publish.Topic] = string(f.Publish.Payload)
	}
	return got
}

// A page that leaves a view and comes back (or four, in turn) does not make
// the broker send a filter's retained messages again and again on the
// shared connection, where every other session's messages wait behind
// them: the gateway keeps the filter at the broker for a couple of seconds
// after its last holder left, and serves a SUBSCRIBE meanwhile from its
// own copy of the retained messages, which it keeps current. Then it
// unsubscribes.
func TestResubscribingSoonIsServedByTheGateway(t *testing.T) {
	hook := &countFilter{filter: "board/#"}
	srv, port := startMochiServer(t, func(*mqtt.Capabilities) {}, hook)
	const topics = 200
	for i := 0; i < topics; i++ {
		if err := srv.Publish("board/"+strconv.Itoa(i), []byte("v1"), true, 0); err != nil {
			t.Fatal(err)
		}
	}
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", port), "")
	c := dial(t, url)
	h := connectMain(t, c)
	ctx := ctx10(t)

	for turn := 0; turn < 5; turn++ {
		if _, err := c.Subscribe(ctx, h, "board/#", 0); err != nil {
			t.Fatal(err)
		}
		got := retainedValues(t, c, topics)
		if turn == 3 && got["board/7"] != "v2" {
			t.Fatalf("turn %d: board/7 is %q, want the value retained while nobody held the filter", turn, got["board/7"])
		}
		if err := c.Unsubscribe(ctx, h, "board/#"); err != nil {
			t.Fatal(err)
		}
		if turn == 2 {
			// A new value while the filter lingers, held by nobody.
			if err := srv.Publish("board/7", []byte("v2"), true, 0); err != nil {
				t.Fatal(err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if s, u := hook.subscribes.Load(), hook.unsubed.Load(); s != 1 || u != 0 {
		t.Fatalf("five turns asked the broker %d SUBSCRIBEs and %d UNSUBSCRIBEs, want 1 and 0", s, u)
	}
	// Then the filter goes.
	for deadline := time.Now().Add(10 * time.Second); hook.unsubed.Load() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the broker never got the UNSUBSCRIBE of the filter nobody holds")
		}
	}
	// A subscription after it asks the broker again, which answers.
	if _, err := c.Subscribe(ctx, h, "board/#", 0); err != nil {
		t.Fatal(err)
	}
	if got := retainedValues(t, c, topics); got["board/7"] != "v2" || got["board/8"] != "v1" {
		t.Fatalf("after the UNSUBSCRIBE: board/7 %q, board/8 %q", got["board/7"], got["board/8"])
	}
	if s := hook.subscribes.Load(); s != 2 {
		t.Fatalf("%d SUBSCRIBEs after the filter went, want 2", s)
	}
}
