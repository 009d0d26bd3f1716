package mqttgateway

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mqtt/mqttgateway/session"
)

func init() {
	caddy.RegisterModule(adminSessions{})
}

// adminSessions adds POST /mqtt_gateway/close_sessions to Caddy's admin
// API: it ends the live sessions of a user (or one session) now. The hooks
// decide each action as it comes, so a user whose token expired or who was
// revoked is refused new actions, but a session keeps its subscriptions,
// and a rebind is no action: this is how an operator, or the service that
// revokes, ends what the user already has.
type adminSessions struct{}

// CaddyModule returns the Caddy module information.
func (adminSessions) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.mqtt_gateway",
		New: func() caddy.Module { return new(adminSessions) },
	}
}

// Routes implements caddy.AdminRouter.
func (a adminSessions) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/mqtt_gateway/close_sessions", Handler: caddy.AdminHandlerFunc(a.closeSessions)}}
}

// closeSessionsRequest selects sessions by user or by id, on every gateway
// or on the one named.
type closeSessionsRequest struct {
	User    string `json:"user,omitempty"`
	Session string `json:"session,omitempty"` // hex, as hooks see it
	Gateway string `json:"gateway,omitempty"` // as in the metrics' gateway label
	Message string `json:"message,omitempty"` // what the client is told; a default otherwise
}

func (adminSessions) closeSessions(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: use POST")}
	}
	var req closeSessionsRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("reading the request: %v", err)}
	}
	var id [16]byte
	switch {
	case req.User == "" && req.Session == "":
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`name a "user" or a "session"`)}
	case req.Session != "":
		b, err := hex.DecodeString(req.Session)
		if err != nil || len(b) != len(id) {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("session %q is not 32 hexadecimal digits", req.Session)}
		}
		copy(id[:], b)
	}
	message := req.Message
	if message == "" {
		message = "session ended by the gateway's operator"
	}
	reason := session.Errorf(session.CodeNotAuthenticated, "%s", session.TrimText(message))
	match := func(info session.OpenInfo, sid [16]byte) bool {
		return (req.User == "" || info.User == req.User) && (req.Session == "" || sid == id)
	}
	closed, found := 0, req.Gateway == ""
	gateways.Range(func(key, value any) bool {
		name := strings.TrimPrefix(key.(string), "mqtt_gateway:")
		if req.Gateway != "" && name != req.Gateway {
			return true
		}
		found = true
		closed += value.(*gateway).CloseSessions(match, reason)
		return true
	})
	if !found {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no gateway named %q", req.Gateway)}
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]int{"closed": closed})
}

var _ caddy.AdminRouter = adminSessions{}
