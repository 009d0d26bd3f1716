package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// The WebSocket writer builds its data messages itself rather than through
// gorilla/websocket's WriteMessage: the frame header goes into room kept at
// the front of the buffer the frames were encoded into, and the whole
// message leaves in one write, with no copy, no pooled buffer handed back
// and forth, and no write deadline moved per message (gorilla moves it on
// every write; a timer update is a measurable share of a small write), and
// on a plain TCP connection the write does not block (tryWrite).
// Gorilla still reads, and writes the rare frames of a connection's end
// (close frames, protocol errors); pongs are ours (wsConn.onPing). Every
// write to the socket, ours and gorilla's, goes through sharedConn's mutex,
// so frames never interleave.

// wsHeaderRoom is the largest header of an unmasked server frame: 2 bytes,
// then a 64-bit length.
const wsHeaderRoom = 10

// wsMessage puts a final binary frame's header in front of the payload that
// follows buf's first wsHeaderRoom bytes, and returns the frame.
func wsMessage(buf []byte) []byte {
	n := len(buf) - wsHeaderRoom
	var h int
	switch {
	case n < 126:
		h = 2
		buf[wsHeaderRoom-1] = byte(n)
	case n <= 0xffff:
		h = 4
		buf[wsHeaderRoom-3] = 126
		binary.BigEndian.PutUint16(buf[wsHeaderRoom-2:], uint16(n))
	default:
		h = 10
		buf[wsHeaderRoom-9] = 127
		binary.BigEndian.PutUint64(buf[wsHeaderRoom-8:], uint64(n))
	}
	buf[wsHeaderRoom-h] = 0x80 | 0x2 // FIN, binary
	return buf[wsHeaderRoom-h:]
}

// wsPong is a pong frame carrying a ping's data (at most 125 bytes, which
// gorilla enforces for control frames it reads).
func wsPong(data []byte) []byte {
	return append([]byte{0x80 | 0xA, byte(len(data))}, data...)
}

// sharedConn is the hijacked connection as gorilla/websocket sees it: its
// writes take the connection's write lock, and it knows the write deadline
// in place, whoever set it (gorilla sets short ones for control frames).
type sharedConn struct {
	net.Conn
	// tls: a TLS connection over plain TCP, which tryWrite writes through
	// crypto/tls when fd's send buffer has room (tlsroom_linux.go).
	//
	// direct: a plain TCP connection, which tryWrite writes with write(2)
	// on fd itself. Going through the net package (RawConn.Write) would
	// touch its descriptor lock and poller state, two more cache lines per
	// write that are cold when a message fans out to thousands of
	// connections; rawState does their one job here instead, keeping Close
	// from closing fd (whose number the kernel reuses at once) during such
	// a write.
	tls      bool
	direct   bool
	fd       int
	rawState atomic.Int32 // rawIdle, rawWriting or rawClosed

	mu       sync.Mutex    // held for every write to the socket
	deadline int64         // the write deadline in place, Unix ns (0: none)
	timeout  time.Duration // one write's; zero is writeTimeout
	// partial is set while a message is half written (tryWrite wrote what
	// the socket took): only its rest (writeAll) may go next.
	partial bool
	// closeSent: a close frame went out, ours or gorilla's answer to the
	// client's; RFC 6455 allows no data frame after it.
	closeSent bool
}

// errCloseSent refuses a data frame after the close frame.
var errCloseSent = errors.New("websocket: close frame sent")

// isCloseFrame reports whether b starts a WebSocket close frame (FIN and
// opcode 8: control frames are never fragmented). Gorilla writes the
// upgrade's HTTP response through the same Write, so the whole first byte
// counts ("H" has opcode bits 8 too).
func isCloseFrame(b []byte) bool { return len(b) > 0 && b[0] == 0x88 }

const (
	rawIdle = iota
	rawWriting
	rawClosed
)

// Close closes the connection, after a direct write in progress (it does
// not block: microseconds). Writes through the net package need no such
// care: it keeps the descriptor open until they return.
func (s *sharedConn) Close() error {
	for !s.rawState.CompareAndSwap(rawIdle, rawClosed) && s.rawState.Load() != rawClosed {
		runtime.Gosched()
	}
	return s.Conn.Close()
}

