package transport

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// FuzzDecodeUnit feeds arbitrary transport units to the decoder the server
// runs on every client byte: it must never panic, and a client frame that
// decodes must encode back to a frame that decodes to the same thing.
func FuzzDecodeUnit(f *testing.F) {
	conn := session.ConnectParams{Broker: "b", Will: &session.PublishParams{Topic: "w", Payload: []byte{1}, Props: &session.Props{WillDelay: 5, HasWillDelay: true}}}
	f.Add(AppendOpen(nil, "u", []byte("p"), []KV{{"k", "v"}}))
	f.Add(AppendConnect(nil, 1, 2, &conn))
	f.Add(AppendSubscribe(AppendPing(nil), 3, 2, "a/#", 1, 0))
	f.Add(AppendSubscribeWith(nil, 5, 2, "a/b", 2, session.SubscribeOptions{NoLocal: true, RetainAsPublished: true, RetainHandling: session.RetainNever}, 7))
	f.Add(AppendPublish(nil, 4, 2, &session.PublishParams{Topic: "t", QoS: 2, Props: &session.Props{ContentType: "x"}, Payload: []byte{0, 1}}))
	f.Add(EncodeMessage(&session.Message{Topic: "t", Payload: []byte("v")}))
	f.Add(AppendSend(AppendPing(nil), [16]byte{1}, [16]byte{2}, 7, true))
	f.Add(AppendCloseLeft(AppendPing(nil)))
	f.Add(AppendPingForAnswer(AppendPing(nil)))
	f.Add(AppendEvent(nil, &session.Event{Kind: session.EventUnsubscribed, Handle: 3, Filter: "room/+/msg", Code: 4021, Text: "removed"}))
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, unit []byte) {
		SplitUnit(unit, func(b []byte) error {
			var fr Frame
			if err := Decode(b, &fr); err != nil {
				return err
			}
			var again []byte
			switch fr.Type {
			case TypeSubscribe:
				again = AppendSubscribeWith(nil, fr.Req, fr.Handle, fr.Filter, fr.QoS, fr.SubOptions, fr.MaxFrequency)
			case TypePublish:
				again = AppendPublish(nil, fr.Req, fr.Handle, &fr.Publish)
			case TypeUnsubscribe:
				again = AppendUnsubscribe(nil, fr.Req, fr.Handle, fr.Filter)
			case TypeSend:
				again = AppendSend(nil, fr.Session, fr.Secret, fr.Requests, fr.Counted)
			case TypeConnect:
				again = AppendConnect(nil, fr.Req, fr.Handle, &fr.Connect)
			case TypeUnsubscribed:
				again = AppendEvent(nil, &session.Event{Kind: session.EventUnsubscribed, Handle: fr.Handle, Filter: fr.Filter, Code: fr.Code, Text: fr.Message})
			default:
				return nil
			}
			var fr2 Frame
			if err := Decode(again[uvarintLen(uint64(len(again)-1)):], &fr2); err != nil {
				t.Fatalf("re-encoded frame does not decode: %v", err)
			}
			if fr2.Filter != fr.Filter || fr2.Publish.Topic != fr.Publish.Topic || !bytes.Equal(fr2.Publish.Payload, fr.Publish.Payload) ||
				fr2.Session != fr.Session || fr2.Secret != fr.Secret || fr2.Requests != fr.Requests || fr2.Counted != fr.Counted ||
				fr2.QoS != fr.QoS || fr2.SubOptions != fr.SubOptions || !reflect.DeepEqual(fr2.Connect, fr.Connect) ||
				fr2.Handle != fr.Handle || fr2.Code != fr.Code || fr2.Message != fr.Message {
				t.Fatalf("round trip changed the frame: %+v vs %+v", fr, fr2)
			}
			return nil
		})
	})
}
