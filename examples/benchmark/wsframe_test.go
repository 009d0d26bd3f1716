package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"testing"
)

// serverFrame is a server frame as a server puts it on the wire: unmasked,
// with the shortest length encoding.
func serverFrame(op byte, fin bool, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var b []byte
	switch n := len(payload); {
	case n <= 125:
		b = []byte{b0, byte(n)}
	case n <= 0xffff:
		b = []byte{b0, 126, byte(n >> 8), byte(n)}
	default:
		b = binary.BigEndian.AppendUint64([]byte{b0, 127}, uint64(n))
	}
	return append(b, payload...)
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>8)
	}
	return b
}

// feed passes data to d in reads of at most chunk bytes and takes every
// whole frame after each read, as the reactor does; it returns the frames
// (payloads copied: they alias the buffer) and the first error.
func feed(t testing.TB, d *wsReader, data []byte, chunk int) ([]wsFrame, error) {
	var out []wsFrame
	for {
		for {
			f, ok, err := d.next()
			if err != nil {
				return out, err
			}
			if !ok {
				break
			}
			f.payload = bytes.Clone(f.payload)
			out = append(out, f)
		}
		if len(data) == 0 {
			return out, nil
		}
		sp := d.space()
		if len(sp) == 0 {
			t.Fatalf("space() is empty with %d bytes buffered", d.w-d.r)
		}
		n := copy(sp, data[:min(chunk, len(data))])
		d.wrote(n)
		data = data[n:]
	}
}

// A stream of frames of every length class, pings and a close, read with
// every split, including one byte per read and a buffer far smaller than
// the frames.
func TestWSReaderSplits(t *testing.T) {
	var stream []byte
	var want []wsFrame
	add := func(op byte, fin bool, p []byte) {
		stream = append(stream, serverFrame(op, fin, p)...)
		want = append(want, wsFrame{fin: fin, op: op, payload: p})
	}
	for _, n := range []int{0, 1, 17, 125, 126, 127, 300, 2047, 2048, 2049, 65535, 65536, 70000} {
		add(wsOpBinary, true, pattern(n))
		if n == 300 {
			add(wsOpPing, true, []byte("are you there"))
			add(wsOpPong, true, nil)
		}
	}
	add(wsOpBinary, false, pattern(10))
	add(wsOpContinuation, true, pattern(20))
	add(wsOpClose, true, append([]byte{0x03, 0xe8}, "bye"...))
	for _, bufSize := range []int{16, 100, wsReadBuffer} {
		for _, chunk := range []int{1, 2, 3, 7, 64, 121, 1000, 4096, len(stream)} {
			d := newWSReader(bufSize, wsMaxFrame)
			got, err := feed(t, &d, stream, chunk)
			if err != nil {
				t.Fatalf("buffer %d, reads of %d: %v", bufSize, chunk, err)
			}
			if len(got) != len(want) {
				t.Fatalf("buffer %d, reads of %d: %d frames, want %d", bufSize, chunk, len(got), len(want))
			}
			for i := range want {
				if got[i].op != want[i].op || got[i].fin != want[i].fin || !bytes.Equal(got[i].payload, want[i].payload) {
					t.Fatalf("buffer %d, reads of %d: frame %d is op %d fin %v %d bytes, want op %d fin %v %d bytes",
						bufSize, chunk, i, got[i].op, got[i].fin, len(got[i].payload), want[i].op, want[i].fin, len(want[i].payload))
				}
			}
			if d.r != d.w {
				t.Fatalf("%d bytes left over", d.w-d.r)
			}
		}
	}
}

// Several frames in one read are all taken from it, in place: one read,
// no copy of the buffer, no allocation.
func TestWSReaderSeveralPerRead(t *testing.T) {
	frame := floorFrame(100, "bench/fanout")
	read := bytes.Repeat(frame, 16) // 1936 bytes: fits the buffer
	d := newWSReader(wsReadBuffer, wsMaxFrame)
	buf := &d.buf[0]
	allocs := testing.AllocsPerRun(50, func() {
		sp := d.space()
		d.wrote(copy(sp, read))
		for i := 0; ; i++ {
			f, ok, err := d.next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				if i != 16 {
					t.Fatalf("%d frames in the read, want 16", i)
				}
				break
			}
			if f.op != wsOpBinary || !f.fin || len(f.payload) != len(frame)-2 {
				t.Fatalf("frame %d: op %d fin %v %d bytes", i, f.op, f.fin, len(f.payload))
			}
		}
	})
	if allocs != 0 || &d.buf[0] != buf {
		t.Fatalf("%v allocations per read; buffer replaced: %v", allocs, &d.buf[0] != buf)
	}
}

