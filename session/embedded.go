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
type EmbeddedBroker struct {
	server *mqtt.Server
	addr   net.Addr
	listen string // the configured address, if a fixed one (the key in shared)
	refs   int    // gateways using it (guarded by sharedMu)
}

// Embedded brokers at a fixed address are shared by the gateways of a
// process. A reload that makes a new gateway of an old one (its name or
// its brokers changed) provisions the new before it stops the old; with
// the address taken, the new could not start its broker, and the reload
// would fail. So the new takes the running broker, retained messages and
// all, and the last gateway to let go stops it.
var (
	sharedMu sync.Mutex
	shared   = map[string]*EmbeddedBroker{}
)

// acquireEmbedded returns the broker listening on listen, starting it
// unless a gateway of this process already runs it. Each acquire is paired
// with a release.
func acquireEmbedded(listen string) (*EmbeddedBroker, error) {
	_, port, _ := net.SplitHostPort(listen)
	if listen == "" || port == "0" { // a free port: nothing to share
		return StartEmbedded(listen, nil)
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if e := shared[listen]; e != nil {
		e.refs++
		return e, nil
	}
	e, err := StartEmbedded(listen, nil)
	if err != nil {
		return nil, err
	}
	e.listen, e.refs = listen, 1
	shared[listen] = e
	return e, nil
}

// release gives back what acquireEmbedded gave; the last user stops it.
func (e *EmbeddedBroker) release() {
	if e.listen != "" {
		sharedMu.Lock()
		e.refs--
		last := e.refs == 0
		if last {
			delete(shared, e.listen)
		}
		sharedMu.Unlock()
		if !last {
			return
		}
	}
	e.Close()
}

// StartEmbedded starts a broker listening on addr ("" for 127.0.0.1 on a
// free port).
func StartEmbedded(addr string, logger *slog.Logger) (*EmbeddedBroker, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("embedded broker: %v", err)
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
		return nil, err
	}
	if err := srv.AddListener(listeners.NewNet("gateway", ln)); err != nil {
		ln.Close()
		return nil, err
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, err
	}
	return &EmbeddedBroker{server: srv, addr: ln.Addr()}, nil
}

// URL is the mqtt:// URL the gateway's connections use.
func (e *EmbeddedBroker) URL() *url.URL {
	return &url.URL{Scheme: "mqtt", Host: e.addr.String()}
}

// Server exposes the mochi server, e.g. for in-process publishing.
func (e *EmbeddedBroker) Server() *mqtt.Server { return e.server }

// Close stops the broker and disconnects its clients.
func (e *EmbeddedBroker) Close() error { return e.server.Close() }
