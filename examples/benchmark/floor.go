package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// Setup F, the floor: the least a server can spend per delivery when it
// makes one write(2) per delivery. On loopback the writer's write also runs
// the receiver's TCP input path, about 4.4 µs of CPU per ~120-byte write on
// the 2-core test VM, whatever the server; Mosquitto (setup B) is within
// about 0.5 µs of it. The target "A ≤ ½ B" is below that floor
// unless several frames share a write, which at 80 msg/s per client means
// holding messages back. F measures the floor in the same run, so the
// table shows it beside A and B.
//
// The floor child is the benchmark binary re-executed (like the gateway
// child) with MQTTGW_BENCH_CHILD=floor. It is the minimal server: it
// accepts N TCP connections, then for each message the publisher of A and
// B would publish (same -rate, same -duration, same schedule) writes one
// prebuilt frame to every connection, one conn.Write per connection, in a
// sequential loop on one goroutine: no framing work, no queues, nothing
// batched.
//
// Control, on the first connection the parent makes (before any data
// connection, so it is the first accepted):
//
//	child → parent  'R'            control accepted: dial the N data connections
//	child → parent  'A'            all N accepted
//	parent → child  'G'            start the schedule (the measured window)
//	child → parent  8 bytes (LE)   messages sent, after the last write
//
// The child then waits for the control connection to close (or SIGTERM).

const envFloor = "MQTTGW_BENCH_FLOOR" // the floor child's parameters, JSON

type floorParams struct {
	Port     int           `json:"port"`
	N        int           `json:"n"`
	Rate     float64       `json:"rate"`
	Duration time.Duration `json:"duration"`
	Size     int           `json:"size"`
	Topic    string        `json:"topic"`
}

// floorFrame is what a setup A subscriber reads per delivery: one
// WebSocket binary message (server to client, so unmasked: a 2-byte header
// up to 125 bytes of payload, 4 up to 64 KiB) holding one MESSAGE frame of
// the gateway's protocol, encoded by the gateway's own encoder
// (transport.EncodeMessage, which also writes the frame's length prefix).
// Stream 1: streams are numbered from 1 per broker connection, and every
// value below 128 is one byte, like packet id 0 and flags. No properties:
// the publisher sends none. The payload has the publisher's layout.
func floorFrame(size int, topic string) []byte {
	payload := make([]byte, max(size, payloadHeader))
	fillPayload(payload, 0, 0, kindMeasured)
	msg := transport.EncodeMessage(&session.Message{Stream: 1, Topic: topic, Payload: payload})
	return append(wsServerHeader(len(msg)), msg...)
}

// wsServerHeader is the header of an unmasked, final, binary WebSocket
// frame of n payload bytes (RFC 6455 §5.2).
func wsServerHeader(n int) []byte {
	switch {
	case n <= 125:
		return []byte{0x82, byte(n)}
	case n <= 0xffff:
		return []byte{0x82, 126, byte(n >> 8), byte(n)}
	}
	return binary.BigEndian.AppendUint64([]byte{0x82, 127}, uint64(n))
}

// floorMessages is how many messages the publisher sends in rate mode
// (publisher.runRate), so F writes exactly as many.
func floorMessages(rate float64, d time.Duration) uint64 {
	return uint64(rate*d.Seconds() + 0.5)
}

func runFloorChild() {
	var p floorParams
	if err := json.Unmarshal([]byte(os.Getenv(envFloor)), &p); err != nil {
		floorFatal("parameters: %v", err)
	}
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p.Port))
	if err != nil {
		floorFatal("%v", err)
	}
	ctl, err := ln.Accept()
	if err != nil {
		floorFatal("accept control: %v", err)
	}
	floorSignal(ctl, 'R')
	conns := make([]net.Conn, p.N)
	for i := range conns {
		if conns[i], err = ln.Accept(); err != nil {
			floorFatal("accept %d: %v", i, err)
		}
	}
	ln.Close()
	floorSignal(ctl, 'A')
	var g [1]byte
	if _, err := io.ReadFull(ctl, g[:]); err != nil || g[0] != 'G' {
		floorFatal("waiting for go: %v %q", err, g[:])
	}

	frame := floorFrame(p.Size, p.Topic)
	total := floorMessages(p.Rate, p.Duration)
	interval := time.Duration(float64(time.Second) / p.Rate)
	start := time.Now()
	for i := uint64(1); i <= total; i++ {
		// The publisher's schedule: a late slot is made up at once.
		if wait := time.Until(start.Add(time.Duration(i-1) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		for _, c := range conns {
			if _, err := c.Write(frame); err != nil {
				floorFatal("write: %v", err)
			}
		}
	}
	if _, err := ctl.Write(binary.LittleEndian.AppendUint64(nil, total)); err != nil {
		floorFatal("report: %v", err)
	}
	io.Copy(io.Discard, ctl) // until the parent closes it
	// Until here: once unreachable, the connections would be closed by
	// the net package's finalizers at the next GC, and the parent, still
	// counting its receivers, would see them end.
	runtime.KeepAlive(conns)
}

func floorSignal(ctl net.Conn, b byte) {
	if _, err := ctl.Write([]byte{b}); err != nil {
		floorFatal("control: %v", err)
	}
}

func floorFatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchmark floor child: %s\n", fmt.Sprintf(format, args...))
	os.Exit(1)
}
