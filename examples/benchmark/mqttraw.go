package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"syscall"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// rawMQTTSub is the default setup B subscriber: the same shape as setup A's
// (served by a reactor, parsed in place, nothing allocated per message),
// speaking MQTT 5 over the WebSocket. paho's packets package encodes
// CONNECT and SUBSCRIBE and decodes their answers; only PUBLISH, on the hot
// path, is decoded by hand.
//
// Why not paho.Client (-bclient paho): it costs the load generator about
// 15 µs per delivery here (a goroutine hop per packet, allocations), three
// times Mosquitto's own cost, so with -pin the generator could not keep
// up with Mosquitto and B's latency would include the generator's backlog,
// which would flatter the gateway.
type rawMQTTSub struct {
	subBase
	wsConn
	rec *recorder
	// MQTT over WebSocket is a byte stream: a packet may span messages.
	// The bytes of one not yet complete wait here; packets whole within
	// a message (all of them, from Mosquitto) are parsed in place.
	stream []byte
}

// mqttMaxPacket bounds what stream may hold.
const mqttMaxPacket = wsMaxFrame

func dialMosquittoRaw(ctx context.Context, url, topic string, id int, rec *recorder) (*rawMQTTSub, error) {
	s := &rawMQTTSub{rec: rec}
	s.st.id = id
	if err := s.dial(ctx, url, "mqtt"); err != nil {
		return nil, err
	}
	fail := func(err error) (*rawMQTTSub, error) { syscall.Close(s.fd); return nil, err }

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
	if err := register(s); err != nil {
		return fail(err)
	}
	return s, nil
}

func (s *rawMQTTSub) writePacket(cp *packets.ControlPacket) error {
	var b bytes.Buffer
	if _, err := cp.WriteTo(&b); err != nil {
		return err
	}
	return s.writeMessage(b.Bytes())
}

// readSetupPacket reads the next whole packet during set-up. What follows
// it stays in stream and in the frame reader, for the reactor.
func (s *rawMQTTSub) readSetupPacket() (*packets.ControlPacket, error) {
	for {
		if l, ok := packetLen(s.stream); ok {
			p, err := packets.ReadPacket(bytes.NewReader(s.stream[:l]))
			s.stream = s.stream[:copy(s.stream, s.stream[l:])]
			return p, err
		}
		f, err := s.setupFrame()
		if err != nil {
			return nil, err
		}
		if f.op == wsOpText {
			return nil, errDataFrame(f)
		}
		if len(s.stream)+len(f.payload) > mqttMaxPacket {
			return nil, fmt.Errorf("mqtt: packet of more than %d bytes", mqttMaxPacket)
		}
		s.stream = append(s.stream, f.payload...)
	}
}

// The reactor's side (pollee).

func (s *rawMQTTSub) start() error {
	now := time.Now().UnixNano()
	if err := s.data(nil, now); err != nil {
		return err
	}
	return s.frames(now, s)
}

func (s *rawMQTTSub) readable() error  { return s.pump(s) }
func (s *rawMQTTSub) tick(int64) error { return nil }
func (s *rawMQTTSub) close()           { unregister(s) }
func (s *rawMQTTSub) wsData(f wsFrame, now int64) error {
	if f.op == wsOpText {
		return errDataFrame(f)
	}
	// Binary and continuation frames alike: stream bytes.
	return s.data(f.payload, now)
}

// data takes the next bytes of the MQTT stream.
func (s *rawMQTTSub) data(p []byte, now int64) error {
	if len(s.stream) == 0 {
		off := s.packets(p, now)
		s.stream = append(s.stream, p[off:]...) // nothing, usually
	} else {
		s.stream = append(s.stream, p...)
		off := s.packets(s.stream, now)
		s.stream = s.stream[:copy(s.stream, s.stream[off:])]
	}
	if len(s.stream) > mqttMaxPacket {
		return fmt.Errorf("mqtt: packet of more than %d bytes", mqttMaxPacket)
	}
	return nil
}

// packets handles the whole packets at the start of b and returns their
// length.
func (s *rawMQTTSub) packets(b []byte, now int64) int {
	off := 0
	for {
		l, ok := packetLen(b[off:])
		if !ok {
			return off
		}
		s.packet(b[off:off+l], now)
		off += l
	}
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
