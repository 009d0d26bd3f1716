package session

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"sync"

	"github.com/eclipse/paho.golang/packets"
)

// Brokers that speak only MQTT 3.1.1 (broker option mqtt_version 3.1.1):
// RabbitMQ before 3.13, ActiveMQ Classic, Azure IoT Hub, older Mosquittos.
//
// paho speaks MQTT 5 only. brokerConn sits between paho and the network
// and turns each packet paho writes into its MQTT 3.1.1 form on the way
// out (down), and each packet the broker sends into its MQTT 5 form on
// the way in (up). The forms differ little: 3.1.1 has no properties, no
// reason codes but CONNACK's and SUBACK's, no UNSUBACK payload, no
// subscription options but the QoS. What 3.1.1 cannot carry, the gateway
// refuses before it reaches paho (No Local, Retain As Published and
// Retain Handling on a dedicated connection, message and will properties:
// checkMQTT311), so nothing a client asked for is dropped unsaid.
//
// The CONNACK paho reads says the broker has no subscription identifiers
// and no shared subscriptions, and the gateway acts on it as on an MQTT 5
// broker's (brokerlimits.go). On a shared connection, retained messages
// come only in answer to a SUBSCRIBE (MQTT 3.1.1, 3.3.1.3): a live
// publication with the retain flag arrives without it, so the hub cannot
// keep its copies current; a late subscriber's SUBSCRIBE goes to the
// broker again, which answers it with the current ones (hubsubscribe.go).

// mqtt311 translates one connection's packets; its state is the number of
// filters of each UNSUBSCRIBE in flight, since MQTT 5's UNSUBACK has a
// reason code per filter and 3.1.1's has none.
type mqtt311 struct {
	// shared: the gateway's shared connection, whose broker session must
	// end with it (clean session): MQTT 3.1.1 cannot give it an expiry,
	// and a kept one would queue messages for a client ID nobody uses.
	shared bool

	mu     sync.Mutex
	unsubs map[uint16]int

	in   []byte // the broker's packet being read, in MQTT 5 form
	body []byte // the buffer up reads a packet's body into
	form []byte // the MQTT 5 body upPacket makes, before its fixed header
}

// errMQTT311Packet is a packet paho wrote that has no MQTT 3.1.1 form.
var errMQTT311Packet = errors.New("malformed MQTT 5 packet")

// down returns the MQTT 3.1.1 form of the MQTT 5 packet p (a whole packet,
// fixed header included), or nil for nothing to send: a DISCONNECT that
// asks for the will, which MQTT 3.1.1 publishes when the connection ends
// without one.
func (t *mqtt311) down(p []byte) ([]byte, error) {
	kind := p[0] >> 4
	body, ok := packetBody(p)
	if !ok {
		return nil, errMQTT311Packet
	}
	r := connectReader{b: body}
	out := make([]byte, 0, len(p))
	switch kind {
	case packets.CONNECT:
		return t.connect(p[0], body)
	case packets.PUBLISH:
		r.field() // topic
		if p[0]>>1&3 > 0 {
			r.skip(2) // packet identifier
		}
		end := r.i
		n, _ := r.varInt()
		r.skip(n) // properties
		if r.failed {
			return nil, errMQTT311Packet
		}
		out = append(out, body[:end]...)
		out = append(out, body[r.i:]...)
	case packets.PUBACK, packets.PUBREC, packets.PUBREL, packets.PUBCOMP:
		if len(body) < 2 {
			return nil, errMQTT311Packet
		}
		out = append(out, body[:2]...) // the packet identifier: success
	case packets.SUBSCRIBE:
		if !r.pastProperties() {
			return nil, errMQTT311Packet
		}
		out = append(out, body[:2]...)
		for !r.failed && r.i < len(body) {
			start := r.i
			r.field()
			opts, ok := r.byte()
			if !ok {
				return nil, errMQTT311Packet
			}
			out = append(out, body[start:r.i-1]...)
			out = append(out, opts&3) // the QoS; the rest is MQTT 5's
		}
	case packets.UNSUBSCRIBE:
		if !r.pastProperties() {
			return nil, errMQTT311Packet
		}
		out = append(out, body[:2]...)
		filters := 0
		for !r.failed && r.i < len(body) {
			start := r.i
			r.field()
			out = append(out, body[start:r.i]...)
			filters++
		}
		if r.failed {
			return nil, errMQTT311Packet
		}
		t.mu.Lock()
		if t.unsubs == nil {
			t.unsubs = map[uint16]int{}
		}
		t.unsubs[binary.BigEndian.Uint16(body)] = filters
		t.mu.Unlock()
	case packets.DISCONNECT:
		if len(body) > 0 && body[0] == 0x04 { // disconnect with will message
			return nil, nil
		}
	case packets.PINGREQ:
	default: // AUTH: the gateway sends none
		return nil, errMQTT311Packet
	}
	if r.failed {
		return nil, errMQTT311Packet
	}
	return withFixedHeader(p[0], out), nil
}

