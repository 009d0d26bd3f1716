package mqttgateway

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// During a broker outage a client's requests each wait at most the connect
// timeout from when they came in, and then fail with 4041. They used to
// wait one behind another, each with a timeout of its own from when its
// turn came (the fifth of five publishes failed after 20 s with a 3 s
// timeout, and a later one waited 18 s and succeeded, out of order), and a
// subscription ran into the SUBACK timeout (4044) instead.
func TestRequestsDuringAnOutageWaitOneTimeout(t *testing.T) {
	c, h := clientInAnOutage(t)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 4)
	took := make([]time.Duration, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Publish(ctx10(t), h, session.PublishParams{Topic: "out/x", QoS: 1, Payload: []byte{byte(i)}})
			took[i] = time.Since(start)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if errCode(err) != session.CodeBrokerUnavailable {
			t.Errorf("publish %d during the outage: %v, want %d", i, err, session.CodeBrokerUnavailable)
		}
		// One connect timeout (1 s) and slack; queued one behind another
		// they took 1, 2, 3 and 4 s.
		if took[i] > 2500*time.Millisecond {
			t.Errorf("publish %d failed after %v, more than the connect timeout from when it was sent", i, took[i])
		}
	}
	if _, err := c.Subscribe(ctx10(t), h, "out/new", 0); errCode(err) != session.CodeBrokerUnavailable {
		t.Errorf("subscribe during the outage: %v, want %d", err, session.CodeBrokerUnavailable)
	}
}

// clientInAnOutage is a client subscribed to out/# through a gateway whose
// broker (connect_timeout 1s) has just gone away.
func clientInAnOutage(t *testing.T) (*gwclient.Client, uint64) {
	c, h, _ := clientInAnOutageWith(t, "1s", "")
	return c, h
}

// clientInAnOutageWith is clientInAnOutage with the broker's
// connect_timeout and more gateway settings; it also returns the stopped
// Mosquitto, to start again.
func clientInAnOutageWith(t *testing.T, connectTimeout, settings string) (*gwclient.Client, uint64, *mosquitto) {
	mq := startMosquitto(t)
	port := freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d {
			connect_timeout %s
		}
		%s
	}
}
`, port, mq.port, connectTimeout, settings))
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", port))
	h := connectSubscribe(t, c, "out/#", 1)
	mq.stop()
	if f := nextMessage(t, c); f.Type != transport.TypeNotice || f.Code != session.CodeBrokerUnavailable {
		t.Fatalf("got %+v, want the outage NOTICE", f)
	}
	return c, h, mq
}

// Requests of one client are answered in order, refusals too: an invalid
// filter was answered at once, ahead of the publish queued before it.
func TestRefusalsAnsweredInOrder(t *testing.T) {
	c, h := clientInAnOutage(t)
	published := make(chan struct{})
	go func() {
		defer close(published)
		c.Publish(ctx10(t), h, session.PublishParams{Topic: "out/x", QoS: 1, Payload: []byte("x")}) // waits out the outage
	}()
	time.Sleep(100 * time.Millisecond) // the publish is sent first
	start := time.Now()
	if _, err := c.Subscribe(ctx10(t), h, "out/#/x", 0); errCode(err) != session.CodeInvalidFilter {
		t.Fatalf("invalid filter: %v, want %d", err, session.CodeInvalidFilter)
	}
	// The publish waits out the 1 s connect timeout, and the refusal with
	// it; it came at once.
	if took := time.Since(start); took < 500*time.Millisecond {
		t.Errorf("the refusal came after %v, before the result of the publish sent before it", took)
	}
	<-published
}

// A broker that restarts without persistence while publishes await its
// acknowledgment: the gateway's session there is gone, and paho drops what
// it had not had acknowledged. A QoS 1 publish is sent again on the new
// session and arrives; a QoS 2 one fails at once with 4041, saying it may
// or may not have been delivered (exactly once cannot be kept). Both used
// to wait out paho's 10 s packet timeout for a 4044 that said they may
// still arrive.
func TestPublishesAcrossBrokerSessionLoss(t *testing.T) {
	mq := startMosquitto(t)
	proxy := startProxy(t, fmt.Sprintf("127.0.0.1:%d", mq.port))
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", proxy.port()), "")
	c := dial(t, url)
	connectSubscribe(t, c, "loss/#", 1)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// From two web clients: one client's requests are carried out in
	// order, and both publishes must be awaiting the broker.
	results := map[byte]chan error{1: make(chan error, 1), 2: make(chan error, 1)}
	clients := map[byte]*gwclient.Client{}
	handles := map[byte]uint64{}
	for qos := range results {
		clients[qos] = dial(t, url)
		handles[qos] = connectMain(t, clients[qos])
	}
	proxy.holding.Store(true) // the publishes reach no broker
	for qos, res := range results {
		pc, ph := clients[qos], handles[qos]
		go func() {
			res <- pc.Publish(ctx, ph, session.PublishParams{Topic: fmt.Sprintf("loss/q%d", qos), QoS: qos, Payload: []byte{qos}})
		}()
	}
	// Both PUBLISH packets: 2 bytes of fixed header, 9 of topic, 2 of
	// packet identifier, 1 of properties, 1 of payload each.
	for deadline := time.Now().Add(10 * time.Second); proxy.dropped.Load() < 2*15; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the publishes did not reach the broker's link: %d bytes", proxy.dropped.Load())
		}
	}
	mq.stop()
	proxy.holding.Store(false)
	mq.start(t)

	if err := <-results[1]; err != nil {
		t.Fatalf("QoS 1: %v", err)
	}
	expectOutageNotices(t, c, "the client")
	if f := nextMessage(t, c); f.Publish.Topic != "loss/q1" {
		t.Fatalf("QoS 1: got %+v", f)
	}
	err := <-results[2]
	if errCode(err) != session.CodeBrokerUnavailable || !strings.Contains(err.Error(), "may or may not have been delivered") {
		t.Fatalf("QoS 2: %v", err)
	}
}
