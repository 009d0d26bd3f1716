package main

import (
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
)

// presence keeps who is online: a user with a session that has connected
// to a broker and not closed. Every hook request names the Caddy instance
// that holds its session, and the close notification ends it; but a Caddy
// killed, or cut off from this service, sends no close. So the gateway
// has alive_interval set, and an instance this service has not heard from
// for lapse (a few intervals) has ended, with its sessions. (One that was
// only cut off is heard from again, and its sessions count again from
// their next action.)
type presence struct {
	lapse time.Duration
	now   func() time.Time

	mu       sync.Mutex
	sessions map[string]held      // by session id
	heard    map[string]time.Time // instance → when it last sent anything
}

// held is a session: whose, and where.
type held struct{ user, instance string }

func newPresence(lapse time.Duration) *presence {
	return &presence{lapse: lapse, now: time.Now, sessions: map[string]held{}, heard: map[string]time.Time{}}
}

// note takes in a hook request the gateway sent.
func (p *presence) note(f hookapi.Facts) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if f.Instance != "" {
		p.heard[f.Instance] = p.now()
	}
	switch f.Action {
	case hookapi.ActionOpen, hookapi.ActionAlive:
		// The open may yet be refused (by this service, or by the gateway's
		// limits): the session counts from its first action.
	case hookapi.ActionClose:
		delete(p.sessions, f.SessionID)
	default:
		if f.SessionID != "" {
			p.sessions[f.SessionID] = held{f.User, f.Instance}
		}
	}
}

// online returns the users online, sorted, once the sessions of instances
// gone silent are forgotten.
func (p *presence) online() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for instance, at := range p.heard {
		if now.Sub(at) > p.lapse {
			delete(p.heard, instance)
		}
	}
	users := []string{}
	for id, s := range p.sessions {
		if _, live := p.heard[s.instance]; !live {
			delete(p.sessions, id)
			continue
		}
		if !slices.Contains(users, s.user) {
			users = append(users, s.user)
		}
	}
	slices.Sort(users)
	return users
}

// serve answers GET /presence: {"online":["alice"]}.
func (p *presence) serve(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string][]string{"online": p.online()})
}
