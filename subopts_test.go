package mqttgateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// Retain Handling on the shared connection, which the gateway applies for
// each client: 2 gets no retained message, even when its SUBSCRIBE is the
// one the broker answers; 1 gets them for a new subscription only; 0 at
// every SUBSCRIBE. Each SUBSCRIBE is followed by a live marker, so a
// retained message that should not come would arrive before it.
func TestRetainHandlingOnTheSharedConnection(t *testing.T) {
	mq := startMosquitto(t)
	mosquittoPub(t, mq.port, "-t", "rh/a", "-m", "kept", "-r")
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	ctx := ctx10(t)
	c, old := dialAddressing(t, url), dial(t, url)
	subscribe := func(c *gwclient.Client, h uint64, rh byte) {
		t.Helper()
		if _, err := c.SubscribeWith(ctx, h, "rh/#", 0, session.SubscribeOptions{RetainHandling: rh}); err != nil {
			t.Fatal(err)
		}
	}
	marker := func(what, payload string, sessions ...*gwclient.Client) {
		t.Helper()
		mosquittoPub(t, mq.port, "-t", "rh/marker", "-m", payload)
		for _, s := range sessions {
			expectMessage(t, s, what, payload, false, 0)
		}
	}
	never, ifNew := connectMain(t, c), connectMain(t, c)
	subscribe(c, never, session.RetainNever) // new to the gateway: the broker answers it
	marker("after retain handling 2 on a new filter", "m1", c)
	subscribe(c, ifNew, session.RetainIfNew)
	expectMessage(t, c, "retain handling 1, a new subscription", "kept", true, ifNew)
	subscribe(c, ifNew, session.RetainIfNew)
	marker("after retain handling 1 on a subscription the client held", "m2", c)
	subscribe(c, never, session.RetainAlways)
	expectMessage(t, c, "retain handling 0 by a client that held the subscription", "kept", true, never)

	// A session that does not address retained messages.
	subscribe(old, connectMain(t, old), session.RetainNever)
	marker("after retain handling 2 in a session without addressed_retained", "m3", c, old)
	if n := mq.subscribeCount(t, "rh/#"); n != 1 {
		t.Fatalf("broker saw %d SUBSCRIBEs for rh/#, want 1", n)
	}
}

