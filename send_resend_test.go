package mqttgateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// sendCounted posts a /send that says how many requests came before it,
// and returns the answer's status and body.
func (s *httpSession) sendCounted(before int, unit []byte) (int, string) {
	s.t.Helper()
	body := append(transport.AppendSend(nil, s.id, s.secret, uint64(before), true), unit...)
	resp, err := http.Post(s.base+"/send", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func publishReq(req uint64) []byte {
	return transport.AppendPublish(nil, req, 1, &session.PublishParams{Topic: "dup/x", QoS: 1, Payload: []byte(fmt.Sprint(req))})
}

// A /send may reach the gateway after the client gave up on it and sent
// its requests again (an aborted fetch is not a recalled one): with the
// count of requests before it, the gateway runs every request once, however
// many copies arrive, and refuses a /send that would skip some.
func TestResentSendsRunEachRequestOnce(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "heartbeat 1s")
	s := openPolling(t, fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort))
	expect := func(status int, body string, want int) {
		t.Helper()
		if status != want {
			t.Fatalf("send answered %d %q, want %d", status, body, want)
		}
	}

	st, body := s.sendCounted(0, append(transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"}),
		transport.AppendSubscribe(nil, 2, 1, "dup/#", 1, 0)...))
	expect(st, body, http.StatusNoContent)
	if r := s.pollUntil(2); r[0].Req != 1 || r[1].Req != 2 || r[0].Code != 0 || r[1].Code != 0 {
		t.Fatalf("connect/subscribe: %+v", r)
	}

	st, body = s.sendCounted(2, publishReq(3))
	expect(st, body, http.StatusNoContent)
	st, body = s.sendCounted(2, publishReq(3)) // the same /send, again
	expect(st, body, http.StatusNoContent)

	// Requests 6 and on cannot run before 4 and 5: refused whole, and not
	// with a CLOSE (the session is fine; the client rebinds and resends).
	st, body = s.sendCounted(5, publishReq(6))
	expect(st, body, http.StatusConflict)
	if !strings.Contains(body, "an earlier /send has not arrived") {
		t.Fatalf("gap answer %q does not say why", body)
	}

	st, body = s.sendCounted(3, append(publishReq(4), publishReq(5)...))
	expect(st, body, http.StatusNoContent)
	st, body = s.sendCounted(3, append(publishReq(4), publishReq(5)...)) // a late copy
	expect(st, body, http.StatusNoContent)
	st, body = s.sendCounted(4, append(publishReq(5), publishReq(6)...)) // overlapping: only 6 is new
	expect(st, body, http.StatusNoContent)

	results, messages := map[uint64]int{}, map[string]int{}
	for len(results) < 4 || len(messages) < 4 {
		for _, f := range s.pollUntil(1) {
			switch f.Type {
			case transport.TypeResult:
				if f.Code != 0 {
					t.Fatalf("request %d failed: %d %s", f.Req, f.Code, f.Message)
				}
				results[f.Req]++
			case transport.TypeMessage:
				messages[string(f.Publish.Payload)]++
			}
		}
	}
	// One more poll (the heartbeat ends it): nothing else may come.
	for _, f := range s.poll() {
		if f.Type == transport.TypeResult {
			results[f.Req]++
		} else if f.Type == transport.TypeMessage {
			messages[string(f.Publish.Payload)]++
		}
	}
	for req := uint64(3); req <= 6; req++ {
		if results[req] != 1 || messages[fmt.Sprint(req)] != 1 {
			t.Fatalf("request %d: %d results and %d messages, want one of each (results %v, messages %v)",
				req, results[req], messages[fmt.Sprint(req)], results, messages)
		}
	}
	if len(results) != 4 || len(messages) != 4 {
		t.Fatalf("unexpected results %v or messages %v", results, messages)
	}
}

// A session bound to a WebSocket takes its requests from there: a /send
// can only be a late copy of one its client gave up on before moving, and
// runs none of its requests (409, not a CLOSE). A malformed count is a
// protocol error that ends the session.
func TestSendToAWebSocketSessionOrWithABadCountRunsNothing(t *testing.T) {
	mq := startMosquitto(t)
	wsURL, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)

	ws, _, err := (&websocket.Dialer{Subprotocols: []string{transport.Subprotocol}}).DialContext(ctx10(t), wsURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	c := &rawConn{ws: ws}
	ws.WriteMessage(websocket.BinaryMessage, transport.AppendOpen(nil, "", nil, nil))
	opened, _ := c.next(5 * time.Second)
	if opened.Type != transport.TypeOpened {
		t.Fatalf("no OPENED: %+v", opened)
	}
	ws.WriteMessage(websocket.BinaryMessage, transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"}))
	if f, _ := c.next(5 * time.Second); f.Type != transport.TypeResult || f.Req != 1 || f.Code != 0 {
		t.Fatalf("connect: %+v", f)
	}

	s := &httpSession{t: t, base: base, id: opened.Session, secret: opened.Secret}
	st, body := s.sendCounted(1, publishReq(2))
	if st != http.StatusConflict || !strings.Contains(body, "moved to a WebSocket") {
		t.Fatalf("/send to a WebSocket session: %d %q", st, body)
	}
	// Requests of a handle run in order: had the /send's PUBLISH (request
	// 2) run, its RESULT would come before that of request 3.
	ws.WriteMessage(websocket.BinaryMessage, publishReq(3))
	if f, _ := c.next(5 * time.Second); f.Type != transport.TypeResult || f.Req != 3 {
		t.Fatalf("after the refused /send: %+v, want the RESULT of request 3 alone", f)
	}

	// A body that does not begin with a SEND frame names no session: it is
	// refused with CLOSE 4003 and runs nothing.
	for name, body := range map[string][]byte{
		"no SEND":        publishReq(4),
		"truncated SEND": transport.AppendSend(nil, s.id, s.secret, 3, true)[:20],
	} {
		status, frames := post(t, base+"/send", body, nil)
		if status != http.StatusBadRequest || len(frames) != 1 || frames[0].Type != transport.TypeEnd || frames[0].Code != session.CodeBadRequest {
			t.Fatalf("%s: %d %+v, want 400 and CLOSE %d", name, status, frames, session.CodeBadRequest)
		}
	}
	ws.WriteMessage(websocket.BinaryMessage, publishReq(4))
	if f, _ := c.next(5 * time.Second); f.Type != transport.TypeResult || f.Req != 4 {
		t.Fatalf("after the refused bodies: %+v, want the RESULT of request 4 alone", f)
	}
}
