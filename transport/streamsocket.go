package transport

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"syscall"
)

// A stream's socket. The gateway limits what the kernel holds unsent for
// a stream's connection, as for a WebSocket (unsent_linux.go): without the
// limit, Linux took megabytes for a client on a slow link, the gateway
// never saw it fall behind and conflated nothing (a phone at 40 KB/s showed
// values 18 s old and growing), and a cut lost more than the replay window
// holds, and the session with it. net/http does not hand a handler its
// connection; the server puts it in each request's context (WithConn,
// which the Caddy module registers with Caddy's servers).
//
// Over HTTP/1.1 a stream has its TCP connection to itself while it lasts.
// Over HTTP/2, which browsers speak to any HTTPS site, the connection is
// shared by the page's requests, and HTTP/2's flow control does not bound
// what waits in the network: a browser allows a stream megabytes. So the
// connection is limited while any stream on it lasts; its other responses
// then wait in net/http's frame scheduler rather than in the kernel (what
// is in flight, sent and not acknowledged, does not count). Over HTTP/3
// there is no kernel buffer to limit: QUIC's congestion control bounds what
// is in flight, and quic-go's writes wait while it cannot send.

type connKey struct{}

// WithConn returns ctx carrying c, the connection its requests come on.
func WithConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// limitedConns counts, by connection, the streams that limit it: over
// HTTP/2 a page's sessions may stream on one connection, and the limit
// stays until the last of them ends.
var limitedConns = struct {
	sync.Mutex
	streams map[net.Conn]int
}{streams: map[net.Conn]int{}}

// limitStreamSocket limits the unsent data of r's connection, if it is an
// HTTP/1 or HTTP/2 one over TCP the context names, and returns what undoes
// it once no stream on the connection is left (the connection may serve
// other requests after the stream).
func limitStreamSocket(r *http.Request) (undo func()) {
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	if r.ProtoMajor > 2 || c == nil {
		return func() {}
	}
	raw, _ := tcpSocket(c)
	if raw == nil {
		return func() {}
	}
	limitedConns.Lock()
	defer limitedConns.Unlock()
	if limitedConns.streams[c] == 0 {
		limited := false
		if raw.Control(func(fd uintptr) { limited = limitUnsent(int(fd)) }) != nil || !limited {
			return func() {}
		}
	}
	limitedConns.streams[c]++
	return func() {
		limitedConns.Lock()
		defer limitedConns.Unlock()
		if limitedConns.streams[c]--; limitedConns.streams[c] > 0 {
			return
		}
		delete(limitedConns.streams, c)
		raw.Control(func(fd uintptr) { unlimitUnsent(int(fd)) })
	}
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
