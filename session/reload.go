package session

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"go.uber.org/zap"
)

// Reloads. Caddy provisions a new configuration before it stops the old
// one; the Caddy module keeps one Manager per gateway across reloads (a
// caddy.UsagePool) and hands it the new configuration here, so live
// sessions and broker connections survive a reload. A broker whose settings
// changed is reconnected, and only its clients notice; a removed broker's
// clients are told their broker is gone.

func (m *Manager) outboxLimits() outboxLimits {
	c := m.config()
	return outboxLimits{pendingFrames: c.MaxPendingFrames, pendingBytes: c.MaxPendingBytes,
		replayFrames: c.ReplayFrames, replayBytes: c.ReplayBytes, conflateAfter: c.ConflateAfter, behindAfter: c.BehindAfter}
}

// sameBroker reports whether two broker configurations are equal, the
// contents of their TLS files included.
func sameBroker(a, b *BrokerConfig) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb) && a.tlsFiles == b.tlsFiles
}

// loginRenewed reports whether two configurations of an external broker
// differ in the login and nothing else: the password, the TLS files or
// their contents (a certificate renewed in place, a CA bundle with the
// broker's next authority). The connections up stay up for such a change
// (Hub.renewLogin) and use it when they next log in: reconnecting every
// client, with the messages published meanwhile lost to them, would be
// the price of a routine rotation, and a broker that stops accepting the
// old login for the connections it has (Mosquitto does, reloading its
// password file) ends them itself.
func loginRenewed(a, b *BrokerConfig) bool {
	if a.Embedded != nil || b.Embedded != nil {
		return false
	}
	x, y := *a, *b
	x.Password, y.Password = "", ""
	x.tlsFiles, y.tlsFiles = b.tlsFiles, b.tlsFiles
	x.TLS, y.TLS = withoutFiles(a.TLS), withoutFiles(b.TLS)
	return sameBroker(&x, &y)
}

// withoutFiles is t without the files it names (nil for nil).
func withoutFiles(t *BrokerTLS) *BrokerTLS {
	if t == nil {
		return nil
	}
	u := *t
	u.CA, u.Cert, u.Key = "", "", ""
	return &u
}

// CheckConfig reports what Reconfigure would refuse in cfg (a duplicate
// broker, a bad URL, an unreadable TLS file), without applying anything:
// a reload checks its config when Caddy provisions it and applies it only
// once Caddy runs it.
func CheckConfig(cfg Config) error {
	seen := map[string]bool{}
	listens := map[string]string{}
	for _, b := range cfg.Brokers {
		if seen[b.Name] {
			return fmt.Errorf("duplicate broker name %q", b.Name)
		}
		seen[b.Name] = true
		if err := b.Prepare(); err != nil {
			return err
		}
		if addr := b.FixedListen(); addr != "" {
			if other, taken := listens[addr]; taken {
				return fmt.Errorf("embedded brokers %q and %q both listen on %s: an address serves one broker", other, b.Name, addr)
			}
			listens[addr] = b.Name
		}
	}
	return nil
}

// Reconfigure applies a (new) configuration. New limits apply to sessions
// opened from now on.
func (m *Manager) Reconfigure(cfg Config) error { return m.ReconfigureStaged(cfg, nil) }

