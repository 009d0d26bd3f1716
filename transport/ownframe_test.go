package transport

import (
	"bytes"
	"testing"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// A small publish that shares its unit with a large frame is decoded from
// a copy: what the session keeps of it (its payload) does not hold the
// unit, which the reader does not reuse and the garbage collector would
// otherwise keep whole for as long as the publish waits.
func TestSmallRequestDoesNotPinItsUnit(t *testing.T) {
	unit := AppendPublish(nil, 1, 1, &session.PublishParams{Topic: "t", Payload: []byte("small")})
	unit = AppendPublish(unit, 2, 9, &session.PublishParams{Topic: "t", Payload: make([]byte, 64<<10)})
	var payloads [][]byte
	err := SplitUnit(unit, func(b []byte) error {
		var f Frame
		if err := Decode(ownFrame(unit, b), &f); err != nil {
			return err
		}
		payloads = append(payloads, f.Publish.Payload)
		return nil
	})
	if err != nil || len(payloads) != 2 {
		t.Fatalf("%d frames, %v", len(payloads), err)
	}
	for i := range unit {
		unit[i] = 0xFF // the unit's buffer, overwritten: the small payload must not be in it
	}
	if !bytes.Equal(payloads[0], []byte("small")) {
		t.Fatalf("the small publish's payload is a slice of its unit: %q", payloads[0])
	}
	if payloads[1][0] != 0xFF {
		t.Fatal("the large publish, most of its unit, was copied")
	}
}
