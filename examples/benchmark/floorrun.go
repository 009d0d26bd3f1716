package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"
)

// Setup F's side in this process (the child is in floor.go): start the
// floor child, connect N plain TCP receivers, run the measured window
// exactly like runSetup (idle second, CPU samples around the schedule,
// drain) and fill a setupResult whose serving CPU is the floor child's.

// floorSub is one of setup F's receivers: a socket served by a reactor
// (reactor.go), like the subscribers of A and B, which reads it into a
// reused buffer and counts the bytes. The frames are all alike and never
// torn by the sender, so bytes / frame size is the number of deliveries;
// there is nothing else to decode.
type floorSub struct {
	subBase // its subState stays empty: F counts bytes instead
	sock
	buf   []byte
	bytes atomic.Int64 // this connection's
	total *atomic.Int64
}

// floorReadBuffer is a receiver's buffer, as A's and B's (wsReadBuffer).
const floorReadBuffer = 2048

// dialFloor connects a receiver to the floor child at addr and hands it to
// a reactor.
func dialFloor(ctx context.Context, addr string, id int, total *atomic.Int64) (*floorSub, error) {
	fd, err := dialLoopback(ctx, addr)
	if err != nil {
		return nil, err
	}
	s := &floorSub{buf: make([]byte, floorReadBuffer), total: total}
	s.fd = fd
	s.st.id = id
	if err := register(s); err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return s, nil
}

// The reactor's side (pollee).

func (s *floorSub) start() error     { return nil } // the child writes nothing before 'G'
func (s *floorSub) tick(int64) error { return nil }
func (s *floorSub) close()           { unregister(s) }

// readable reads until the socket is drained (a short read), counting. It
// allocates nothing. A clean end of stream is still an error here: the
// floor child never closes a data connection.
func (s *floorSub) readable() error {
	for {
		n, err := readReady(s.fd, s.buf)
		if err != nil || n == 0 {
			return err
		}
		s.bytes.Add(int64(n))
		s.total.Add(int64(n))
		if n < len(s.buf) {
			return nil
		}
	}
}