// ReconfigureStaged is Reconfigure with the embedded brokers StageEmbedded
// started for cfg; the caller releases staged afterwards (those taken are
// no longer in it).
func (m *Manager) ReconfigureStaged(cfg Config, staged *StagedBrokers) error {
	if cfg.ConflateAfter <= 0 {
		cfg.ConflateAfter = 64
	}
	if cfg.BehindAfter <= 0 {
		cfg.BehindAfter = DefaultBehindAfter
	}
	if err := CheckConfig(cfg); err != nil {
		return err
	}

	m.brokersMu.Lock()
	next := map[string]*brokerRuntime{}
	var changed, renewed, removed []*brokerRuntime
	var started []*EmbeddedBroker
	fail := func(err error) error {
		m.brokersMu.Unlock()
		for _, e := range started {
			e.release()
		}
		return err
	}
	for _, b := range cfg.Brokers {
		old := m.brokers[b.Name]
		if old != nil && sameBroker(old.cfg, b) {
			next[b.Name] = old
			continue
		}
		br := &brokerRuntime{cfg: b, url: b.serverURL}
		if b.Embedded != nil {
			if old != nil && old.embedded != nil && old.cfg.Embedded != nil && old.cfg.Embedded.Listen == b.Embedded.Listen {
				br.embedded = old.embedded // same broker, other settings
			} else if e := staged.take(b.Embedded.Listen); e != nil {
				if old != nil && old.embedded != nil {
					old.embedded.release()
				}
				started = append(started, e)
				br.embedded = e
			} else {
				if old != nil && old.embedded != nil {
					old.embedded.release() // frees its address for the new one
				}
				e, err := acquireEmbedded(b.Embedded.Listen, cfg.DeferEmbedded, embeddedLog(m.log))
				if err != nil {
					return fail(fmt.Errorf("broker %q: %w", b.Name, err))
				}
				started = append(started, e)
				br.embedded = e
			}
		} else if old != nil && old.embedded != nil {
			old.embedded.release() // an external broker now: the embedded one goes
		}
		next[b.Name] = br
		switch {
		case old == nil:
		case loginRenewed(old.cfg, b):
			br.copiesPerSub.Store(old.copiesPerSub.Load()) // the same broker
			renewed = append(renewed, br)
		default:
			changed = append(changed, br)
		}
	}
	for name, old := range m.brokers {
		if next[name] == nil {
			removed = append(removed, old)
		}
	}
	m.brokers = next
	prev := m.config()
	m.cfg.Store(&cfg)
	m.brokersMu.Unlock()
	if cfg.Logger != nil {
		m.setLogger(cfg.Logger)
	}
	if prev != nil && (prev.MaxFrequency != cfg.MaxFrequency || prev.MaxBandwidth != cfg.MaxBandwidth) {
		m.reapplyLimits()
	}
	if prev != nil && !slices.Equal(prev.SharedSubscriptions, cfg.SharedSubscriptions) {
		// It waits for the clients' queues, which a slow hook may hold:
		// not the reload.
		go m.endClosedShares()
	}

	for _, br := range renewed {
		m.log.Info("broker login renewed", zap.String("broker", br.cfg.Name))
		var kept atomic.Bool
		inParallel(m.hubsOf(br.cfg.Name), func(h *Hub) {
			if h.br() == br {
				return // started after the reload, with its settings (acquireHub)
			}
			if configured, up := h.renewLogin(br); up {
				if configured {
					kept.Store(true)
				}
				return
			}
			m.reconnect(h, br) // down: at once, with the new login
		})
		if kept.Load() {
			go m.checkLogin(br)
		}
	}
	for _, br := range changed {
		m.log.Info("broker reconfigured", zap.String("broker", br.cfg.Name))
		inParallel(m.hubsOf(br.cfg.Name), func(h *Hub) {
			if h.br() != br { // not one started after the reload, with its settings (acquireHub)
				m.reconnect(h, br)
			}
		})
	}
	for _, br := range removed {
		m.log.Info("broker removed", zap.String("broker", br.cfg.Name))
		inParallel(m.hubsOf(br.cfg.Name), func(h *Hub) {
			h.takeOverWith(Errorf(CodeUnknownBroker, "broker %q was removed from the gateway", br.cfg.Name))
			m.dropHub(h)
		})
		m.mu.Lock()
		br.removed.Store(true)
		m.metrics.forgetBroker(br.cfg.Name)
		m.mu.Unlock()
		if br.embedded != nil {
			br.embedded.release()
		}
	}
	return nil
}

// inParallel runs f for each hub at once and returns when all are done.
// Ending a hub's connection waits up to 2 s for the broker to take its
// DISCONNECT (disconnect): one hub after the other, a reload that changes
// or removes a broker that has stopped answering took 2 s per dedicated
// client, holding Caddy's admin API as long. A shutdown does the same
// (closeHubs).
func inParallel(hubs []*Hub, f func(*Hub)) {
	var wg sync.WaitGroup
	for _, h := range hubs {
		wg.Add(1)
		go func() { defer wg.Done(); f(h) }()
	}
	wg.Wait()
}

// reconnect moves a hub to its broker's changed configuration: a shared
// one reconnects with its subscriptions, a dedicated one ends, as its
// broker session may not be what it was (LOST).
func (m *Manager) reconnect(h *Hub, br *brokerRuntime) {
	if h.dedicated {
		h.takeOverWith(Errorf(CodeBrokerUnavailable, "broker %q was reconfigured", br.cfg.Name))
		m.dropHub(h)
	} else if err := h.restart(br); err != nil {
		m.log.Error("reconnecting reconfigured broker", zap.String("broker", br.cfg.Name), zap.Error(err))
	}
}

// reapplyLimits puts changed server caps on the sessions that exist:
// sessions outlive reloads, and a tightened limit must reach them too.
func (m *Manager) reapplyLimits() {
	for _, s := range m.sessionsMatching(nil) {
		s.reapplyLimits()
	}
}

func (m *Manager) hubsOf(broker string) []*Hub {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*Hub
	for _, h := range m.hubs {
		if h.br().cfg.Name == broker {
			out = append(out, h)
		}
	}
	return out
}

func (m *Manager) dropHub(h *Hub) {
	m.mu.Lock()
	if m.hubs[h.key] == h {
		delete(m.hubs, h.key)
	}
	m.mu.Unlock()
}
