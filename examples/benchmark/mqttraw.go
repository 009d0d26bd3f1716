package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"
)

// rawMQTTSub is the default setup B subscriber: the same shape as setup A's
// (one goroutine per connection, a reused buffer, nothing allocated per
// message), speaking MQTT 5 over the WebSocket. paho's packets package
// encodes CONNECT and SUBSCRIBE and decodes their answers; only PUBLISH,
// on the hot path, is decoded by hand.
//
// Why not paho.Client (-bclient paho): it costs the load generator about
// 15 µs per delivery here (a goroutine hop per packet, allocations), three
// times Mosquitto's own cost, so with -pin the generator could not keep
// up with Mosquitto and B's latency would include the generator's backlog,
// which would flatter the gateway.
type rawMQTTSub struct {
	subBase
	rec  *recorder
	ws   *websocket.Conn
	buf  []byte // stream bytes not yet parsed are buf[:n]
	n    int
	done chan struct{}
}

func dialMosquittoRaw(ctx context.Context, url, topic string, id int, rec *recorder) (*rawMQTTSub, error) {
	ws, _, err := mqttDialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	s := &rawMQTTSub{rec: rec, ws: ws, buf: make([]byte, 2048), done: make(chan struct{})}
	s.st.id = id
	fail := func(err error) (*rawMQTTSub, error) { ws.Close(); return nil, err }
	if dl, ok := ctx.Deadline(); ok {
		ws.SetReadDeadline(dl)
		ws.SetWriteDeadline(dl)
	}

	// Keepalive 0: Mosquitto never disconnects the client for silence (a
	// subscriber that only receives sends nothing), whatever the run's
	// length.
	cp := packets.NewControlPacket(packets.CONNECT)
	c := cp.Content.(*packets.Connect)
	c.ClientID, c.CleanStart, c.KeepAlive = fmt.Sprintf("bench-sub-%d", id), true, 0
	if err := s.writePacket(cp); err != nil {
		return fail(err)
	}
	p, err := s.readSetupPacket()
	if err != nil {
		return fail(fmt.Errorf("connack: %w", err))
	}
	if ca, ok := p.Content.(*packets.Connack); !ok || ca.ReasonCode != 0 {
		return fail(fmt.Errorf("connect refused: %v", p))
	}

	cp = packets.NewControlPacket(packets.SUBSCRIBE)
	sub := cp.Content.(*packets.Subscribe)
	sub.PacketID = 1
	sub.Subscriptions = []packets.SubOptions{{Topic: topic, QoS: 0}}
	if err := s.writePacket(cp); err != nil {
		return fail(err)
	}
	p, err = s.readSetupPacket()
	if err != nil {
		return fail(fmt.Errorf("suback: %w", err))
	}
	if sa, ok := p.Content.(*packets.Suback); !ok || len(sa.Reasons) != 1 || sa.Reasons[0] >= 0x80 {
		return fail(fmt.Errorf("subscribe refused: %v", p))
	}
	ws.SetReadDeadline(time.Time{})
	ws.SetWriteDeadline(time.Time{})
	go s.run()
	return s, nil
}

func (s *rawMQTTSub) writePacket(cp *packets.ControlPacket) error {
	var b bytes.Buffer
	if _, err := cp.WriteTo(&b); err != nil {
		return err
	}
	return s.ws.WriteMessage(websocket.BinaryMessage, b.Bytes())
}

// readSetupPacket reads the next whole packet during set-up.
func (s *rawMQTTSub) readSetupPacket() (*packets.ControlPacket, error) {
	for {
		if l, ok := packetLen(s.buf[:s.n]); ok {
			p, err := packets.ReadPacket(bytes.NewReader(s.buf[:l]))
			s.consume(l)
			return p, err
		}
		if err := s.readMessage(); err != nil {
			return nil, err
		}
	}
}

// readMessage appends the next WebSocket message to the stream buffer.
func (s *rawMQTTSub) readMessage() error {
	_, r, err := s.ws.NextReader()
	if err != nil {
		return err
	}
	for {
		if s.n == len(s.buf) {
			s.buf = append(s.buf, make([]byte, len(s.buf))...)
		}
		m, err := r.Read(s.buf[s.n:])
		s.n += m
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (s *rawMQTTSub) consume(l int) {
	s.n = copy(s.buf, s.buf[l:s.n])
}

// packetLen is the length of the whole packet at the start of b, if b
// holds all of it.
func packetLen(b []byte) (int, bool) {
	if len(b) < 2 {
		return 0, false
	}
	var rl, shift int
	for i := 1; i < len(b) && i <= 4; i++ {
		rl |= int(b[i]&0x7f) << shift
		shift += 7
		if b[i] < 0x80 {
			total := i + 1 + rl
			return total, total <= len(b)
		}
	}
	return 0, false
}

func (s *rawMQTTSub) run() {
	defer close(s.done)
	for {
		if err := s.readMessage(); err != nil {
			s.end(err.Error())
			return
		}
		now := time.Now().UnixNano() // one clock read per WebSocket message
		off := 0
		for {
			l, ok := packetLen(s.buf[off:s.n])
			if !ok {
				break
			}
			s.packet(s.buf[off:off+l], now)
			off += l
		}
		if off > 0 {
			s.consume(off)
		}
	}
}

// packet handles one MQTT packet; only PUBLISH matters.
func (s *rawMQTTSub) packet(b []byte, now int64) {
	if b[0]>>4 != packets.PUBLISH {
		return
	}
	qos := (b[0] >> 1) & 3
	i := 1
	for b[i] >= 0x80 { // remaining length, already validated
		i++
	}
	b = b[i+1:]
	if len(b) < 2 {
		return
	}
	tl := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if len(b) < tl {
		return
	}
	b = b[tl:]
	if qos > 0 {
		if len(b) < 2 {
			return
		}
		b = b[2:]
	}
	pl, n := mqttVBI(b)
	if n <= 0 || len(b)-n < pl {
		return
	}
	s.rec.onPayload(&s.st, b[n+pl:], now)
}

// mqttVBI decodes an MQTT variable byte integer.
func mqttVBI(b []byte) (int, int) {
	var v, shift int
	for i := 0; i < len(b) && i < 4; i++ {
		v |= int(b[i]&0x7f) << shift
		shift += 7
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

func (s *rawMQTTSub) close() {
	s.ws.Close()
	<-s.done
}
