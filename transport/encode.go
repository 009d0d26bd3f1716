package transport

import "github.com/caddy-mqtt/mqttgateway/session"

// Frames are appended to a buffer with their length prefix. The prefix is
// reserved at its largest (4 bytes: frames stay below 256 MiB) and the body
// moved back when it turns out shorter, so encoding needs no second buffer
// and no size pre-computation.

const lenReserve = 4

// MaxFrame is the largest frame this package encodes or accepts.
const MaxFrame = 1<<28 - 1

func begin(b []byte, typ byte) ([]byte, int) {
	start := len(b)
	b = append(b, 0, 0, 0, 0, typ)
	return b, start
}

func end(b []byte, start int) []byte {
	n := len(b) - start - lenReserve
	l := uvarintLen(uint64(n))
	appendUvarint(b[start:start], uint64(n))
	if l < lenReserve {
		copy(b[start+l:], b[start+lenReserve:])
		b = b[:len(b)-(lenReserve-l)]
	}
	return b
}

// AppendMessage appends a MESSAGE frame.
func AppendMessage(b []byte, m *session.Message) []byte {
	b, s := begin(b, TypeMessage)
	return end(appendMessageBody(b, m), s)
}

func appendMessageBody(b []byte, m *session.Message) []byte {
	b = appendUvarint(b, m.Stream)
	flags := m.QoS & flagQoSMask
	if m.Retain {
		flags |= flagRetain
	}
	if m.Dup {
		flags |= flagDup
	}
	if m.Client != 0 {
		flags |= flagClient
	}
	if m.Except != 0 {
		flags |= flagExcept
	}
	if m.PublishedRetain {
		flags |= flagPublishedRetain
	}
	b = append(b, flags)
	b = appendUvarint(b, uint64(m.PacketID))
	if m.Client != 0 {
		b = appendUvarint(b, m.Client)
	}
	if m.Except != 0 {
		b = appendUvarint(b, m.Except)
	}
	b = appendString(b, m.Topic)
	b = appendProps(b, m.Props)
	return append(b, m.Payload...)
}

// EncodeMessage returns a MESSAGE frame in a buffer of its own, sized
// exactly: this is the encoding shared by every session (Message.Encoded).
func EncodeMessage(m *session.Message) []byte {
	n := 1 + uvarintLen(m.Stream) + 1 + uvarintLen(uint64(m.PacketID)) + strLen(m.Topic) + propsLen(m.Props) + len(m.Payload)
	if m.Client != 0 {
		n += uvarintLen(m.Client)
	}
	if m.Except != 0 {
		n += uvarintLen(m.Except)
	}
	b := appendUvarint(make([]byte, 0, uvarintLen(uint64(n))+n), uint64(n))
	return appendMessageBody(append(b, TypeMessage), m)
}

// AppendEvent appends the frame of a session data event.
func AppendEvent(b []byte, e *session.Event) []byte {
	switch e.Kind {
	case session.EventMessage:
		return append(b, e.Msg.Encoded(EncodeMessage)...)
	case session.EventResult:
		if e.ConnectFlags {
			return AppendConnectResult(b, e.Req, e.Value, e.SessionPresent)
		}
		return AppendResult(b, e.Req, e.Code, e.Text, e.Value)
	case session.EventLost:
		b, s := begin(b, TypeLost)
		b = appendUvarint(b, e.Handle)
		b = appendUvarint(b, uint64(e.Code))
		b = appendString(b, e.Text)
		return end(b, s)
	case session.EventNotice:
		b, s := begin(b, TypeNotice)
		b = appendUvarint(b, uint64(e.Code))
		b = appendString(b, e.Text)
		b = appendUvarint(b, e.Value)
		return end(b, s)
	case session.EventUnsubscribed:
		b, s := begin(b, TypeUnsubscribed)
		b = appendUvarint(b, e.Handle)
		b = appendString(b, e.Filter)
		b = appendUvarint(b, uint64(e.Code))
		b = appendString(b, e.Text)
		return end(b, s)
	}
	return b
}

// AppendResult appends a RESULT frame.
func AppendResult(b []byte, req uint64, code session.Code, msg string, value uint64) []byte {
	b, s := begin(b, TypeResult)
	return end(appendResultBody(b, req, code, msg, value), s)
}

