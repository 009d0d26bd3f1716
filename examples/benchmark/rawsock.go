package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// The subscribers' sockets are made with raw syscalls, not net.Dial: a
// socket of the net package is registered with Go's netpoller, so every
// segment arriving on it would also wake Go's epoll instance. On loopback
// the sender's write runs the receiver's input path, wake-ups included, so
// that cost would land in the CPU of the server being measured. These
// sockets are only ever in a reactor's epoll set (reactor.go).
//
// A socket is blocking, with send and receive timeouts, during its
// set-up (handshake and subscription, done by the dialing goroutine), and
// non-blocking once a reactor serves it.

// errSetupTimeout is a set-up read or write that hit the socket's timeout.
var errSetupTimeout = errors.New("set-up timed out")

// dialLoopback connects a TCP socket to addr ("127.0.0.1:port") and
// returns it in blocking mode, with send and receive timeouts at ctx's
// deadline (30 s from now without one) so the set-up cannot hang.
func dialLoopback(ctx context.Context, addr string) (int, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() {
		return -1, fmt.Errorf("%q is not an IPv4 address and port", addr)
	}
	timeout := 30 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	if timeout <= 0 {
		return -1, context.DeadlineExceeded
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	fail := func(err error) (int, error) { syscall.Close(fd); return -1, err }
	tv := syscall.NsecToTimeval(timeout.Nanoseconds())
	for _, opt := range []int{syscall.SO_RCVTIMEO, syscall.SO_SNDTIMEO} {
		if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, opt, &tv); err != nil {
			return fail(os.NewSyscallError("setsockopt", err))
		}
	}
	// As net.Dial does: the heartbeats must not wait for an ACK.
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		return fail(os.NewSyscallError("setsockopt", err))
	}
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	deadline := time.Now().Add(timeout)
	for {
		err := syscall.Connect(fd, sa)
		switch err {
		case nil, syscall.EISCONN:
			return fd, nil
		case syscall.EINTR, syscall.EALREADY:
			// A signal (Go preempts threads with SIGURG) interrupted
			// connect; the handshake goes on in the kernel: ask again
			// until it has ended.
			if time.Now().After(deadline) {
				return fail(fmt.Errorf("connect %s: %w", addr, errSetupTimeout))
			}
			time.Sleep(time.Millisecond)
		case syscall.EINPROGRESS: // the send timeout expired
			return fail(fmt.Errorf("connect %s: %w", addr, errSetupTimeout))
		default:
			return fail(fmt.Errorf("connect %s: %w", addr, err))
		}
	}
}

// readBlocking is read(2) on a socket during its set-up. A socket with a
// receive timeout does not restart a read interrupted by a signal, so
// EINTR is retried here; the timeout itself is EAGAIN.
func readBlocking(fd int, p []byte) (int, error) {
	for {
		n, err := syscall.Read(fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return 0, errSetupTimeout
		case err != nil:
			return 0, os.NewSyscallError("read", err)
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

// writeBlocking writes all of p on a socket during its set-up.
func writeBlocking(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := syscall.Write(fd, p)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return errSetupTimeout
		case err != nil:
			return os.NewSyscallError("write", err)
		}
		p = p[n:]
	}
	return nil
}

// fdReader reads a socket during its set-up (the HTTP answer).
type fdReader int

func (r fdReader) Read(p []byte) (int, error) { return readBlocking(int(r), p) }

// readNB and writeNB are read(2) and write(2) on a non-blocking socket, on
// a reactor's thread. RawSyscall skips the scheduler's bookkeeping around
// a call that might block (entersyscall, exitsyscall), which these never
// do: a saving on every read.
func readNB(fd int, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// readReady is one read of a readable non-blocking socket, retried on
// EINTR: n > 0 bytes; 0 and nil when it is drained (EAGAIN); io.EOF at the
// end of the stream.
func readReady(fd int, p []byte) (int, error) {
	for {
		n, e := readNB(fd, p)
		switch {
		case e == syscall.EAGAIN:
			return 0, nil
		case e == syscall.EINTR:
			continue
		case e != 0:
			return 0, os.NewSyscallError("read", e)
		case n == 0:
			return 0, io.EOF
		}
		return n, nil
	}
}

func writeNB(fd int, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}
