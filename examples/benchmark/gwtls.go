package main

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// gwTLSSub is a setup A subscriber over TLS (-tls): a gwclient session on a
// gorilla WebSocket, read by a goroutine of its own. The reactors read raw
// sockets and speak no TLS; this reader costs the generator more (it
// decrypts, and gwclient copies every frame), which -tls runs report as
// the generator's CPU, apart from the gateway's.
type gwTLSSub struct {
	subBase
	c *gwclient.Client
}

var tlsDialer = websocket.Dialer{
	// The gateway's certificate is from Caddy's own CA, which the
	// benchmark does not install.
	TLSClientConfig:  &tls.Config{InsecureSkipVerify: true},
	HandshakeTimeout: 30 * time.Second,
}

func dialGatewayTLS(ctx context.Context, url, topic string, id int, rec *recorder) (*gwTLSSub, error) {
	d := tlsDialer
	c, err := gwclient.DialWith(ctx, &d, url, nil, nil)
	if err != nil {
		return nil, err
	}
	s := &gwTLSSub{c: c}
	s.st.id = id
	h, _, err := c.Connect(ctx, session.ConnectParams{Broker: "main", CleanStart: true})
	if err == nil {
		_, err = c.Subscribe(ctx, h, topic, 0)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	go func() {
		for f := range c.Messages {
			switch {
			case f.Type == transport.TypeMessage:
				rec.onPayload(&s.st, f.Publish.Payload, time.Now().UnixNano())
			case f.Type == transport.TypeNotice && f.Code == session.CodeOverflow:
				s.st.notices.Add(int64(f.Value))
			case f.Type == transport.TypeLost:
				s.end("client lost: " + f.Message)
			}
		}
	}()
	go func() {
		<-c.Done()
		select {
		case f := <-c.Ended:
			s.end("gateway closed the session: " + f.Message)
		default:
			s.end("connection closed")
		}
	}()
	return s, nil
}

func (s *gwTLSSub) close() { s.c.Close() }
