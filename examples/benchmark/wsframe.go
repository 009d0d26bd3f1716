package main

import (
	"encoding/binary"
	"fmt"
)

// WebSocket frames (RFC 6455 §5) as the subscribers read and write them.
// Server frames are parsed in place in a connection's receive buffer
// (wsReader), so a delivery costs no copy and no allocation; client frames
// are masked, as §5.3 requires of a client.

const (
	wsOpContinuation = 0x0
	wsOpText         = 0x1
	wsOpBinary       = 0x2
	wsOpClose        = 0x8
	wsOpPing         = 0x9
	wsOpPong         = 0xa
)

// wsMaxFrame bounds a server frame's payload: the receive buffer grows to
// hold a whole frame, so a corrupt length must not make it grow without
// end. The benchmark's frames are a few hundred bytes (-size).
const wsMaxFrame = 16 << 20

// wsFrame is one frame; payload aliases the buffer it was parsed from.
type wsFrame struct {
	fin     bool
	op      byte
	payload []byte
}

// parseWSFrame parses the server frame at the start of b. size is the
// frame's whole length (header and payload) once b holds its header, 0
// before; complete says b holds all of it. err is a protocol error: the
// connection cannot go on.
func parseWSFrame(b []byte, maxPayload int) (f wsFrame, size int, complete bool, err error) {
	if len(b) < 2 {
		return f, 0, false, nil
	}
	f.fin = b[0]&0x80 != 0
	f.op = b[0] & 0x0f
	if b[0]&0x70 != 0 {
		return f, 0, false, fmt.Errorf("websocket: reserved bits set in frame header 0x%02x (no extension was negotiated)", b[0])
	}
	if b[1]&0x80 != 0 {
		return f, 0, false, fmt.Errorf("websocket: masked server frame")
	}
	switch f.op {
	case wsOpContinuation, wsOpText, wsOpBinary:
	case wsOpClose, wsOpPing, wsOpPong:
		if !f.fin {
			return f, 0, false, fmt.Errorf("websocket: fragmented control frame (opcode %d)", f.op)
		}
		if b[1]&0x7f > 125 {
			return f, 0, false, fmt.Errorf("websocket: control frame (opcode %d) longer than 125 bytes", f.op)
		}
	default:
		return f, 0, false, fmt.Errorf("websocket: reserved opcode %d", f.op)
	}
	n, h := uint64(b[1]&0x7f), 2
	switch n {
	case 126:
		if len(b) < 4 {
			return f, 0, false, nil
		}
		n, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return f, 0, false, nil
		}
		n, h = binary.BigEndian.Uint64(b[2:]), 10
	}
	if n > uint64(maxPayload) {
		return f, 0, false, fmt.Errorf("websocket: frame of %d bytes, more than the %d allowed", n, maxPayload)
	}
	size = h + int(n)
	if len(b) < size {
		return f, size, false, nil
	}
	f.payload = b[h:size:size]
	return f, size, true, nil
}

// wsReader holds a connection's received bytes and cuts them into frames.
// The reactor reads into space(), records the count with wrote and takes
// frames with next until it says more bytes are needed; a frame may span
// reads and a read may hold several frames. Payloads alias the buffer
// until the next call of space.
type wsReader struct {
	buf        []byte
	r, w       int // buf[r:w]: received, not yet taken as frames
	need       int // whole size of the incomplete frame at r, 0 if unknown
	maxPayload int
}

func newWSReader(size, maxPayload int) wsReader {
	return wsReader{buf: make([]byte, size), maxPayload: maxPayload}
}

// next returns the next whole frame buffered, or ok false when the buffer
// holds none (read more).
func (d *wsReader) next() (f wsFrame, ok bool, err error) {
	f, size, ok, err := parseWSFrame(d.buf[d.r:d.w], d.maxPayload)
	if err != nil || !ok {
		d.need = size
		return f, false, err
	}
	d.r += size
	d.need = 0
	return f, true, nil
}

// space returns the free tail of the buffer for the next read, never
// empty. It first forgets the frames taken (so their payloads are no longer
// valid): when everything was taken it starts over at the front, which is
// the common case and copies nothing; an incomplete frame is moved to the
// front when the tail is short or the frame would not fit behind it; and
// the buffer grows when the frame is larger than the whole buffer.
func (d *wsReader) space() []byte {
	switch {
	case d.r == d.w:
		d.r, d.w = 0, 0
	case d.r > 0 && (len(d.buf)-d.w < len(d.buf)/4 || d.r+d.need > len(d.buf)):
		d.w = copy(d.buf, d.buf[d.r:d.w])
		d.r = 0
	}
	if d.need > len(d.buf)-d.r {
		b := make([]byte, max(d.need, 2*len(d.buf)))
		d.w = copy(b, d.buf[d.r:d.w])
		d.buf, d.r = b, 0
	}
	return d.buf[d.w:]
}

// wrote records n bytes read into space().
func (d *wsReader) wrote(n int) { d.w += n }

// load appends bytes received before the reader existed (what followed the
// HTTP answer in the same read).
func (d *wsReader) load(b []byte) {
	for len(b) > 0 {
		if d.w == len(d.buf) {
			nb := make([]byte, 2*len(d.buf)+len(b))
			d.w = copy(nb, d.buf[d.r:d.w])
			d.buf, d.r = nb, 0
		}
		n := copy(d.buf[d.w:], b)
		d.w += n
		b = b[n:]
	}
}

// appendClientFrame appends a final client frame of payload, masked with
// key (RFC 6455 §5.3: the server must close a connection that sends it
// an unmasked frame).
func appendClientFrame(b []byte, op byte, payload []byte, key [4]byte) []byte {
	b = append(b, 0x80|op)
	switch n := len(payload); {
	case n <= 125:
		b = append(b, 0x80|byte(n))
	case n <= 0xffff:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = binary.BigEndian.AppendUint64(append(b, 0x80|127), uint64(n))
	}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i&3])
	}
	return b
}
