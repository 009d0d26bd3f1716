package mqttgateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
	"github.com/caddy-mqtt/mqttgateway/session"
)

// With alive_interval the authorize hook hears, from the start and then
// every interval, that the instance runs, and every hook request names
// the instance: a presence service pairs a session's open and close, and
// forgets the sessions of an instance it stops hearing from, since a Caddy
// killed or cut off sends no close.
func TestAliveNotificationsNameTheInstance(t *testing.T) {
	mq := startMosquitto(t)
	type heard struct {
		facts hookapi.Facts
		at    time.Time
	}
	heardCh := make(chan heard, 100)
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := hookapi.ParseRequest(r)
		if err != nil {
			t.Errorf("hook request: %v", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		heardCh <- heard{f, time.Now()}
		hookapi.Allow(w)
	}))
	t.Cleanup(hooks.Close)
	httpPort := freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d
		alive_interval 1s
		authenticate {
			reverse_proxy %s
		}
		authorize {
			reverse_proxy %s
		}
	}
}
`, httpPort, mq.port, hooks.Listener.Addr(), hooks.Listener.Addr()))

	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	connectMain(t, c)
	c.Close()

	var alive []time.Time
	byAction := map[hookapi.Action]hookapi.Facts{}
	instance := ""
	deadline := time.After(10 * time.Second)
	for len(alive) < 3 || byAction[hookapi.ActionClose].Action == "" {
		select {
		case h := <-heardCh:
			if instance == "" {
				instance = h.facts.Instance
			}
			if h.facts.Instance != instance || len(instance) != 16 {
				t.Fatalf("%s names instance %q, want the one every request names (16 hex digits, here %q)", h.facts.Action, h.facts.Instance, instance)
			}
			if h.facts.Action == hookapi.ActionAlive {
				if h.facts.SessionID != "" || h.facts.User != "" {
					t.Fatalf("an alive notification is the instance's, not a session's: %+v", h.facts)
				}
				alive = append(alive, h.at)
			}
			byAction[h.facts.Action] = h.facts
		case <-deadline:
			t.Fatalf("within 10 s: %d alive notifications, and the session's actions %v", len(alive), keysOf(byAction))
		}
	}
	for i := 1; i < len(alive); i++ {
		if gap := alive[i].Sub(alive[i-1]); gap < 500*time.Millisecond {
			t.Fatalf("alive notifications %s apart, with alive_interval 1s", gap)
		}
	}
	open, conn, closed := byAction[hookapi.ActionOpen], byAction[hookapi.ActionConnect], byAction[hookapi.ActionClose]
	if open.SessionID == "" || conn.SessionID != open.SessionID || closed.SessionID != open.SessionID {
		t.Fatalf("open, connect and close name sessions %q, %q, %q: want one", open.SessionID, conn.SessionID, closed.SessionID)
	}
}

func keysOf[K comparable, V any](m map[K]V) []K {
	var out []K
	for k := range m {
		out = append(out, k)
	}
	return out
}

// alive_interval needs an authorize hook to hear it, and is at least a
// second: a config that cannot do what it says is refused.
func TestAliveIntervalChecks(t *testing.T) {
	for input, want := range map[string]string{
		"alive_interval soon":  "soon",
		"alive_interval 1s 2s": "alive_interval takes one value",
	} {
		if _, err := parse(t, "mqtt_gateway {\n broker main embedded\n "+input+"\n}"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error with %q", input, err, want)
		}
	}
	allow := &hookapi.Chain{}
	for want, h := range map[string]*Handler{
		"the alive notifications go to the authorize hook, and there is none": {AliveInterval: caddy.Duration(30 * time.Second)},
		"alive_interval 100ms is under a second":                              {AliveInterval: caddy.Duration(100 * time.Millisecond), Authorize: allow},
		"alive_interval must not be negative":                                 {AliveInterval: -1, Authorize: allow},
	} {
		h.Brokers = []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}
		if err := h.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v: %v, want an error with %q", time.Duration(h.AliveInterval), err, want)
		}
	}
	h := &Handler{Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, AliveInterval: caddy.Duration(time.Second), Authorize: allow}
	if err := h.Validate(); err != nil {
		t.Errorf("alive_interval 1s with an authorize hook: %v", err)
	}
}
