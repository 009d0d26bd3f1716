package transport

import (
	"fmt"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// Frame types of protocol version 1 (PROTOCOL.md).
const (
	TypeOpen        byte = 0x01
	TypeBind        byte = 0x02
	TypeConnect     byte = 0x03
	TypeSubscribe   byte = 0x04
	TypeUnsubscribe byte = 0x05
	TypePublish     byte = 0x06
	TypeDisconnect  byte = 0x07
	TypeAck         byte = 0x08
	TypePing        byte = 0x09
	TypeClose       byte = 0x0A
	TypeFrequency   byte = 0x0B
	TypeBandwidth   byte = 0x0C
	TypeSend        byte = 0x0D // names the session of a /send body

	TypeOpened  byte = 0x81
	TypeBound   byte = 0x82
	TypeResult  byte = 0x83
	TypeMessage byte = 0x84
	TypeLost    byte = 0x85
	TypeNotice  byte = 0x86
	// UNSUBSCRIBED: a subscription the gateway ended (OPEN option unsubscribed)
	TypeUnsubscribed byte = 0x87
	TypeEnd          byte = 0x8A // CLOSE from the server
)

// Version is the protocol version this package speaks.
const Version = 1

// Subprotocol is the WebSocket subprotocol naming Version.
const Subprotocol = "mqttgw.v1"

// Flag bits.
const (
	flagQoSMask = 0x03
	flagRetain  = 0x04
	flagDup     = 0x08
	flagClient  = 0x10 // MESSAGE: addressed to one client, whose handle follows
	flagExcept  = 0x20 // MESSAGE: for every client but one, whose handle follows
	// MESSAGE: a live message published with the retain flag, for
	// subscriptions with Retain As Published on a shared stream.
	flagPublishedRetain = 0x40

	// SUBSCRIBE options, laid out as MQTT 5's (bits 0-1 are the QoS).
	subNoLocal           = 0x04
	subRetainAsPublished = 0x08
	subRetainHandling    = 0x30 // 0, 1 or 2 shifted left by 4
	subReserved          = 0xC0

	resultSessionPresent = 0x01 // RESULT flags of a CONNECT

	sendCounted = 0x01 // SEND: requests is given

	closeLeft = 0x01 // CLOSE: the client went away; its clients' wills fire

	pingAnswer = 0x01 // PING from a client: answer it at once (a connection check)

	connectClean      = 0x01
	connectWill       = 0x02
	connectWillQoS    = 0x0C
	connectWillRetain = 0x10
)

// KV is one entry of a kv list.
type KV struct{ Key, Value string }

// Frame is any decoded frame; only the fields of its Type are set. One flat
// struct keeps decoding free of interface allocations.
type Frame struct {
	Type byte

	Req    uint64
	Handle uint64 // also MESSAGE's addressed client, 0: none

	// OPEN
	Version  uint64
	User     string
	Password []byte
	Options  []KV

	// BIND, OPENED
	Session  [16]byte
	Secret   [16]byte
	Received uint64

	// CONNECT
	Connect session.ConnectParams

	// SUBSCRIBE, UNSUBSCRIBE, UNSUBSCRIBED
	Filter       string
	QoS          byte
	SubOptions   session.SubscribeOptions
	MaxFrequency uint64

	// PUBLISH (client), MESSAGE (server)
	Publish  session.PublishParams
	Stream   uint64
	PacketID uint64
	Dup      bool
	Except   uint64 // MESSAGE: the one client that must not get it (No Local)
	// MESSAGE: published with the retain flag (Retain As Published)
	PublishedRetain bool

	// OPENED
	Heartbeat      uint64
	SessionTimeout uint64
	MaxFrame       uint64
	Info           []KV

	// BOUND: client requests the session has received; SEND (with
	// Counted): requests the client sent before the body's first
	Requests uint64
	Counted  bool

	// CLOSE from the client: it went away (a page closed) rather than
	// ending its clients, whose wills fire
	Left bool

	// PING from a client that checks its connection: the server answers
	// it at once
	Answer bool

	// RESULT of a CONNECT, with flags (OPEN option session_present)
	HasFlags, SessionPresent bool

	// RESULT, LOST, NOTICE, CLOSE, UNSUBSCRIBED
	Code    session.Code
	Message string
	Value   uint64
}

// SplitUnit calls fn for each length-prefixed frame of a transport unit.
// The slices passed to fn alias unit.
func SplitUnit(unit []byte, fn func(frame []byte) error) error {
	for len(unit) > 0 {
		frame, rest, err := nextFrame(unit)
		if err != nil {
			return err
		}
		if err := fn(frame); err != nil {
			return err
		}
		unit = rest
	}
	return nil
}

// nextFrame splits a non-empty unit into its first frame (without the
// length prefix) and the frames after it.
func nextFrame(unit []byte) (frame, rest []byte, err error) {
	r := reader{b: unit}
	n := r.uvarint()
	if r.err != nil || n == 0 || n > uint64(len(r.b)) {
		return nil, nil, ErrMalformed
	}
	return r.b[:n], r.b[n:], nil
}

// Decode decodes one frame (without its length prefix). Byte slices in the
// result alias the input.
func Decode(b []byte, f *Frame) error {
	*f = Frame{}
	r := reader{b: b}
	f.Type = r.u8()
	switch f.Type {
	case TypeOpen:
		f.Version = r.uvarint()
		f.User = r.string()
		f.Password = r.bytes()
		f.Options = r.kv()
	case TypeBind:
		f.Session = r.id16()
		f.Secret = r.id16()
		f.Received = r.uvarint()
	case TypeSend:
		f.Session = r.id16()
		f.Secret = r.id16()
		flags := r.u8()
		if flags&^sendCounted != 0 {
			return fmt.Errorf("%w: reserved SEND flags set", ErrMalformed)
		}
		if f.Counted = flags&sendCounted != 0; f.Counted {
			f.Requests = r.uvarint()
		}
	case TypeConnect:
		f.Req, f.Handle = r.uvarint(), r.uvarint()
		c := &f.Connect
		c.Broker = r.string()
		c.ClientID = r.string()
		flags := r.u8()
		// Reserved bits and a will's QoS or retain without a will are
		// malformed, as in MQTT (3.1.2.3, 3.1.2.6) and in the PUBLISH and
		// SEND flags: a bit this version ignored could not mean something
		// in the next.
		if flags&^(connectClean|connectWill|connectWillQoS|connectWillRetain) != 0 {
			return fmt.Errorf("%w: reserved CONNECT flags set", ErrMalformed)
		}
		if flags&connectWill == 0 && flags&(connectWillQoS|connectWillRetain) != 0 {
			return fmt.Errorf("%w: CONNECT flags give a will QoS or retain without a will", ErrMalformed)
		}
		c.CleanStart = flags&connectClean != 0
		c.KeepAlive = uint16(min(r.uvarint(), 0xFFFF))
		c.SessionExpiry = uint32(min(r.uvarint(), 0xFFFFFFFF))
		c.Username = r.string()
		c.Password = r.bytes()
		if flags&connectWill != 0 {
			w := &session.PublishParams{QoS: (flags & connectWillQoS) >> 2, Retain: flags&connectWillRetain != 0}
			w.Topic = r.string()
			w.Props = r.props(true, true)
			w.Payload = r.bytes()
			c.Will = w
		}
	case TypeSubscribe:
		f.Req, f.Handle = r.uvarint(), r.uvarint()
		f.Filter = r.string()
		opts := r.u8()
		// A QoS of 3 is the session's to refuse (4033), as before options.
		f.QoS = opts & flagQoSMask
		f.SubOptions = session.SubscribeOptions{
			NoLocal:           opts&subNoLocal != 0,
			RetainAsPublished: opts&subRetainAsPublished != 0,
			RetainHandling:    opts & subRetainHandling >> 4,
		}
		if opts&subReserved != 0 || f.SubOptions.RetainHandling > session.RetainNever {
			r.fail() // malformed in MQTT too (3.8.3.1)
		}
		f.MaxFrequency = r.uvarint()
	case TypeUnsubscribe:
		f.Req, f.Handle = r.uvarint(), r.uvarint()
		f.Filter = r.string()
	case TypePublish:
		f.Req, f.Handle = r.uvarint(), r.uvarint()
		p := &f.Publish
		p.Topic = r.string()
		flags := r.u8()
		p.QoS, p.Retain = flags&flagQoSMask, flags&flagRetain != 0
		if flags&^(flagQoSMask|flagRetain) != 0 {
			r.fail()
		}
		p.Props = r.props(true, false)
		p.Payload = r.rest()
	case TypeDisconnect:
		f.Req, f.Handle = r.uvarint(), r.uvarint()
	case TypeFrequency:
		f.Req, f.Handle = r.uvarint(), r.uvarint()
		f.Filter = r.string()
		f.MaxFrequency = r.uvarint()
	case TypeBandwidth:
		f.Req = r.uvarint()
		f.Value = r.uvarint()
	case TypeAck:
		f.Stream, f.PacketID = r.uvarint(), r.uvarint()
	case TypePing:
		// Empty, or a flags byte from a client (to a server whose OPENED
		// said ping_answer: an older one takes it for malformed).
		if len(r.b) > 0 {
			flags := r.u8()
			if flags&^pingAnswer != 0 {
				return fmt.Errorf("%w: reserved PING flags set", ErrMalformed)
			}
			f.Answer = flags&pingAnswer != 0
		}
	case TypeClose:
		// Empty, or a flags byte: a body was malformed before flags came,
		// so an older server ends the session on it all the same (4000).
		if len(r.b) > 0 {
			flags := r.u8()
			if flags&^closeLeft != 0 {
				return fmt.Errorf("%w: reserved CLOSE flags set", ErrMalformed)
			}
			f.Left = flags&closeLeft != 0
		}
	case TypeOpened:
		f.Session, f.Secret = r.id16(), r.id16()
		f.Heartbeat, f.SessionTimeout, f.MaxFrame = r.uvarint(), r.uvarint(), r.uvarint()
		f.Info = r.kv()
	case TypeBound:
		f.Value = r.uvarint()
		f.Requests = r.uvarint()
	case TypeResult:
		f.Req = r.uvarint()
		f.Code = session.Code(r.uvarint())
		f.Message = r.string()
		f.Value = r.uvarint()
		if len(r.b) > 0 { // a CONNECT's flags
			flags := r.u8()
			f.HasFlags, f.SessionPresent = true, flags&resultSessionPresent != 0
		}
	case TypeMessage:
		f.Stream = r.uvarint()
		flags := r.u8()
		p := &f.Publish
		p.QoS, p.Retain, f.Dup = flags&flagQoSMask, flags&flagRetain != 0, flags&flagDup != 0
		f.PacketID = r.uvarint()
		if flags&flagClient != 0 {
			f.Handle = r.uvarint()
		}
		if flags&flagClient != 0 && flags&flagExcept != 0 {
			r.fail() // for one client and for all but one
		}
		if flags&flagExcept != 0 {
			f.Except = r.uvarint()
		}
		f.PublishedRetain = flags&flagPublishedRetain != 0
		p.Topic = r.string()
		p.Props = r.props(false, false)
		p.Payload = r.rest()
	case TypeLost:
		f.Handle = r.uvarint()
		f.Code = session.Code(r.uvarint())
		f.Message = r.string()
	case TypeNotice:
		f.Code = session.Code(r.uvarint())
		f.Message = r.string()
		f.Value = r.uvarint()
	case TypeUnsubscribed:
		f.Handle = r.uvarint()
		f.Filter = r.string()
		f.Code = session.Code(r.uvarint())
		f.Message = r.string()
	case TypeEnd:
		f.Code = session.Code(r.uvarint())
		f.Message = r.string()
	default:
		if r.err == nil {
			return fmt.Errorf("%w: unknown frame type 0x%02x", ErrMalformed, f.Type)
		}
	}
	return r.done()
}

func (r *reader) kv() []KV {
	n := r.uvarint()
	if n > uint64(len(r.b))/2 { // each entry takes at least two bytes
		r.fail()
		return nil
	}
	var out []KV
	for i := uint64(0); i < n && r.err == nil; i++ {
		out = append(out, KV{r.string(), r.string()})
	}
	return out
}

// Property ids of the props encoding.
const (
	propPayloadFormat   = 1
	propMessageExpiry   = 2
	propContentType     = 3
	propResponseTopic   = 4
	propCorrelationData = 5
	propUser            = 6
	propWillDelay       = 7 // a will's props only
)

// props reads a props field. A client's message (capped) keeps at most one
// user property more than session.MaxUserProperties, enough for the
// session to refuse it (4003), and reads past the rest without making
// them: 390,000 empty ones in a 1 MB frame cost 0.2 s of CPU to collect,
// only to be refused.
//
// will: the props are a will's, which alone may have a will delay.
func (r *reader) props(capped, will bool) *session.Props {
	n := r.uvarint()
	if n == 0 {
		return nil
	}
	if n > uint64(len(r.b))/2 {
		r.fail()
		return nil
	}
	p := &session.Props{}
	for i := uint64(0); i < n && r.err == nil; i++ {
		switch r.u8() {
		case propPayloadFormat:
			p.PayloadFormat, p.HasPayloadFormat = byte(min(r.uvarint(), 255)), true
		case propMessageExpiry:
			p.MessageExpiry, p.HasMessageExpiry = uint32(min(r.uvarint(), 0xFFFFFFFF)), true
		case propContentType:
			p.ContentType = r.string()
		case propResponseTopic:
			p.ResponseTopic = r.string()
		case propCorrelationData:
			p.CorrelationData = r.bytes()
		case propUser:
			if capped && len(p.User) > session.MaxUserProperties {
				r.skipString()
				r.skipString()
				continue
			}
			p.User = append(p.User, session.UserProperty{Key: r.string(), Value: r.string()})
		case propWillDelay:
			if !will {
				r.fail()
			}
			p.WillDelay, p.HasWillDelay = uint32(min(r.uvarint(), 0xFFFFFFFF)), true
		default:
			r.fail()
		}
	}
	if p.Empty() {
		// Only empty strings (a content type or response topic of length
		// 0), which MQTT cannot tell from absent ones: the same as none, so
		// a frame encodes back to what it was decoded from.
		return nil
	}
	return p
}

func propsLen(p *session.Props) int {
	if p.Empty() {
		return 1
	}
	n, count := 0, 0
	if p.HasPayloadFormat {
		n += 1 + uvarintLen(uint64(p.PayloadFormat))
		count++
	}
	if p.HasMessageExpiry {
		n += 1 + uvarintLen(uint64(p.MessageExpiry))
		count++
	}
	if p.ContentType != "" {
		n += 1 + strLen(p.ContentType)
		count++
	}
	if p.ResponseTopic != "" {
		n += 1 + strLen(p.ResponseTopic)
		count++
	}
	if p.CorrelationData != nil {
		n += 1 + uvarintLen(uint64(len(p.CorrelationData))) + len(p.CorrelationData)
		count++
	}
	for _, u := range p.User {
		n += 1 + strLen(u.Key) + strLen(u.Value)
		count++
	}
	if p.HasWillDelay {
		n += 1 + uvarintLen(uint64(p.WillDelay))
		count++
	}
	return uvarintLen(uint64(count)) + n
}

func strLen(s string) int { return uvarintLen(uint64(len(s))) + len(s) }

func appendProps(b []byte, p *session.Props) []byte {
	if p.Empty() {
		return append(b, 0)
	}
	count := len(p.User)
	for _, set := range []bool{p.HasPayloadFormat, p.HasMessageExpiry, p.ContentType != "", p.ResponseTopic != "", p.CorrelationData != nil, p.HasWillDelay} {
		if set {
			count++
		}
	}
	b = appendUvarint(b, uint64(count))
	if p.HasPayloadFormat {
		b = appendUvarint(append(b, propPayloadFormat), uint64(p.PayloadFormat))
	}
	if p.HasMessageExpiry {
		b = appendUvarint(append(b, propMessageExpiry), uint64(p.MessageExpiry))
	}
	if p.ContentType != "" {
		b = appendString(append(b, propContentType), p.ContentType)
	}
	if p.ResponseTopic != "" {
		b = appendString(append(b, propResponseTopic), p.ResponseTopic)
	}
	if p.CorrelationData != nil {
		b = appendBytes(append(b, propCorrelationData), p.CorrelationData)
	}
	for _, u := range p.User {
		b = appendString(appendString(append(b, propUser), u.Key), u.Value)
	}
	if p.HasWillDelay {
		b = appendUvarint(append(b, propWillDelay), uint64(p.WillDelay))
	}
	return b
}
