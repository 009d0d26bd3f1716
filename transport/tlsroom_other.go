//go:build !linux

package transport

// Elsewhere a TLS connection's writer always has a goroutine of its own
// (see tlsroom_linux.go).
const tlsPooling = false

func sendRoom(int, int) bool { return false }

// limitUnsent: elsewhere the kernel's send buffer holds what it holds (see
// unsent_linux.go).
func limitUnsent(int) bool { return false }

func unlimitUnsent(int) {}
