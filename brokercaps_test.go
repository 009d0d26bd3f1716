package mqttgateway

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// startMochi runs a mochi-mqtt broker on a loopback port with the
// capabilities set gives, announced in its CONNACK (Mosquitto has no
// setting for some of them), and returns its port.
func startMochi(t testing.TB, set func(*mqtt.Capabilities), hooks ...mqtt.Hook) int {
	t.Helper()
	_, port := startMochiServer(t, set, hooks...)
	return port
}

// startMochiServer is startMochi, with the broker, for a test to act on
// its clients.
func startMochiServer(t testing.TB, set func(*mqtt.Capabilities), hooks ...mqtt.Hook) (*mqtt.Server, int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	set(caps)
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Capabilities: caps, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	for _, h := range append(hooks, &announceCaps{caps: caps}) {
		if err := srv.AddHook(h, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.AddListener(listeners.NewNet("caps", ln)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, ln.Addr().(*net.TCPAddr).Port
}

// A broker without subscription identifiers (AWS IoT Core is one) still
// serves subscriptions: paho refuses a SUBSCRIBE that carries one, so every
// subscription through such a broker timed out while the reconciler tried
// again every 500 ms.
func TestBrokerWithoutSubscriptionIdentifiers(t *testing.T) {
	port := startMochi(t, func(c *mqtt.Capabilities) { c.SubIDAvailable = 0 })
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", port), "")
	sub, pub := dial(t, url), dial(t, url)
	connectSubscribe(t, sub, "ids/#", 1)
	h := connectSubscribe(t, pub, "other/+", 0)
	if err := pub.Publish(ctx10(t), h, session.PublishParams{Topic: "ids/x", QoS: 1, Payload: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	if f := nextMessage(t, sub); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "hello" {
		t.Fatalf("got %+v, want the message", f)
	}
}

// What a broker says it does not take (QoS above its maximum, retained
// messages, wildcard filters) is refused at once with 4043 and the
// broker's limit in words, not after a timeout.
func TestBrokerCapabilitiesAreRespected(t *testing.T) {
	port := startMochi(t, func(c *mqtt.Capabilities) {
		c.MaximumQos, c.RetainAvailable, c.WildcardSubAvailable = 0, 0, 0
	})
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", port), "")
	c := dial(t, url)
	h := connectSubscribe(t, c, "caps/x", 0)
	ctx := ctx10(t)
	for name, p := range map[string]session.PublishParams{
		"QoS 1":    {Topic: "caps/x", QoS: 1, Payload: []byte("a")},
		"retained": {Topic: "caps/x", Retain: true, Payload: []byte("b")},
	} {
		start := time.Now()
		err := c.Publish(ctx, h, p)
		if errCode(err) != session.CodeBrokerRejected || !strings.Contains(err.Error(), "server") {
			t.Errorf("a %s publish: %v after %v, want %d at once", name, err, time.Since(start), session.CodeBrokerRejected)
		}
	}
	start := time.Now()
	if _, err := c.Subscribe(ctx, h, "caps/#", 0); errCode(err) != session.CodeBrokerRejected || !strings.Contains(err.Error(), "wildcards") {
		t.Errorf("a wildcard subscription: %v after %v, want %d at once", err, time.Since(start), session.CodeBrokerRejected)
	}
	if err := c.Publish(ctx, h, session.PublishParams{Topic: "caps/x", Payload: []byte("fine")}); err != nil {
		t.Fatal(err)
	}
	if f := nextMessage(t, c); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "fine" {
		t.Fatalf("got %+v, want the message", f)
	}
}

// announceCaps makes mochi announce in its CONNACK the capabilities it
// enforces but, apart from Maximum QoS, does not announce.
type announceCaps struct {
	mqtt.HookBase
	caps *mqtt.Capabilities
}

func (h *announceCaps) ID() string { return "announce-caps" }

func (h *announceCaps) Provides(b byte) bool { return b == mqtt.OnPacketEncode }

func (h *announceCaps) OnPacketEncode(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.ReasonCode == 0 {
		p := &pk.Properties
		p.RetainAvailable, p.RetainAvailableFlag = h.caps.RetainAvailable, h.caps.RetainAvailable == 0
		p.WildcardSubAvailable, p.WildcardSubAvailableFlag = h.caps.WildcardSubAvailable, h.caps.WildcardSubAvailable == 0
		p.SubIDAvailable, p.SubIDAvailableFlag = h.caps.SubIDAvailable, h.caps.SubIDAvailable == 0
	}
	return pk
}

// dropOnPayload makes mochi drop the connection of a client that publishes
// the given payload, as a broker does for a reason the gateway cannot check
// beforehand (a plugin's policy, a limit it does not announce).
type dropOnPayload struct {
	mqtt.HookBase
	payload string
	drops   atomic.Int64
}

func (h *dropOnPayload) ID() string { return "drop-on-payload" }

func (h *dropOnPayload) Provides(b byte) bool { return b == mqtt.OnPacketRead }

func (h *dropOnPayload) OnPacketRead(_ *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Publish && string(pk.Payload) == h.payload {
		h.drops.Add(1)
		return pk, packets.ErrRejectPacket // mochi ends the connection
	}
	return pk, nil
}

// A QoS 1 publish the broker drops the connection for, each time paho sends
// it again after reconnecting, would keep the shared connection down for
// everyone. After three connections in a row that end within a second,
// the gateway starts a new broker session without the message, fails its
// publish, and the other sessions get their messages again.
func TestPoisonPublishEndsInAFreshSession(t *testing.T) {
	hook := &dropOnPayload{payload: "poison"}
	port := startMochi(t, func(*mqtt.Capabilities) {}, hook)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", port), "")
	victim, attacker := dial(t, url), dial(t, url)
	connectSubscribe(t, victim, "poison/#", 1)
	h := connectSubscribe(t, attacker, "elsewhere", 0)
	start := time.Now()
	err := attacker.Publish(ctx10(t), h, session.PublishParams{Topic: "poison/x", QoS: 1, Payload: []byte("poison")})
	if errCode(err) != session.CodeBrokerUnavailable || !strings.Contains(err.Error(), "new broker session") {
		t.Errorf("the poison publish: %v after %v, want %d naming the new broker session", err, time.Since(start), session.CodeBrokerUnavailable)
	}
	if n := hook.drops.Load(); n > 4 {
		t.Errorf("the broker dropped the connection %d times", n)
	}
	// The shared connection serves everyone again; the victim saw the
	// outage in notices, and no copy of the poison.
	if err := attacker.Publish(ctx10(t), h, session.PublishParams{Topic: "poison/y", QoS: 1, Payload: []byte("fine")}); err != nil {
		t.Fatal(err)
	}
	for {
		f := nextMessage(t, victim)
		if f.Type == transport.TypeMessage {
			if string(f.Publish.Payload) != "fine" {
				t.Fatalf("the other session got %q, want \"fine\"", f.Publish.Payload)
			}
			break
		}
	}
}

// mqtt311Broker answers every CONNECT as an MQTT 3.1.1 broker must answer
// a protocol level it does not speak (MQTT 3.1.1, 3.1.2.2): CONNACK with
// return code 1, then it closes. (A 3.1.1-only broker that can run here,
// RabbitMQ 3.10, closes without a word instead.) It returns the port.
func mqtt311Broker(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(make([]byte, 256)); err == nil { // the CONNECT
					c.Write([]byte{0x20, 0x02, 0x00, 0x01})
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// A broker that speaks only MQTT 3.1.1 is named as such, and refused at
// once (4042), for a client on the shared connection too: it used to wait
// connect_timeout for "connection failed".
func TestABrokerThatSpeaksOnlyMQTT311IsNamed(t *testing.T) {
	port := mqtt311Broker(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d {\n\t\t\tconnect_timeout 1h\n\t\t}", port), "")
	c := dial(t, url)
	for _, clientID := range []string{"", "dedicated-311"} {
		_, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: clientID})
		if errCode(err) != session.CodeBrokerRefused || !strings.Contains(err.Error(), "MQTT 3.1.1, not MQTT 5") {
			t.Errorf("client id %q: %v, want %d saying the broker speaks MQTT 3.1.1", clientID, err, session.CodeBrokerRefused)
		}
	}
}

// A broker that ends the shared connection with a reason (a node draining
// for maintenance) has it said to the clients in their outage notice, as
// a dedicated client hears it in LOST: it used to be "unavailable" alone.
func TestTheSharedOutageNoticeSaysTheBrokersReason(t *testing.T) {
	srv, port := startMochiServer(t, func(*mqtt.Capabilities) {})
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", port), "")
	c := dial(t, url)
	connectSubscribe(t, c, "drain/#", 0)
	var gateway *mqtt.Client
	for _, cl := range srv.Clients.GetAll() {
		if !cl.Net.Inline {
			gateway = cl
		}
	}
	if gateway == nil {
		t.Fatal("the gateway's shared connection is not among the broker's clients")
	}
	srv.DisconnectClient(gateway, packets.Code{Code: 0x89, Reason: "node draining for maintenance"})
	for {
		f := nextMessage(t, c)
		if f.Type != transport.TypeNotice {
			continue
		}
		if f.Code != session.CodeBrokerUnavailable || !strings.Contains(f.Message, "0x89 server busy: node draining for maintenance") {
			t.Fatalf("notice %d %q, want %d with the broker's reason", f.Code, f.Message, session.CodeBrokerUnavailable)
		}
		break
	}
	// The gateway reconnects at once. It must be back before the test
	// ends, or the broker's Close (the test's cleanup) races mochi's
	// accepting that connection, which the race detector reports.
	for f := nextMessage(t, c); f.Type != transport.TypeNotice || f.Code != session.CodeOK; f = nextMessage(t, c) {
	}
}
