//go:build linux

package transport

import (
	"syscall"
	"unsafe"
)

// Unsent data in the kernel. A client on a slow link (a phone on a poor
// network) reads slower than messages come. Left alone, Linux grows a
// socket's send buffer to megabytes (tcp_wmem), and the gateway's writes
// go on succeeding while seconds of messages, tens of seconds on a link of
// a few KB/s, wait in the kernel, where nothing can conflate them: the
// client falls further behind and never gets a topic's latest value in
// time. With TCP_NOTSENT_LOWAT the socket takes no more once unsentLimit
// bytes wait to be sent (what is in flight, sent and not acknowledged,
// does not count, so a fast link's throughput is unchanged): the rest
// waits in the session's outbox, which sees the client fall behind and
// conflates QoS 0 per topic (PROTOCOL.md, Throttling).
const unsentLimit = 16 << 10

const (
	tcpNotsentLowat = 25     // TCP_NOTSENT_LOWAT (linux/tcp.h); not in package syscall
	siocOutqNSD     = 0x894B // SIOCOUTQNSD: bytes not yet sent
)

// limitUnsent sets the socket's limit; false if the kernel refused it.
func limitUnsent(fd int) bool {
	return syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, tcpNotsentLowat, unsentLimit) == nil
}

// unlimitUnsent puts the system's default back (0 is "none of the
// socket's own").
func unlimitUnsent(fd int) {
	syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, tcpNotsentLowat, 0)
}

// unsentRoom reports whether n more bytes keep the socket's unsent data
// under unsentLimit, so that a write of them does not wait. queued is the
// socket's SO_MEMINFO write queue (unsent and in flight, with the kernel's
// bookkeeping): below the limit, so is what is unsent, and the ioctl is
// not needed, which is the common case of a client that keeps up.
func unsentRoom(fd, queued, n int) bool {
	if queued+n < unsentLimit {
		return true
	}
	var unsent int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), siocOutqNSD, uintptr(unsafe.Pointer(&unsent)))
	return errno == 0 && int(unsent)+n < unsentLimit
}