func appendResultBody(b []byte, req uint64, code session.Code, msg string, value uint64) []byte {
	b = appendUvarint(b, req)
	b = appendUvarint(b, uint64(code))
	b = appendString(b, msg)
	return appendUvarint(b, value)
}

// AppendConnectResult appends a CONNECT's successful RESULT with its flags
// (a session opened with the option session_present): the stream, and
// whether the broker kept a session for the client ID.
func AppendConnectResult(b []byte, req, stream uint64, sessionPresent bool) []byte {
	b, s := begin(b, TypeResult)
	b = appendResultBody(b, req, 0, "", stream)
	var flags byte
	if sessionPresent {
		flags |= resultSessionPresent
	}
	return end(append(b, flags), s)
}

// AppendOpened appends an OPENED frame.
func AppendOpened(b []byte, id, secret [16]byte, heartbeatMs, timeoutMs, maxFrame uint64, info []KV) []byte {
	b, s := begin(b, TypeOpened)
	b = append(b, id[:]...)
	b = append(b, secret[:]...)
	b = appendUvarint(b, heartbeatMs)
	b = appendUvarint(b, timeoutMs)
	b = appendUvarint(b, maxFrame)
	b = appendKV(b, info)
	return end(b, s)
}

// AppendBound appends a BOUND frame: where the replay starts, and how many
// requests of the client the session has received (so the client resends
// the ones lost with the connection).
func AppendBound(b []byte, replayFrom, requests uint64) []byte {
	b, s := begin(b, TypeBound)
	b = appendUvarint(b, replayFrom)
	b = appendUvarint(b, requests)
	return end(b, s)
}

// AppendEnd appends the server's CLOSE frame.
func AppendEnd(b []byte, code session.Code, msg string) []byte {
	b, s := begin(b, TypeEnd)
	b = appendUvarint(b, uint64(code))
	b = appendString(b, msg)
	return end(b, s)
}

// AppendPing appends a PING frame (both directions).
func AppendPing(b []byte) []byte { return append(b, 1, TypePing) }

// AppendPingForAnswer appends a client's PING that asks for an answer at
// once (flag bit 0): a connection check, to a server whose OPENED info
// has ping_answer.
func AppendPingForAnswer(b []byte) []byte { return append(b, 2, TypePing, pingAnswer) }

func appendKV(b []byte, kv []KV) []byte {
	b = appendUvarint(b, uint64(len(kv)))
	for _, e := range kv {
		b = appendString(appendString(b, e.Key), e.Value)
	}
	return b
}

// Client-side encoders, used by Go clients of the gateway (tests,
// benchmarks, tools).

// AppendOpen appends an OPEN frame.
func AppendOpen(b []byte, user string, password []byte, options []KV) []byte {
	b, s := begin(b, TypeOpen)
	b = appendUvarint(b, Version)
	b = appendString(b, user)
	b = appendBytes(b, password)
	b = appendKV(b, options)
	return end(b, s)
}

// AppendBind appends a BIND frame.
func AppendBind(b []byte, id, secret [16]byte, received uint64) []byte {
	b, s := begin(b, TypeBind)
	b = append(b, id[:]...)
	b = append(b, secret[:]...)
	b = appendUvarint(b, received)
	return end(b, s)
}

// AppendSend appends the SEND frame that begins a /send body: the session,
// its secret, and (counted) the number of requests the client sent before
// the body's first.
func AppendSend(b []byte, id, secret [16]byte, requests uint64, counted bool) []byte {
	b, s := begin(b, TypeSend)
	b = append(b, id[:]...)
	b = append(b, secret[:]...)
	if counted {
		b = append(b, sendCounted)
		b = appendUvarint(b, requests)
	} else {
		b = append(b, 0)
	}
	return end(b, s)
}

