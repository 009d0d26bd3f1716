package session

import (
	"bufio"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
)

// brokerConn is one network connection to a broker, as paho writes to it.
//
// paho writes each MQTT packet as a few buffers between Lock and Unlock
// (it locks any conn that is a sync.Locker). brokerConn gathers them and
// writes the packet in one go when it is complete: one writev on TCP, one
// WebSocket message, one TLS record if small. When that write fails for a
// QoS 1 or 2 PUBLISH, unsent hears of it: the session state may have to
// send it on the connection that replaced this one (resend.go).
type brokerConn struct {
	net.Conn
	unsent func(c *brokerConn, packetID uint16, packet []byte)
	// will holds the Will Properties to put into the CONNECT, which paho
	// encodes without most of them (willprops.go); nil: none to put.
	will []byte

	mu      sync.Mutex
	parts   [][]byte // the buffers of the packet being written
	have    int      // their length so far
	want    int      // the packet's length, from its fixed header; 0 before it
	sending [][]byte // parts, for net.Buffers to consume
	joined  []byte   // parts of a small packet in one buffer, for TLS

	disconnected atomic.Bool // a DISCONNECT was written: Close lingers
	heard        atomic.Bool // the broker has sent a byte
	// connackLength: the broker's first byte was a CONNACK's, and the next
	// one is its Remaining Length, which tells an MQTT 3.1.1 broker's.
	connackLength bool

	// in reads a plain TCP connection: paho reads each packet's first
	// byte, its length and its body on their own, three system calls a
	// packet without it. (TLS and WebSocket connections buffer already.)
	in *bufio.Reader

	// v311 translates the packets of a broker that speaks MQTT 3.1.1
	// (mqtt311.go); nil for MQTT 5. pending is the rest of the packet
	// paho reads, in MQTT 5 form.
	v311    *mqtt311
	pending []byte
}

// brokerReadBuffer is in's size: several small packets a system call,
// while a large body is read straight into paho's buffer.
const brokerReadBuffer = 2048

func newBrokerConn(conn net.Conn, unsent func(*brokerConn, uint16, []byte), will []byte, v311 *mqtt311) *brokerConn {
	c := &brokerConn{Conn: conn, unsent: unsent, will: will, v311: v311}
	if _, plain := conn.(*net.TCPConn); plain || v311 != nil {
		c.in = bufio.NewReaderSize(conn, brokerReadBuffer)
	}
	if v311 != nil {
		c.will = nil // MQTT 3.1.1 has no will properties
	}
	return c
}

