//go:build unix

package transport

import "syscall"

// rawWrites: plain TCP connections are written with write(2) on their
// descriptor (sharedConn.tryWrite).
const rawWrites = true

// rawWrite is one non-blocking write(2); EAGAIN (a full socket) is n < len(b)
// with no error.
func rawWrite(fd int, b []byte) (n int, err error) {
	for {
		n, err = syscall.Write(fd, b)
		if err != syscall.EINTR {
			break
		}
	}
	if n < 0 {
		n = 0
	}
	if err == syscall.EAGAIN {
		err = nil
	}
	return n, err
}
