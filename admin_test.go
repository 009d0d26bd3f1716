package mqttgateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// gatewayWithAdmin starts a Caddy with its admin API and a gateway named
// name whose sessions' user is the request's X-Test-User header; it
// returns the admin port and the gateway's WebSocket URL.
func gatewayWithAdmin(t *testing.T, name string, brokerPort int, extra ...string) (adminPort int, url string) {
	adminPort, httpPort := freePort(t), freePort(t)
	loadCaddy(t, adaptCaddyfile(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	default_bind 127.0.0.1
}
http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		name %s
		broker main mqtt://127.0.0.1:%d
		authenticate {
			header X-Mqtt-User {http.request.header.X-Test-User}
			respond 204
		}
		%s
	}
}
`, adminPort, httpPort, name, brokerPort, strings.Join(extra, "\n\t\t"))))
	return adminPort, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
}

// An operator, or the service that revokes a user, ends that user's live
// sessions through Caddy's admin API: they get CLOSE 4020 with the reason
// given, and other users' sessions go on. (A revoked user's session kept
// its subscriptions, and rebinds are no action a hook decides.)
func TestAdminClosesAUsersSessions(t *testing.T) {
	mq := startMosquitto(t)
	adminPort, url := gatewayWithAdmin(t, "revoke", mq.port)
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

// A member removed from a room: the service that removes them ends their
// subscriptions that could deliver the room's topics, and nothing else they
// hold. Every overlapping filter goes ("room/+/typing" too, not only those
// inside "room/42/#"), in each of the user's sessions and clients; a client
// that asked (OPEN option unsubscribed) is told which; another user's
// subscriptions stay.
func TestAdminEndsAUsersSubscriptionsUnderAFilter(t *testing.T) {
	mq := startMosquitto(t)
	adminPort, url := gatewayWithAdmin(t, "rooms", mq.port)
	ctx := ctx10(t)
	as := func(user string, told bool) *gwclient.Client {
		var options []transport.KV
		if told {
			options = []transport.KV{{Key: "unsubscribed", Value: "1"}}
		}
		c, err := gwclient.DialWith(ctx, &websocket.Dialer{}, url, http.Header{"X-Test-User": {user}}, options)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	subscribe := func(c *gwclient.Client, filters ...string) uint64 {
		t.Helper()
		h := connectMain(t, c)
		for _, f := range filters {
			if _, err := c.Subscribe(ctx, h, f, 0); err != nil {
				t.Fatalf("subscribe %s: %v", f, err)
			}
		}
		return h
	}
	carol, carolOld, dave := as("carol", true), as("carol", false), as("dave", true)
	c1 := subscribe(carol, "room/42/#", "room/+/typing", "room/43/#", "users/carol/#")
	c2 := subscribe(carol, "room/42/msg")
	subscribe(carolOld, "room/42/#", "users/carol/#")
	subscribe(dave, "room/42/#")

	admin := func(path, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/mqtt_gateway/%s", adminPort, path), "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, bad := range []struct{ path, body string }{
		{"unsubscribe", `{"user":"carol"}`},
		{"unsubscribe", `{"user":"carol","filter":"room/#/x"}`},
		{"unsubscribe", `{"filter":"room/42/#"}`},
		{"close_sessions", `{"user":"carol","filter":"room/42/#"}`},
	} {
		if status, answer := admin(bad.path, bad.body); status != http.StatusBadRequest {
			t.Errorf("%s %s: %d %s, want 400", bad.path, bad.body, status, answer)
		}
	}
	status, answer := admin("unsubscribe", `{"user":"carol","filter":"room/42/#","message":"removed from room 42"}`)
	var got struct{ Sessions, Unsubscribed int }
	if status != http.StatusOK || json.Unmarshal([]byte(answer), &got) != nil || got.Sessions != 2 || got.Unsubscribed != 4 {
		t.Fatalf("unsubscribe: %d %s, want 200, 2 sessions, 4 subscriptions", status, answer)
	}
	told := map[string]bool{}
	for range 3 {
		f := nextMessage(t, carol)
		if f.Type != transport.TypeUnsubscribed || f.Code != session.CodeNotAuthorized || f.Message != "removed from room 42" {
			t.Fatalf("carol got %+v, want UNSUBSCRIBED 4021", f)
		}
		told[fmt.Sprintf("%d %s", f.Handle, f.Filter)] = true
	}
	for _, want := range []string{fmt.Sprintf("%d room/42/#", c1), fmt.Sprintf("%d room/+/typing", c1), fmt.Sprintf("%d room/42/msg", c2)} {
		if !told[want] {
			t.Errorf("carol was not told of %s: %v", want, told)
		}
	}

	pub := mqttPublisher(t, mq.port)
	for _, topic := range []string{"room/42/msg", "room/42/typing", "room/43/msg", "users/carol/dm"} {
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: topic, Payload: []byte(topic)}); err != nil {
			t.Fatal(err)
		}
	}
	// Carol keeps the rest; what the room sends no longer reaches her
	// sessions, the old client's included (which was not told).
	if f := nextMessage(t, carol); f.Type != transport.TypeMessage || f.Publish.Topic != "room/43/msg" {
		t.Fatalf("carol got %+v, want room/43/msg first", f)
	}
	if f := nextMessage(t, carol); f.Type != transport.TypeMessage || f.Publish.Topic != "users/carol/dm" {
		t.Fatalf("carol got %+v, want users/carol/dm", f)
	}
	if f := nextMessage(t, carolOld); f.Type != transport.TypeMessage || f.Publish.Topic != "users/carol/dm" {
		t.Fatalf("carol's older client got %+v, want only users/carol/dm", f)
	}
	for _, want := range []string{"room/42/msg", "room/42/typing"} {
		if f := nextMessage(t, dave); f.Type != transport.TypeMessage || f.Publish.Topic != want {
			t.Fatalf("dave got %+v, want %s", f, want)
		}
	}
}

// On call, "my dashboard stopped updating" starts with the user's live
// sessions: GET /mqtt_gateway/sessions lists them, with whether a
// connection is bound, their clients and subscriptions, the bandwidth cap
// in force and how many of their messages were conflated.
func TestAdminListsSessions(t *testing.T) {
	mq := startMosquitto(t)
	adminPort, url := gatewayWithAdmin(t, "listed", mq.port)
	ctx := ctx10(t)
	as := func(user string) *gwclient.Client {
		c, err := gwclient.Dial(ctx, url, http.Header{"X-Test-User": {user}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	alice1, alice2, bob := as("alice"), as("alice"), as("bob")
	connectSubscribe(t, alice1, "a/#", 0)
	hd, _, err := alice2.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: "alice-device"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice2.Subscribe(ctx, hd, "d/x", 1); err != nil {
		t.Fatal(err)
	}
	// alice1 caps its bandwidth; a burst on one topic is conflated.
	if _, err := alice1.SetBandwidth(ctx, 300); err != nil {
		t.Fatal(err)
	}
	hb := connectMain(t, bob)
	for i := range 30 {
		if err := bob.Publish(ctx, hb, session.PublishParams{Topic: "a/x", Payload: []byte(strings.Repeat("v", 90) + fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}

	list := func(query string) (int, []listedSession) {
		t.Helper()
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/mqtt_gateway/sessions%s", adminPort, query))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct{ Sessions []listedSession }
		if resp.StatusCode == http.StatusOK {
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, got.Sessions
	}
	for query, want := range map[string]int{
		"?usr=alice":     http.StatusBadRequest,
		"?session=xyz":   http.StatusBadRequest,
		"?gateway=other": http.StatusNotFound,
	} {
		if status, _ := list(query); status != want {
			t.Errorf("%s: %d, want %d", query, status, want)
		}
	}
	if status, all := list(""); status != http.StatusOK || len(all) != 3 {
		t.Fatalf("all sessions: %d, %d listed, want 3", status, len(all))
	}
	if _, one := list("?session=" + sessionID(bob)); len(one) != 1 || one[0].User != "bob" || one[0].Session != sessionID(bob) {
		t.Fatalf("bob's session by id: %+v", one)
	}

	// The burst reaches alice1 slowly (300 bytes a second): wait until the
	// listing shows it conflated.
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, alice := list("?user=alice&gateway=listed")
		if len(alice) != 2 {
			t.Fatalf("alice's sessions: %+v, want 2", alice)
		}
		byID := map[string]listedSession{}
		for _, s := range alice {
			byID[s.Session] = s
		}
		s1, s2 := byID[sessionID(alice1)], byID[sessionID(alice2)]
		if s1.Gateway != "listed" || !s1.Connected || s1.Transport != "websocket" || s1.ClientIP != "127.0.0.1" {
			t.Fatalf("alice's first session: %+v", s1)
		}
		if fmt.Sprint(s1.Clients) != "[{main shared }]" || fmt.Sprint(s1.Subscriptions) != "[{main a/#}]" || s1.MaxBandwidth != 300 {
			t.Fatalf("alice's first session: clients %v, subscriptions %v, bandwidth %v", s1.Clients, s1.Subscriptions, s1.MaxBandwidth)
		}
		if fmt.Sprint(s2.Clients) != "[{main dedicated alice-device}]" || fmt.Sprint(s2.Subscriptions) != "[{main d/x}]" {
			t.Fatalf("alice's second session: clients %v, subscriptions %v", s2.Clients, s2.Subscriptions)
		}
		if s1.Conflated > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alice's capped session shows no conflation: %+v", s1)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A session whose connection is gone waits for a rebind, and says so.
	alice2.Drop()
	deadline = time.Now().Add(10 * time.Second)
	for {
		_, one := list("?session=" + sessionID(alice2))
		if len(one) == 1 && !one[0].Connected {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a dropped connection's session: %+v, want it listed, not connected", one)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A session that moved (a dropped connection rebound from another address,
// a move down to long polling) is listed and logged where it is now, not
// only where it opened: on call, "which proxy is this user behind now".
func TestASessionIsListedAndLoggedWhereItIsNow(t *testing.T) {
	mq := startMosquitto(t)
	adminPort, httpPort := freePort(t), freePort(t)
	logFile := filepath.Join(t.TempDir(), "gateway.log")
	loadCaddy(t, adaptCaddyfile(t, fmt.Sprintf(`{
	admin 127.0.0.1:%d
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	%s
	servers {
		trusted_proxies static 127.0.0.1/32
	}
}
http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d
	}
}
`, adminPort, gatewayLog(logFile), httpPort, mq.port)))
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)

	// Opened over long polling on one connection, rebound on a stream over
	// another, through a proxy (trusted) for another client address.
	s := openPolling(t, base)
	other := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(other.CloseIdleConnections)
	req, _ := http.NewRequest(http.MethodPost, base+"/stream", bytes.NewReader(transport.AppendBind(nil, s.id, s.secret, 0)))
	req.Header.Set("X-Forwarded-For", "127.0.0.9")
	resp, err := other.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("rebind on a stream: %v %v", resp, err)
	}
	defer resp.Body.Close()

	resp2, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/mqtt_gateway/sessions?session=%x", adminPort, s.id))
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	var got struct{ Sessions []listedSession }
	if err := json.NewDecoder(resp2.Body).Decode(&got); err != nil || len(got.Sessions) != 1 {
		t.Fatalf("listing: %v %+v", err, got)
	}
	l := got.Sessions[0]
	if l.Transport != "polling" || l.LastTransport != "streaming" || l.LastRemote == l.Remote || !strings.HasPrefix(l.LastRemote, "127.0.0.1:") ||
		l.ClientIP != "127.0.0.1" || l.LastClientIP != "127.0.0.9" {
		t.Fatalf("listed: transport %q remote %q client_ip %q, last_transport %q last_remote %q last_client_ip %q; want polling, then streaming from another address for 127.0.0.9",
			l.Transport, l.Remote, l.ClientIP, l.LastTransport, l.LastRemote, l.LastClientIP)
	}

	// The client closes its session: the line says where it was.
	post(t, base+"/send", append(transport.AppendSend(nil, s.id, s.secret, 0, false), transport.AppendEnd(nil, 1000, "bye")...), nil)
	awaitLogLines(t, logFile, `"msg":"session closed"`, 1)
	line := fmt.Sprintf(`"remote":%q,`, l.Remote)
	last := fmt.Sprintf(`"last_remote":%q,"last_client_ip":"127.0.0.9","last_transport":"streaming"`, l.LastRemote)
	if logLines(logFile, line) != 2 || logLines(logFile, last) != 1 { // opened and closed; closed
		data, _ := os.ReadFile(logFile)
		t.Fatalf("the log does not say where the session was at its close (%s):\n%s", last, data)
	}
}