// read311 hands paho the broker's packets in their MQTT 5 form.
func (c *brokerConn) read311(p []byte) (int, error) {
	if len(c.pending) == 0 {
		if !c.heard.Load() {
			if err := c.notMQTT(); err != nil {
				return 0, err
			}
		}
		c.v311.shrink()
		packet, err := c.v311.up(c.in)
		if err != nil {
			if !c.heard.Load() && closedByPeer(err) {
				return 0, closedUnanswered(err)
			}
			return 0, err
		}
		c.heard.Store(true)
		c.pending = packet
	}
	n := copy(p, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

// notMQTT tells, by the broker's first byte, an answer in HTTP or TLS on a
// connection that reads MQTT 3.1.1 (see Read): the translator would take
// it for a packet, and the client wait connect_timeout for "connection
// failed".
func (c *brokerConn) notMQTT() error {
	if _, ws := c.Conn.(*wsStream); ws {
		return nil
	}
	first, err := c.in.Peek(1)
	if err != nil {
		return nil // up reads the error itself
	}
	return answerNotMQTT(first[0])
}

// answerNotMQTT names a broker's first byte that begins no MQTT packet: a
// broker's first packet is CONNACK or AUTH (0x20, 0xf0); "H" is an HTTP
// answer to the CONNECT, 0x15 a TLS alert. nil for any other byte.
func answerNotMQTT(first byte) error {
	switch first {
	case 'H':
		return &unanswered{errors.New("an HTTP answer"), "the broker answered in HTTP (a WebSocket port? it needs ws:// or wss://)", true}
	case 0x15:
		return &unanswered{errors.New("a TLS alert"), "the broker answered in TLS (a TLS port? it needs mqtts://)", true}
	}
	return nil
}

// closedUnanswered is a connection the broker closed (err) before it
// answered CONNECT.
func closedUnanswered(err error) error {
	return &unanswered{err, "the broker closed the connection without answering CONNECT (a TLS port, which needs mqtts://; a broker that takes no more connections; or one that speaks only MQTT 3.1.1, as RabbitMQ before 3.13, which needs mqtt_version 3.1.1)", false}
}

// Read tells a connection on which the broker does not speak MQTT from
// other failures, by what it gets before the broker's first byte: see
// unanswered. (paho reads a packet's first byte on its own.)
func (c *brokerConn) Read(p []byte) (int, error) {
	if c.v311 != nil {
		return c.read311(p)
	}
	var n int
	var err error
	if c.in != nil {
		n, err = c.in.Read(p)
	} else {
		n, err = c.Conn.Read(p)
	}
	if c.heard.Load() {
		if c.connackLength {
			c.connackLength = false
			if n > 0 && p[0] == mqtt311ConnackLength {
				return 0, &unanswered{errMQTT311, saysMQTT311, true}
			}
		}
		return n, err
	}
	if n > 0 {
		c.heard.Store(true)
		c.connackLength = p[0] == packets.CONNACK<<4 && n == 1
		if _, ws := c.Conn.(*wsStream); ws {
			return n, err
		}
		if err := answerNotMQTT(p[0]); err != nil {
			return 0, err
		}
	} else if _, plain := c.Conn.(*net.TCPConn); plain && err != nil && closedByPeer(err) {
		return 0, closedUnanswered(err)
	}
	return n, err
}

func (c *brokerConn) Lock() { c.mu.Lock() }

// Unlock ends a packet. One left incomplete (paho stops writing a packet
// only on an error, which Write never returns early) is written as it is.
func (c *brokerConn) Unlock() {
	if len(c.parts) > 0 {
		c.flush()
	}
	c.mu.Unlock()
}

// Write takes one buffer of the packet being written (the caller holds the
// lock) and writes the packet once it has all of it, returning that
// write's error with the last buffer, as a write of the whole would.
func (c *brokerConn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		// The empty properties or payload at the end of a packet, after
		// its flush: nothing to send (an empty WebSocket message otherwise).
		return 0, nil
	}
	if c.want == 0 {
		n, ok := packetLength(b)
		if !ok {
			// Not a fixed header paho wrote: pass it through as it is.
			return c.Conn.Write(b)
		}
		c.want = n
	}
	c.parts = append(c.parts, b)
	c.have += len(b)
	if c.have < c.want {
		return len(b), nil
	}
	if err := c.flush(); err != nil {
		return 0, err
	}
	return len(b), nil
}

// flush writes the gathered packet. If that fails for a QoS 1/2 PUBLISH,
// unsent hears of it (on a goroutine of its own: it takes other locks).
func (c *brokerConn) flush() error {
	if c.will != nil && len(c.parts[0]) > 0 && c.parts[0][0] == packets.CONNECT<<4 {
		packet := withWillProperties(slices.Concat(c.parts...), c.will)
		c.parts, c.have, c.will = append(c.parts[:0], packet), len(packet), nil
	}
	var written []byte // an MQTT 3.1.1 broker's: the packet as paho wrote it
	if c.v311 != nil {
		written = slices.Concat(c.parts...)
		packet, err := c.v311.down(written)
		if err != nil || packet == nil { // nothing to send (mqtt311.down)
			clear(c.parts)
			c.parts, c.have, c.want = c.parts[:0], 0, 0
			return err
		}
		c.parts, c.have = append(c.parts[:0], packet), len(packet)
	}
	var err error
	switch conn := c.Conn.(type) {
	case *net.TCPConn:
		c.sending = append(c.sending[:0], c.parts...)
		bufs := net.Buffers(c.sending)
		_, err = bufs.WriteTo(conn)
	case *wsStream:
		err = conn.writeParts(c.parts)
	default: // TLS: one record for a small packet, a large one as it is
		if c.have > 16<<10 {
			for _, p := range c.parts {
				if _, err = conn.Write(p); err != nil {
					break
				}
			}
			break
		}
		c.joined = c.joined[:0]
		for _, p := range c.parts {
			c.joined = append(c.joined, p...)
		}
		_, err = conn.Write(c.joined)
	}
	if err == nil && len(c.parts[0]) > 0 && c.parts[0][0] == packets.DISCONNECT<<4 {
		c.disconnected.Store(true)
	}
	if err != nil && c.unsent != nil {
		packet := written // sent again through paho, which writes MQTT 5
		if packet == nil {
			packet = slices.Concat(c.parts...)
		}
		if id, ok := publishPacketID(packet); ok {
			go c.unsent(c, id, packet)
		}
	}
	clear(c.parts) // the buffers are paho's: keep none
	clear(c.sending)
	c.parts, c.sending = c.parts[:0], c.sending[:0]
	c.have, c.want = 0, 0
	return err
}

// Close ends the connection. After a DISCONNECT it first lets the broker
// read it: closed at once, with the broker's messages still arriving
// unread, the socket is reset, and a broker busy writing to it (Mosquitto
// under load) fails with a broken pipe before it reads the DISCONNECT,
// takes the connection for lost and publishes the client's will. So the
// gateway stops writing (FIN after the DISCONNECT), reads and discards
// until the broker closes its side, for at most disconnectLinger, and
// then closes.
func (c *brokerConn) Close() error {
	// Only where the stream can be half-closed (TCP, TLS), whose reads
	// may run beside paho's reader; a WebSocket's may not.
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && c.disconnected.Load() {
		if cw.CloseWrite() == nil && c.Conn.SetReadDeadline(time.Now().Add(disconnectLinger)) == nil {
			io.Copy(io.Discard, c.Conn)
		}
	}
	return c.Conn.Close()
}

// An MQTT 3.1.1 broker answers an MQTT 5 CONNECT with its own CONNACK,
// return code 1, "unacceptable protocol level" (MQTT 3.1.1, 3.1.2.2), whose
// Remaining Length is 2: an MQTT 5 CONNACK's is at least 3, with its
// properties. paho would fail to read it, and the operator read
// "connection failed".
const mqtt311ConnackLength = 2

const saysMQTT311 = "the broker answered in MQTT 3.1.1, not MQTT 5 (its CONNACK refuses the protocol level): give the broker mqtt_version 3.1.1"

// disconnectLinger bounds how long Close waits for the broker to close the
// connection after a DISCONNECT (Mosquitto closes it at once).
const disconnectLinger = time.Second

// packetLength is the length of a whole MQTT packet from its fixed header
// (the type byte and the Remaining Length), or false if header is not one.
func packetLength(header []byte) (int, bool) {
	n, shift := 0, 0
	for i := 1; i < len(header) && i <= 4; i++ {
		n |= int(header[i]&0x7f) << shift
		if header[i]&0x80 == 0 {
			return i + 1 + n, true
		}
		shift += 7
	}
	return 0, false
}

// publishPacketID is the packet identifier of an encoded QoS 1 or 2
// PUBLISH, or false if packet is something else or too short to say.
func publishPacketID(packet []byte) (uint16, bool) {
	if len(packet) < 2 || packet[0]>>4 != 3 {
		return 0, false
	}
	if qos := packet[0] >> 1 & 3; qos != 1 && qos != 2 {
		return 0, false
	}
	i := 1
	for ; packet[i]&0x80 != 0; i++ { // the Remaining Length
		if i == 4 || i+1 >= len(packet) {
			return 0, false
		}
	}
	i++
	if i+2 > len(packet) {
		return 0, false
	}
	i += 2 + (int(packet[i])<<8 | int(packet[i+1])) // the topic
	if i+2 > len(packet) {
		return 0, false
	}
	return uint16(packet[i])<<8 | uint16(packet[i+1]), true
}
