package session

import (
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"
	mochipackets "github.com/mochi-mqtt/server/v2/packets"
)

// The interleaving of paho.golang's issue 343, made to happen: the paho
// client of a connection that is gone stores a QoS 1 publish after the next
// connection's CONNACK resent the session (autopaho handed that client to
// the publish just before the cut). The message reaches the broker on the
// new connection, once, and the publish is acknowledged; paho alone would
// write it to the closed connection and wait until it times out.
func TestPublishStoredAfterReconnectReachesBroker(t *testing.T) {
	_, got, connect := resendRig(t)
	old, oldConn := connect()
	oldConn.Conn.Close() // the cut
	<-old.Done()
	connect()
	publishOnceThrough(t, old, got, "stored late")
}

// The same, with an identifier the new connection's CONNACK had resent for
// a publish since answered: paho gives identifiers in turn, so after a wrap
// a resent one is another publish's. That publish still reaches the broker.
func TestPublishReusingResentIdentifierReachesBroker(t *testing.T) {
	sess, got, connect := resendRig(t)
	old, oldConn := connect()
	oldConn.Conn.Close()
	<-old.Done()
	connect()
	// As if the CONNACK had resent publish 1 and the broker answered it.
	sess.answers.Lock()
	sess.resent[1] = true
	sess.answers.Unlock()
	puback := packets.NewControlPacket(packets.PUBACK)
	puback.Content.(*packets.Puback).PacketID = 1
	if err := sess.PacketReceived(puback, nil); err != nil {
		t.Fatal(err)
	}
	publishOnceThrough(t, old, got, "identifier 1 again")
}

// resendRig starts a broker whose subscriber sends what it gets to got,
// and gives connections of one paho session, sess, to it, each a paho
// client of its own.
func resendRig(t *testing.T) (sess *resendingSession, got chan string, connect func() (*paho.Client, *brokerConn)) {
	broker, err := StartEmbedded("", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { broker.Close() })
	got = make(chan string, 10)
	broker.Server().Subscribe("resend/#", 1, func(_ *mqtt.Client, _ mochipackets.Subscription, pk mochipackets.Packet) {
		got <- string(pk.Payload)
	})
	sess = newResendingSession()
	connect = func() (*paho.Client, *brokerConn) {
		raw, err := net.Dial("tcp", broker.URL().Host)
		if err != nil {
			t.Fatal(err)
		}
		conn := &brokerConn{Conn: raw, unsent: sess.unsent}
		c := paho.NewClient(paho.ClientConfig{ClientID: "resend-test", Conn: conn, Session: sess})
		expiry := uint32(60)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := c.Connect(ctx, &paho.Connect{ClientID: "resend-test", KeepAlive: 30,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
		return c, conn
	}
	return sess, got, connect
}

// publishOnceThrough publishes message at QoS 1 through c, whose connection
// is gone, and expects it acknowledged and at the broker once.
func publishOnceThrough(t *testing.T, c *paho.Client, got chan string, message string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Publish(ctx, &paho.Publish{Topic: "resend/x", QoS: 1, Payload: []byte(message)}); err != nil {
		t.Fatalf("the publish was not acknowledged: %v", err)
	}
	select {
	case m := <-got:
		if m != message {
			t.Fatalf("the broker got %q", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the broker's subscriber got nothing")
	}
	select {
	case m := <-got:
		t.Fatalf("a second copy: %q", m)
	case <-time.After(300 * time.Millisecond):
	}
}

// A PUBREC read from a connection just lost, handled after paho's state
// heard of the loss: the gateway goes on (paho alone would write its PUBREL
// to no connection, a nil dereference), and the next connection sends the
// PUBLISH again, for the broker to answer anew.
func TestPubrecAfterConnectionLost(t *testing.T) {
	sess := newResendingSession()
	expiry := uint32(60)
	cp := &packets.Connect{ClientID: "pubrec", Properties: &packets.Properties{SessionExpiryInterval: &expiry}}
	a, aPeer := net.Pipe()
	defer a.Close()
	go io.Copy(io.Discard, aPeer)
	if err := sess.ConAckReceived(&brokerConn{Conn: a}, cp, &packets.Connack{}); err != nil {
		t.Fatal(err)
	}
	pub := &packets.Publish{Topic: "t", QoS: 2, Payload: []byte("x")}
	if err := sess.AddToSession(context.Background(), pub, make(chan packets.ControlPacket, 1)); err != nil {
		t.Fatal(err)
	}
	sess.ConnectionLost(nil)
	pubrec := &packets.ControlPacket{FixedHeader: packets.FixedHeader{Type: packets.PUBREC}, Content: &packets.Pubrec{PacketID: pub.PacketID}}
	if err := sess.PacketReceived(pubrec, nil); err != nil {
		t.Fatal(err)
	}

	b, bPeer := net.Pipe()
	defer b.Close()
	sent := make(chan *packets.ControlPacket, 1)
	go func() {
		p, _ := packets.ReadPacket(bPeer)
		sent <- p
	}()
	if err := sess.ConAckReceived(&brokerConn{Conn: b}, cp, &packets.Connack{SessionPresent: true}); err != nil {
		t.Fatal(err)
	}
	p := <-sent
	if p == nil || p.Type != packets.PUBLISH {
		t.Fatalf("the next connection got %v, want the PUBLISH again", p)
	}
	if again := p.Content.(*packets.Publish); again.PacketID != pub.PacketID || !again.Duplicate {
		t.Fatalf("sent again: %+v", again)
	}
}

// A publish waiting for send quota when the next connection's CONNACK
// arrives (paho's state assumes the old connection lost): it ends, to be
// sent again by the gateway, before the CONNACK replaces the quota it
// waits on. Without that order the race detector sees paho read the quota
// as the CONNACK writes it.
func TestPublishWaitingForQuotaAtReconnect(t *testing.T) {
	sess := newResendingSession()
	expiry, one := uint32(60), uint16(1)
	cp := &packets.Connect{ClientID: "quota", Properties: &packets.Properties{SessionExpiryInterval: &expiry}}
	a, aPeer := net.Pipe()
	defer a.Close()
	go io.Copy(io.Discard, aPeer)
	if err := sess.ConAckReceived(&brokerConn{Conn: a}, cp, &packets.Connack{Properties: &packets.Properties{ReceiveMaximum: &one}}); err != nil {
		t.Fatal(err)
	}
	if err := sess.AddToSession(context.Background(), &packets.Publish{Topic: "t", QoS: 1}, make(chan packets.ControlPacket, 1)); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() {
		waiting <- sess.AddToSession(context.Background(), &packets.Publish{Topic: "t", QoS: 1}, make(chan packets.ControlPacket, 1))
	}()
	for !waitingOnQuota() {
		time.Sleep(time.Millisecond)
	}

	b, bPeer := net.Pipe()
	defer b.Close()
	go io.Copy(io.Discard, bPeer)
	acked := make(chan error, 1)
	go func() { acked <- sess.ConAckReceived(&brokerConn{Conn: b}, cp, &packets.Connack{SessionPresent: true}) }()
	select {
	case err := <-acked:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the CONNACK waits for ever on the publish waiting for quota")
	}
	select {
	case err := <-waiting:
		if err == nil {
			t.Fatal("a publish begun on the lost connection was stored after the reconnect")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting publish never ended")
	}
}

// waitingOnQuota says whether a goroutine waits in paho's send quota.
func waitingOnQuota() bool {
	buf := make([]byte, 1<<20)
	return bytes.Contains(buf[:runtime.Stack(buf, true)], []byte("(*sendQuota).acquire"))
}
