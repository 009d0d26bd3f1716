//go:build linux

package transport

import (
	"syscall"
	"unsafe"
)

// TLS connections on the writer pool.
//
// crypto/tls writes only by blocking: a record it began must be finished,
// and after a write error (a deadline's included) the connection is done
// for. So a pool worker writes a TLS record only when the kernel is sure to
// take it at once, which SO_MEMINFO tells: the socket's send buffer has
// room for it, and memory is already reserved for it, unless nothing is
// queued (the kernel never refuses an empty queue its first buffer).
// Otherwise the message goes to a goroutine of its own (wsConn.flush), as
// every TLS write did before; that goroutine, started, scheduled and ended
// for each message, was about a third of a TLS delivery's CPU.

const (
	soMeminfo           = 55 // SO_MEMINFO (asm-generic/socket.h); not in package syscall
	skMeminfoSndbuf     = 3  // SK_MEMINFO_SNDBUF
	skMeminfoFwdAlloc   = 4  // SK_MEMINFO_FWD_ALLOC
	skMeminfoWmemQueued = 5  // SK_MEMINFO_WMEM_QUEUED
	skMeminfoVars       = 9

	// maxPooledTLS is the largest write sent from the pool: crypto/tls
	// puts up to about 1,200 bytes in the first records of a connection,
	// so up to this it is one record and one write(2).
	maxPooledTLS = 1024
	// What a record of n plaintext bytes takes of the send buffer, at
	// most n + recordOverhead + bufferOverhead: the record's header and
	// AEAD tag (29 bytes at most, TLS 1.2 GCM), and the kernel's
	// bookkeeping of a buffer (struct sk_buff and its shared info: 825
	// bytes on Linux 6, measured with SO_MEMINFO).
	recordOverhead = 29
	bufferOverhead = 1024
)

// tlsPooling: TLS connections write from the pool where the socket's unsent
// data is limited (limitUnsent): a socket with room in its buffer may then
// still refuse data, which SO_MEMINFO does not show and unsentRoom does.
const tlsPooling = true

// sendRoom reports whether a TLS write of n plaintext bytes on the socket
// fd is sure not to wait.
func sendRoom(fd, n int) bool {
	if n > maxPooledTLS {
		return false
	}
	var info [skMeminfoVars]uint32
	size := uint32(unsafe.Sizeof(info))
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, soMeminfo,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 || size < (skMeminfoWmemQueued+1)*4 {
		return false
	}
	need := int64(n + recordOverhead + bufferOverhead)
	queued, sndbuf := int64(info[skMeminfoWmemQueued]), int64(info[skMeminfoSndbuf])
	reserved := int64(int32(info[skMeminfoFwdAlloc]))
	return queued+need <= sndbuf && (queued == 0 || need <= reserved) &&
		unsentRoom(fd, int(queued), n+recordOverhead)
}
