package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"
)

// mqttSub is a setup B subscriber: a paho.golang MQTT 5 client over a
// gorilla WebSocket to Mosquitto's WebSocket listener (subprotocol "mqtt"),
// subscribed to the topic at QoS 0. paho allocates per received packet;
// that costs the load generator, not the server being measured.
type mqttSub struct {
	subBase
	rec  *recorder
	c    *paho.Client
	conn *wsNetConn
}

var mqttDialer = websocket.Dialer{
	Subprotocols:     []string{"mqtt"},
	ReadBufferSize:   4096,
	WriteBufferSize:  512,
	HandshakeTimeout: 30 * time.Second,
}

// receiveMaximum is announced in CONNECT. paho sizes a per-client channel of
// received publishes by it (65535 pointers by default: 512 KiB per client,
// gigabytes at N = 10,000). It bounds only QoS 1/2 in flight at the broker;
// QoS 0 is governed by max_queued_messages (see startMosquitto).
var receiveMaximum uint16 = 256

func dialMosquitto(ctx context.Context, url, topic string, id int, rec *recorder) (*mqttSub, error) {
	ws, _, err := mqttDialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	s := &mqttSub{rec: rec, conn: &wsNetConn{Conn: ws}}
	s.st.id = id
	s.c = paho.NewClient(paho.ClientConfig{
		Conn: s.conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			s.rec.onPayload(&s.st, pr.Packet.Payload, time.Now().UnixNano())
			return true, nil
		}},
		OnClientError:      func(err error) { s.end(err.Error()) },
		OnServerDisconnect: func(d *paho.Disconnect) { s.end(fmt.Sprintf("server disconnect: reason 0x%02x", d.ReasonCode)) },
	})
	ca, err := s.c.Connect(ctx, &paho.Connect{
		ClientID: fmt.Sprintf("bench-sub-%d", id), KeepAlive: 60, CleanStart: true,
		Properties: &paho.ConnectProperties{ReceiveMaximum: &receiveMaximum},
	})
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("connect: %w", err)
	}
	if ca.ReasonCode != 0 {
		ws.Close()
		return nil, fmt.Errorf("connack: reason 0x%02x", ca.ReasonCode)
	}
	sa, err := s.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: topic, QoS: 0}}})
	if err != nil {
		ws.Close()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	if len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
		ws.Close()
		return nil, fmt.Errorf("suback: %v", sa.Reasons)
	}
	return s, nil
}

func (s *mqttSub) close() {
	s.end("closed") // not a failure: the run is over
	s.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	select {
	case <-s.c.Done():
	case <-ctx.Done():
	}
}

// wsNetConn presents a WebSocket as the byte stream paho reads and writes
// (MQTT over WebSocket: packets may span binary messages either way). It
// is a sync.Locker so paho serialises its writes (gorilla allows one
// writer at a time).
type wsNetConn struct {
	*websocket.Conn
	r   io.Reader
	rmu sync.Mutex
	sync.Mutex
}

func (c *wsNetConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.r == nil {
			_, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsNetConn) Write(p []byte) (int, error) {
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsNetConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

var _ net.Conn = (*wsNetConn)(nil)
