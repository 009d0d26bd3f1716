package session

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

// The hub keeps a copy of each retained message its filters cover, for as
// long as the shared connection lives. paho reads a payload with
// io.ReadAll, into a buffer of 512 bytes or more: kept as is, 100,000
// retained topics of 100 bytes took 850 bytes each. The copy gets a payload
// of its own size.
func TestRetainedCopyKeepsOnlyItsPayload(t *testing.T) {
	h, _ := benchHub(t, 1)
	buf := make([]byte, 512) // as io.ReadAll's buffer
	copy(buf[40:], "value")
	pub := paho.PublishReceived{Packet: &paho.Publish{Topic: "sensors/a/temp", Retain: true, Payload: buf[40:140],
		Properties: &paho.PublishProperties{}}}
	h.onPublish(pub)

	kept, ok := h.retained["sensors/a/temp"]
	if !ok {
		t.Fatal("the retained message was not kept")
	}
	if string(kept.msg.Payload) != string(buf[40:140]) {
		t.Fatalf("kept payload %q", kept.msg.Payload)
	}
	// Its own allocation: 100 bytes, rounded up to the allocator's size class.
	if view := &kept.msg.Payload[0] == &buf[40]; view || cap(kept.msg.Payload) > 128 {
		t.Errorf("the copy's payload holds %d bytes (a view of the read buffer: %v), want its own 100", cap(kept.msg.Payload), view)
	}
}
