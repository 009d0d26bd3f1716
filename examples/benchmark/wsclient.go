package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// wsConn is the client end of a WebSocket on a raw socket (rawsock.go),
// for setups A and B: the opening handshake and the set-up exchange with
// blocking reads and writes on the dialing goroutine, then the reactor's
// read loop (pump), which parses the frames in place and hands each data
// frame to the subscriber (a wsDataHandler), answering pings and taking a
// close frame as the end of the connection.
type wsConn struct {
	sock
	in  wsReader
	key [4]byte // the mask of every frame we send
}

// wsDataHandler is a subscriber kind's handling of data frames (binary,
// text, continuation). now is the clock read once for the read that
// brought the frame.
type wsDataHandler interface {
	wsData(f wsFrame, now int64) error
}

// wsReadBuffer is a connection's initial receive buffer: tens of
// deliveries of the default size per read.
const wsReadBuffer = 2048

// wsEOF is what gorilla/websocket reports for a connection closed without
// a close frame; the same text keeps the reports comparable.
var wsEOF = &websocket.CloseError{Code: websocket.CloseAbnormalClosure, Text: io.ErrUnexpectedEOF.Error()}

// dial connects to rawURL (ws://127.0.0.1:port/path) and performs the
// opening handshake asking for subprotocol. The socket stays blocking, for
// the caller's set-up exchange; on error it is closed.
func (c *wsConn) dial(ctx context.Context, rawURL, subprotocol string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	if u.Scheme != "ws" {
		return fmt.Errorf("%s: only ws:// on loopback is supported", rawURL)
	}
	if c.fd, err = dialLoopback(ctx, u.Host); err != nil {
		return err
	}
	c.in = newWSReader(wsReadBuffer, wsMaxFrame)
	rand.Read(c.key[:])
	if err := c.handshake(u.Host, u.RequestURI(), subprotocol); err != nil {
		syscall.Close(c.fd)
		return err
	}
	return nil
}

// handshake is the client's opening handshake (RFC 6455 §4.1): a GET with
// Upgrade, answered by 101 with Sec-WebSocket-Accept derived from our key
// and the subprotocol we asked for. Bytes that followed the answer in the
// same read (the server may write frames at once) go to the frame reader.
func (c *wsConn) handshake(host, path, subprotocol string) error {
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])
	req := "GET " + path + " HTTP/1.1\r\n" +
		"Host: " + host + "\r\n" +
		"Upgrade: websocket\r\n" +
		"Connection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\n" +
		"Sec-WebSocket-Version: 13\r\n" +
		"Sec-WebSocket-Protocol: " + subprotocol + "\r\n\r\n"
	if err := writeBlocking(c.fd, []byte(req)); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	br := bufio.NewReader(fdReader(c.fd))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	resp.Body.Close() // empty: a 101 has no body
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("handshake: %s", resp.Status)
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") {
		return fmt.Errorf("handshake: Upgrade %q", resp.Header.Get("Upgrade"))
	}
	if got, want := resp.Header.Get("Sec-WebSocket-Accept"), wsAccept(key); got != want {
		return fmt.Errorf("handshake: Sec-WebSocket-Accept %q, want %q", got, want)
	}
	if got := resp.Header.Get("Sec-WebSocket-Protocol"); got != subprotocol {
		return fmt.Errorf("handshake: subprotocol %q, want %q", got, subprotocol)
	}
	rest, _ := br.Peek(br.Buffered())
	c.in.load(rest)
	return nil
}

// wsAccept is the Sec-WebSocket-Accept answer to key (RFC 6455 §4.2.2).
func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// writeMessage sends payload as one binary message.
func (c *wsConn) writeMessage(payload []byte) error {
	return c.write(appendClientFrame(nil, wsOpBinary, payload, c.key))
}

// write sends a whole frame: blocking during set-up; once a reactor
// serves the socket, a non-blocking write, which for the few bytes of a
// control frame or heartbeat only fails if the peer stopped reading
// altogether.
func (c *wsConn) write(frame []byte) error {
	if !c.nb {
		return writeBlocking(c.fd, frame)
	}
	n, e := writeNB(c.fd, frame)
	if e != 0 {
		return os.NewSyscallError("write", e)
	}
	if n < len(frame) {
		return fmt.Errorf("write: %d of %d bytes (send buffer full)", n, len(frame))
	}
	return nil
}

// setupFrame returns the next data frame during set-up, reading (blocking)
// as needed.
func (c *wsConn) setupFrame() (wsFrame, error) {
	for {
		f, ok, err := c.in.next()
		if err != nil {
			return f, err
		}
		if ok {
			if f.op < wsOpClose {
				return f, nil
			}
			if err := c.control(f); err != nil {
				return f, err
			}
			continue
		}
		n, err := readBlocking(c.fd, c.in.space())
		if err == io.EOF {
			err = wsEOF
		}
		if err != nil {
			return f, err
		}
		c.in.wrote(n)
	}
}

// pump is the reactor's work when the socket is readable: one read into
// the buffer, then every whole frame in it. A read that filled the buffer
// may have left bytes in the socket, so it reads again; a short read means
// the socket is drained (epoll reports it again when more arrives).
func (c *wsConn) pump(h wsDataHandler) error {
	for {
		sp := c.in.space()
		n, err := readReady(c.fd, sp)
		switch {
		case err == io.EOF:
			return wsEOF
		case err != nil || n == 0:
			return err
		}
		c.in.wrote(n)
		if err := c.frames(time.Now().UnixNano(), h); err != nil {
			return err
		}
		if n < len(sp) {
			return nil
		}
	}
}

// frames handles every whole frame buffered.
func (c *wsConn) frames(now int64, h wsDataHandler) error {
	for {
		f, ok, err := c.in.next()
		if err != nil || !ok {
			return err
		}
		if f.op < wsOpClose {
			err = h.wsData(f, now)
		} else {
			err = c.control(f)
		}
		if err != nil {
			return err
		}
	}
}

// control handles a control frame: a ping is answered with a pong of the
// same data, a pong ignored, a close frame is echoed (best effort) and
// ends the connection with the peer's code and reason, worded as
// gorilla/websocket words them.
func (c *wsConn) control(f wsFrame) error {
	switch f.op {
	case wsOpPing:
		// A pong that finds the send buffer full is dropped: the peer
		// is not reading, and will learn of us otherwise.
		if err := c.write(appendClientFrame(nil, wsOpPong, f.payload, c.key)); err != nil && !errors.Is(err, syscall.EAGAIN) {
			return err
		}
	case wsOpClose:
		ce := &websocket.CloseError{Code: websocket.CloseNoStatusReceived}
		if len(f.payload) >= 2 {
			ce.Code = int(binary.BigEndian.Uint16(f.payload))
			ce.Text = string(f.payload[2:])
			c.write(appendClientFrame(nil, wsOpClose, f.payload[:2], c.key))
		} else {
			c.write(appendClientFrame(nil, wsOpClose, nil, c.key))
		}
		return ce
	}
	return nil
}

// errDataFrame is a data frame a subscriber kind does not take.
func errDataFrame(f wsFrame) error {
	switch {
	case f.op == wsOpText:
		return fmt.Errorf("websocket: text message (the protocol is binary)")
	case f.op == wsOpContinuation || !f.fin:
		return fmt.Errorf("websocket: fragmented message (opcode %d, fin %v): not supported, the server sends whole messages", f.op, f.fin)
	}
	return fmt.Errorf("websocket: unexpected frame, opcode %d", f.op)
}
