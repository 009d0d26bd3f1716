package main

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// The subscriber kinds on the reactors, over socketpairs: the test writes
// what a server would write on the peer end and reads what the subscriber
// sends.

var testReactorsOnce sync.Once

func testReactors(t *testing.T) {
	testReactorsOnce.Do(func() {
		if err := startReactors(2, -1, 100*time.Microsecond); err != nil {
			t.Fatal(err)
		}
	})
}

// socketPair returns our end (for a subscriber: a reactor closes it) and
// the peer's, closed at the end of the test or by closePeer, once.
func socketPair(t *testing.T) (ours, peer int, closePeer func()) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	tv := syscall.NsecToTimeval(int64(5 * time.Second))
	syscall.SetsockoptTimeval(fds[1], syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv)
	var once sync.Once
	closePeer = func() { once.Do(func() { syscall.Close(fds[1]) }) }
	t.Cleanup(closePeer)
	return fds[0], fds[1], closePeer
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// peerRead reads exactly n bytes the subscriber sent.
func peerRead(t *testing.T, peer, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	for off := 0; off < n; {
		m, err := readBlocking(peer, b[off:])
		if err != nil {
			t.Fatalf("peer read after %d of %d bytes: %v", off, n, err)
		}
		off += m
	}
	return b
}

func peerWrite(t *testing.T, peer int, b []byte) {
	t.Helper()
	if err := writeBlocking(peer, b); err != nil {
		t.Fatal(err)
	}
}

// gwUnit is one WebSocket message of MESSAGE frames, one per sequence
// number.
func gwUnit(seqs ...uint64) []byte {
	var unit []byte
	for _, seq := range seqs {
		unit = transport.AppendMessage(unit, &session.Message{Stream: 1, Topic: "bench/fanout", Payload: testPayload(seq)})
	}
	return serverFrame(wsOpBinary, true, unit)
}

// testGwSub is a gwSub as dialGateway leaves it after set-up, on fd. Its
// buffer is small so reads split frames.
func testGwSub(fd int, rec *recorder) *gwSub {
	s := &gwSub{rec: rec}
	s.onFrame = s.frame
	s.fd = fd
	s.key = [4]byte{1, 2, 3, 4}
	s.in = newWSReader(64, wsMaxFrame)
	s.ping = appendClientFrame(nil, wsOpBinary, transport.AppendPing(nil), s.key)
	s.lastOut = time.Now().UnixNano()
	return s
}

