package session

import (
	"bytes"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// FuzzMQTT311Up feeds the translator of an MQTT 3.1.1 broker's packets
// whatever a broker may send: it never panics, and what it hands paho is a
// whole packet, which paho reads as such.
func FuzzMQTT311Up(f *testing.F) {
	for _, seed := range [][]byte{
		{0x20, 0x02, 0x00, 0x00},                      // CONNACK
		{0x20, 0x02, 0x01, 0x05},                      // CONNACK: not authorized
		{0x30, 0x05, 0x00, 0x01, 'a', 'h', 'i'},       // PUBLISH QoS 0
		{0x32, 0x07, 0x00, 0x01, 'a', 0, 7, 'h', 'i'}, // PUBLISH QoS 1
		{0x90, 0x04, 0x00, 0x07, 0x01, 0x80},          // SUBACK
		{0xb0, 0x02, 0x00, 0x09},                      // UNSUBACK
		{0x40, 0x02, 0x00, 0x07},                      // PUBACK
		{0x62, 0x02, 0x00, 0x07},                      // PUBREL
		{0xd0, 0x00},                                  // PINGRESP
		{0x30, 0xff, 0xff, 0xff, 0xff},                // a length past four bytes
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tr := &mqtt311{}
		tr.unsubs = map[uint16]int{9: 3}
		r := bytes.NewReader(b)
		for range 4 {
			out, err := tr.up(r)
			if err != nil {
				return
			}
			if n, ok := packetLength(out); !ok || n != len(out) {
				t.Fatalf("% x became % x, not a whole packet", b, out)
			}
			cp, err := packets.ReadPacket(bytes.NewReader(out))
			if err == nil && cp.Type == packets.UNSUBACK {
				if u := cp.Content.(*packets.Unsuback); len(u.Reasons) == 0 {
					t.Fatalf("an UNSUBACK with no reason codes from % x", b)
				}
			}
		}
	})
}

// FuzzMQTT311Down feeds the translator of the gateway's packets whatever
// bytes: it never panics, refuses what is not a whole MQTT 5 packet, and a
// PUBLISH paho writes comes out as the same message in MQTT 3.1.1.
func FuzzMQTT311Down(f *testing.F) {
	f.Add([]byte("sensors/a"), byte(1), []byte("21.5"), []byte{0x10, 0x02, 0x00, 0x04})
	f.Add([]byte(""), byte(0), []byte{}, []byte{0xe0, 0x01, 0x04})
	f.Add([]byte("a"), byte(0), []byte{}, []byte{0x82, 0x01, 0x00}) // a SUBSCRIBE cut short
	f.Add([]byte("a"), byte(0), []byte{}, []byte{0xa2, 0x00})       // an UNSUBSCRIBE with no body
	f.Fuzz(func(t *testing.T, topic []byte, qos byte, payload, raw []byte) {
		tr := &mqtt311{}
		if len(raw) > 0 {
			tr.down(raw) // no panic
		}
		qos %= 3
		p := &packets.Publish{Topic: string(topic), QoS: qos, Payload: payload, Properties: &packets.Properties{ContentType: "x"}}
		if qos > 0 {
			p.PacketID = 7
		}
		var v5 bytes.Buffer
		if _, err := p.WriteTo(&v5); err != nil {
			return
		}
		out, err := tr.down(v5.Bytes())
		if err != nil {
			t.Fatalf("a PUBLISH paho wrote: %v", err)
		}
		// Read back as 3.1.1, through the way up: the same message.
		rd := bytes.NewReader(out)
		back, err := (&mqtt311{}).up(rd)
		if err != nil {
			t.Fatalf("its 3.1.1 form % x: %v", out, err)
		}
		cp, err := packets.ReadPacket(bytes.NewReader(back))
		if err != nil {
			t.Fatal(err)
		}
		got := cp.Content.(*packets.Publish)
		if got.Topic != p.Topic || !bytes.Equal(got.Payload, p.Payload) || got.QoS != qos || got.PacketID != p.PacketID {
			t.Fatalf("sent %q %q at %d, got %q %q at %d", p.Topic, p.Payload, qos, got.Topic, got.Payload, got.QoS)
		}
	})
}

// A large message does not leave its buffers behind: one 4 MiB PUBLISH kept
// 12 MiB for the life of the connection (a dedicated one's, per web
// client), until the next message of that size.
func TestMQTT311LetsGoOfLargeBuffers(t *testing.T) {
	tr := &mqtt311{}
	big := withFixedHeader(0x30, append([]byte{0, 1, 'a'}, make([]byte, 4<<20)...))
	small := withFixedHeader(0x30, []byte{0, 1, 'a', 'h', 'i'})
	r := bytes.NewReader(append(big, small...))
	for range 2 {
		tr.shrink() // as read311 does before each packet
		if _, err := tr.up(r); err != nil {
			t.Fatal(err)
		}
	}
	if held := cap(tr.body) + cap(tr.form) + cap(tr.in); held > 64<<10 {
		t.Fatalf("after a 4 MiB message and a small one, %d bytes held", held)
	}
}
