package transport

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// Primitive encodings of PROTOCOL.md: uvarint (at most 8 bytes, so every
// value is exact in JavaScript), length-prefixed strings and bytes.

// maxUvarint is the largest value a uvarint may carry: 2^53-1.
const maxUvarint = 1<<53 - 1

// ErrMalformed is returned for any frame that does not decode.
var ErrMalformed = errors.New("malformed frame")

func appendUvarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b []byte, p []byte) []byte {
	b = appendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

// reader decodes primitives from a frame, remembering the first error so
// decoders can read a whole frame and check once.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = ErrMalformed
	}
	r.b = nil
}

func (r *reader) uvarint() uint64 {
	var v uint64
	for i := 0; i < 8; i++ {
		if i >= len(r.b) {
			r.fail()
			return 0
		}
		c := r.b[i]
		v |= uint64(c&0x7f) << (7 * i)
		if c < 0x80 {
			r.b = r.b[i+1:]
			if v > maxUvarint {
				r.fail()
				return 0
			}
			return v
		}
	}
	r.fail() // longer than 8 bytes
	return 0
}

func (r *reader) u8() byte {
	if len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) raw(n uint64) []byte {
	if n > uint64(len(r.b)) {
		r.fail()
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) bytes() []byte { return r.raw(r.uvarint()) }

func (r *reader) string() string {
	p := r.bytes()
	if !utf8.Valid(p) {
		r.fail()
		return ""
	}
	return string(p)
}

// skipString reads past a string, checking it as string does, without
// making it.
func (r *reader) skipString() {
	if !utf8.Valid(r.bytes()) {
		r.fail()
	}
}

func (r *reader) id16() (id [16]byte) {
	copy(id[:], r.raw(16))
	return id
}

func (r *reader) rest() []byte {
	p := r.b
	r.b = nil
	return p
}

// done checks that the whole frame was consumed.
func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%w: %d bytes after its last field", ErrMalformed, len(r.b))
	}
	return r.err
}
