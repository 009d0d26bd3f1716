package session

import (
	"encoding/binary"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// A will's properties, as paho.golang v0.23.0 loses them.
//
// paho encodes a CONNECT's will properties with the rules of the CONNECT's
// own properties (packets.Connect.Buffers packs them for CONNECT), which
// keep only the will delay interval and the user properties: the payload
// format, message expiry, content type, response topic and correlation data
// of a will never reach the broker. The gateway knows the will it asked
// for, so brokerConn puts the whole of its properties into the CONNECT
// paho wrote (withWillProperties) on the way out.

// encodeWillProperties is p as a CONNECT's Will Properties (MQTT 5,
// 3.1.3.2) without their length, or nil when there are none.
func encodeWillProperties(p *paho.WillProperties) []byte {
	if p == nil {
		return nil
	}
	pp := packets.Properties{PayloadFormat: p.PayloadFormat, MessageExpiry: p.MessageExpiry, ContentType: p.ContentType,
		ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData}
	for _, u := range p.User {
		pp.User = append(pp.User, packets.User{Key: u.Key, Value: u.Value})
	}
	b := pp.Pack(packets.PUBLISH) // the properties a will shares with a PUBLISH
	if p.WillDelayInterval != nil {
		b = append(b, packets.PropWillDelayInterval)
		b = binary.BigEndian.AppendUint32(b, *p.WillDelayInterval)
	}
	if len(b) == 0 {
		return nil
	}
	return b
}

// withWillProperties returns the CONNECT packet with its Will Properties
// replaced by props, or packet itself if it is not a whole MQTT 5 CONNECT
// with a will.
func withWillProperties(packet, props []byte) []byte {
	r := connectReader{b: packet}
	if len(packet) < 2 || packet[0] != packets.CONNECT<<4 {
		return packet
	}
	r.i = 1
	if n, ok := r.varInt(); !ok || r.i+n != len(packet) {
		return packet
	}
	header := r.i // the fixed header's length
	r.field()     // protocol name
	if version, ok := r.byte(); !ok || version != 5 {
		return packet
	}
	flags, ok := r.byte()
	if !ok || flags&0x04 == 0 { // no will
		return packet
	}
	r.skip(2) // keep alive
	if n, ok := r.varInt(); ok {
		r.skip(n) // the CONNECT's properties
	}
	r.field() // client identifier
	start := r.i
	n, ok := r.varInt()
	r.skip(n)
	if !ok || r.failed {
		return packet
	}
	end := r.i

	body := make([]byte, 0, len(packet)+len(props)+4)
	body = append(body, packet[header:start]...)
	body = binary.AppendUvarint(body, uint64(len(props))) // a Variable Byte Integer
	body = append(body, props...)
	body = append(body, packet[end:]...)
	out := binary.AppendUvarint([]byte{packet[0]}, uint64(len(body)))
	return append(out, body...)
}

// connectReader reads the fields of a CONNECT, failing for good at the
// first that does not fit.
type connectReader struct {
	b      []byte
	i      int
	failed bool
}

func (r *connectReader) skip(n int) {
	if r.failed || n < 0 || n > len(r.b)-r.i {
		r.failed = true
		return
	}
	r.i += n
}

func (r *connectReader) byte() (byte, bool) {
	if r.failed || r.i >= len(r.b) {
		r.failed = true
		return 0, false
	}
	r.i++
	return r.b[r.i-1], true
}

// field skips a two-byte length and that many bytes (a UTF-8 string or
// binary data).
func (r *connectReader) field() {
	hi, _ := r.byte()
	lo, ok := r.byte()
	if ok {
		r.skip(int(hi)<<8 | int(lo))
	}
}

// varInt reads a Variable Byte Integer: a uvarint of at most four bytes.
func (r *connectReader) varInt() (int, bool) {
	if r.failed {
		return 0, false
	}
	v, n := binary.Uvarint(r.b[r.i:])
	if n <= 0 || n > 4 {
		r.failed = true
		return 0, false
	}
	r.i += n
	return int(v), true
}