// pastProperties moves r past a SUBSCRIBE's or UNSUBSCRIBE's packet
// identifier and properties, to its filters; false if the body is too
// short for them.
func (r *connectReader) pastProperties() bool {
	r.skip(2)
	n, _ := r.varInt()
	r.skip(n)
	return !r.failed
}

// connect turns an MQTT 5 CONNECT's body into an MQTT 3.1.1 CONNECT: the
// protocol level 4, the clean session flag, no properties, the will with
// no properties.
func (t *mqtt311) connect(first byte, body []byte) ([]byte, error) {
	r := connectReader{b: body}
	r.field() // protocol name
	if version, ok := r.byte(); !ok || version != 5 {
		return nil, errMQTT311Packet
	}
	flags, _ := r.byte()
	r.skip(2) // keep alive
	keepAliveEnd := r.i
	n, _ := r.varInt()
	r.skip(n)
	if r.failed {
		return nil, errMQTT311Packet
	}
	expiry := sessionExpiry(body[keepAliveEnd:r.i])
	clean := flags&0x02 != 0 || expiry == 0 || t.shared
	flags &^= 0x02
	if clean {
		flags |= 0x02
	}
	// MQTT 5 allows a password without a user name, 3.1.1 does not
	// (3.1.2.9): an empty user name goes with it, or Mosquitto closes the
	// connection without a word.
	emptyUser := flags&0x40 != 0 && flags&0x80 == 0
	if emptyUser {
		flags |= 0x80
	}
	out := make([]byte, 0, len(body)+2)
	out = append(out, 0, 4, 'M', 'Q', 'T', 'T', 4, flags)
	out = append(out, body[keepAliveEnd-2:keepAliveEnd]...)
	start := r.i
	r.field() // client identifier
	out = append(out, body[start:r.i]...)
	if flags&0x04 != 0 { // a will: its properties go, its topic and payload stay
		n, _ := r.varInt()
		r.skip(n)
		start = r.i
		r.field()
		r.field()
		out = append(out, body[start:r.i]...)
	}
	if r.failed {
		return nil, errMQTT311Packet
	}
	if emptyUser {
		out = append(out, 0, 0)
	}
	out = append(out, body[r.i:]...) // user name and password, as they are
	return withFixedHeader(first, out), nil
}

// sessionExpiry is the Session Expiry Interval among a CONNECT's
// properties, their length first (0: none).
func sessionExpiry(props []byte) uint32 {
	var p packets.Properties
	if err := p.Unpack(bytes.NewBuffer(props), packets.CONNECT); err != nil || p.SessionExpiryInterval == nil {
		return 0
	}
	return *p.SessionExpiryInterval
}

// shrink lets go of buffers a large packet grew, once it has been read:
// kept, one 4 MiB message would hold 12 MiB for the connection's life (a
// dedicated connection's, per web client).
func (t *mqtt311) shrink() {
	const keep = 64 << 10
	if cap(t.body) > keep || cap(t.form) > keep || cap(t.in) > keep {
		t.body, t.form, t.in = nil, nil, nil
	}
}

// packetReader reads a broker's packets: its fixed header byte by byte,
// its body whole.
type packetReader interface {
	io.Reader
	io.ByteReader
}

// up reads the broker's next MQTT 3.1.1 packet from r and returns its MQTT
// 5 form.
func (t *mqtt311) up(r packetReader) ([]byte, error) {
	first, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	n, shift := 0, 0
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if i == 3 && b&0x80 != 0 {
			return nil, errors.New("malformed remaining length")
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		shift += 7
	}
	if cap(t.body) < n {
		t.body = make([]byte, n)
	}
	body := t.body[:n]
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return t.upPacket(first, body)
}

