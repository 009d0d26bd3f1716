package mqttgateway

import (
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mqtt/mqttgateway/session"
)

func init() {
	caddy.RegisterModule(new(brokersApp))
}

// brokersApp starts the embedded brokers of a config's gateways when Caddy
// starts the config, as Caddy's own servers start listening then and not
// when they are provisioned: `caddy validate`, which only provisions, must
// not take the address of a running gateway's broker. An address already
// taken fails the start, and so the config load, with the broker named.
// Handlers load it (ctx.App); it has nothing to configure.
type brokersApp struct {
	mu       sync.Mutex
	managers []*session.Manager
}

// CaddyModule returns the Caddy module information.
func (*brokersApp) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "mqtt_gateway_brokers", New: func() caddy.Module { return new(brokersApp) }}
}

// add registers a gateway whose embedded brokers start with the config.
func (a *brokersApp) add(m *session.Manager) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.managers = append(a.managers, m)
}

// Start implements caddy.App.
func (a *brokersApp) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, m := range a.managers {
		if err := m.StartEmbedded(); err != nil {
			return err
		}
	}
	return nil
}

// Stop implements caddy.App. The brokers stop with their gateways (Cleanup).
func (a *brokersApp) Stop() error { return nil }

var _ caddy.App = (*brokersApp)(nil)