// Header length classes: 7-bit, 16-bit (126) and 64-bit (127) lengths,
// with the header itself split.
func TestParseWSFrameLengths(t *testing.T) {
	for _, tc := range []struct{ n, header int }{{0, 2}, {125, 2}, {126, 4}, {65535, 4}, {65536, 10}, {100000, 10}} {
		fr := serverFrame(wsOpBinary, true, pattern(tc.n))
		if len(fr) != tc.header+tc.n {
			t.Fatalf("test frame of %d bytes has %d", tc.n, len(fr))
		}
		for cut := 0; cut < tc.header; cut++ {
			if _, size, complete, err := parseWSFrame(fr[:cut], wsMaxFrame); size != 0 || complete || err != nil {
				t.Fatalf("%d bytes, header cut at %d: size %d complete %v err %v", tc.n, cut, size, complete, err)
			}
		}
		if tc.n > 0 {
			if _, size, complete, err := parseWSFrame(fr[:len(fr)-1], wsMaxFrame); size != len(fr) || complete || err != nil {
				t.Fatalf("%d bytes, one short: size %d complete %v err %v", tc.n, size, complete, err)
			}
		}
		f, size, complete, err := parseWSFrame(fr, wsMaxFrame)
		if err != nil || !complete || size != len(fr) || !bytes.Equal(f.payload, pattern(tc.n)) {
			t.Fatalf("%d bytes: size %d complete %v err %v", tc.n, size, complete, err)
		}
	}
}

func TestParseWSFrameErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		want  string
	}{
		{"masked", []byte{0x82, 0x81, 1, 2, 3, 4, 5}, "masked server frame"},
		{"rsv1", []byte{0xc2, 0}, "reserved bits"},
		{"opcode", []byte{0x83, 0}, "reserved opcode 3"},
		{"fragmented ping", []byte{0x09, 0}, "fragmented control frame"},
		{"long close", serverFrame(wsOpClose, true, make([]byte, 126)), "longer than 125"},
		{"too large", []byte{0x82, 127, 0, 0, 0, 0, 0x10, 0, 0, 1}, "more than"},
		{"length overflow", []byte{0x82, 127, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, "more than"},
	} {
		if _, _, _, err := parseWSFrame(tc.frame, wsMaxFrame); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}

// unmaskClientFrame parses a client frame: it must be final and masked.
func unmaskClientFrame(t testing.TB, b []byte) (op byte, payload []byte, size int) {
	t.Helper()
	if len(b) < 2 || b[0]&0x80 == 0 || b[1]&0x80 == 0 {
		t.Fatalf("not a final masked frame: % x", b[:min(len(b), 16)])
	}
	n, h := int(b[1]&0x7f), 2
	switch n {
	case 126:
		n, h = int(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		n, h = int(binary.BigEndian.Uint64(b[2:])), 10
	}
	key := b[h : h+4]
	payload = bytes.Clone(b[h+4 : h+4+n])
	for i := range payload {
		payload[i] ^= key[i&3]
	}
	return b[0] & 0x0f, payload, h + 4 + n
}

func TestAppendClientFrame(t *testing.T) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	for _, n := range []int{0, 3, 125, 126, 65535, 65536} {
		p := pattern(n)
		b := appendClientFrame(nil, wsOpBinary, p, key)
		op, got, size := unmaskClientFrame(t, b)
		if op != wsOpBinary || size != len(b) || !bytes.Equal(got, p) {
			t.Fatalf("%d bytes: op %d, %d of %d bytes, payload equal %v", n, op, size, len(b), bytes.Equal(got, p))
		}
		if n > 3 && bytes.Equal(b[len(b)-n:], p) {
			t.Fatalf("%d bytes: payload not masked", n)
		}
	}
}

// FuzzWSReader: whatever the bytes, the reader never panics, always has
// room for the next read, and cuts the stream into the same frames (and
// the same error) however the reads split it.
func FuzzWSReader(f *testing.F) {
	var good []byte
	for _, n := range []int{0, 5, 125, 126, 300} {
		good = append(good, serverFrame(wsOpBinary, true, pattern(n))...)
	}
	good = append(good, serverFrame(wsOpPing, true, []byte("x"))...)
	good = append(good, serverFrame(wsOpClose, true, []byte{3, 232})...)
	f.Add(good, uint8(1))
	f.Add(good, uint8(60))
	f.Add(bytes.Repeat(floorFrame(100, "bench/fanout"), 5), uint8(33))
	f.Add(serverFrame(wsOpBinary, true, pattern(70000)), uint8(255))
	f.Add([]byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}, uint8(3))
	f.Add([]byte{0x82, 126}, uint8(1))
	f.Add([]byte{0x82, 0x81, 1, 2, 3, 4, 5}, uint8(2))
	f.Add([]byte{0x00, 0x7f, 0xff}, uint8(9))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		const maxPayload = 1 << 17 // 64-bit lengths stay reachable, buffers small
		whole := newWSReader(16, maxPayload)
		want, wantErr := feed(t, &whole, data, len(data)+1)
		split := newWSReader(16, maxPayload)
		got, gotErr := feed(t, &split, data, int(chunk)%97+1)
		if fmt.Sprint(wantErr) != fmt.Sprint(gotErr) {
			t.Fatalf("error %v read whole, %v read in pieces", wantErr, gotErr)
		}
		if len(got) != len(want) {
			t.Fatalf("%d frames read whole, %d in pieces", len(want), len(got))
		}
		total := 0
		for i := range want {
			if got[i].op != want[i].op || got[i].fin != want[i].fin || !bytes.Equal(got[i].payload, want[i].payload) {
				t.Fatalf("frame %d differs", i)
			}
			total += len(want[i].payload) + 2
		}
		if total > len(data) {
			t.Fatalf("frames of %d bytes from %d bytes", total, len(data))
		}
	})
}
