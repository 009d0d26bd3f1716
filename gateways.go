package mqttgateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"go.uber.org/zap"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// sameGateway refuses a second block of one config for the same gateway
// with other settings, naming them.
func sameGateway(settings, other, name string) error {
	if settings != other {
		return fmt.Errorf("mqtt_gateway: two mqtt_gateway blocks are both gateway %q but differ in %s "+
			"(a gateway is named after its brokers unless it has a name): give each its own name "+
			"(and its own path: of two blocks on one path of a site, only the first is ever reached)", name, strings.Join(differing(settings, other), ", "))
	}
	return nil
}

// gatewaySettings is what blocks of one gateway must agree on: all but
// what each handler applies on its own (its path, the origins it lets in).
func (h *Handler) gatewaySettings() ([]byte, error) {
	shared := *h
	shared.BasePath, shared.AllowOrigins = "", nil
	return json.Marshal(&shared)
}

// differing lists the settings (JSON fields) in which two differ.
func differing(a, b string) []string {
	var ma, mb map[string]json.RawMessage
	json.Unmarshal([]byte(a), &ma)
	json.Unmarshal([]byte(b), &mb)
	var out []string
	for k, v := range ma {
		if w, ok := mb[k]; !ok || !bytes.Equal(v, w) {
			out = append(out, k)
		}
	}
	for k := range mb {
		if _, ok := ma[k]; !ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// commitReload applies a reloaded config's settings to its gateway once
// Caddy has started that config ("started", an event Caddy marks
// experimental; should it go, the settings would not apply and the log
// would not say "gateway reconfigured").
type commitReload struct {
	g    *gateway
	load *caddyevents.App
	log  *zap.Logger
	name string // as the metrics' gateway label has it
}

func (c commitReload) Handle(context.Context, caddy.Event) error {
	p := c.g.pending
	if p == nil || p.load != c.load {
		return nil
	}
	c.g.pending = nil
	defer p.staged.Release() // those it did not take
	if err := c.g.ReconfigureStaged(p.cfg, p.staged); err != nil {
		c.log.Error("reconfiguring the gateway", zap.String("gateway", c.name), zap.Error(err))
		return nil
	}
	c.g.load, c.g.settings = p.load, p.settings
	// Brokers the reload added start now: their config's app has started
	// already.
	if err := c.g.StartEmbedded(); err != nil {
		c.log.Error("starting an embedded broker", zap.String("gateway", c.name), zap.Error(err))
	}
	c.log.Info("gateway reconfigured", zap.String("gateway", c.name), zap.Int("sessions", c.g.Sessions()))
	return nil
}

// gateways holds each gateway's session manager across config reloads.
var gateways = caddy.NewUsagePool()

// gateway adapts a Manager to the usage pool.
type gateway struct {
	*session.Manager
	// The config that last provisioned the gateway (known by its events
	// app: each config has its own) and its settings as JSON, for blocks
	// of one config that share the gateway.
	load     *caddyevents.App
	settings string
	// A reload's settings, until its config runs (commitReload).
	pending *applied
	// ran: a config with the gateway has started (markRan). One that
	// never did (caddy validate, a reload that failed) removes nothing
	// when it lets go of it.
	ran atomic.Bool
	// The alive notifications (sendAlive) start when it first runs, and
	// stop when it ends.
	aliveOnce sync.Once
	aliveStop chan struct{}
}

// markRan sets its gateway's ran when its config has started.
type markRan struct{ g *gateway }

func (m markRan) Handle(context.Context, caddy.Event) error {
	m.g.ran.Store(true)
	m.g.aliveOnce.Do(func() { go m.g.sendAlive(m.g.aliveStop) })
	return nil
}

// applied is a gateway's settings and the config that gives them.
type applied struct {
	cfg      session.Config
	load     *caddyevents.App
	settings string
	staged   *session.StagedBrokers // the embedded brokers it moves, listening
}

// Destruct ends the gateway: Caddy stops, or a reload left it out of the
// config (removed, or renamed: a new name, or brokers changed without a
// name, makes another gateway).
func (g *gateway) Destruct() error {
	close(g.aliveStop)
	if caddy.Exiting() {
		g.Close()
		return nil
	}
	if g.ran.Load() || g.Sessions() > 0 {
		g.Manager.Log().Info("gateway removed by a reload", zap.String("gateway", g.Config().Name), zap.Int("sessions", g.Sessions()))
	}
	g.CloseBecause("gateway removed by a config reload (renamed, or its brokers changed without a name); reconnect")
	return nil
}

func (h *Handler) gatewayKey() string {
	if h.Name != "" {
		return "mqtt_gateway:" + h.Name
	}
	names := make([]string, len(h.Brokers))
	for i, b := range h.Brokers {
		names[i] = b.Name
	}
	slices.Sort(names)
	return "mqtt_gateway:brokers=" + strings.Join(names, ",")
}

// Manager exposes the gateway's session manager (brokers' state, embedded
// brokers) to programs that embed the module, such as the demo.
func (h *Handler) Manager() *session.Manager { return h.manager }
