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
	"github.com/caddy-mqtt/mqttgateway/session/topic"
)

func init() {
	caddy.RegisterModule(adminSessions{})
}

// adminSessions adds to Caddy's admin API:
//
//   - POST /mqtt_gateway/close_sessions ends the live sessions of a user (or
//     one session) now;
//   - POST /mqtt_gateway/unsubscribe ends their subscriptions that could
//     deliver under a filter, and nothing else they hold;
//   - GET /mqtt_gateway/sessions lists live sessions (admin_sessions.go).
//
// The hooks decide each action as it comes, so a user whose token expired
// or who was revoked is refused new actions, but a session keeps its
// subscriptions, and a rebind is no action: this is how an operator, or the
// service that revokes (a member removed from a room), ends what the user
// already has.
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
	return []caddy.AdminRoute{
		{Pattern: "/mqtt_gateway/close_sessions", Handler: caddy.AdminHandlerFunc(a.closeSessions)},
		{Pattern: "/mqtt_gateway/unsubscribe", Handler: caddy.AdminHandlerFunc(a.unsubscribe)},
		{Pattern: "/mqtt_gateway/sessions", Handler: caddy.AdminHandlerFunc(a.listSessions)},
	}
}

// sessionsRequest selects sessions by user or by id, on every gateway or on
// the one named; unsubscribe adds the filter and the broker.
type sessionsRequest struct {
	User    string `json:"user,omitempty"`
	Session string `json:"session,omitempty"` // hex, as hooks see it
	Gateway string `json:"gateway,omitempty"` // as in the metrics' gateway label
	Message string `json:"message,omitempty"` // what the client is told; a default otherwise
	Filter  string `json:"filter,omitempty"`  // unsubscribe: what may no longer be delivered
	Broker  string `json:"broker,omitempty"`  // unsubscribe: on this broker only
}

func (adminSessions) closeSessions(w http.ResponseWriter, r *http.Request) error {
	req, match, err := readSessionsRequest(w, r, false)
	if err != nil {
		return err
	}
	reason := session.Errorf(session.CodeNotAuthenticated, "%s", session.TrimText(messageOr(req.Message, "session ended by the gateway's operator")))
	closed := 0
	if err := eachGateway(req.Gateway, func(_ string, g *gateway) { closed += g.CloseSessions(match, reason) }); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]int{"closed": closed})
}

func (adminSessions) unsubscribe(w http.ResponseWriter, r *http.Request) error {
	req, match, err := readSessionsRequest(w, r, true)
	if err != nil {
		return err
	}
	reason := session.Errorf(session.CodeNotAuthorized, "%s", session.TrimText(messageOr(req.Message, "subscription ended by the gateway's operator")))
	sessions, ended := 0, 0
	if err := eachGateway(req.Gateway, func(_ string, g *gateway) {
		n, m := g.EndSubscriptions(match, req.Filter, req.Broker, reason)
		sessions += n
		ended += m
	}); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string]int{"sessions": sessions, "unsubscribed": ended})
}

// readSessionsRequest reads a request's JSON body (unknown fields are
// errors) and makes its session selector; withFilter: an unsubscribe's,
// whose filter is required and valid.
func readSessionsRequest(w http.ResponseWriter, r *http.Request, withFilter bool) (sessionsRequest, func(session.OpenInfo, [16]byte) bool, error) {
	var req sessionsRequest
	if r.Method != http.MethodPost {
		return req, nil, caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: use POST")}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, nil, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("reading the request: %v", err)}
	}
	if !withFilter && (req.Filter != "" || req.Broker != "") {
		return req, nil, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`"filter" and "broker" are for /mqtt_gateway/unsubscribe`)}
	}
	if withFilter {
		if req.Filter == "" {
			return req, nil, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`name a "filter": the subscriptions that could deliver a topic it matches end`)}
		}
		if err := topic.ValidateFilter(req.Filter); err != nil && topic.ValidateShared(req.Filter) != nil {
			return req, nil, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("filter %q: %v", req.Filter, err)}
		}
	}
	if req.User == "" && req.Session == "" {
		return req, nil, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`name a "user" or a "session"`)}
	}
	match, err := sessionSelector(req.User, req.Session)
	return req, match, err
}

// sessionSelector selects the sessions of user (any if empty) with the id
// sessionHex (any if empty).
func sessionSelector(user, sessionHex string) (func(session.OpenInfo, [16]byte) bool, error) {
	var id [16]byte
	if sessionHex != "" {
		b, err := hex.DecodeString(sessionHex)
		if err != nil || len(b) != len(id) {
			return nil, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("session %q is not 32 hexadecimal digits", sessionHex)}
		}
		copy(id[:], b)
	}
	return func(info session.OpenInfo, sid [16]byte) bool {
		return (user == "" || info.User == user) && (sessionHex == "" || sid == id)
	}, nil
}

// eachGateway calls fn for every live gateway, or for the one named (404
// if there is none).
func eachGateway(name string, fn func(name string, g *gateway)) error {
	found := name == ""
	gateways.Range(func(key, value any) bool {
		n := gatewayName(key)
		if name != "" && n != name {
			return true
		}
		found = true
		fn(n, value.(*gateway))
		return true
	})
	if !found {
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no gateway named %q", name)}
	}
	return nil
}

// gatewayName is a gateway's name from its key in gateways.
func gatewayName(key any) string { return strings.TrimPrefix(key.(string), "mqtt_gateway:") }

// messageOr is the operator's message for the client, or def.
func messageOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

var _ caddy.AdminRouter = adminSessions{}
