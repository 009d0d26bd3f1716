package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// gwSub is a setup A subscriber: a raw WebSocket speaking the gateway's
// protocol (PROTOCOL.md) directly. transport/gwclient would decode every
// frame into a fresh Frame (copying the topic) and pass it through a
// channel; here one goroutine per connection reads each WebSocket
// message into a reused buffer, walks its frames with transport.SplitUnit
// and decodes MESSAGE frames by hand, allocating nothing per message.
type gwSub struct {
	subBase
	rec     *recorder
	ws      *websocket.Conn
	buf     []byte
	now     int64
	onFrame func([]byte) error // bound once: passing it allocates nothing
	lastOut time.Time          // our last write, for heartbeats
	done    chan struct{}
}

// heartbeatEvery is how often a subscriber sends PING: the gateway drops a
// connection it has heard nothing from for 2 × heartbeat + 5 s (45 s by
// default), and a subscriber that only receives never writes otherwise.
const heartbeatEvery = 10 * time.Second

var gwDialer = websocket.Dialer{
	Subprotocols:     []string{transport.Subprotocol},
	ReadBufferSize:   4096,
	WriteBufferSize:  512,
	HandshakeTimeout: 30 * time.Second,
}

// dialGateway opens a session, attaches a client to the shared connection
// of broker "main" (empty client id) and subscribes it to topic at QoS 0;
// it returns once both requests have succeeded.
func dialGateway(ctx context.Context, url, topic string, id int, rec *recorder) (*gwSub, error) {
	ws, _, err := gwDialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	s := &gwSub{rec: rec, ws: ws, buf: make([]byte, 2048), done: make(chan struct{})}
	s.st.id = id
	s.onFrame = s.frame
	fail := func(err error) (*gwSub, error) { ws.Close(); return nil, err }
	if dl, ok := ctx.Deadline(); ok {
		ws.SetReadDeadline(dl)
		ws.SetWriteDeadline(dl)
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, transport.AppendOpen(nil, "", nil, nil)); err != nil {
		return fail(err)
	}
	var f transport.Frame
	if err := s.readFrames(func(b []byte) (bool, error) {
		if err := transport.Decode(b, &f); err != nil {
			return false, err
		}
		switch f.Type {
		case transport.TypeOpened:
			return true, nil
		case transport.TypeEnd:
			return false, fmt.Errorf("gateway closed the session: %d %s", f.Code, f.Message)
		}
		return false, nil
	}); err != nil {
		return fail(fmt.Errorf("open: %w", err))
	}
	// CONNECT and SUBSCRIBE in one unit: requests of a handle are
	// processed in order, so the subscription follows the connect.
	b := transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main", CleanStart: true})
	b = transport.AppendSubscribe(b, 2, 1, topic, 0, 0)
	if err := ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
		return fail(err)
	}
	ok := 0
	if err := s.readFrames(func(b []byte) (bool, error) {
		if err := transport.Decode(b, &f); err != nil {
			return false, err
		}
		switch f.Type {
		case transport.TypeResult:
			if f.Code != 0 {
				return false, fmt.Errorf("request %d failed: %d %s", f.Req, f.Code, f.Message)
			}
			ok++
			return ok == 2, nil
		case transport.TypeEnd, transport.TypeLost:
			return false, fmt.Errorf("gateway: %d %s", f.Code, f.Message)
		}
		return false, nil
	}); err != nil {
		return fail(fmt.Errorf("connect/subscribe: %w", err))
	}
	ws.SetReadDeadline(time.Time{})
	ws.SetWriteDeadline(time.Time{})
	s.lastOut = time.Now()
	return s, nil
}

// readFrames reads units until fn says done (set-up only).
func (s *gwSub) readFrames(fn func([]byte) (bool, error)) error {
	for {
		_, unit, err := s.ws.ReadMessage()
		if err != nil {
			return err
		}
		done := false
		err = transport.SplitUnit(unit, func(b []byte) error {
			d, err := fn(b)
			done = done || d
			return err
		})
		if err != nil || done {
			return err
		}
	}
}

// run is the subscriber's read loop, until the connection ends.
func (s *gwSub) run() {
	defer close(s.done)
	for {
		_, r, err := s.ws.NextReader()
		if err != nil {
			s.end(err.Error())
			return
		}
		n := 0
		for {
			if n == len(s.buf) {
				s.buf = append(s.buf, make([]byte, len(s.buf))...)
			}
			m, err := r.Read(s.buf[n:])
			n += m
			if err == io.EOF {
				break
			}
			if err != nil {
				s.end(err.Error())
				return
			}
		}
		now := time.Now()
		s.now = now.UnixNano() // one clock read per WebSocket message
		if err := transport.SplitUnit(s.buf[:n], s.onFrame); err != nil {
			s.end(err.Error())
			return
		}
		if now.Sub(s.lastOut) >= heartbeatEvery {
			s.lastOut = now
			if err := s.ws.WriteMessage(websocket.BinaryMessage, transport.AppendPing(nil)); err != nil {
				s.end(err.Error())
				return
			}
		}
	}
}

var errClosedByGateway = errors.New("session closed by the gateway")

// frame handles one server frame.
func (s *gwSub) frame(b []byte) error {
	switch b[0] {
	case transport.TypeMessage:
		if p, ok := messagePayload(b); ok {
			s.rec.onPayload(&s.st, p, s.now)
			return nil
		}
		// Properties present or unexpected shape: the full decoder (it
		// allocates, but only on this path).
		var f transport.Frame
		if err := transport.Decode(b, &f); err != nil {
			return err
		}
		s.rec.onPayload(&s.st, f.Publish.Payload, s.now)
	case transport.TypeNotice:
		var f transport.Frame
		if err := transport.Decode(b, &f); err == nil && f.Code == session.CodeOverflow {
			s.st.notices.Add(int64(f.Value))
		}
	case transport.TypeEnd:
		var f transport.Frame
		transport.Decode(b, &f)
		msg := fmt.Sprintf("gateway closed the session: %d %s", f.Code, f.Message)
		s.ended.Store(&msg)
		return errClosedByGateway
	case transport.TypeLost:
		var f transport.Frame
		transport.Decode(b, &f)
		msg := fmt.Sprintf("client lost: %d %s", f.Code, f.Message)
		s.ended.Store(&msg)
	}
	return nil // PING, RESULT: nothing to do
}

// messagePayload decodes the payload of a MESSAGE frame without
// properties: type, uvarint stream, u8 flags, uvarint packet id, string
// topic, props (count 0), rest.
func messagePayload(b []byte) ([]byte, bool) {
	b = b[1:]
	if _, n := binary.Uvarint(b); n > 0 {
		b = b[n:]
	} else {
		return nil, false
	}
	if len(b) < 1 {
		return nil, false
	}
	b = b[1:] // flags
	if _, n := binary.Uvarint(b); n > 0 {
		b = b[n:]
	} else {
		return nil, false
	}
	tl, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < tl {
		return nil, false
	}
	b = b[n+int(tl):]
	if len(b) < 1 || b[0] != 0 { // a props count of 0 is one zero byte
		return nil, false
	}
	return b[1:], true
}

func (s *gwSub) close() {
	s.ws.Close()
	<-s.done
}