// startFloor starts the floor child and returns it with the control
// connection, once the child has accepted that.
func startFloor(o *options, n int, rate float64) (*server, net.Conn, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, nil, "", err
	}
	params, err := json.Marshal(floorParams{Port: port, N: n, Rate: rate, Duration: o.duration, Size: o.size, Topic: o.topic})
	if err != nil {
		return nil, nil, "", err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, "", err
	}
	s, err := startServer("floor", o.pin, filepath.Join(o.dir, fmt.Sprintf("floor-%d.out", port)),
		[]string{envChild + "=floor", envFloor + "=" + string(params)}, exe)
	if err != nil {
		return nil, nil, "", err
	}
	// No waitListening: its probe connection would be accepted as the
	// control connection. The control connection is the probe.
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for deadline := time.Now().Add(30 * time.Second); ; {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			if err := expectByte(c, 'R', 30*time.Second); err != nil {
				c.Close()
				s.stop()
				return nil, nil, "", fmt.Errorf("floor child: %w:\n%s", err, s.tail())
			}
			return s, c, addr, nil
		}
		if !s.alive() || time.Now().After(deadline) {
			s.stop()
			return nil, nil, "", fmt.Errorf("floor child not listening on %s: %v:\n%s", addr, err, s.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func expectByte(c net.Conn, want byte, timeout time.Duration) error {
	c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return err
	}
	if b[0] != want {
		return fmt.Errorf("control: got %q, want %q", b[0], want)
	}
	return nil
}

// runFloor runs setup F at one n.
func runFloor(ctx context.Context, o *options, n int, rate float64) (*setupResult, error) {
	res := &setupResult{Setup: "F", Name: "floor", N: n, Rate: rate}
	frame := len(floorFrame(o.size, o.topic))
	res.FrameBytes = frame

	fl, ctl, addr, err := startFloor(o, n, rate)
	if err != nil {
		return nil, err
	}
	defer fl.stop()
	defer ctl.Close() // first: the child exits when it ends

	var total atomic.Int64
	subs := make([]subscriber, n)
	logf("F: connecting %d receivers", n)
	t0 := time.Now()
	if err := connectAll(ctx, o.dialers, n, func(ctx context.Context, i int) (subscriber, error) {
		return dialFloor(ctx, addr, i, &total)
	}, subs); err != nil {
		closeAll(subs)
		return nil, err
	}
	defer closeAll(subs)
	if err := expectByte(ctl, 'A', 30*time.Second); err != nil {
		return nil, fmt.Errorf("floor child accepting: %w:\n%s", err, fl.tail())
	}
	res.ConnectSec = time.Since(t0).Seconds()
	logf("F: %d receivers in %.1fs", n, res.ConnectSec)

	// One idle second, as for A and B (the floor child has nothing to do).
	time.Sleep(time.Second)
	i0, it := procCPUPrecise(fl.pid), time.Now()
	time.Sleep(time.Second)
	res.FloorIdleCPUPerSec = (procCPUPrecise(fl.pid) - i0) / time.Since(it).Seconds()

	// The measured window: the child's schedule, then the drain.
	type cpuSample struct{ fl, flTicks, self, sys float64 }
	sample := func() cpuSample {
		return cpuSample{fl: procCPUPrecise(fl.pid), flTicks: procCPU(fl.pid), self: selfCPU(), sys: systemBusy()}
	}
	logf("F: writing %.0f frames/s of %d B to each of %d connections for %s", rate, frame, n, o.duration)
	c0 := sample()
	start := time.Now()
	if _, err := ctl.Write([]byte{'G'}); err != nil {
		return nil, fmt.Errorf("floor child: %w", err)
	}
	var sent [8]byte
	ctl.SetReadDeadline(time.Now().Add(o.duration + time.Minute))
	if _, err := io.ReadFull(ctl, sent[:]); err != nil {
		return nil, fmt.Errorf("floor child: %w:\n%s", err, fl.tail())
	}
	pubEnd := time.Now()
	published := binary.LittleEndian.Uint64(sent[:])
	res.BytesExpected = int64(published) * int64(n) * int64(frame)
	last := drain(ctx, &total, res.BytesExpected, o.drain)
	c1 := sample()
	wall := time.Since(start).Seconds()

	res.Published = published
	res.PublishedPerSec = float64(published) / pubEnd.Sub(start).Seconds()
	res.Expected = int64(published) * int64(n)
	res.BytesReceived = total.Load()
	res.Received = res.BytesReceived / int64(frame)
	res.Lost = res.Expected - res.Received
	if nominal := start.Add(time.Duration(float64(published) / rate * float64(time.Second))); nominal.After(last) {
		last = nominal
	}
	res.WindowSec = last.Sub(start).Seconds()
	if res.WindowSec > 0 {
		res.DeliveredPerSec = float64(res.Received) / res.WindowSec
	}
	res.CPUWindowSec = wall
	res.FloorCPU = c1.fl - c0.fl
	res.FloorCPUStat = c1.flTicks - c0.flTicks
	res.ServingCPU = res.FloorCPU
	res.GeneratorCPU = c1.self - c0.self
	res.OtherCPU = max(0, (c1.sys-c0.sys)-res.ServingCPU-res.GeneratorCPU)
	if res.Received > 0 {
		res.ServingUsPerDelivery = res.ServingCPU * 1e6 / float64(res.Received)
		res.GeneratorUsPerDelivery = res.GeneratorCPU * 1e6 / float64(res.Received)
	}
	_, res.FloorRSSPeak = procMem(fl.pid)
	res.GeneratorRSSPeak = selfMaxRSS()

	for _, s := range subs {
		fs := s.(*floorSub)
		if why := fs.endedWith(); why != "" {
			res.Disconnected++
			if res.FirstDisconnect == "" {
				res.FirstDisconnect = why
			}
		}
		if fs.bytes.Load() < int64(published)*int64(frame) {
			res.SubsShort++
		}
	}
	res.check(o, n)
	logf("F: %d/%d bytes, %d deliveries, serving CPU %.2f µs/delivery",
		res.BytesReceived, res.BytesExpected, res.Received, res.ServingUsPerDelivery)
	return res, nil
}
