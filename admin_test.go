package mqttgateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// An operator, or the service that revokes a user, ends that user's live
// sessions through Caddy's admin API: they get CLOSE 4020 with the reason
// given, and other users' sessions go on. (A revoked user's session kept
// its subscriptions, and rebinds are no action a hook decides.)
func TestAdminClosesAUsersSessions(t *testing.T) {
	mq := startMosquitto(t)
	adminPort, httpPort := freePort(t), freePort(t)
	loadCaddy(t, adaptCaddyfile(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	default_bind 127.0.0.1
}
http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		name revoke
		broker main mqtt://127.0.0.1:%d
		authenticate {
			header X-Mqtt-User {http.request.header.X-Test-User}
			respond 204
		}
	}
}
`, adminPort, httpPort, mq.port)))
	url := fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
	as := func(user string) *gwclient.Client {
		c, err := gwclient.Dial(ctx10(t), url, http.Header{"X-Test-User": {user}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	alice1, alice2, bob := as("alice"), as("alice"), as("bob")
	hb := connectSubscribe(t, bob, "news/#", 0)

	admin := func(body string) (int, string) {
		t.Helper()
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/mqtt_gateway/close_sessions", adminPort), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for body, want := range map[string]int{
		`{}`:                                 http.StatusBadRequest,
		`{"usr":"alice"}`:                    http.StatusBadRequest,
		`{"session":"xyz"}`:                  http.StatusBadRequest,
		`{"user":"alice","gateway":"other"}`: http.StatusNotFound,
	} {
		if status, answer := admin(body); status != want {
			t.Errorf("%s: %d %s, want %d", body, status, answer, want)
		}
	}

	status, answer := admin(`{"user":"alice","message":"access revoked"}`)
	var got struct{ Closed int }
	if status != http.StatusOK || json.Unmarshal([]byte(answer), &got) != nil || got.Closed != 2 {
		t.Fatalf("closing alice's sessions: %d %s, want 200 and 2 closed", status, answer)
	}
	for _, c := range []*gwclient.Client{alice1, alice2} {
		select {
		case f := <-c.Ended:
			if f.Code != session.CodeNotAuthenticated || f.Message != "access revoked" {
				t.Errorf("alice's session ended with %d %q, want %d %q", f.Code, f.Message, session.CodeNotAuthenticated, "access revoked")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("alice's session did not end")
		}
	}
	// Bob's session is untouched.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bob.Publish(ctx, hb, session.PublishParams{Topic: "news/a", Payload: []byte("still here")}); err != nil {
		t.Fatal(err)
	}
	if f := nextMessage(t, bob); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "still here" {
		t.Fatalf("bob got %+v", f)
	}

	// One session, by the id hooks see.
	status, answer = admin(fmt.Sprintf(`{"session":%q,"gateway":"revoke"}`, sessionID(bob)))
	if status != http.StatusOK || !strings.Contains(answer, `"closed":1`) {
		t.Fatalf("closing bob's session by id: %d %s", status, answer)
	}
	select {
	case f := <-bob.Ended:
		if f.Code != session.CodeNotAuthenticated {
			t.Errorf("bob's session ended with %d, want %d", f.Code, session.CodeNotAuthenticated)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bob's session did not end")
	}
}