// A dedicated connection's options go to the broker, which applies them:
// no local, retain as published, and Retain Handling, also when the client
// subscribes again.
func TestSubscribeOptionsOnADedicatedConnection(t *testing.T) {
	mq := startMosquitto(t)
	mosquittoPub(t, mq.port, "-t", "ded/kept", "-m", "kept", "-r")
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	ctx := ctx10(t)
	c := dial(t, url)
	h, _, err := c.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: "options-web-client", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	subscribe := func(what string, qos byte, o session.SubscribeOptions) {
		t.Helper()
		if _, err := c.SubscribeWith(ctx, h, "ded/#", qos, o); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	next := func(what, payload string, qos byte, retain bool) {
		t.Helper()
		f := nextMessage(t, c)
		c.Ack(f.Stream, f.PacketID)
		if string(f.Publish.Payload) != payload || f.Publish.QoS != qos || f.Publish.Retain != retain {
			t.Fatalf("%s: %+v, want %q (QoS %d, retain %v)", what, f.Publish, payload, qos, retain)
		}
	}
	marker := func(what, payload string) {
		t.Helper()
		mosquittoPub(t, mq.port, "-t", "ded/marker", "-m", payload)
		next(what, payload, 0, false)
	}
	subscribe("retain handling 2", 1, session.SubscribeOptions{NoLocal: true, RetainAsPublished: true, RetainHandling: session.RetainNever})
	marker("after retain handling 2", "m1")

	// No local: the client's own publish does not come back.
	if err := c.Publish(ctx, h, session.PublishParams{Topic: "ded/own", QoS: 1, Payload: []byte("own")}); err != nil {
		t.Fatal(err)
	}
	marker("after the client's own publish", "m2")
	// Retain as published: a live retained publish keeps its flag.
	mosquittoPub(t, mq.port, "-t", "ded/live", "-m", "live", "-r")
	next("a live retained publish", "live", 0, true)

	subscribe("retain handling 1, again", 1, session.SubscribeOptions{RetainHandling: session.RetainIfNew})
	marker("after retain handling 1 on a held subscription", "m3")
	// Subscribing again replaces the subscription, also with a lower QoS.
	// (Mosquitto 2.0 keeps a subscription's no local and retain as
	// published when it is replaced, so those are not checked again.)
	subscribe("retain handling 0 at QoS 0, again", 0, session.SubscribeOptions{})
	got := map[string]bool{}
	for range 2 { // the broker's order among retained messages is its own
		f := nextMessage(t, c)
		got[string(f.Publish.Payload)] = f.Publish.Retain
	}
	if !got["kept"] || !got["live"] {
		t.Fatalf("retain handling 0 on a held subscription got %v, want kept and live, retained", got)
	}
	mosquittoPub(t, mq.port, "-q", "1", "-t", "ded/q", "-m", "q")
	next("a QoS 1 publish after subscribing again at QoS 0", "q", 0, false)
}

// No Local on the shared connection: the gateway marks its echo of a
// client's own publish as for every client of the session but that one;
// other sessions, and the same message from anyone else, arrive as usual.
// A client holding a matching subscription without No Local gets its own.
func TestNoLocalOnTheSharedConnection(t *testing.T) {
	mq, s, other, own := withOptionsBesideOthers(t, "nl/#", 1, session.SubscribeOptions{NoLocal: true})
	ctx := ctx10(t)
	publish := func(payload string) {
		t.Helper()
		if err := s.Publish(ctx, own, session.PublishParams{Topic: "nl/x", QoS: 1, Payload: []byte(payload)}); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(c *gwclient.Client, what, payload string, except uint64) {
		t.Helper()
		if f := nextMessage(t, c); string(f.Publish.Payload) != payload || f.Except != except {
			t.Fatalf("%s: %+v, want %q for every client but %d", what, f, payload, except)
		}
	}
	publish("mine")
	expect(s, "the client's own publish, in its session", "mine", own)
	expect(other, "the client's publish, in another session", "mine", 0)
	mosquittoPub(t, mq.port, "-q", "1", "-t", "nl/x", "-m", "mine")
	expect(s, "the same message from someone else", "mine", 0)
	expect(other, "the same message from someone else", "mine", 0)

	if _, err := s.Subscribe(ctx, own, "nl/x", 0); err != nil { // no No Local
		t.Fatal(err)
	}
	publish("again")
	expect(s, "the client's own publish, with a matching subscription without No Local", "again", 0)
	expect(other, "the client's second publish", "again", 0)
}

// withOptionsBesideOthers is a gateway in front of a Mosquitto with two
// sessions holding filter at qos: in s, client h with the options and a
// sibling without them; in other, a client without them.
func withOptionsBesideOthers(t *testing.T, filter string, qos byte, o session.SubscribeOptions) (mq *mosquitto, s, other *gwclient.Client, h uint64) {
	t.Helper()
	mq = startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	s, other = dial(t, url), dial(t, url)
	h = connectMain(t, s)
	connectSubscribe(t, s, filter, qos)
	connectSubscribe(t, other, filter, qos)
	if _, err := s.SubscribeWith(ctx10(t), h, filter, qos, o); err != nil {
		t.Fatal(err)
	}
	return mq, s, other, h
}

// Retain As Published on the shared connection: live retained messages
// come marked as published retained to a session while one of its
// subscriptions asks for that (the client tells which of its clients see
// the flag), and to no other session.
func TestRetainAsPublishedOnTheSharedConnection(t *testing.T) {
	mq, s, other, asPublished := withOptionsBesideOthers(t, "rap/#", 0, session.SubscribeOptions{RetainAsPublished: true})
	ctx := ctx10(t)
	time.Sleep(retainedSettle) // a retained message from now on is live
	expect := func(c *gwclient.Client, what, payload string, published bool) {
		t.Helper()
		if f := nextMessage(t, c); string(f.Publish.Payload) != payload || f.Publish.Retain || f.PublishedRetain != published {
			t.Fatalf("%s: %+v, want %q, not retained, published retained %v", what, f, payload, published)
		}
	}
	mosquittoPub(t, mq.port, "-t", "rap/x", "-m", "live", "-r")
	expect(s, "a live retained message, in the session asking for the flag", "live", true)
	expect(other, "a live retained message, in another session", "live", false)
	mosquittoPub(t, mq.port, "-t", "rap/x", "-m", "plain")
	expect(s, "a live message published without the flag", "plain", false)
	expect(other, "a live message published without the flag", "plain", false)

	if err := s.Unsubscribe(ctx, asPublished, "rap/#"); err != nil {
		t.Fatal(err)
	}
	mosquittoPub(t, mq.port, "-t", "rap/x", "-m", "after", "-r")
	expect(s, "a live retained message once the subscription asking for the flag is gone", "after", false)
	expect(other, "a live retained message", "after", false)
}

// A retained message published to a topic new to the gateway, right after
// another session subscribed a new filter covering it, is a live message
// for the holders of an older filter covering it. Mosquitto sends a copy
// per matching subscription, the embedded broker one copy with every
// subscription identifier; the holders get it either way.
func TestLiveRetainedDuringANewFiltersAnswerReachesOlderHolders(t *testing.T) {
	run := func(t *testing.T, url string, brokerPort int) {
		holder, newcomer := dialAddressing(t, url), dialAddressing(t, url)
		connectSubscribe(t, holder, "race/#", 0)
		time.Sleep(retainedSettle)
		connectSubscribe(t, newcomer, "race/x", 0) // a new filter: its answer window opens
		mosquittoPub(t, brokerPort, "-t", "race/x", "-m", "first", "-r")
		if f := nextMessage(t, holder); string(f.Publish.Payload) != "first" || f.Publish.Retain {
			t.Fatalf("the holder of the older filter got %+v, want the live message", f)
		}
		if f := nextMessage(t, newcomer); string(f.Publish.Payload) != "first" {
			t.Fatalf("the newcomer got %+v, want the message", f)
		}
	}
	t.Run("mosquitto", func(t *testing.T) {
		mq := startMosquitto(t)
		url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
		run(t, url, mq.port)
	})
	t.Run("embedded", func(t *testing.T) {
		brokerPort, httpPort := freePort(t), freePort(t)
		startCaddy(t, fmt.Sprintf("http://127.0.0.1:%d {\n\tmqtt_gateway /mqtt/* {\n\t\tbroker main embedded {\n\t\t\tlisten 127.0.0.1:%d\n\t\t}\n\t}\n}\n",
			httpPort, brokerPort))
		run(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort), brokerPort)
	})
}

// No Local holds for a retained publish too, also in the window in which
// the gateway takes retained messages for the broker's answer to a new
// SUBSCRIBE: the client's own, or a sibling's of the same session.
func TestNoLocalForRetainedPublishesInAnAnswerWindow(t *testing.T) {
	mq, s, own := oneAddressingClient(t)
	ctx := ctx10(t)
	publishOwn := func(topic string) {
		t.Helper()
		if err := s.Publish(ctx, own, session.PublishParams{Topic: topic, QoS: 1, Retain: true, Payload: []byte("mine")}); err != nil {
			t.Fatal(err)
		}
	}
	// Every copy of "mine" is for a sibling or for all clients but own,
	// until the marker.
	expectNoneForOwn := func(what, marker string) {
		t.Helper()
		mosquittoPub(t, mq.port, "-q", "1", "-t", marker, "-m", "marker")
		for {
			f := nextMessage(t, s)
			if f.Publish.Topic == marker {
				return
			}
			if f.Handle == own || f.Handle == 0 && f.Except != own {
				t.Fatalf("%s: the No Local client %d got its own publish: %+v", what, own, f)
			}
		}
	}
	if _, err := s.SubscribeWith(ctx, own, "nlr/#", 1, session.SubscribeOptions{NoLocal: true}); err != nil {
		t.Fatal(err)
	}
	publishOwn("nlr/state") // within its own subscription's answer window
	expectNoneForOwn("right after its own SUBSCRIBE", "nlr/marker")

	time.Sleep(retainedSettle)
	connectSubscribe(t, s, "nlr/+/cfg", 1) // a sibling's new filter: another window
	publishOwn("nlr/a/cfg")
	expectNoneForOwn("right after a sibling's SUBSCRIBE", "nlr/marker")
}

// Retain Handling 2 holds after a broker outage too: the gateway subscribes
// again and sends the retained messages again to the clients that take
// them, not to one that asked for none.
func TestRetainHandlingNeverAfterABrokerOutage(t *testing.T) {
	mq := startMosquitto(t)
	mosquittoPub(t, mq.port, "-t", "rho/a", "-m", "kept", "-r")
	proxy := startProxy(t, fmt.Sprintf("127.0.0.1:%d", mq.port))
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", proxy.port()), "")
	ctx := ctx10(t)
	s := dialAddressing(t, url)
	never, always := connectMain(t, s), connectMain(t, s)
	if _, err := s.SubscribeWith(ctx, never, "rho/#", 0, session.SubscribeOptions{RetainHandling: session.RetainNever}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Subscribe(ctx, always, "rho/#", 0); err != nil {
		t.Fatal(err)
	}
	expectMessage(t, s, "the retained message for the client that takes them", "kept", true, always)
	proxy.cut()
	// The outage's NOTICEs (4041, then 0 once the gateway has subscribed
	// again) and the retained message again, which may come before the 0.
	again, back := false, false
	for !again || !back {
		switch f := nextMessage(t, s); {
		case f.Type == transport.TypeNotice && f.Code == session.CodeBrokerUnavailable:
		case f.Type == transport.TypeNotice && f.Code == 0:
			back = true
		case string(f.Publish.Payload) == "kept" && f.Publish.Retain && f.Handle == 0 && f.Except == never && !again:
			again = true
		default:
			t.Fatalf("after the outage: %+v, want NOTICEs and the retained message for every client but %d", f, never)
		}
	}
	mosquittoPub(t, mq.port, "-t", "rho/m", "-m", "marker")
	expectMessage(t, s, "the next live message", "marker", false, 0)
}

// A client's own publish does not take the place of another publisher's
// value that a frequency limit holds: for that client the held value is
// the latest, so it goes first, and the echo waits its turn.
func TestNoLocalEchoKeepsTheValueAFrequencyLimitHolds(t *testing.T) {
	mq, s, own := oneAddressingClient(t)
	ctx := ctx10(t)
	if _, err := s.SubscribeWith(ctx, own, "fq/x", 0, session.SubscribeOptions{NoLocal: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFrequency(ctx, own, "fq/x", 1); err != nil {
		t.Fatal(err)
	}
	mosquittoPub(t, mq.port, "-t", "fq/x", "-m", "v1")
	expectMessage(t, s, "the first value", "v1", false, 0)
	mosquittoPub(t, mq.port, "-t", "fq/x", "-m", "v2") // held for up to a second
	time.Sleep(100 * time.Millisecond)
	if err := s.Publish(ctx, own, session.PublishParams{Topic: "fq/x", Payload: []byte("v3")}); err != nil {
		t.Fatal(err)
	}
	expectMessage(t, s, "the held value, before the client's own", "v2", false, 0)
	if f := nextMessage(t, s); string(f.Publish.Payload) != "v3" || f.Except != own {
		t.Fatalf("then %+v, want the client's own v3 for every client but %d", f, own)
	}
}

// A client that subscribes a filter right after another client's
// SUBSCRIBE made the gateway subscribe it gets the retained messages too,
// although the broker's answer may not have reached the gateway yet (it
// has no copy to send): the answer is its as well. Ten filters, so that
// the race is run, not hoped for.
func TestSecondSubscriberBeforeTheBrokersAnswerGetsTheRetainedMessages(t *testing.T) {
	mq := startMosquitto(t)
	for i := range 10 {
		mosquittoPub(t, mq.port, "-t", fmt.Sprintf("late/%d/x", i), "-m", "kept", "-r")
	}
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	ctx := ctx10(t)
	c := dialAddressing(t, url)
	first, second := connectMain(t, c), connectMain(t, c)
	for i := range 10 {
		filter := fmt.Sprintf("late/%d/#", i)
		for _, h := range []uint64{first, second} {
			if _, err := c.Subscribe(ctx, h, filter, 0); err != nil {
				t.Fatal(err)
			}
		}
		got := map[uint64]bool{}
		for range 2 {
			f := nextMessage(t, c)
			if string(f.Publish.Payload) != "kept" || !f.Publish.Retain || f.Handle == 0 || got[f.Handle] {
				t.Fatalf("%s: %+v, want the retained message once for each client", filter, f)
			}
			got[f.Handle] = true
		}
	}
}

// oneAddressingClient is a gateway in front of a Mosquitto, and a session
// that takes addressed messages (as the JS client's do) with one client,
// handle own.
func oneAddressingClient(t *testing.T) (mq *mosquitto, s *gwclient.Client, own uint64) {
	t.Helper()
	mq = startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	s = dialAddressing(t, url)
	return mq, s, connectMain(t, s)
}
