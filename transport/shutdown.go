package transport

import (
	"net/http"
	"sync"
)

// A streaming response and a waiting poll are requests in flight, and a
// graceful shutdown of the web server waits for requests in flight (Caddy's
// default grace period has no end): without a word from the server, one
// streaming client would hold a restart for as long as its stream lasts,
// until a supervisor's kill, which fires the dedicated clients' wills. So
// they end as soon as their server starts to shut down, as a stream ends
// after streamBytes: the client rebinds, to a new server after a reload,
// and finds the gateway gone after a stop.

// serverStops tracks, per net/http server, whether it is shutting down.
type serverStops struct {
	mu    sync.Mutex
	stops map[*http.Server]chan struct{}
}

// stopping is closed when the server of r begins to shut down; nil (never
// ready) for a request without one.
func (s *serverStops) stopping(r *http.Request) <-chan struct{} {
	srv, _ := r.Context().Value(http.ServerContextKey).(*http.Server)
	if srv == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ch := s.stops[srv]
	if ch == nil {
		if s.stops == nil {
			s.stops = map[*http.Server]chan struct{}{}
		}
		ch = make(chan struct{})
		s.stops[srv] = ch
		srv.RegisterOnShutdown(func() { close(ch) })
	}
	return ch
}