// AppendConnect appends a CONNECT frame.
func AppendConnect(b []byte, req, handle uint64, c *session.ConnectParams) []byte {
	b, s := begin(b, TypeConnect)
	b = appendUvarint(b, req)
	b = appendUvarint(b, handle)
	b = appendString(b, c.Broker)
	b = appendString(b, c.ClientID)
	var flags byte
	if c.CleanStart {
		flags |= connectClean
	}
	if c.Will != nil {
		flags |= connectWill | (c.Will.QoS<<2)&connectWillQoS
		if c.Will.Retain {
			flags |= connectWillRetain
		}
	}
	b = append(b, flags)
	b = appendUvarint(b, uint64(c.KeepAlive))
	b = appendUvarint(b, uint64(c.SessionExpiry))
	b = appendString(b, c.Username)
	b = appendBytes(b, c.Password)
	if c.Will != nil {
		b = appendString(b, c.Will.Topic)
		b = appendProps(b, c.Will.Props)
		b = appendBytes(b, c.Will.Payload)
	}
	return end(b, s)
}

// AppendSubscribe appends a SUBSCRIBE frame with the default options.
func AppendSubscribe(b []byte, req, handle uint64, filter string, qos byte, maxFrequency uint64) []byte {
	return AppendSubscribeWith(b, req, handle, filter, qos, session.SubscribeOptions{}, maxFrequency)
}

// AppendSubscribeWith appends a SUBSCRIBE frame with subscription options.
func AppendSubscribeWith(b []byte, req, handle uint64, filter string, qos byte, o session.SubscribeOptions, maxFrequency uint64) []byte {
	b, s := begin(b, TypeSubscribe)
	b = appendUvarint(b, req)
	b = appendUvarint(b, handle)
	b = appendString(b, filter)
	opts := qos | o.RetainHandling<<4
	if o.NoLocal {
		opts |= subNoLocal
	}
	if o.RetainAsPublished {
		opts |= subRetainAsPublished
	}
	b = append(b, opts)
	b = appendUvarint(b, maxFrequency)
	return end(b, s)
}

// AppendUnsubscribe appends an UNSUBSCRIBE frame.
func AppendUnsubscribe(b []byte, req, handle uint64, filter string) []byte {
	b, s := begin(b, TypeUnsubscribe)
	b = appendUvarint(b, req)
	b = appendUvarint(b, handle)
	b = appendString(b, filter)
	return end(b, s)
}

// AppendPublish appends a client PUBLISH frame.
func AppendPublish(b []byte, req, handle uint64, p *session.PublishParams) []byte {
	b, s := begin(b, TypePublish)
	b = appendUvarint(b, req)
	b = appendUvarint(b, handle)
	b = appendString(b, p.Topic)
	flags := p.QoS & flagQoSMask
	if p.Retain {
		flags |= flagRetain
	}
	b = append(b, flags)
	b = appendProps(b, p.Props)
	b = append(b, p.Payload...)
	return end(b, s)
}

// AppendDisconnect appends a DISCONNECT frame.
func AppendDisconnect(b []byte, req, handle uint64) []byte {
	b, s := begin(b, TypeDisconnect)
	b = appendUvarint(b, req)
	b = appendUvarint(b, handle)
	return end(b, s)
}

// AppendAck appends an ACK frame.
func AppendAck(b []byte, stream, packetID uint64) []byte {
	b, s := begin(b, TypeAck)
	b = appendUvarint(b, stream)
	b = appendUvarint(b, packetID)
	return end(b, s)
}

// AppendClose appends the client's CLOSE frame.
func AppendClose(b []byte) []byte { return append(b, 1, TypeClose) }

// AppendCloseLeft appends the CLOSE frame of a client that went away (its
// page closed): the session's dedicated clients' wills fire.
func AppendCloseLeft(b []byte) []byte { return append(b, 2, TypeClose, closeLeft) }

// AppendFrequency appends a FREQUENCY frame (messages per 1000 s; 0:
// unlimited).
func AppendFrequency(b []byte, req, handle uint64, filter string, maxFrequency uint64) []byte {
	b, s := begin(b, TypeFrequency)
	b = appendUvarint(b, req)
	b = appendUvarint(b, handle)
	b = appendString(b, filter)
	b = appendUvarint(b, maxFrequency)
	return end(b, s)
}

// AppendBandwidth appends a BANDWIDTH frame (bytes per second; 0: no limit
// of the client's own).
func AppendBandwidth(b []byte, req, bytesPerSecond uint64) []byte {
	b, s := begin(b, TypeBandwidth)
	b = appendUvarint(b, req)
	b = appendUvarint(b, bytesPerSecond)
	return end(b, s)
}
