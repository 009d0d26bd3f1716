package main

import (
	"encoding/json"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
)

// A user is online from a session's first action to its close; and when
// a Caddy instance goes silent (killed: no closes come), its sessions end
// once the lapse has passed, while another instance's, kept alive, stay.
func TestPresence(t *testing.T) {
	clock := time.Unix(1_800_000_000, 0)
	p := newPresence(90 * time.Second)
	p.now = func() time.Time { return clock }
	heard := func(a hookapi.Action, instance, user, session string) {
		p.note(hookapi.Facts{Action: a, Instance: instance, User: user, SessionID: session})
	}
	want := func(users ...string) {
		t.Helper()
		if got := p.online(); !slices.Equal(got, users) && !(len(got) == 0 && len(users) == 0) {
			t.Fatalf("online %v, want %v", got, users)
		}
	}

	heard(hookapi.ActionOpen, "a1", "", "s1")
	want() // an open may yet be refused
	heard(hookapi.ActionConnect, "a1", "alice", "s1")
	heard(hookapi.ActionConnect, "b2", "bob", "s2")
	heard(hookapi.ActionConnect, "b2", "bob", "s3") // a second tab
	want("alice", "bob")
	heard(hookapi.ActionClose, "b2", "bob", "s2")
	want("alice", "bob")
	heard(hookapi.ActionClose, "b2", "bob", "s3")
	want("alice")

	heard(hookapi.ActionConnect, "b2", "bob", "s4")
	// a1 is killed; b2 goes on saying it is alive.
	for range 3 {
		clock = clock.Add(30 * time.Second)
		heard(hookapi.ActionAlive, "b2", "", "")
	}
	want("alice", "bob") // 90 s: not yet past the lapse
	clock = clock.Add(time.Second)
	heard(hookapi.ActionAlive, "b2", "", "")
	want("bob")
	// a1 was only cut off, and is heard from again: its sessions that are
	// still open come back with their next action.
	heard(hookapi.ActionAlive, "a1", "", "")
	want("bob")
	heard(hookapi.ActionSubscribe, "a1", "alice", "s1")
	want("alice", "bob")

	w := httptest.NewRecorder()
	p.serve(w, httptest.NewRequest("GET", "/presence", nil))
	var body struct{ Online []string }
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || !slices.Equal(body.Online, []string{"alice", "bob"}) {
		t.Fatalf("GET /presence: %s (%v)", w.Body, err)
	}
}
