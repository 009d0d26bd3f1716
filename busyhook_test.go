package mqttgateway

import (
	"net/http"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// busyHook is `mqttgw_test_busy <duration>`, a hook handler for tests
// that works that long whatever its context says, as basic_auth's bcrypt
// of an unknown user does (a second of CPU, past hook_timeout).
type busyHook struct {
	For caddy.Duration `json:"for"`
}

func (busyHook) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.mqttgw_test_busy", New: func() caddy.Module { return new(busyHook) }}
}

func (b busyHook) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	time.Sleep(time.Duration(b.For))
	return next.ServeHTTP(w, r)
}

func init() {
	caddy.RegisterModule(busyHook{})
	httpcaddyfile.RegisterHandlerDirective("mqttgw_test_busy", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		h.Next()
		if !h.NextArg() {
			return nil, h.ArgErr()
		}
		d, err := caddy.ParseDuration(h.Val())
		if err != nil {
			return nil, err
		}
		return busyHook{For: caddy.Duration(d)}, nil
	})
	httpcaddyfile.RegisterDirectiveOrder("mqttgw_test_busy", httpcaddyfile.Before, "respond")
}