// upPacket is the MQTT 5 form of the broker's MQTT 3.1.1 packet.
func (t *mqtt311) upPacket(first byte, body []byte) ([]byte, error) {
	out := t.form[:0]
	switch first >> 4 {
	case packets.CONNACK:
		if len(body) != 2 {
			return nil, errors.New("malformed MQTT 3.1.1 CONNACK")
		}
		// No subscription identifiers (0x29), no shared subscriptions
		// (0x2A): MQTT 3.1.1 has neither.
		out = append(out, body[0], connackReason(body[1]), 4, 0x29, 0, 0x2A, 0)
	case packets.PUBLISH:
		r := connectReader{b: body}
		r.field()
		if first>>1&3 > 0 {
			r.skip(2)
		}
		if r.failed {
			return nil, errors.New("malformed MQTT 3.1.1 PUBLISH")
		}
		out = append(out, body[:r.i]...)
		out = append(out, 0) // no properties
		out = append(out, body[r.i:]...)
	case packets.SUBACK:
		if len(body) < 2 {
			return nil, errors.New("malformed MQTT 3.1.1 SUBACK")
		}
		out = append(out, body[:2]...)
		out = append(out, 0)
		out = append(out, body[2:]...) // 0-2, 0x80: the same in MQTT 5
	case packets.UNSUBACK:
		if len(body) != 2 {
			return nil, errors.New("malformed MQTT 3.1.1 UNSUBACK")
		}
		id := binary.BigEndian.Uint16(body)
		t.mu.Lock()
		filters, ok := t.unsubs[id]
		delete(t.unsubs, id)
		t.mu.Unlock()
		if !ok {
			filters = 1
		}
		out = append(out, body[:2]...)
		out = append(out, 0)
		for range filters {
			out = append(out, 0) // success
		}
	default: // PUBACK, PUBREC, PUBREL, PUBCOMP (a packet identifier, as MQTT 5's success), PINGRESP
		out = append(out, body...)
	}
	t.form = out
	t.in = withFixedHeaderInto(t.in[:0], first, out)
	return t.in, nil
}

// connackReason is MQTT 5's reason code for an MQTT 3.1.1 CONNACK return
// code (MQTT 5, 3.2.2.2).
func connackReason(rc byte) byte {
	switch rc {
	case 0:
		return 0
	case 1:
		return 0x84 // unsupported protocol version
	case 2:
		return 0x85 // client identifier not valid
	case 3:
		return 0x88 // server unavailable
	case 4:
		return 0x86 // bad user name or password
	case 5:
		return 0x87 // not authorized
	}
	return 0x80
}

// packetBody is the body of the whole packet p, after its fixed header.
func packetBody(p []byte) ([]byte, bool) {
	n, ok := packetLength(p)
	if !ok || n != len(p) {
		return nil, false
	}
	header := 2
	for header < len(p) && p[header-1]&0x80 != 0 {
		header++
	}
	return p[header:], true
}

// withFixedHeader is body with a fixed header of first and its length.
func withFixedHeader(first byte, body []byte) []byte {
	return withFixedHeaderInto(make([]byte, 0, len(body)+5), first, body)
}

func withFixedHeaderInto(dst []byte, first byte, body []byte) []byte {
	dst = append(dst, first)
	for n := len(body); ; n >>= 7 {
		if n < 128 {
			dst = append(dst, byte(n))
			break
		}
		dst = append(dst, byte(n&0x7f|0x80))
	}
	return append(dst, body...)
}

// What a client asks for that MQTT 3.1.1 cannot carry is refused, with the
// broker's limit in words, as a broker's own limits are (4043): dropped,
// it would be noticed only when it did not work.

// refused311 is the refusal of a request with what, to an MQTT 3.1.1
// broker.
func refused311(broker, what string) *Error {
	return Errorf(CodeBrokerRejected, "broker %q speaks MQTT 3.1.1, which has no %s", broker, what)
}

// check311Publish refuses a publish (or a will) with properties.
func (b *BrokerConfig) check311Publish(p *PublishParams, what string) *Error {
	if b.speaks311() && !p.Props.Empty() {
		return refused311(b.Name, what)
	}
	return nil
}

// check311Connect refuses a Clean Start with a session expiry: a fresh
// broker session that outlives the connection, which MQTT 3.1.1's one flag
// cannot ask for (clean session 1 ends it with the connection, 0 resumes
// an old one).
func (b *BrokerConfig) check311Connect(p *ConnectParams) *Error {
	if b.speaks311() && p.CleanStart && p.SessionExpiry > 0 {
		return refused311(b.Name, "fresh session that outlives its connection (Clean Start with a session expiry): connect without Clean Start to keep a session, or without an expiry")
	}
	return nil
}

// check311Subscribe refuses subscription options MQTT 3.1.1 has not. On a
// shared connection the gateway applies No Local and Retain Handling
// itself; Retain As Published needs the broker's.
func (b *BrokerConfig) check311Subscribe(o SubscribeOptions, dedicated bool) *Error {
	switch {
	case !b.speaks311():
	case o.RetainAsPublished:
		return refused311(b.Name, "Retain As Published")
	case dedicated && o.NoLocal:
		return refused311(b.Name, "No Local")
	case dedicated && o.RetainHandling != RetainAlways:
		return refused311(b.Name, "Retain Handling")
	}
	return nil
}
