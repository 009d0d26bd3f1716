package main

import (
	"bufio"
	"bytes"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/eclipse/paho.golang/packets"
	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

func testPayload(seq uint64) []byte {
	p := make([]byte, 100)
	fillPayload(p, 1000, seq, kindMeasured)
	return p
}

// The load generator's per-message path must not allocate, or setup A's
// generator would cost more than the server it measures.
func TestGatewayFrameNoAllocs(t *testing.T) {
	rec := &recorder{}
	s := &gwSub{rec: rec}
	s.onFrame = s.frame
	var unit []byte
	for i := 1; i <= 3; i++ {
		unit = transport.AppendMessage(unit, &session.Message{Stream: 1, Topic: "bench/fanout", Payload: testPayload(uint64(i))})
	}
	if err := transport.SplitUnit(unit, s.onFrame); err != nil {
		t.Fatal(err)
	}
	if got := s.st.received.Load(); got != 3 || s.st.gaps.Load() != 0 {
		t.Fatalf("received %d, gaps %d", got, s.st.gaps.Load())
	}
	frame := transport.EncodeMessage(&session.Message{Stream: 1, Topic: "bench/fanout", Payload: testPayload(4)})
	if a := testing.AllocsPerRun(100, func() { transport.SplitUnit(frame, s.onFrame) }); a != 0 {
		t.Fatalf("%v allocations per frame", a)
	}
}

func TestMessagePayloadWithProps(t *testing.T) {
	rec := &recorder{}
	s := &gwSub{rec: rec}
	m := &session.Message{Stream: 7, Topic: "t", Payload: testPayload(1), Props: &session.Props{ContentType: "x"}}
	if err := s.frame(transport.EncodeMessage(m)[1:]); err != nil { // one-byte length prefix
		t.Fatal(err)
	}
	if rec.delivered.Load() != 1 {
		t.Fatal("message with properties not counted")
	}
}

func TestRawMQTTPublishNoAllocs(t *testing.T) {
	rec := &recorder{}
	s := &rawMQTTSub{rec: rec}
	cp := packets.NewControlPacket(packets.PUBLISH)
	p := cp.Content.(*packets.Publish)
	p.Topic, p.Payload = "bench/fanout", testPayload(1)
	var b bytes.Buffer
	cp.WriteTo(&b)
	pkt := b.Bytes()
	if l, ok := packetLen(pkt); !ok || l != len(pkt) {
		t.Fatalf("packetLen %d %v, want %d", l, ok, len(pkt))
	}
	if a := testing.AllocsPerRun(100, func() { s.packet(pkt, 2000) }); a != 0 {
		t.Fatalf("%v allocations per packet", a)
	}
	if rec.delivered.Load() == 0 {
		t.Fatal("publish not counted")
	}
	if _, ok := packetLen(pkt[:len(pkt)-1]); ok {
		t.Fatal("a partial packet reported complete")
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	for i := 1; i <= 100000; i++ {
		h.record(i, int64(i)*1000) // 1 µs .. 100 ms, uniform
	}
	qs, mx, n := h.summary(0.5, 0.99)
	if n != 100000 || mx != 100000*1000 {
		t.Fatalf("n %d max %v", n, mx)
	}
	for i, want := range []float64{50e6, 99e6} {
		if math.Abs(qs[i]-want)/want > 0.02 {
			t.Errorf("quantile %d: %v, want %v ± 2%%", i, qs[i], want)
		}
	}
	for v := uint64(0); v < 1<<20; v = v*9/8 + 1 {
		i := histIndex(v)
		if got := histValue(i); math.Abs(got-float64(v)) > float64(v)/60+1 {
			t.Fatalf("bucket of %d is worth %v", v, got)
		}
	}
}

// Setup F's frame must be byte for byte what a setup A subscriber reads
// per delivery: the gateway's MESSAGE frame in one final, unmasked, binary
// WebSocket frame (RFC 6455), here as gorilla/websocket's server side puts
// it on the socket, captured raw; and setup A's reader must count it as one
// delivery.
func TestFloorFrameIsGatewayMessage(t *testing.T) {
	for _, size := range []int{100, 200, 70000} { // 2-, 4- and 10-byte WebSocket headers
		frame := floorFrame(size, "bench/fanout")
		payload := make([]byte, size)
		fillPayload(payload, 0, 0, kindMeasured)
		msg := transport.EncodeMessage(&session.Message{Stream: 1, Topic: "bench/fanout", Payload: payload})
		if got := wireMessage(t, msg); !bytes.Equal(got, frame) {
			t.Fatalf("size %d: floor frame is %d bytes, the WebSocket message on the wire %d", size, len(frame), len(got))
		}
		rec := &recorder{}
		s := &gwSub{rec: rec}
		if err := transport.SplitUnit(frame[len(frame)-len(msg):], s.frame); err != nil || rec.delivered.Load() != 1 {
			t.Fatalf("size %d: setup A's reader counted %d deliveries (%v)", size, rec.delivered.Load(), err)
		}
	}
	if n := len(floorFrame(100, "bench/fanout")); n < 100+2+len("bench/fanout") || n > 130 {
		t.Fatalf("frame of a 100-byte payload is %d bytes", n)
	}
}

// wireMessage returns the bytes a gorilla/websocket server puts on the
// socket for one binary message b.
func wireMessage(t *testing.T, b []byte) []byte {
	up := websocket.Upgrader{WriteBufferSize: 4096}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		ws.WriteMessage(websocket.BinaryMessage, b)
		ws.Close() // closes the socket without a close frame
	}))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Sec-WebSocket-Version", "13")
	if err := req.Write(c); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, req)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("handshake: %v %v", err, resp)
	}
	got, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	return got
}
