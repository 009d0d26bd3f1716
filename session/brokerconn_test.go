package session

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"
)

// Packets that paho writes from many goroutines at once reach the broker
// whole, each in one piece, whatever their size: brokerConn is the lock
// paho takes around each packet.
func TestBrokerConnWritesWholePackets(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn := &brokerConn{Conn: raw}
	defer conn.Close()
	peer, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()

	const writers, each = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p := &packets.Publish{Topic: fmt.Sprintf("w/%d", w), QoS: 1, PacketID: uint16(w*each + i + 1),
					Payload: bytes.Repeat([]byte{byte(i)}, i*997)}
				if _, err := p.WriteTo(conn); err != nil {
					t.Error(err)
					return
				}
				if _, err := packets.NewControlPacket(packets.PINGREQ).WriteTo(conn); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	seen := map[uint16]bool{}
	for range writers * each * 2 {
		cp, err := packets.ReadPacket(peer)
		if err != nil {
			t.Fatal(err)
		}
		if cp.Type == packets.PINGREQ {
			continue
		}
		p := cp.Content.(*packets.Publish)
		w, i := int(p.PacketID-1)/each, int(p.PacketID-1)%each
		if p.Topic != fmt.Sprintf("w/%d", w) || !bytes.Equal(p.Payload, bytes.Repeat([]byte{byte(i)}, i*997)) || seen[p.PacketID] {
			t.Fatalf("packet %d arrived mangled or twice: topic %q, %d bytes", p.PacketID, p.Topic, len(p.Payload))
		}
		seen[p.PacketID] = true
	}
	wg.Wait()
}

// A write to a closed connection fails with its error and reports the
// PUBLISH it was, by packet identifier and bytes.
func TestBrokerConnReportsUnsentPublish(t *testing.T) {
	a, b := net.Pipe()
	b.Close()
	a.Close()
	reported := make(chan []byte, 1)
	conn := &brokerConn{Conn: a, unsent: func(_ *brokerConn, id uint16, packet []byte) {
		if id != 7 {
			t.Errorf("packet identifier %d, want 7", id)
		}
		reported <- packet
	}}
	p := &packets.Publish{Topic: "t", QoS: 2, PacketID: 7, Payload: []byte("x")}
	if _, err := p.WriteTo(conn); err == nil {
		t.Fatal("a write to a closed connection succeeded")
	}
	var want bytes.Buffer
	p.WriteTo(&want)
	select {
	case got := <-reported:
		if !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("reported %x, want %x", got, want.Bytes())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the failed PUBLISH was not reported")
	}
}

