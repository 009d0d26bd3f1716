package mqttgateway

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// listedSession is a session as GET /mqtt_gateway/sessions lists it: its
// gateway's name (as in the metrics' gateway label) and its state.
type listedSession struct {
	Gateway string `json:"gateway"`
	session.SessionStatus
}

// listSessions answers GET /mqtt_gateway/sessions[?user=…][&session=…]
// [&gateway=…] with {"sessions": [...]}, the live sessions selected, oldest
// first (all of them without user or session).
func (adminSessions) listSessions(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: use GET")}
	}
	q := r.URL.Query()
	for key := range q {
		if key != "user" && key != "session" && key != "gateway" {
			return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New("unknown parameter " + key + `: select with "user", "session" and "gateway"`)}
		}
	}
	match, err := sessionSelector(q.Get("user"), q.Get("session"))
	if err != nil {
		return err
	}
	list := []listedSession{}
	if err := eachGateway(q.Get("gateway"), func(name string, g *gateway) {
		for _, st := range g.SessionStatuses(match) {
			list = append(list, listedSession{name, st})
		}
	}); err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	return json.NewEncoder(w).Encode(map[string][]listedSession{"sessions": list})
}
