package session

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"

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
