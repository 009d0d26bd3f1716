package mqttgateway

import (
	"fmt"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// gatewayWith311 starts a gateway whose broker "main" on port speaks MQTT
// 3.1.1 to the gateway (mqtt_version 3.1.1), and returns its URL.
func gatewayWith311(t *testing.T, port int) string {
	t.Helper()
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d {\n\t\t\tmqtt_version 3.1.1\n\t\t}", port), "")
	return url
}

// A broker that speaks only MQTT 3.1.1 (RabbitMQ before 3.13, ActiveMQ
// Classic) serves web clients as an MQTT 5 one does: the gateway connects
// at protocol level 4, and subscriptions, QoS 0-2 publishes both ways and
// unsubscriptions work. What 3.1.1 cannot carry is refused (4043), where
// dropping it would go unnoticed: message properties, and No Local on a
// dedicated connection, whose broker would have to apply it.
func TestABrokerThatSpeaksMQTT311(t *testing.T) {
	srv, port := startMochiServer(t, func(*mqtt.Capabilities) {})
	c := dial(t, gatewayWith311(t, port))
	ctx := ctx10(t)
	h := connectSubscribe(t, c, "v3/#", 2)
	for _, cl := range srv.Clients.GetAll() {
		if !cl.Net.Inline && cl.Properties.ProtocolVersion != 4 {
			t.Fatalf("the gateway connected with protocol version %d, want 4 (MQTT 3.1.1)", cl.Properties.ProtocolVersion)
		}
	}
	for qos := range byte(3) {
		payload := fmt.Sprintf("at qos %d", qos)
		if err := c.Publish(ctx, h, session.PublishParams{Topic: "v3/x", QoS: qos, Payload: []byte(payload)}); err != nil {
			t.Fatalf("publish at QoS %d: %v", qos, err)
		}
		if f := nextMessage(t, c); f.Type != transport.TypeMessage || string(f.Publish.Payload) != payload || f.Publish.QoS != qos {
			t.Fatalf("got %+v, want %q at QoS %d", f, payload, qos)
		}
	}
	if err := c.Publish(ctx, h, session.PublishParams{Topic: "v3/x", Props: &session.Props{ContentType: "text/plain"}, Payload: []byte("typed")}); errCode(err) != session.CodeBrokerRejected || !strings.Contains(err.Error(), "MQTT 3.1.1, which has no message properties") {
		t.Fatalf("a publish with a content type: %v, want 4043", err)
	}
	if err := c.Unsubscribe(ctx, h, "v3/#"); err != nil {
		t.Fatalf("unsubscribe: %v", err)
	}

	d := dial(t, gatewayWith311(t, port))
	hd, _, err := d.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: "v3-device", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.SubscribeWith(ctx, hd, "v3/own", 1, session.SubscribeOptions{NoLocal: true}); errCode(err) != session.CodeBrokerRejected || !strings.Contains(err.Error(), "No Local") {
		t.Fatalf("No Local on a dedicated connection: %v, want 4043", err)
	}
	if _, err := d.Subscribe(ctx, hd, "v3/own", 1); err != nil {
		t.Fatal(err)
	}
	if err := d.Publish(ctx, hd, session.PublishParams{Topic: "v3/own", QoS: 1, Payload: []byte("mine")}); err != nil {
		t.Fatal(err)
	}
	if f := nextMessage(t, d); string(f.Publish.Payload) != "mine" {
		t.Fatalf("the dedicated client got %+v", f)
	}
}

// On the shared connection to an MQTT 3.1.1 broker, a live retained
// message arrives without the retain flag (MQTT 3.1.1, 3.3.1.3), so the
// gateway cannot keep a current copy: a late subscriber gets the retained
// value the broker holds now, not the one of the first SUBSCRIBE, and the
// sessions subscribed before do not get it again.
func TestRetainedMessagesThroughAnMQTT311Broker(t *testing.T) {
	mq := startMosquitto(t)
	url := gatewayWith311(t, mq.port)
	mosquittoPub(t, mq.port, "-V", "mqttv311", "-r", "-t", "r/x", "-m", "v1")
	early := dial(t, url)
	connectSubscribe(t, early, "r/#", 0)
	if f := nextMessage(t, early); string(f.Publish.Payload) != "v1" || !f.Publish.Retain {
		t.Fatalf("the first subscriber got %q (retained %v), want v1 retained", f.Publish.Payload, f.Publish.Retain)
	}
	mosquittoPub(t, mq.port, "-V", "mqttv311", "-r", "-t", "r/x", "-m", "v2")
	if f := nextMessage(t, early); string(f.Publish.Payload) != "v2" || f.Publish.Retain {
		t.Fatalf("the live update: %q (retained %v), want v2 not retained", f.Publish.Payload, f.Publish.Retain)
	}
	// (A SUBSCRIBE within answerSettle, 250 ms, of the first one's SUBACK
	// would find the first one's answer possibly on its way still: the
	// first subscriber would get the late one's answer too, a retained
	// message twice rather than none.)
	time.Sleep(300 * time.Millisecond)
	late := dial(t, url)
	connectSubscribe(t, late, "r/#", 0)
	if f := nextMessage(t, late); string(f.Publish.Payload) != "v2" || !f.Publish.Retain {
		t.Fatalf("the late subscriber got %q (retained %v), want v2 retained", f.Publish.Payload, f.Publish.Retain)
	}
	// The broker's answer to the late SUBSCRIBE is not news to the first
	// subscriber: the next message it gets is the next publication.
	mosquittoPub(t, mq.port, "-V", "mqttv311", "-t", "r/x", "-m", "v3")
	for _, c := range []*gwclient.Client{early, late} {
		if f := nextMessage(t, c); string(f.Publish.Payload) != "v3" {
			t.Fatalf("got %q, want the next publication, v3", f.Publish.Payload)
		}
	}
}

// A dedicated client's persistent session on an MQTT 3.1.1 broker: a
// session expiry asks for clean session 0, and the broker keeps the QoS 1
// messages published while the client was away.
func TestAPersistentSessionOnAnMQTT311Broker(t *testing.T) {
	mq := startMosquitto(t)
	url := gatewayWith311(t, mq.port)
	ctx := ctx10(t)
	params := session.ConnectParams{Broker: "main", ClientID: "v3-persistent", SessionExpiry: 3600}
	c := dial(t, url)
	h, _, err := c.Connect(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, h, "away/x", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Disconnect(ctx, h); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // the broker has the DISCONNECT
	mosquittoPub(t, mq.port, "-V", "mqttv311", "-q", "1", "-t", "away/x", "-m", "while away")
	if _, _, err := c.Connect(ctx, params); err != nil {
		t.Fatal(err)
	}
	if f := nextMessage(t, c); string(f.Publish.Payload) != "while away" {
		t.Fatalf("got %+v, want the message published while away", f)
	}
	// A fresh session that outlives its connection (Clean Start with an
	// expiry) cannot be asked of a 3.1.1 broker: clean session 1 would end
	// it with the connection, and the messages meanwhile would be lost.
	fresh := session.ConnectParams{Broker: "main", ClientID: "v3-fresh", CleanStart: true, SessionExpiry: 3600}
	if _, _, err := c.Connect(ctx, fresh); errCode(err) != session.CodeBrokerRejected || !strings.Contains(err.Error(), "Clean Start with a session expiry") {
		t.Fatalf("Clean Start with an expiry: %v, want 4043", err)
	}
}

// MQTT 5 allows a password without a user name (a token), MQTT 3.1.1 does
// not: Mosquitto closed the connection without a word, and the client
// waited connect_timeout for a misleading "closed without answering".
func TestAPasswordWithoutUserNameOnAnMQTT311Broker(t *testing.T) {
	mq := startMosquitto(t)
	_, _, err := dial(t, gatewayWith311(t, mq.port)).Connect(ctx10(t), session.ConnectParams{Broker: "main", Password: []byte("token")})
	if err != nil {
		t.Fatalf("a CONNECT with a password only: %v", err)
	}
}

// A port that answers in HTTP (Mosquitto's WebSocket listener given as
// mqtt://) is named at once with 3.1.1 too: the translator took the answer
// for packets, and the client waited connect_timeout for "connection
// failed".
func TestAnHTTPAnswerToAn311Connect(t *testing.T) {
	wsPort := freePort(t)
	startMosquittoWith(t, func(string) string {
		return fmt.Sprintf("allow_anonymous true\nlistener %d 127.0.0.1\nprotocol websockets\n", wsPort)
	})
	waitPort(t, wsPort)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d {\n\t\t\tmqtt_version 3.1.1\n\t\t\tconnect_timeout 1h\n\t\t}", wsPort), "")
	_, _, err := dial(t, url).Connect(ctx10(t), session.ConnectParams{Broker: "main"})
	if errCode(err) != session.CodeBrokerUnavailable || !strings.Contains(err.Error(), "answered in HTTP") {
		t.Fatalf("%v, want 4041 saying the broker answered in HTTP", err)
	}
}

// An MQTT 3.1.1 broker's refused login is told as an MQTT 5 one's is: its
// CONNACK return code in MQTT 5's words (4042).
func TestAnMQTT311BrokerRefusingTheLogin(t *testing.T) {
	mq, _ := mosquittoWithLogins(t, [2]string{"gw", "s3cret"})
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d {\n\t\t\tmqtt_version 3.1.1\n\t\t\tusername gw\n\t\t\tpassword wrong\n\t\t}", mq.port), "")
	_, _, err := dial(t, url).Connect(ctx10(t), session.ConnectParams{Broker: "main"})
	if errCode(err) != session.CodeBrokerRefused || !strings.Contains(err.Error(), "not authorized") && !strings.Contains(err.Error(), "bad user name or password") {
		t.Fatalf("a wrong password: %v, want 4042 with the broker's reason", err)
	}
}
