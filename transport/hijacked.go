package transport

import (
	"net"
	"reflect"
)

// caddyHijackedConn names the wrapper Caddy puts around a hijacked
// connection when a response recorder wraps the response writer, which it
// does for metrics and for access logs: it counts the bytes read and
// written and changes none of them.
const (
	caddyHTTPPackage  = "github.com/caddyserver/caddy/v2/modules/caddyhttp"
	caddyHijackedType = "hijackedConn"
)

// unwrapHijacked returns the connection under Caddy's counting wrappers, or
// c. There may be several, one per recorder: the server's for access logs,
// and one for each route with metrics the request went through (a site for
// any host has its handlers at the top of the server's routes, so a `root`
// or `header` before the gateway wraps once more). Unwrapping one left a
// wrapper, so metrics with access logs set no limit either. Without it, a
// gateway with metrics or access logs on found no TCP connection under a
// WebSocket: no limit on the kernel's unsent data, so a client on a slow
// link got a backlog of megabytes instead of conflated values, and no
// direct writes. The wrapper's type is not exported; its
// connection is the embedded net.Conn, an exported field reflect may read.
// The gateway then reads and writes the connection itself, not through the
// wrapper: Caddy's metrics read the wrapper's counts when the handler
// returns, while the gateway's writers go on writing (a data race), and
// record them before most bytes are written anyway. The gateway counts
// what it sends in bytes_out_total.
func unwrapHijacked(c net.Conn) net.Conn {
	for {
		inner := unwrapOnce(c)
		if inner == c {
			return c
		}
		c = inner
	}
}

// unwrapOnce returns the connection c wraps if c is Caddy's wrapper, or c.
func unwrapOnce(c net.Conn) net.Conn {
	v := reflect.ValueOf(c)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return c
	}
	t := v.Elem().Type()
	if t.PkgPath() != caddyHTTPPackage || t.Name() != caddyHijackedType {
		return c
	}
	f := v.Elem().FieldByName("Conn")
	if !f.IsValid() || !f.CanInterface() {
		return c
	}
	if inner, ok := f.Interface().(net.Conn); ok && inner != nil {
		return inner
	}
	return c
}
