package session

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/net/proxy"
)

// dialBroker makes one attempt at a network connection to a broker, for
// the schemes a broker url may have. The gateway dials rather than leaving
// it to autopaho so that each connection is a *brokerConn its session state
// can tell apart (see resend.go). It does what autopaho's dialers do: the
// all_proxy environment variable for TCP (in lower case only: a SOCKS proxy
// set for other programs as ALL_PROXY must not take the gateway's broker
// connections, loopback ones included), the http(s)_proxy ones and the
// "mqtt" subprotocol for WebSocket.
func dialBroker(ctx context.Context, u *url.URL, tlsCfg *tls.Config, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch u.Scheme {
	case "mqtt":
		return dialTCP(ctx, u.Host)
	case "mqtts":
		raw, err := dialTCP(ctx, u.Host)
		if err != nil {
			return nil, err
		}
		conn := tls.Client(raw, tlsCfg)
		if err := conn.HandshakeContext(ctx); err != nil {
			raw.Close()
			if closedByPeer(err) {
				return nil, &unanswered{err, "TLS: the broker closed the connection in the handshake (is the port a TLS one? mqtt:// is plain TCP)", false}
			}
			return nil, err
		}
		return conn, nil
	case "ws", "wss":
		d := *websocket.DefaultDialer
		d.TLSClientConfig = tlsCfg
		d.Subprotocols = []string{"mqtt"}
		ws, _, err := d.DialContext(ctx, u.String(), nil)
		if err != nil && closedByPeer(err) && u.Scheme == "ws" {
			return nil, &unanswered{err, "the broker closed the connection without answering the WebSocket upgrade (not a WebSocket port? a TLS one needs wss://)", false}
		}
		if err != nil {
			return nil, fmt.Errorf("websocket connection failed: %w", err)
		}
		return &wsStream{Conn: ws}, nil
	}
	return nil, fmt.Errorf("unsupported scheme %q", u.Scheme)
}

// unanswered is a connection the broker closed without a word, or answered
// in HTTP, which usually means the URL's scheme does not fit the port: a
// plain MQTT port closes an mqtts:// handshake or a ws:// upgrade request,
// a TLS port closes on an mqtt:// CONNECT, a WebSocket port answers one in
// HTTP. (A broker that takes no more connections may close without a word
// too.) Without it, all an operator reads is "connection reset" or
// "connection failed".
type unanswered struct {
	err  error
	says string // what dialCause says
	// answered: the broker answered, not in MQTT 5, and will answer the
	// same way again: waiting clients are told at once, as of a CONNACK
	// that refuses, not after connect_timeout.
	answered bool
}

// errMQTT311 is an MQTT 3.1.1 broker's CONNACK: a refusal of the
// protocol, which its clients hear as such (4042).
var errMQTT311 = errors.New("an MQTT 3.1.1 CONNACK")

func (e *unanswered) Error() string { return e.says + ": " + e.err.Error() }
func (e *unanswered) Unwrap() error { return e.err }

// closedByPeer reports whether err is the other side ending the
// connection (a FIN or a reset).
func closedByPeer(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

func dialTCP(ctx context.Context, addr string) (net.Conn, error) {
	if os.Getenv("all_proxy") == "" {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	return proxy.Dial(ctx, "tcp", addr)
}

// wsStream is a WebSocket connection as the byte stream MQTT runs on: each
// Write is one binary message, and Read goes on from one message to the
// next. Writes are serialized by the brokerConn around it.
type wsStream struct {
	*websocket.Conn
	readMu sync.Mutex
	r      io.Reader // the message being read, nil between messages
}

func (c *wsStream) Write(p []byte) (int, error) {
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeParts writes the buffers of one MQTT packet as one message.
func (c *wsStream) writeParts(parts [][]byte) error {
	w, err := c.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			w.Close()
			return err
		}
	}
	return w.Close()
}

func (c *wsStream) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	for {
		if c.r == nil {
			var err error
			if _, c.r, err = c.NextReader(); err != nil {
				return 0, err
			}
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// SetDeadline sets both deadlines. (A WebSocket connection whose deadline
// passed is broken for good, unlike a net.Conn; paho sets none.)
func (c *wsStream) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
