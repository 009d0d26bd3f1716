package mqttgateway

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// The authorize hook caps a subscription's frequency in its answer to the
// subscribe (X-Mqtt-Limit-Max-Frequency): a plan's or a role's rate on
// some topics. The cap holds whatever the client asks for, then and
// later, and ends on each topic's latest value, as a client's own limit
// does; a subscription the answer does not cap gets every message. A limit
// the gateway cannot read refuses the subscription with 4022 rather than
// leaving it without the cap. (A subscribe answer's limits were not read:
// the capped subscription got every message.)
func TestAuthorizeHookCapsASubscriptionsFrequency(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), `authorize {
			@capped {
				path /subscribe
				mqtt_topic capped/#
			}
			header @capped X-Mqtt-Limit-Max-Frequency 2
			@misspelt {
				path /subscribe
				mqtt_topic misspelt/#
			}
			header @misspelt X-Mqtt-Limit-Max-Frequncy 2
			respond 204
		}`)
	c := dial(t, url)
	ctx := ctx10(t)
	h := connectMain(t, c)
	if _, err := c.SubscribeLimited(ctx, h, "capped/+", 0, 100); err != nil { // asks for more than the cap
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, h, "free/+", 0); err != nil {
		t.Fatal(err)
	}

	topics := []string{"capped/t", "free/t"}
	pub := mqttPublisher(t, mq.port)
	check := func(when string, from, to int) {
		t.Helper()
		stop := collecting(c)
		publishRange(t, pub, topics, from, to, 100, 8, 0) // 1 s, 50 per topic
		var capped, free []arrival
		for _, a := range stop(2 * time.Second) {
			if a.topic == "capped/t" {
				capped = append(capped, a)
			} else {
				free = append(free, a)
			}
		}
		last := -1
		if len(capped) > 0 {
			last = int(capped[len(capped)-1].seq)
		}
		if len(capped) > 6 || last != to-2 {
			t.Errorf("%s: the subscription capped at 2/s got %d of %d messages in 1 s, the last %d; want at most 6, ending on %d",
				when, len(capped), (to-from)/2, last, to-2)
		}
		if len(free) != (to-from)/2 {
			t.Errorf("%s: the subscription without a cap got %d of %d messages", when, len(free), (to-from)/2)
		}
	}
	check("asked for 100/s", 0, 100)
	if err := c.SetFrequency(ctx, h, "capped/+", 0); err != nil { // no limit of its own now
		t.Fatal(err)
	}
	check("its own limit lifted", 100, 200)

	var e *gwclient.Error
	if _, err := c.Subscribe(ctx, h, "misspelt/+", 0); !errors.As(err, &e) || e.Code != session.CodeHookUnavailable {
		t.Fatalf("a subscribe whose answer has a limit the gateway cannot read: %v, want 4022", err)
	}
}
