package hookapi

import (
	"crypto/tls"
	"net"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Origin is a snapshot of the web request that opened or carries a
// session: what a hook may want to know about the client. It is safe to
// keep after that request ended, and read-only once taken: many decisions
// may use it at once.
type Origin struct {
	// RemoteAddr is the address of the peer (host:port), which may be a
	// proxy.
	RemoteAddr string
	// ClientIP is the client's IP as Caddy resolved it through the
	// server's trusted_proxies and client_ip_headers.
	ClientIP string
	// TrustedProxy reports whether the peer is a trusted proxy, which
	// decides whether reverse_proxy keeps the incoming X-Forwarded-*
	// headers.
	TrustedProxy bool
	// Host is the Host of the web request.
	Host string
	// Proto is its protocol, such as "HTTP/1.1".
	Proto string
	// Header is a copy of its headers: User-Agent, Origin, Cookie,
	// Authorization, X-Forwarded-For… The Runner leaves out hop-by-hop
	// headers and any X-Mqtt-* header when it builds a request from them.
	Header http.Header
	// TLS is the TLS state of the connection, with the client
	// certificate if one was presented, or nil.
	TLS *tls.ConnectionState

	server    *caddyhttp.Server
	localAddr net.Addr
}

// Snapshot copies what hooks may need from r, a request that Caddy is
// serving. It keeps a reference to Caddy's server (for handlers such as
// reverse_proxy and invoke) and to the connection's local address.
func Snapshot(r *http.Request) *Origin {
	ctx := r.Context()
	o := &Origin{
		RemoteAddr: r.RemoteAddr,
		Host:       r.Host,
		Proto:      r.Proto,
		Header:     r.Header.Clone(),
		TLS:        r.TLS,
	}
	if o.Header == nil {
		o.Header = http.Header{}
	}
	o.ClientIP, _ = caddyhttp.GetVar(ctx, caddyhttp.ClientIPVarKey).(string)
	o.TrustedProxy, _ = caddyhttp.GetVar(ctx, caddyhttp.TrustedProxyVarKey).(bool)
	o.server, _ = ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	o.localAddr, _ = ctx.Value(http.LocalAddrContextKey).(net.Addr)
	return o
}

// clientIP is ClientIP, or the host of RemoteAddr when the snapshot was
// not taken inside Caddy.
func (o *Origin) clientIP() string {
	if o.ClientIP != "" {
		return o.ClientIP
	}
	if host, _, err := net.SplitHostPort(o.RemoteAddr); err == nil {
		return host
	}
	return o.RemoteAddr
}
