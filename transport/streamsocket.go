package transport

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"syscall"
)

// A stream's socket. Over HTTP/1.1 a stream has its TCP connection to
// itself while it lasts, and the gateway limits what the kernel holds
// unsent for it, as for a WebSocket (unsent_linux.go): without the limit,
// Linux took megabytes for a client on a slow link, the gateway never saw
// it fall behind and conflated nothing (a phone at 40 KB/s showed values
// 18 s old and growing), and a cut lost more than the replay window holds,
// and the session with it. net/http does not hand a handler its
// connection; the server puts it in each request's context (WithConn,
// which the Caddy module registers with Caddy's servers). Over HTTP/2 the
// connection is shared by every request of the page, and the limit is
// left to HTTP/2's flow control.

type connKey struct{}

// WithConn returns ctx carrying c, the connection its requests come on.
func WithConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// limitStreamSocket limits the unsent data of r's connection, if it is an
// HTTP/1 one over TCP the context names, and returns what undoes it (the
// connection may serve other requests after the stream).
func limitStreamSocket(r *http.Request) (undo func()) {
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	if r.ProtoMajor != 1 || c == nil {
		return func() {}
	}
	raw, _ := tcpSocket(c)
	if raw == nil {
		return func() {}
	}
	limited := false
	if raw.Control(func(fd uintptr) { limited = limitUnsent(int(fd)) }) != nil || !limited {
		return func() {}
	}
	return func() { raw.Control(func(fd uintptr) { unlimitUnsent(int(fd)) }) }
}

// tcpSocket is the TCP socket c is, or a TLS connection runs over; nil if
// neither.
func tcpSocket(c net.Conn) (raw syscall.RawConn, isTLS bool) {
	if tc, ok := c.(*tls.Conn); ok {
		c, isTLS = tc.NetConn(), true
	}
	tcp, ok := c.(*net.TCPConn)
	if !ok {
		return nil, false
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return nil, false
	}
	return raw, isTLS
}
