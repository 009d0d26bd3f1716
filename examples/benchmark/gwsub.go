package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// gwSub is a setup A subscriber: a WebSocket speaking the gateway's
// protocol (PROTOCOL.md) directly. transport/gwclient would decode every
// frame into a fresh Frame (copying the topic) and pass it through a
// channel; here a reactor (reactor.go) reads the socket, and each binary
// message, parsed in place in the receive buffer, has its frames walked
// with transport.SplitUnit and MESSAGE frames decoded by hand, allocating
// nothing per message.
type gwSub struct {
	subBase
	wsConn
	rec     *recorder
	now     int64
	onFrame func([]byte) error // bound once: passing it allocates nothing
	lastOut int64              // UnixNano of our last write, for heartbeats
	ping    []byte             // the heartbeat PING in a masked frame, built once
}

// heartbeatEvery is how often a subscriber sends PING: the gateway drops a
// connection it has heard nothing from for 2 × heartbeat + 5 s (45 s by
// default), and a subscriber that only receives never writes otherwise.
const heartbeatEvery = 10 * time.Second

// dialGateway opens a session, attaches a client to the shared connection
// of broker "main" (empty client id) and subscribes it to topic at QoS 0;
// once both requests have succeeded it hands the connection to a reactor
// and returns.
func dialGateway(ctx context.Context, url, topic string, id int, rec *recorder) (*gwSub, error) {
	s := &gwSub{rec: rec}
	s.st.id = id
	s.onFrame = s.frame
	if err := s.dial(ctx, url, transport.Subprotocol); err != nil {
		return nil, err
	}
	fail := func(err error) (*gwSub, error) { syscall.Close(s.fd); return nil, err }
	if err := s.writeMessage(transport.AppendOpen(nil, "", nil, nil)); err != nil {
		return fail(err)
	}
	var f transport.Frame
	if err := s.setupUnits(func(b []byte) (bool, error) {
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
	if err := s.writeMessage(b); err != nil {
		return fail(err)
	}
	ok := 0
	if err := s.setupUnits(func(b []byte) (bool, error) {
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
	s.ping = appendClientFrame(nil, wsOpBinary, transport.AppendPing(nil), s.key)
	s.lastOut = time.Now().UnixNano()
	if err := register(s); err != nil {
		return fail(err)
	}
	return s, nil
}

// setupUnits reads units (one per binary message) until fn says the
// set-up is done (set-up only). Frames after that one in the same unit
// are handled as in the run, so none is lost.
func (s *gwSub) setupUnits(fn func([]byte) (bool, error)) error {
	for {
		m, err := s.setupFrame()
		if err != nil {
			return err
		}
		if m.op != wsOpBinary || !m.fin {
			return errDataFrame(m)
		}
		s.now = time.Now().UnixNano()
		done := false
		err = transport.SplitUnit(m.payload, func(b []byte) error {
			if done {
				return s.frame(b)
			}
			d, err := fn(b)
			done = d
			return err
		})
		if err != nil || done {
			return err
		}
	}
}

// The reactor's side (pollee).

func (s *gwSub) start() error    { return s.frames(time.Now().UnixNano(), s) }
func (s *gwSub) readable() error { return s.pump(s) }

// wsData takes one WebSocket message: a unit of frames.
func (s *gwSub) wsData(m wsFrame, now int64) error {
	if m.op != wsOpBinary || !m.fin {
		return errDataFrame(m)
	}
	s.now = now
	return transport.SplitUnit(m.payload, s.onFrame)
}

// tick sends the heartbeat when the next tick would be too late for it.
// A full send buffer (never, for a subscriber that sends a few bytes every
// 10 s) postpones it to the next tick.
func (s *gwSub) tick(now int64) error {
	if now-s.lastOut < int64(heartbeatEvery-tickEvery) {
		return nil
	}
	if err := s.write(s.ping); err != nil {
		if errors.Is(err, syscall.EAGAIN) {
			return nil
		}
		return err
	}
	s.lastOut = now
	return nil
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

func (s *gwSub) close() { unregister(s) }