// Write is gorilla's: it waits for a half-written message to be finished.
// Gorilla writes only when a connection ends (a close frame), so waiting
// by polling costs nothing that matters, and no idle connection carries a
// condition variable.
func (s *sharedConn) Write(b []byte) (int, error) {
	s.mu.Lock()
	for s.partial {
		s.mu.Unlock()
		time.Sleep(time.Millisecond)
		s.mu.Lock()
	}
	defer s.mu.Unlock()
	if s.closeSent {
		return 0, errCloseSent
	}
	n, err := s.Conn.Write(b)
	if isCloseFrame(b) {
		s.closeSent = true
	}
	return n, err
}

func (s *sharedConn) SetWriteDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline = unixNano(t)
	return s.Conn.SetWriteDeadline(t)
}

func (s *sharedConn) SetDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline = unixNano(t)
	return s.Conn.SetDeadline(t)
}

// init wraps a hijacked connection. A plain TCP connection also offers
// non-blocking writes (tryWrite), and so does a TLS one over plain TCP,
// for small records (tlsroom_linux.go).
//
// Either way the socket's unsent data is limited (unsent_linux.go), so
// that a client on a slow link falls behind where the gateway sees it.
func (s *sharedConn) init(c net.Conn) {
	c = unwrapHijacked(c)
	s.Conn = c
	raw, isTLS := tcpSocket(c)
	if raw == nil {
		return
	}
	limited := false
	// The net package has put the descriptor in non-blocking mode, which
	// tryWrite relies on.
	if raw.Control(func(fd uintptr) { s.fd, limited = int(fd), limitUnsent(int(fd)) }) == nil {
		s.direct = !isTLS && rawWrites
		// sendRoom knows what the socket takes only under our own limit.
		s.tls = isTLS && tlsPooling && limited
	}
}

// pooled reports whether tryWrite can write the connection.
func (s *sharedConn) pooled() bool { return s.direct || s.tls }

// armLocked makes sure a write has at least half of writeTimeout before its
// deadline: a deadline is moved every writeTimeout/2 at most, not on every
// write. Called with mu held.
func (s *sharedConn) armLocked(now time.Time) error {
	timeout := s.timeout
	if timeout == 0 {
		timeout = writeTimeout
	}
	if time.Duration(s.deadline-now.UnixNano()) >= timeout/2 {
		return nil
	}
	d := now.Add(timeout)
	s.deadline = d.UnixNano()
	return s.Conn.SetWriteDeadline(d)
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// writeAll writes b, blocking up to the write deadline. After a partial
// tryWrite, b must be the rest of that message; failed or not, the
// connection is free for other writes afterwards.
func (s *sharedConn) writeAll(b []byte, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = false
	if s.closeSent {
		return errCloseSent
	}
	if err := s.armLocked(now); err != nil {
		return err
	}
	_, err := s.Conn.Write(b)
	return err
}

// tryWrite writes what the socket takes at once, without waiting: n <
// len(b) with a nil error means the socket buffer is full and the rest must
// be written, next and by a goroutine that may block, with writeAll. A TLS
// connection's write is all or nothing. Only for pooled connections.
func (s *sharedConn) tryWrite(b []byte, now time.Time) (n int, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closeSent {
		return 0, errCloseSent
	}
	if err := s.armLocked(now); err != nil {
		return 0, err
	}
	if !s.rawState.CompareAndSwap(rawIdle, rawWriting) {
		return 0, net.ErrClosed
	}
	if s.tls {
		room := sendRoom(s.fd, len(b))
		s.rawState.Store(rawIdle)
		if !room {
			return 0, nil
		}
		return s.Conn.Write(b) // through crypto/tls, which the room lets finish at once
	}
	n, err = rawWrite(s.fd, b)
	s.rawState.Store(rawIdle)
	if err == nil && n < len(b) {
		s.partial = n > 0
	}
	return n, err
}

// sharingHijacker hands gorilla/websocket the hijacked connection wrapped
// in conn, which the writer uses too.
type sharingHijacker struct {
	http.ResponseWriter
	conn *sharedConn
}

func (h *sharingHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := h.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the response cannot be hijacked for a WebSocket")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn.init(c)
	return h.conn, brw, nil
}
