package session

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// EmbeddedBroker is a mochi-mqtt broker running inside the gateway. The
// gateway reaches it over loopback TCP like any other broker, so embedded and
// external brokers share every code path that matters.
//
// It is created when a config is provisioned and listens from Start on,
// as Caddy's own servers do: `caddy validate` (which provisions a config
// without starting it) must not take the address of a running gateway.
type EmbeddedBroker struct {
	listen string // as configured ("" for 127.0.0.1 on a free port)
	log    *slog.Logger
	shared bool // listen is a fixed address, the key in sharedBrokers
	refs   int  // gateways using it (guarded by sharedMu)

	mu     sync.Mutex
	server *mqtt.Server
	addr   net.Addr // nil until started
}

// StartEmbedded starts a broker listening on addr ("" for 127.0.0.1 on a
// free port).
func StartEmbedded(addr string, logger *slog.Logger) (*EmbeddedBroker, error) {
	e := &EmbeddedBroker{listen: addr}
	if err := e.start(logger); err != nil {
		return nil, err
	}
	return e, nil
}

// Start makes the broker listen, unless it does already.
func (e *EmbeddedBroker) Start() error { return e.start(e.log) }

func (e *EmbeddedBroker) start(logger *slog.Logger) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server != nil {
		return nil
	}
	addr := e.listen
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("embedded broker: %v", err)
	}
	if logger == nil {
		// mochi logs every client at info; the gateway logs what matters.
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: logger})
	// The broker is only reachable where its listen address says; access
	// control for web clients is the gateway's job (authorize hooks).
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		ln.Close()
		return err
	}
	if err := srv.AddListener(listeners.NewNet("gateway", ln)); err != nil {
		ln.Close()
		return err
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return err
	}
	e.server, e.addr = srv, ln.Addr()
	return nil
}

// URL is the mqtt:// URL the gateway's connections use; nil before Start.
func (e *EmbeddedBroker) URL() *url.URL {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.addr == nil {
		return nil
	}
	return &url.URL{Scheme: "mqtt", Host: e.addr.String()}
}

// Server exposes the mochi server, e.g. for in-process publishing; nil
// before Start.
func (e *EmbeddedBroker) Server() *mqtt.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.server
}

// Close stops the broker and disconnects its clients.
func (e *EmbeddedBroker) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.server == nil {
		return nil
	}
	return e.server.Close()
}

// Embedded brokers at a fixed address are shared by the gateways of a
// process. A reload that makes a new gateway of an old one (its name or
// its brokers changed) provisions the new before it stops the old; with
// the address taken, the new could not start its broker, and the reload
// would fail. So the new takes the running broker, retained messages and
// all, and the last gateway to let go stops it.
var (
	sharedMu      sync.Mutex
	sharedBrokers = map[string]*EmbeddedBroker{}
)

// acquireEmbedded returns the broker for listen, the one a gateway of this
// process already has, or a new one, started now unless deferred, logging
// to log. Each acquire is paired with a release.
func acquireEmbedded(listen string, deferStart bool, log *slog.Logger) (*EmbeddedBroker, error) {
	_, port, _ := net.SplitHostPort(listen)
	e := &EmbeddedBroker{listen: listen, log: log}
	if listen != "" && port != "0" { // a fixed address: shared
		sharedMu.Lock()
		if running := sharedBrokers[listen]; running != nil {
			running.refs++
			sharedMu.Unlock()
			return running, nil
		}
		e.shared, e.refs = true, 1
		sharedBrokers[listen] = e
		sharedMu.Unlock()
	}
	if !deferStart {
		if err := e.Start(); err != nil {
			e.release()
			return nil, err
		}
	}
	return e, nil
}

// release gives back what acquireEmbedded gave; the last user stops it.
func (e *EmbeddedBroker) release() {
	if e.shared {
		sharedMu.Lock()
		e.refs--
		last := e.refs == 0
		if last {
			delete(sharedBrokers, e.listen)
		}
		sharedMu.Unlock()
		if !last {
			return
		}
	}
	e.Close()
}