// Setup A's subscriber: bytes left by the set-up delivered first, units
// split across reads and several per read, a ping answered, END recorded
// and the connection closed.
func TestGatewaySubReactor(t *testing.T) {
	testReactors(t)
	ours, peer, _ := socketPair(t)
	rec := &recorder{}
	s := testGwSub(ours, rec)
	s.in.load(gwUnit(1, 2)) // read with the set-up's answers
	if err := register(s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the set-up's leftover", func() bool { return rec.delivered.Load() == 2 })

	stream := append(gwUnit(3), gwUnit(4, 5, 6)...)
	stream = append(stream, serverFrame(wsOpPing, true, []byte("hb"))...)
	stream = append(stream, gwUnit(7)...)
	for len(stream) > 0 {
		n := min(len(stream), 45)
		peerWrite(t, peer, stream[:n])
		stream = stream[n:]
		time.Sleep(200 * time.Microsecond)
	}
	waitFor(t, "7 deliveries", func() bool { return rec.delivered.Load() == 7 })
	if g := s.st.gaps.Load(); g != 0 {
		t.Fatalf("%d gaps", g)
	}
	if op, p, _ := unmaskClientFrame(t, peerRead(t, peer, 2+4+2)); op != wsOpPong || string(p) != "hb" {
		t.Fatalf("answer to the ping: op %d %q", op, p)
	}

	peerWrite(t, peer, serverFrame(wsOpBinary, true, transport.AppendEnd(nil, session.CodeSessionUnknown, "bye")))
	waitFor(t, "the end", s.closed.Load)
	if why := s.endedWith(); !strings.Contains(why, "gateway closed the session") || !strings.Contains(why, "bye") {
		t.Fatalf("ended with %q", why)
	}
	if n, err := syscall.Read(peer, make([]byte, 1)); n != 0 || err != nil {
		t.Fatalf("peer read after the end: %d %v, want EOF", n, err)
	}
	s.close() // already closed by the reactor: returns at once
}

// The heartbeat goes out from the reactor's tick; close() closes the
// socket cleanly.
func TestGatewaySubHeartbeatAndClose(t *testing.T) {
	testReactors(t)
	ours, peer, _ := socketPair(t)
	s := testGwSub(ours, &recorder{})
	s.lastOut = 0 // due
	if err := register(s); err != nil {
		t.Fatal(err)
	}
	op, p, _ := unmaskClientFrame(t, peerRead(t, peer, len(s.ping)))
	if op != wsOpBinary || !bytes.Equal(p, transport.AppendPing(nil)) {
		t.Fatalf("heartbeat: op %d % x", op, p)
	}
	s.close()
	if !s.closed.Load() || s.endedWith() != "closed" {
		t.Fatalf("after close: closed %v, ended with %q", s.closed.Load(), s.endedWith())
	}
	if n, err := syscall.Read(peer, make([]byte, 1)); n != 0 || err != nil {
		t.Fatalf("peer read after close: %d %v, want EOF", n, err)
	}
}

// A close frame ends the connection with the peer's code and reason, and
// is echoed; an EOF without one is an abnormal closure.
func TestGatewaySubCloseFrame(t *testing.T) {
	testReactors(t)
	ours, peer, closePeer := socketPair(t)
	s := testGwSub(ours, &recorder{})
	if err := register(s); err != nil {
		t.Fatal(err)
	}
	peerWrite(t, peer, serverFrame(wsOpClose, true, append([]byte{0x03, 0xe9}, "going"...)))
	waitFor(t, "the end", s.closed.Load)
	if why := s.endedWith(); why != "websocket: close 1001 (going away): going" {
		t.Fatalf("ended with %q", why)
	}
	if op, p, _ := unmaskClientFrame(t, peerRead(t, peer, 2+4+2)); op != wsOpClose || binary.BigEndian.Uint16(p) != 1001 {
		t.Fatalf("close echo: op %d % x", op, p)
	}

	ours2, _, closePeer2 := socketPair(t)
	s2 := testGwSub(ours2, &recorder{})
	if err := register(s2); err != nil {
		t.Fatal(err)
	}
	closePeer2()
	waitFor(t, "the end", s2.closed.Load)
	if why := s2.endedWith(); why != wsEOF.Error() {
		t.Fatalf("ended with %q", why)
	}
	closePeer()
}

// A continuation frame is not part of the gateway's protocol: a clear
// error, not a misparse.
func TestGatewaySubFragmented(t *testing.T) {
	testReactors(t)
	ours, peer, _ := socketPair(t)
	s := testGwSub(ours, &recorder{})
	if err := register(s); err != nil {
		t.Fatal(err)
	}
	unit := gwUnit(1)[2:]
	peerWrite(t, peer, append(serverFrame(wsOpBinary, false, unit[:10]), serverFrame(wsOpContinuation, true, unit[10:])...))
	waitFor(t, "the end", s.closed.Load)
	if why := s.endedWith(); !strings.Contains(why, "fragmented message") {
		t.Fatalf("ended with %q", why)
	}
}

// nonBlockingPair is a socketpair whose first end is non-blocking, as a
// reactor's sockets are, for calling readable directly.
func nonBlockingPair(t *testing.T) (ours, peer int) {
	ours, peer, _ = socketPair(t)
	t.Cleanup(func() { syscall.Close(ours) })
	if err := syscall.SetNonblock(ours, true); err != nil {
		t.Fatal(err)
	}
	return ours, peer
}

// The per-delivery path of each kind, read and all, allocates nothing.
func TestReadPathsNoAllocs(t *testing.T) {
	ours, peer := nonBlockingPair(t)
	rec := &recorder{}
	a := testGwSub(ours, rec)
	a.nb = true
	a.in = newWSReader(wsReadBuffer, wsMaxFrame)
	frame := gwUnit(1)
	if allocs := testing.AllocsPerRun(100, func() {
		syscall.Write(peer, frame)
		if err := a.readable(); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("A: %v allocations per delivery", allocs)
	}
	if rec.delivered.Load() < 100 {
		t.Errorf("A: %d deliveries", rec.delivered.Load())
	}

	ours, peer = nonBlockingPair(t)
	rec = &recorder{}
	b := &rawMQTTSub{rec: rec}
	b.fd, b.nb, b.in = ours, true, newWSReader(wsReadBuffer, wsMaxFrame)
	frame = serverFrame(wsOpBinary, true, mqttPublish(t, 1))
	if allocs := testing.AllocsPerRun(100, func() {
		syscall.Write(peer, frame)
		if err := b.readable(); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("B: %v allocations per delivery", allocs)
	}
	if rec.delivered.Load() < 100 {
		t.Errorf("B: %d deliveries", rec.delivered.Load())
	}

	ours, peer = nonBlockingPair(t)
	var total atomic.Int64
	f := &floorSub{buf: make([]byte, floorReadBuffer), total: &total}
	f.fd = ours
	frame = floorFrame(100, "bench/fanout")
	if allocs := testing.AllocsPerRun(100, func() {
		syscall.Write(peer, frame)
		if err := f.readable(); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("F: %v allocations per delivery", allocs)
	}
	if f.bytes.Load() < 100*int64(len(frame)) {
		t.Errorf("F: %d bytes", f.bytes.Load())
	}
}

func mqttPublish(t *testing.T, seq uint64) []byte {
	cp := packets.NewControlPacket(packets.PUBLISH)
	p := cp.Content.(*packets.Publish)
	p.Topic, p.Payload = "bench/fanout", testPayload(seq)
	var b bytes.Buffer
	if _, err := cp.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// Setup B's subscriber: MQTT over WebSocket is a stream, so packets that
// span messages (and continuation frames) are reassembled, several per
// message are all taken, and what the set-up left is delivered first.
func TestRawMQTTSubReactor(t *testing.T) {
	testReactors(t)
	ours, peer, _ := socketPair(t)
	rec := &recorder{}
	s := &rawMQTTSub{rec: rec}
	s.fd, s.key, s.in = ours, [4]byte{9, 8, 7, 6}, newWSReader(64, wsMaxFrame)
	p1, p2 := mqttPublish(t, 1), mqttPublish(t, 2)
	s.stream = append(s.stream, p1[:30]...) // the set-up read part of a packet
	s.in.load(serverFrame(wsOpBinary, true, append(p1[30:], p2...)))
	if err := register(s); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the set-up's leftover", func() bool { return rec.delivered.Load() == 2 })

	p3, p4, p5 := mqttPublish(t, 3), mqttPublish(t, 4), mqttPublish(t, 5)
	stream := serverFrame(wsOpBinary, true, append(p3, p4[:7]...))
	stream = append(stream, serverFrame(wsOpBinary, false, p4[7:50])...)
	stream = append(stream, serverFrame(wsOpPing, true, nil)...)
	stream = append(stream, serverFrame(wsOpContinuation, true, append(p4[50:], p5...))...)
	for len(stream) > 0 {
		n := min(len(stream), 33)
		peerWrite(t, peer, stream[:n])
		stream = stream[n:]
		time.Sleep(200 * time.Microsecond)
	}
	waitFor(t, "5 deliveries", func() bool { return rec.delivered.Load() == 5 })
	if g, r := s.st.gaps.Load(), s.st.reorders.Load(); g != 0 || r != 0 {
		t.Fatalf("gaps %d reorders %d", g, r)
	}
	if op, _, _ := unmaskClientFrame(t, peerRead(t, peer, 6)); op != wsOpPong {
		t.Fatalf("answer to the ping: op %d", op)
	}
	s.close() // the reactor lets go of s: its fields are ours again
	if s.endedWith() != "closed" || len(s.stream) != 0 {
		t.Fatalf("ended with %q, %d stream bytes left", s.endedWith(), len(s.stream))
	}
}

// Setup F's receivers count every byte, however the writes split the
// stream, and report the end of the stream.
func TestFloorSubReactor(t *testing.T) {
	testReactors(t)
	ours, peer, closePeer := socketPair(t)
	var total atomic.Int64
	s := &floorSub{buf: make([]byte, 64), total: &total} // smaller than a frame: reads split frames
	s.fd = ours
	if err := register(s); err != nil {
		t.Fatal(err)
	}
	stream := bytes.Repeat(floorFrame(100, "bench/fanout"), 50)
	for off := 0; off < len(stream); off += 1000 {
		peerWrite(t, peer, stream[off:min(off+1000, len(stream))])
	}
	waitFor(t, "every byte", func() bool { return total.Load() == int64(len(stream)) })
	if s.bytes.Load() != int64(len(stream)) {
		t.Fatalf("counted %d of %d bytes", s.bytes.Load(), len(stream))
	}
	closePeer()
	waitFor(t, "the end", s.closed.Load)
	if why := s.endedWith(); why != io.EOF.Error() {
		t.Fatalf("ended with %q", why)
	}
}
