package session

import (
	"bytes"
	"slices"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	mochipackets "github.com/mochi-mqtt/server/v2/packets"
)

func willConnect(t testing.TB, props *paho.WillProperties) []byte {
	t.Helper()
	c := &paho.Connect{ClientID: "id", KeepAlive: 30, CleanStart: true, UsernameFlag: true, Username: "u",
		PasswordFlag: true, Password: []byte("p"), WillMessage: &paho.WillMessage{Topic: "w/t", QoS: 1, Payload: []byte("gone")},
		WillProperties: props}
	return connectBytes(t, c)
}

// connectBytes is c as paho's client writes it.
func connectBytes(t testing.TB, c *paho.Connect) []byte {
	t.Helper()
	cp := c.Packet()
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 5
	var buf bytes.Buffer
	if _, err := cp.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func allWillProperties() *paho.WillProperties {
	one, expiry, delay := byte(1), uint32(300), uint32(5)
	return &paho.WillProperties{PayloadFormat: &one, MessageExpiry: &expiry, ContentType: "application/json",
		ResponseTopic: "r/t", CorrelationData: []byte{0, 1, 0xff}, User: paho.UserProperties{{Key: "a", Value: "1"}},
		WillDelayInterval: &delay}
}

// decodeConnect decodes a whole CONNECT with the embedded broker's decoder,
// one independent of paho's.
func decodeConnect(t testing.TB, packet []byte) mochipackets.Packet {
	t.Helper()
	n, ok := packetLength(packet)
	if !ok || n != len(packet) {
		t.Fatalf("the fixed header says %d bytes (%v), the packet has %d", n, ok, len(packet))
	}
	var pk mochipackets.Packet
	if err := pk.FixedHeader.Decode(packet[0]); err != nil {
		t.Fatal(err)
	}
	header := 2
	for packet[header-1]&0x80 != 0 {
		header++
	}
	if err := pk.ConnectDecode(packet[header:]); err != nil {
		t.Fatalf("decoding the CONNECT: %v", err)
	}
	return pk
}

// paho's CONNECT with a will, once its will properties are put back, has
// every one of them and the rest of the packet unchanged.
func TestWithWillPropertiesRestoresWhatPahoDrops(t *testing.T) {
	props := allWillProperties()
	pk := decodeConnect(t, withWillProperties(willConnect(t, props), encodeWillProperties(props)))
	c, w := pk.Connect, pk.Connect.WillProperties
	if !w.PayloadFormatFlag || w.PayloadFormat != 1 || w.MessageExpiryInterval != 300 || w.ContentType != "application/json" ||
		w.ResponseTopic != "r/t" || !bytes.Equal(w.CorrelationData, []byte{0, 1, 0xff}) || w.WillDelayInterval != 5 ||
		len(w.User) != 1 || w.User[0].Key != "a" || w.User[0].Val != "1" {
		t.Fatalf("will properties: %+v", w)
	}
	if pk.ProtocolVersion != 5 || c.ClientIdentifier != "id" || c.Keepalive != 30 || !c.Clean || c.WillTopic != "w/t" ||
		string(c.WillPayload) != "gone" || c.WillQos != 1 || string(c.Username) != "u" || string(c.Password) != "p" {
		t.Fatalf("the rest of the CONNECT: %+v", c)
	}

	// What paho alone sends: the will delay and user property only.
	w = decodeConnect(t, willConnect(t, props)).Connect.WillProperties
	if w.PayloadFormatFlag || w.ContentType != "" || w.WillDelayInterval != 5 || len(w.User) != 1 {
		t.Fatalf("paho's own encoding changed (the repair may no longer be needed): %+v", w)
	}
}

// A packet that is not a whole MQTT 5 CONNECT with a will passes unchanged.
func TestWithWillPropertiesLeavesOtherPacketsAlone(t *testing.T) {
	props := encodeWillProperties(allWillProperties())
	whole := willConnect(t, allWillProperties())
	v311 := slices.Clone(whole)
	v311[8] = 4 // the protocol version
	for name, packet := range map[string][]byte{
		"no will":    connectBytes(t, &paho.Connect{ClientID: "id", KeepAlive: 30}),
		"MQTT 3.1.1": v311,
		"cut short":  whole[:len(whole)-1],
		"a PUBLISH":  {0x30, 3, 0, 1, 'a'},
		"empty":      {},
	} {
		if got := withWillProperties(packet, props); !bytes.Equal(got, packet) {
			t.Errorf("%s: changed to % x", name, got)
		}
	}
}

func FuzzWithWillProperties(f *testing.F) {
	props := encodeWillProperties(allWillProperties())
	f.Add(willConnect(f, allWillProperties()))
	f.Add(willConnect(f, nil))
	f.Add([]byte{0x10, 0})
	f.Fuzz(func(t *testing.T, packet []byte) {
		out := withWillProperties(packet, props)
		if bytes.Equal(out, packet) {
			return
		}
		// Changed: a whole packet, by its fixed header, which a second
		// repair leaves as it is.
		if n, ok := packetLength(out); !ok || n != len(out) {
			t.Fatalf("% x became % x, whose fixed header says %d bytes", packet, out, n)
		}
		if again := withWillProperties(out, props); !bytes.Equal(again, out) {
			t.Fatalf("a second repair changed % x to % x", out, again)
		}
	})
}
