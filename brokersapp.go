package mqttgateway

import (
	"fmt"
	"slices"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"

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
// For a gateway the config reloads, that is the brokers at addresses its
// running config does not have (session.StageEmbedded): the reload's
// settings apply later (commitReload), and a reload that fails must leave
// the running brokers as they are. Handlers load it (ctx.App); it has
// nothing to configure.
type brokersApp struct {
	mu       sync.Mutex
	gateways []*gateway
	events   *caddyevents.App // the config's, to know its reloads by
	staged   []*session.StagedBrokers
	listens  map[string]string // the embedded brokers' fixed addresses: whose
}

// CaddyModule returns the Caddy module information.
func (*brokersApp) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "mqtt_gateway_brokers", New: func() caddy.Module { return new(brokersApp) }}
}

// add registers a gateway of the config (events is the config's), whose
// embedded brokers (in cfg) start with it. Two gateways of a config may not
// have embedded brokers at one address: the process has one broker there
// (acquireEmbedded shares it, for reloads), and they would silently share
// it.
func (a *brokersApp) add(g *gateway, events *caddyevents.App, cfg session.Config) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if slices.Contains(a.gateways, g) {
		return nil // another block of the gateway
	}
	if a.listens == nil {
		a.listens = map[string]string{}
	}
	for _, b := range cfg.Brokers {
		addr := b.FixedListen()
		if addr == "" {
			continue
		}
		if other, taken := a.listens[addr]; taken {
			return fmt.Errorf("embedded broker %q of gateway %q and %s both listen on %s: an address serves one broker", b.Name, cfg.Name, other, addr)
		}
		a.listens[addr] = fmt.Sprintf("embedded broker %q of gateway %q", b.Name, cfg.Name)
	}
	a.gateways = append(a.gateways, g)
	a.events = events
	return nil
}

// Start implements caddy.App.
func (a *brokersApp) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, g := range a.gateways {
		var err error
		if p := g.pending; p != nil && p.load == a.events {
			if p.staged == nil {
				p.staged, err = g.StageEmbedded(p.cfg)
				a.staged = append(a.staged, p.staged)
			}
		} else {
			err = g.StartEmbedded()
		}
		if err != nil {
			a.releaseLocked()
			return err
		}
	}
	return nil
}

// Stop implements caddy.App. The brokers stop with their gateways
// (Cleanup); those staged for a reload that never applied stop here.
func (a *brokersApp) Stop() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.releaseLocked()
	return nil
}

func (a *brokersApp) releaseLocked() {
	for _, s := range a.staged {
		s.Release()
	}
	a.staged = nil
}

var _ caddy.App = (*brokersApp)(nil)
