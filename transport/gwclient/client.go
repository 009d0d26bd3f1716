// Package gwclient is a minimal Go client of the gateway's session protocol
// over WebSocket. The gateway's tests and benchmarks use it; Go programs
// that must reach MQTT through the gateway can too, knowing what it leaves
// to them: it sends no heartbeat of its own (a session that only receives
// must call Ping at least every Opened.Heartbeat milliseconds, or the
// gateway counts it gone after 2 × heartbeat + 5 s), and it never rebinds
// a dropped connection (Done tells; dial again for a new session).
package gwclient

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// Client is one gateway session over one WebSocket connection.
type Client struct {
	ws      *websocket.Conn
	Opened  transport.Frame // the OPENED frame
	Ended   chan transport.Frame
	wmu     sync.Mutex
	req     atomic.Uint64
	handle  atomic.Uint64
	mu      sync.Mutex
	pending map[uint64]chan transport.Frame
	// Messages receives MESSAGE, LOST and NOTICE frames. The reader blocks
	// when it is full, as a slow application would.
	Messages chan transport.Frame
	done     chan struct{}
	// BytesIn counts the bytes of the WebSocket messages received.
	BytesIn atomic.Int64
}

// Dial opens a session at a gateway's WebSocket URL (ws://host/base/ws).
func Dial(ctx context.Context, url string, header http.Header) (*Client, error) {
	return DialWith(ctx, &websocket.Dialer{}, url, header, nil)
}

// DialWith opens a session with a dialer of the caller's and OPEN options
// (such as max_bandwidth).
func DialWith(ctx context.Context, d *websocket.Dialer, url string, header http.Header, options []transport.KV) (*Client, error) {
	return DialAs(ctx, d, url, header, "", nil, options)
}

// DialAs opens a session with credentials for the authenticate hook.
func DialAs(ctx context.Context, d *websocket.Dialer, url string, header http.Header, user string, password []byte, options []transport.KV) (*Client, error) {
	d.Subprotocols = []string{transport.Subprotocol}
	ws, _, err := d.DialContext(ctx, url, header)
	if err != nil {
		return nil, err
	}
	c := &Client{ws: ws, pending: map[uint64]chan transport.Frame{}, Messages: make(chan transport.Frame, 4096),
		Ended: make(chan transport.Frame, 1), done: make(chan struct{})}
	if err := c.write(transport.AppendOpen(nil, user, password, options)); err != nil {
		ws.Close()
		return nil, err
	}
	_, unit, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return nil, err
	}
	err = transport.SplitUnit(unit, func(b []byte) error { return transport.Decode(b, &c.Opened) })
	if err == nil && c.Opened.Type == transport.TypeEnd {
		ws.Close()
		return nil, &Error{c.Opened.Code, c.Opened.Message}
	}
	if err != nil || c.Opened.Type != transport.TypeOpened {
		ws.Close()
		return nil, fmt.Errorf("no OPENED: %v %+v", err, c.Opened)
	}
	go c.read()
	return c, nil
}

func (c *Client) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.ws.WriteMessage(websocket.BinaryMessage, b)
}

// Ping sends a PING: the heartbeat a client owes the gateway when it has
// sent nothing else for Opened.Heartbeat milliseconds.
func (c *Client) Ping() error { return c.write(transport.AppendPing(nil)) }

// WriteRaw sends a transport unit as is (for tests of bad input).
func (c *Client) WriteRaw(b []byte) error { return c.write(b) }

