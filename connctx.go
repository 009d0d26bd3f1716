package mqttgateway

import (
	"context"
	"net"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-mqtt/mqttgateway/transport"
)

// A stream limits what its socket holds unsent, as a WebSocket does, and
// net/http hands a handler no connection: the server must put it in each
// request's context (transport.WithConn). Caddy lets a handler ask that of
// its server while provisioning, once per server however many gateways it
// has; a reload builds new servers, and each registers again.
var connContexts = struct {
	sync.Mutex
	servers map[*caddyhttp.Server]int // gateways provisioned on each server
}{servers: map[*caddyhttp.Server]int{}}

// registerConnContext has the server of ctx, if any, put each connection
// in its requests' context, and forgets the server when ctx ends.
func registerConnContext(ctx caddy.Context) {
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil {
		return
	}
	connContexts.Lock()
	defer connContexts.Unlock()
	if connContexts.servers[srv] == 0 {
		srv.RegisterConnContext(func(ctx context.Context, c net.Conn) context.Context { return transport.WithConn(ctx, c) })
	}
	connContexts.servers[srv]++
	ctx.OnCancel(func() {
		connContexts.Lock()
		defer connContexts.Unlock()
		if connContexts.servers[srv]--; connContexts.servers[srv] <= 0 {
			delete(connContexts.servers, srv)
		}
	})
}
