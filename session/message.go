package session

import "sync/atomic"

// Props are the MQTT 5 publish properties the gateway carries both ways.
type Props struct {
	PayloadFormat    byte
	HasPayloadFormat bool
	MessageExpiry    uint32
	HasMessageExpiry bool
	ContentType      string
	ResponseTopic    string
	CorrelationData  []byte
	User             []UserProperty
	// WillDelay is a will's alone (MQTT 5 Will Delay Interval): how many
	// seconds the broker waits after the connection ends before it
	// publishes the will, which a reconnection in time cancels.
	WillDelay    uint32
	HasWillDelay bool
}

// UserProperty is one MQTT 5 user property; keys may repeat.
type UserProperty struct {
	Key, Value string
}

// Empty reports whether no property is set, so encoders can skip them.
func (p *Props) Empty() bool {
	return p == nil || (!p.HasPayloadFormat && !p.HasMessageExpiry && p.ContentType == "" &&
		p.ResponseTopic == "" && p.CorrelationData == nil && len(p.User) == 0 && !p.HasWillDelay)
}

// Message is a message received from a broker, on its way to web clients.
//
// It is immutable once handed to the hub: the same *Message is queued in
// every subscribed session, and its wire encoding is computed once by the
// first transport that writes it and then shared (see Encoded), which is
// what makes fan-out cost a copy per session instead of an encode.
type Message struct {
	Stream  uint64 // the stream (broker connection) it arrived on
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// PublishedRetain marks a live message published with the retain flag,
	// for subscriptions with Retain As Published on a shared connection
	// (Retain is for the message sent because a client subscribed).
	PublishedRetain bool
	Dup             bool
	PacketID        uint16 // nonzero only on dedicated streams, where the client must ACK
	// Client, when nonzero, is the handle of the one client of the session
	// the message is for: a retained message sent because that client
	// subscribed (Session.AddressRetained). Zero: every client whose
	// subscriptions match.
	Client uint64
	// Except, when nonzero, is the handle of the one client of the session
	// that must not get the message: its own publish, which a subscription
	// with No Local keeps from it (echo.go). Never set with Client.
	Except uint64
	Props  *Props
	// Arrived is when the message came from the broker (Unix ns; 0: not
	// from the broker live, as a retained copy sent to a new subscriber),
	// for the delivery_delay_seconds metric.
	Arrived int64

	encoded atomic.Pointer[[]byte]
}

// Encoded returns the message's wire encoding, computing it with encode on
// first use. Concurrent first calls may both encode; one result wins and both
// are identical, which is cheaper than a lock on the hot path.
func (m *Message) Encoded(encode func(*Message) []byte) []byte {
	if p := m.encoded.Load(); p != nil {
		return *p
	}
	b := encode(m)
	m.encoded.CompareAndSwap(nil, &b)
	return *m.encoded.Load()
}

// EventKind says what a data frame carries.
type EventKind uint8

// The data frames of the protocol: each is counted, buffered for replay and
// written by the session's transport.
const (
	EventMessage EventKind = iota + 1
	EventResult
	EventLost
	EventNotice
	EventUnsubscribed // a subscription the gateway ended (EndSubscriptions)
)

// Event is one data frame waiting in a session's outbox. It is a value type
// so queueing it allocates nothing; a message event only points at the
// shared Message.
type Event struct {
	Kind EventKind
	// ConnectFlags marks a CONNECT's successful result to a session that
	// asked for its flags (Session.ReportSessionPresent); SessionPresent is
	// then the broker's word on the client ID's session.
	ConnectFlags, SessionPresent bool
	// InOrder queues a RESULT behind the frames already waiting instead of
	// ahead of them (Session.resultInOrder).
	InOrder bool

	Msg    *Message // EventMessage
	Req    uint64   // EventResult
	Handle uint64   // EventLost, EventUnsubscribed
	Code   Code     // EventResult, EventLost, EventNotice, EventUnsubscribed
	Text   string   // EventResult, EventLost, EventNotice, EventUnsubscribed
	Value  uint64   // EventResult, EventNotice
	Filter string   // EventUnsubscribed
}

// wireSize estimates the bytes an event takes on the wire, for bandwidth
// budgets.
func (e *Event) wireSize() int {
	if e.Kind == EventMessage {
		return messageWireSize(e.Msg)
	}
	return len(e.Text) + len(e.Filter) + 12
}

func messageWireSize(m *Message) int {
	n := len(m.Topic) + len(m.Payload) + 8
	if m.Props != nil {
		n += 32
	}
	return n
}

// size estimates the memory an event holds, for the outbox's byte bounds.
func (e *Event) size() int {
	if e.Kind == EventMessage && e.Msg != nil {
		return messageSize(e.Msg)
	}
	return 64 + len(e.Text)
}

func messageSize(m *Message) int { return 64 + len(m.Topic) + len(m.Payload) }

// variant is a copy of m to change for one session: every field but the
// encoding, which the copy computes for itself once changed.
func (m *Message) variant() *Message {
	return &Message{Stream: m.Stream, Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		PublishedRetain: m.PublishedRetain, Dup: m.Dup, PacketID: m.PacketID, Client: m.Client, Except: m.Except, Props: m.Props, Arrived: m.Arrived}
}

// atQoS0 is m as a QoS 0 message, for a session whose clients all get it at
// QoS 0 (throttle.go).
func (m *Message) atQoS0() *Message {
	v := m.variant()
	v.QoS = 0
	return v
}

// except is m for the session of the client with handle client, which
// must not get it.
func (m *Message) except(client uint64) *Message {
	v := m.variant()
	v.Except = client
	return v
}
