package session

import (
	"fmt"
	"sync"

	"go.uber.org/zap"
)

// A reload that moves an embedded broker to another address must fail, as
// a whole and while the running config still runs, when that address is
// taken. Reconfigure runs only once Caddy has started the new config, too
// late to refuse it; so the new addresses are taken before, when Caddy
// starts the config (StageEmbedded), and Reconfigure finds them there.

// StagedBrokers are embedded brokers started for a configuration that is
// not applied yet.
type StagedBrokers struct {
	mu       sync.Mutex
	byListen map[string]*EmbeddedBroker
}

// take hands the broker staged for listen to its new user, if there is one.
func (s *StagedBrokers) take(listen string) *EmbeddedBroker {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.byListen[listen]
	delete(s.byListen, listen)
	return e
}

// Release stops the staged brokers nobody took: the configuration was not
// applied, or did not need them. Calling it again does nothing.
func (s *StagedBrokers) Release() {
	if s == nil {
		return
	}
	s.mu.Lock()
	left := s.byListen
	s.byListen = nil
	s.mu.Unlock()
	for _, e := range left {
		e.release()
	}
}

// StageEmbedded starts the embedded brokers of cfg that would listen where
// the running configuration has none of its own (a new broker, or one whose
// listen changed), for ReconfigureStaged to take. If one cannot listen, it
// stops those it started and says which broker failed; the running brokers
// are untouched either way.
func (m *Manager) StageEmbedded(cfg Config) (*StagedBrokers, error) {
	s := &StagedBrokers{byListen: map[string]*EmbeddedBroker{}}
	m.brokersMu.RLock()
	defer m.brokersMu.RUnlock()
	for _, b := range cfg.Brokers {
		if b.Embedded == nil || s.byListen[b.Embedded.Listen] != nil {
			continue
		}
		if old := m.brokers[b.Name]; old != nil && old.embedded != nil && old.cfg.Embedded != nil && old.cfg.Embedded.Listen == b.Embedded.Listen {
			continue // the running one goes on (Reconfigure)
		}
		e, err := acquireEmbedded(b.Embedded.Listen, false, embeddedLog(m.log))
		if err != nil {
			s.Release()
			return nil, fmt.Errorf("broker %q: %w", b.Name, err)
		}
		m.log.Info("embedded broker listening", zap.String("broker", b.Name), zap.String("url", e.URL().String()))
		s.byListen[b.Embedded.Listen] = e
	}
	return s, nil
}
