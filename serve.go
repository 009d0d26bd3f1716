package mqttgateway

import (
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-mqtt/mqttgateway/transport"
)

// originAllowed accepts the gateway's own origin and the configured ones.
func (h *Handler) originAllowed(r *http.Request) bool {
	origin := strings.ToLower(r.Header.Get("Origin"))
	if h.origins.allows(origin) {
		return true
	}
	scheme := "http://"
	if r.TLS != nil {
		scheme = "https://"
	}
	return origin == scheme+strings.ToLower(r.Host)
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	name := path.Base(r.URL.Path)
	switch name {
	case "ws", "stream", "poll", "send":
	default:
		if (h.BasePath == "" || path.Dir(r.URL.Path) == h.base) && serveClientFile(w, r, name) {
			return nil
		}
		return next.ServeHTTP(w, r)
	}
	if h.BasePath != "" && path.Dir(r.URL.Path) != h.base {
		return next.ServeHTTP(w, r) // not under the base path: not the gateway's
	}
	// Browsers send Origin on WebSocket upgrades and cross-origin POSTs;
	// anything else without one is not a browser page.
	if origin := r.Header.Get("Origin"); origin != "" {
		if !h.originAllowed(r) {
			h.refuseOrigin(w, r, origin, name)
			return nil
		}
		if name != "ws" {
			allowCORS(w, origin)
		}
	}
	// Someone opening an endpoint by hand (a browser, curl) reads what it
	// is; Caddy's error handling would answer an empty body.
	if name == "ws" {
		if !transport.IsWebSocket(r) {
			http.Error(w, "this is an mqtt_gateway WebSocket endpoint: it takes a WebSocket upgrade "+
				"with subprotocol "+transport.Subprotocol+", as the gateway's client.js makes", http.StatusBadRequest)
			return nil
		}
		return h.server.ServeWebSocket(w, r)
	}
	switch r.Method {
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent) // CORS preflight, answered above
		return nil
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "POST, OPTIONS")
		http.Error(w, fmt.Sprintf("this is an mqtt_gateway endpoint (%s): it takes POST requests "+
			"of the gateway's protocol, as the gateway's client.js makes", name), http.StatusMethodNotAllowed)
		return nil
	}
	switch name {
	case "stream":
		return h.server.ServeStream(w, r)
	case "poll":
		return h.server.ServePoll(w, r)
	default:
		return h.server.ServeSend(w, r)
	}
}

// allowCORS answers an allowed cross-origin request. Credentials (cookies)
// are allowed so the hooks can see them; the session secret travels in a
// /send's body, which a foreign page cannot know.
func allowCORS(w http.ResponseWriter, origin string) {
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Allow-Methods", "POST, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	h.Add("Vary", "Origin")
}

// serverWriteTimeout is the write timeout of the Caddy server serving r
// (`timeouts { write }`): Caddy makes it a ceiling over the whole
// response, counted from the request's start, that a handler cannot
// raise. A long poll waiting a heartbeat, or a stream, under a shorter
// one was cut, and every idle poll failed (transport.Server.ResponseLimit).
func serverWriteTimeout(r *http.Request) time.Duration {
	if srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server); ok {
		return time.Duration(srv.WriteTimeout)
	}
	return 0
}