func (c *Client) read() {
	defer close(c.done)
	defer close(c.Messages)
	for {
		_, unit, err := c.ws.ReadMessage()
		c.BytesIn.Add(int64(len(unit)))
		if err != nil {
			c.failPending(err)
			return
		}
		err = transport.SplitUnit(unit, func(b []byte) error {
			var f transport.Frame
			if err := transport.Decode(b, &f); err != nil {
				return err
			}
			switch f.Type {
			case transport.TypeResult:
				c.mu.Lock()
				ch := c.pending[f.Req]
				delete(c.pending, f.Req)
				c.mu.Unlock()
				if ch != nil {
					ch <- f
				}
			case transport.TypeMessage, transport.TypeLost, transport.TypeNotice, transport.TypeUnsubscribed:
				c.Messages <- f
			case transport.TypeEnd:
				c.Ended <- f
			}
			return nil
		})
		if err != nil {
			c.failPending(err)
			return
		}
	}
}

func (c *Client) failPending(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for req, ch := range c.pending {
		ch <- transport.Frame{Type: transport.TypeResult, Req: req, Code: session.CodeInternal, Message: err.Error()}
		delete(c.pending, req)
	}
}

// Error is a failed request's code and message.
type Error struct {
	Code    session.Code
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s (%d)", e.Message, e.Code) }

func (c *Client) request(ctx context.Context, build func(req uint64) []byte) (uint64, error) {
	f, err := c.requestResult(ctx, build)
	return f.Value, err
}

// requestResult sends a request and returns its RESULT.
func (c *Client) requestResult(ctx context.Context, build func(req uint64) []byte) (transport.Frame, error) {
	ch, err := c.send(build)
	if err != nil {
		return transport.Frame{}, err
	}
	return c.await(ctx, ch)
}

// send writes a request; its RESULT comes on the channel.
func (c *Client) send(build func(req uint64) []byte) (chan transport.Frame, error) {
	req := c.req.Add(1)
	ch := make(chan transport.Frame, 1)
	c.mu.Lock()
	c.pending[req] = ch
	c.mu.Unlock()
	if err := c.write(build(req)); err != nil {
		return nil, err
	}
	return ch, nil
}

// await waits for the RESULT of a request sent.
func (c *Client) await(ctx context.Context, ch chan transport.Frame) (transport.Frame, error) {
	select {
	case f := <-ch:
		if f.Code != 0 {
			return transport.Frame{}, &Error{f.Code, f.Message}
		}
		return f, nil
	case <-ctx.Done():
		return transport.Frame{}, ctx.Err()
	case <-c.done:
		return transport.Frame{}, errors.New("connection closed")
	}
}

// async sends a request and returns once it is written, with a channel
// that gets its outcome. Requests sent one after another this way reach
// the gateway in that order without waiting for each other's results, as
// a client that pipelines its requests sends them.
func (c *Client) async(build func(req uint64) []byte) (<-chan error, error) {
	ch, err := c.send(build)
	if err != nil {
		return nil, err
	}
	out := make(chan error, 1)
	go func() {
		_, err := c.await(context.Background(), ch)
		out <- err
	}()
	return out, nil
}

// Connect attaches a broker client and returns its handle and stream.
func (c *Client) Connect(ctx context.Context, p session.ConnectParams) (handle, stream uint64, err error) {
	handle = c.handle.Add(1)
	stream, err = c.request(ctx, func(req uint64) []byte { return transport.AppendConnect(nil, req, handle, &p) })
	return handle, stream, err
}

// ConnectSession is Connect, also returning whether the broker kept a
// session for the client ID: the session must have been opened with the
// option session_present.
func (c *Client) ConnectSession(ctx context.Context, p session.ConnectParams) (handle, stream uint64, present bool, err error) {
	handle = c.handle.Add(1)
	f, err := c.requestResult(ctx, func(req uint64) []byte { return transport.AppendConnect(nil, req, handle, &p) })
	if err == nil && !f.HasFlags {
		err = errors.New("the CONNECT result has no flags")
	}
	return handle, f.Value, f.SessionPresent, err
}

// Subscribe subscribes a client and returns the granted QoS.
func (c *Client) Subscribe(ctx context.Context, handle uint64, filter string, qos byte) (byte, error) {
	g, err := c.request(ctx, func(req uint64) []byte { return transport.AppendSubscribe(nil, req, handle, filter, qos, 0) })
	return byte(g), err
}

// SubscribeWith subscribes a client with MQTT 5 subscription options.
func (c *Client) SubscribeWith(ctx context.Context, handle uint64, filter string, qos byte, o session.SubscribeOptions) (byte, error) {
	g, err := c.request(ctx, func(req uint64) []byte { return transport.AppendSubscribeWith(nil, req, handle, filter, qos, o, 0) })
	return byte(g), err
}

// SubscribeLimited subscribes with a frequency limit in messages per second.
func (c *Client) SubscribeLimited(ctx context.Context, handle uint64, filter string, qos byte, perSecond float64) (byte, error) {
	g, err := c.request(ctx, func(req uint64) []byte {
		return transport.AppendSubscribe(nil, req, handle, filter, qos, uint64(perSecond*1000))
	})
	return byte(g), err
}

// SetFrequency changes a subscription's frequency limit.
func (c *Client) SetFrequency(ctx context.Context, handle uint64, filter string, perSecond float64) error {
	_, err := c.request(ctx, func(req uint64) []byte {
		return transport.AppendFrequency(nil, req, handle, filter, uint64(perSecond*1000))
	})
	return err
}

// SetBandwidth caps the session's bandwidth and returns the cap in force.
func (c *Client) SetBandwidth(ctx context.Context, bytesPerSecond uint64) (uint64, error) {
	return c.request(ctx, func(req uint64) []byte { return transport.AppendBandwidth(nil, req, bytesPerSecond) })
}

// Disconnect detaches a client from its broker.
func (c *Client) Disconnect(ctx context.Context, handle uint64) error {
	_, err := c.request(ctx, func(req uint64) []byte { return transport.AppendDisconnect(nil, req, handle) })
	return err
}

// DisconnectAsync is Disconnect without waiting for the result (async).
func (c *Client) DisconnectAsync(handle uint64) (<-chan error, error) {
	return c.async(func(req uint64) []byte { return transport.AppendDisconnect(nil, req, handle) })
}

// Unsubscribe removes a subscription.
func (c *Client) Unsubscribe(ctx context.Context, handle uint64, filter string) error {
	_, err := c.request(ctx, func(req uint64) []byte { return transport.AppendUnsubscribe(nil, req, handle, filter) })
	return err
}

// UnsubscribeAsync is Unsubscribe without waiting for the result (async).
func (c *Client) UnsubscribeAsync(handle uint64, filter string) (<-chan error, error) {
	return c.async(func(req uint64) []byte { return transport.AppendUnsubscribe(nil, req, handle, filter) })
}

// Publish publishes and waits for the broker flow to complete.
func (c *Client) Publish(ctx context.Context, handle uint64, p session.PublishParams) error {
	_, err := c.request(ctx, func(req uint64) []byte { return transport.AppendPublish(nil, req, handle, &p) })
	return err
}

// PublishAsync is Publish without waiting for the result (async).
func (c *Client) PublishAsync(handle uint64, p session.PublishParams) (<-chan error, error) {
	return c.async(func(req uint64) []byte { return transport.AppendPublish(nil, req, handle, &p) })
}

// Ack acknowledges a QoS 1/2 message of a dedicated stream.
func (c *Client) Ack(stream, packetID uint64) error {
	return c.write(transport.AppendAck(nil, stream, packetID))
}

// Close ends the session and the connection.
func (c *Client) Close() error {
	c.write(transport.AppendClose(nil))
	return c.ws.Close()
}

// Leave ends the session as a client that went away without disconnecting
// its MQTT clients (a page closed): their wills fire.
func (c *Client) Leave() error {
	c.write(transport.AppendCloseLeft(nil))
	return c.ws.Close()
}

// Drop closes the connection without ending the session, as a network
// failure would.
func (c *Client) Drop() error { return c.ws.Close() }

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }
