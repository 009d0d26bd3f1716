package transport

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/caddy-mqtt/mqttgateway/session"
)

func decodeOne(t *testing.T, unit []byte) Frame {
	t.Helper()
	var f Frame
	n := 0
	err := SplitUnit(unit, func(b []byte) error { n++; return Decode(b, &f) })
	if err != nil || n != 1 {
		t.Fatalf("decode: %v (%d frames) of %x", err, n, unit)
	}
	return f
}

func TestUvarintLimits(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 16383, 16384, 1<<32 - 1, maxUvarint} {
		r := reader{b: appendUvarint(nil, v)}
		if got := r.uvarint(); got != v || r.done() != nil {
			t.Errorf("round trip of %d: got %d, %v", v, got, r.err)
		}
	}
	bad := [][]byte{
		{},     // empty
		{0x80}, // truncated
		{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, // 9 bytes
		appendUvarint(nil, maxUvarint+1),                       // above 2^53-1
	}
	for _, b := range bad {
		r := reader{b: b}
		r.uvarint()
		if r.err == nil {
			t.Errorf("accepted %x", b)
		}
	}
}

func TestClientFramesRoundTrip(t *testing.T) {
	props := &session.Props{PayloadFormat: 1, HasPayloadFormat: true, MessageExpiry: 60, HasMessageExpiry: true,
		ContentType: "application/json", ResponseTopic: "re/ply", CorrelationData: []byte{0, 1, 2},
		User: []session.UserProperty{{Key: "k", Value: "v"}, {Key: "k", Value: "w"}}}
	payload := []byte{0, 0xff, 0xfe, 'x'}
	conn := session.ConnectParams{Broker: "b", ClientID: "c", CleanStart: true, KeepAlive: 30, SessionExpiry: 3600,
		Username: "u", Password: []byte("p"),
		Will: &session.PublishParams{Topic: "will/t", QoS: 1, Retain: true, Payload: payload}}
	willProps := *props
	willProps.WillDelay, willProps.HasWillDelay = 300, true
	conn.Will.Props = &willProps
	cases := []struct {
		unit []byte
		want Frame
	}{
		{AppendOpen(nil, "alice", []byte("pw"), []KV{{"max_bandwidth", "1000"}}),
			Frame{Type: TypeOpen, Version: 1, User: "alice", Password: []byte("pw"), Options: []KV{{"max_bandwidth", "1000"}}}},
		{AppendBind(nil, [16]byte{1}, [16]byte{2}, 77), Frame{Type: TypeBind, Session: [16]byte{1}, Secret: [16]byte{2}, Received: 77}},
		{AppendConnect(nil, 5, 6, &conn), Frame{Type: TypeConnect, Req: 5, Handle: 6, Connect: conn}},
		{AppendSubscribe(nil, 7, 8, "a/+/#", 2, 500), Frame{Type: TypeSubscribe, Req: 7, Handle: 8, Filter: "a/+/#", QoS: 2, MaxFrequency: 500}},
		{AppendSubscribeWith(nil, 7, 8, "a/b", 1, session.SubscribeOptions{NoLocal: true, RetainHandling: session.RetainIfNew}, 0),
			Frame{Type: TypeSubscribe, Req: 7, Handle: 8, Filter: "a/b", QoS: 1, SubOptions: session.SubscribeOptions{NoLocal: true, RetainHandling: session.RetainIfNew}}},
		{AppendSubscribeWith(nil, 7, 8, "a/b", 0, session.SubscribeOptions{RetainAsPublished: true, RetainHandling: session.RetainNever}, 0),
			Frame{Type: TypeSubscribe, Req: 7, Handle: 8, Filter: "a/b", SubOptions: session.SubscribeOptions{RetainAsPublished: true, RetainHandling: session.RetainNever}}},
		{AppendUnsubscribe(nil, 9, 8, "a/#"), Frame{Type: TypeUnsubscribe, Req: 9, Handle: 8, Filter: "a/#"}},
		{AppendPublish(nil, 10, 8, &session.PublishParams{Topic: "t", QoS: 1, Retain: true, Props: props, Payload: payload}),
			Frame{Type: TypePublish, Req: 10, Handle: 8, Publish: session.PublishParams{Topic: "t", QoS: 1, Retain: true, Props: props, Payload: payload}}},
		{AppendDisconnect(nil, 11, 8), Frame{Type: TypeDisconnect, Req: 11, Handle: 8}},
		{AppendAck(nil, 3, 65535), Frame{Type: TypeAck, Stream: 3, PacketID: 65535}},
		{AppendPing(nil), Frame{Type: TypePing}},
		{AppendPingForAnswer(nil), Frame{Type: TypePing, Answer: true}},
		{AppendClose(nil), Frame{Type: TypeClose}},
		{AppendCloseLeft(nil), Frame{Type: TypeClose, Left: true}},
	}
	for _, tc := range cases {
		got := decodeOne(t, tc.unit)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("type 0x%02x:\n got %+v\nwant %+v", tc.want.Type, got, tc.want)
		}
	}
}

func TestServerFramesRoundTrip(t *testing.T) {
	m := &session.Message{Stream: 9, Topic: "s/a/temp", Payload: []byte{0, 1, 2, 0xff}, QoS: 2, Retain: true, Dup: true, PacketID: 12,
		Props: &session.Props{User: []session.UserProperty{{Key: "unit", Value: "C"}}}}
	f := decodeOne(t, EncodeMessage(m))
	if f.Type != TypeMessage || f.Stream != 9 || f.Publish.Topic != m.Topic || !bytes.Equal(f.Publish.Payload, m.Payload) ||
		f.Publish.QoS != 2 || !f.Publish.Retain || !f.Dup || f.PacketID != 12 || f.Publish.Props.User[0].Value != "C" {
		t.Fatalf("message: %+v", f)
	}
	if enc := EncodeMessage(m); len(enc) != cap(enc) {
		t.Errorf("EncodeMessage sized %d for %d bytes", cap(enc), len(enc))
	}
	if f.Handle != 0 {
		t.Fatalf("a message for every client decoded as addressed to %d", f.Handle)
	}
	m.Client = 300 // two bytes as a uvarint
	f = decodeOne(t, EncodeMessage(m))
	if f.Handle != 300 || f.Publish.Topic != m.Topic || !bytes.Equal(f.Publish.Payload, m.Payload) || f.PacketID != 12 {
		t.Fatalf("addressed message: %+v", f)
	}
	if enc := EncodeMessage(m); len(enc) != cap(enc) {
		t.Errorf("EncodeMessage sized %d for %d bytes of an addressed message", cap(enc), len(enc))
	}
	if got := AppendMessage(nil, m); !bytes.Equal(got, EncodeMessage(m)) {
		t.Errorf("AppendMessage and EncodeMessage differ for an addressed message")
	}
	m.Client, m.Except = 0, 301
	f = decodeOne(t, EncodeMessage(m))
	if f.Except != 301 || f.Handle != 0 || f.Publish.Topic != m.Topic || !bytes.Equal(f.Publish.Payload, m.Payload) || f.PacketID != 12 {
		t.Fatalf("message for all clients but one: %+v", f)
	}
	if enc := EncodeMessage(m); len(enc) != cap(enc) || !bytes.Equal(AppendMessage(nil, m), enc) {
		t.Errorf("EncodeMessage sized %d for %d bytes of a message for all clients but one, or differs from AppendMessage", cap(enc), len(enc))
	}
	m.Except, m.PublishedRetain = 0, true
	if f = decodeOne(t, EncodeMessage(m)); !f.PublishedRetain || f.Publish.Topic != m.Topic {
		t.Fatalf("message published retained: %+v", f)
	}
	m.PublishedRetain = false
	f = decodeOne(t, AppendResult(nil, 4, session.CodeInvalidFilter, "bad filter", 1))
	if f.Type != TypeResult || f.Req != 4 || f.Code != session.CodeInvalidFilter || f.Message != "bad filter" || f.Value != 1 || f.HasFlags {
		t.Fatalf("result: %+v", f)
	}
	for _, present := range []bool{false, true} {
		f = decodeOne(t, AppendConnectResult(nil, 5, 300, present))
		if f.Type != TypeResult || f.Req != 5 || f.Code != 0 || f.Value != 300 || !f.HasFlags || f.SessionPresent != present {
			t.Fatalf("connect result (session present %v): %+v", present, f)
		}
	}
	if got := AppendEvent(nil, &session.Event{Kind: session.EventResult, Req: 5, Value: 300, ConnectFlags: true, SessionPresent: true}); !bytes.Equal(got, AppendConnectResult(nil, 5, 300, true)) {
		t.Fatalf("a CONNECT's result event encodes as % x", got)
	}
	f = decodeOne(t, AppendOpened(nil, [16]byte{7}, [16]byte{8}, 20000, 30000, 1<<20, []KV{{"a", "b"}}))
	if f.Type != TypeOpened || f.Session[0] != 7 || f.Secret[0] != 8 || f.Heartbeat != 20000 || f.MaxFrame != 1<<20 {
		t.Fatalf("opened: %+v", f)
	}
	f = decodeOne(t, AppendEvent(nil, &session.Event{Kind: session.EventUnsubscribed, Handle: 3, Filter: "room/+/msg", Code: session.CodeNotAuthorized, Text: "removed from room 42"}))
	if f.Type != TypeUnsubscribed || f.Handle != 3 || f.Filter != "room/+/msg" || f.Code != session.CodeNotAuthorized || f.Message != "removed from room 42" {
		t.Fatalf("unsubscribed: %+v", f)
	}
	f = decodeOne(t, AppendEnd(nil, session.CodeShuttingDown, "bye"))
	if f.Type != TypeEnd || f.Code != session.CodeShuttingDown || f.Message != "bye" {
		t.Fatalf("end: %+v", f)
	}
}

// A long payload makes the length prefix longer than one byte; the
// in-place prefix must still be right.
func TestLengthPrefixSizes(t *testing.T) {
	for _, n := range []int{0, 100, 200, 20000, 3 << 20} {
		m := &session.Message{Topic: "t", Payload: bytes.Repeat([]byte{7}, n)}
		unit := append(EncodeMessage(m), AppendPing(nil)...)
		count := 0
		if err := SplitUnit(unit, func(b []byte) error { count++; var f Frame; return Decode(b, &f) }); err != nil || count != 2 {
			t.Fatalf("payload %d: %v, %d frames", n, err, count)
		}
	}
}

func TestMalformedFramesAreRejected(t *testing.T) {
	bad := map[string][]byte{
		"unknown type":        {0x7f},
		"invalid utf-8 topic": {TypeUnsubscribe, 1, 1, 2, 0xc3, 0x28},
		"trailing bytes":      append(AppendDisconnect(nil, 1, 1)[1:], 0),
		"publish flag bits":   {TypePublish, 1, 1, 1, 't', 0x10, 0},
		"unknown property":    {TypePublish, 1, 1, 1, 't', 0, 1, 99},
		"publish will delay":  {TypePublish, 1, 1, 1, 't', 0, 1, 7, 5},
		"string past the end": {TypeUnsubscribe, 1, 1, 50, 'a'},
		"kv count too large":  {TypeOpen, 1, 0, 0, 100},
		"truncated bind":      {TypeBind, 1, 2, 3},
		// MQTT 5 calls both a malformed SUBSCRIBE (3.8.3.1).
		"retain handling 3":         {TypeSubscribe, 1, 1, 1, 'a', 0x30, 0},
		"reserved subscribe option": {TypeSubscribe, 1, 1, 1, 'a', 0x40, 0},
		// And a CONNECT (3.1.2.3, 3.1.2.6).
		"reserved connect flag": {TypeConnect, 1, 1, 1, 'b', 0, 0x20, 0, 0, 0, 0},
		"will qos without will": {TypeConnect, 1, 1, 1, 'b', 0, 0x04, 0, 0, 0, 0},
		"will retain, no will":  {TypeConnect, 1, 1, 1, 'b', 0, 0x10, 0, 0, 0, 0},
		"reserved close flag":   {TypeClose, 0x02},
		"bytes after close":     {TypeClose, 0x01, 0},
		"reserved ping flag":    {TypePing, 0x02},
		"bytes after ping":      {TypePing, 0x01, 0},
	}
	var plain Frame
	if err := Decode([]byte{TypeConnect, 1, 1, 1, 'b', 0, 0x01, 0, 0, 0, 0}, &plain); err != nil || !plain.Connect.CleanStart {
		t.Fatalf("a clean-start CONNECT: %v %+v", err, plain.Connect)
	}
	for name, b := range bad {
		var f Frame
		if err := Decode(b, &f); err == nil {
			t.Errorf("%s: accepted %x", name, b)
		}
	}
	if err := SplitUnit([]byte{5, 1, 2}, func([]byte) error { return nil }); err == nil {
		t.Error("unit with a frame longer than the unit accepted")
	}
	if err := SplitUnit([]byte{0}, func([]byte) error { return nil }); err == nil {
		t.Error("empty frame accepted")
	}
}

// A client's PUBLISH keeps one user property more than the session allows,
// enough for the session to refuse it (4003), and the decoder reads past
// the rest without collecting them. A server's MESSAGE keeps them all.
func TestUserPropertiesOfAClientMessageAreCapped(t *testing.T) {
	users := make([]session.UserProperty, 5000)
	for i := range users {
		users[i] = session.UserProperty{Key: "k", Value: "v"}
	}
	props := &session.Props{User: users, ContentType: "text/plain"}
	f := decodeOne(t, AppendPublish(nil, 1, 1, &session.PublishParams{Topic: "t", Props: props, Payload: []byte("p")}))
	if got := len(f.Publish.Props.User); got != session.MaxUserProperties+1 {
		t.Errorf("PUBLISH: %d user properties kept, want %d", got, session.MaxUserProperties+1)
	}
	if f.Publish.Props.ContentType != "text/plain" || string(f.Publish.Payload) != "p" {
		t.Errorf("PUBLISH: the rest of the frame was not read right: %+v", f.Publish)
	}
	m := decodeOne(t, AppendMessage(nil, &session.Message{Stream: 1, Topic: "t", Props: props, Payload: []byte("p")}))
	if got := len(m.Publish.Props.User); got != len(users) {
		t.Errorf("MESSAGE: %d user properties, want all %d", got, len(users))
	}
	bad := AppendPublish(nil, 1, 1, &session.PublishParams{Topic: "t", Props: &session.Props{User: append(users[:2000:2000], session.UserProperty{Key: "\xff", Value: ""})}})
	var b Frame
	if err := SplitUnit(bad, func(p []byte) error { return Decode(p, &b) }); err == nil {
		t.Error("invalid UTF-8 in a user property past the cap was not refused")
	}
}