// Over WebSocket each packet is one message: a PUBLISH with an empty
// payload (clearing a retained message) and a large one too.
func TestBrokerConnOneWebSocketMessagePerPacket(t *testing.T) {
	messages := make(chan []byte, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			_, m, err := ws.ReadMessage()
			if err != nil {
				close(messages)
				return
			}
			messages <- m
		}
	}))
	defer srv.Close()
	u, _ := url.Parse(strings.Replace(srv.URL, "http://", "ws://", 1))
	raw, err := dialBroker(context.Background(), u, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	conn := &brokerConn{Conn: raw}
	sent := []packets.Packet{
		&packets.Publish{Topic: "retained/clear", QoS: 1, PacketID: 1, Retain: true},
		&packets.Publish{Topic: "large", QoS: 0, Payload: bytes.Repeat([]byte("x"), 100_000)},
		&packets.Pingreq{},
	}
	for _, p := range sent {
		if _, err := p.WriteTo(conn); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	var got int
	for m := range messages {
		r := bytes.NewReader(m)
		if _, err := packets.ReadPacket(r); err != nil || r.Len() != 0 {
			t.Fatalf("message %d is not one whole packet: %d bytes, %v, %d left", got, len(m), err, r.Len())
		}
		got++
	}
	if got != len(sent) {
		t.Fatalf("%d messages for %d packets", got, len(sent))
	}
}

// publishPacketID agrees with paho's decoder on any input, and never
// panics.
func FuzzPublishPacketID(f *testing.F) {
	for _, p := range []*packets.Publish{
		{Topic: "a/b", QoS: 1, PacketID: 258, Payload: []byte("hi")},
		{Topic: "", QoS: 2, PacketID: 65535},
		{Topic: "x", QoS: 0, Payload: make([]byte, 300)},
	} {
		var b bytes.Buffer
		p.WriteTo(&b)
		f.Add(b.Bytes())
	}
	f.Add([]byte{0x32, 0x05, 0x00}) // truncated
	f.Fuzz(func(t *testing.T, b []byte) {
		id, ok := publishPacketID(b)
		// paho, the oracle, allocates and waits for the whole length a
		// header declares: 256 MB took it 8 s, a hang to the fuzzer. An
		// input shorter than its declared length is truncated anyway.
		if len(b) < 2 {
			return
		}
		if n, w := binary.Uvarint(b[1:]); w <= 0 || n > uint64(len(b)) {
			return
		}
		cp, err := packets.ReadPacket(bytes.NewReader(b))
		if err != nil || cp.Type != packets.PUBLISH {
			return
		}
		p := cp.Content.(*packets.Publish)
		if p.QoS > 2 {
			return // malformed in MQTT; paho reads it anyway, and never writes one
		}
		if p.QoS == 0 {
			if ok {
				t.Fatalf("an identifier %d for a QoS 0 publish", id)
			}
			return
		}
		if !ok || id != p.PacketID {
			t.Fatalf("publishPacketID = %d, %v; paho reads %d", id, ok, p.PacketID)
		}
	})
}

// packetLength reads the length paho's fixed headers give, and never
// panics on other input.
func FuzzPacketLength(f *testing.F) {
	f.Add(uint32(0), []byte{0x30, 0x00})
	f.Add(uint32(268435455), []byte{0xff, 0xff})
	f.Fuzz(func(t *testing.T, remaining uint32, junk []byte) {
		packetLength(junk)
		remaining %= 268435456 // the largest Remaining Length
		var first firstWrite
		(&packets.ControlPacket{FixedHeader: packets.FixedHeader{Type: packets.PINGREQ}, Content: sized(remaining)}).WriteTo(&first)
		if n, ok := packetLength(first.b); !ok || n != len(first.b)+int(remaining) {
			t.Fatalf("packetLength(%x) = %d, %v; want %d", first.b, n, ok, len(first.b)+int(remaining))
		}
	})
}

// sized is packet content of a length, without the memory: its buffers
// are one chunk again and again.
type sized uint32

var chunk = make([]byte, 1<<16)

func (s sized) Buffers() net.Buffers {
	var bufs net.Buffers
	for n := int(s); n > 0; n -= len(chunk) {
		bufs = append(bufs, chunk[:min(n, len(chunk))])
	}
	return bufs
}
func (s sized) Unpack(*bytes.Buffer) error       { return nil }
func (s sized) WriteTo(io.Writer) (int64, error) { return 0, nil }

// firstWrite keeps what is written to it first: a packet's fixed header.
type firstWrite struct{ b []byte }

func (w *firstWrite) Write(p []byte) (int, error) {
	if w.b == nil {
		w.b = bytes.Clone(p)
	}
	return len(p), nil
}

// A port that answers a CONNECT with a TLS alert (a TLS listener that
// sends one rather than closing, as some do), in HTTP (a WebSocket
// listener) or in MQTT 3.1.1 is named for what it is, by the first bytes
// paho reads; a broker's real CONNACK is read as it is.
func TestBrokerConnNamesAnswersNotInMQTT(t *testing.T) {
	for _, tc := range []struct {
		answer []byte
		says   string
	}{
		{[]byte{0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x32}, "the broker answered in TLS (a TLS port? it needs mqtts://)"},
		{[]byte("HTTP/1.1 400 Bad Request\r\n\r\n"), "the broker answered in HTTP"},
		// An MQTT 3.1.1 broker's CONNACK: "unacceptable protocol level".
		{[]byte{0x20, 0x02, 0x00, 0x01}, "the broker answered in MQTT 3.1.1, not MQTT 5"},
		{[]byte{0x20, 0x03, 0x00, 0x00, 0x00}, ""}, // a CONNACK
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if c, err := ln.Accept(); err == nil {
				c.Write(tc.answer)
				c.Close()
			}
		}()
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn := newBrokerConn(raw, nil, nil, nil) // the buffered reads of a TCP connection
		_, err = packets.ReadPacket(conn)
		got := ""
		if err != nil {
			got = dialCause(err)
		}
		if tc.says == "" && err != nil || !strings.HasPrefix(got, tc.says) {
			t.Errorf("answer % x: read %v, says %q, want %q", tc.answer[:2], err, got, tc.says)
		}
		conn.Close()
		ln.Close()
	}
}
