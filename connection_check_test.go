package mqttgateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// A client that suspects its connection (its device changed networks, woke
// up, or its page came back to the foreground) sends a PING asking for an
// answer and takes the connection for dead when none comes within seconds,
// instead of waiting out the heartbeat deadline (45 s by default). The
// answer comes at once on the path the client needs to know works: the
// WebSocket, the stream (the PING went by /send), or the poll held.
//
// The gateway's heartbeat is 30 s here, so a PING within the test's
// deadline is the answer, not the gateway's own.
func TestAPingAskingForAnAnswerIsAnsweredAtOnce(t *testing.T) {
	wsURL, httpPort := gatewayWithBroker(t, fmt.Sprintf("embedded {\n listen 127.0.0.1:%d\n }", freePort(t)), "heartbeat 30s")
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)

	t.Run("websocket", func(t *testing.T) {
		dialer := &websocket.Dialer{Subprotocols: []string{transport.Subprotocol}}
		ws, _, err := dialer.Dial(wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		read := func() (transport.Frame, error) {
			ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, unit, err := ws.ReadMessage()
			if err != nil {
				return transport.Frame{}, err
			}
			var f transport.Frame
			err = transport.SplitUnit(unit, func(b []byte) error { return transport.Decode(b, &f) })
			return f, err
		}
		ws.WriteMessage(websocket.BinaryMessage, transport.AppendOpen(nil, "", nil, nil))
		opened, err := read()
		if err != nil || opened.Type != transport.TypeOpened {
			t.Fatalf("OPENED: %v %+v", err, opened)
		}
		if !hasInfo(opened.Info, "ping_answer", "1") {
			t.Fatalf("OPENED info %v does not say ping_answer: a client may not ask for answers", opened.Info)
		}
		// A plain PING (the heartbeat) is not answered: an idle session's
		// traffic stays one PING each way per heartbeat.
		ws.WriteMessage(websocket.BinaryMessage, transport.AppendPing(nil))
		ws.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if _, unit, err := ws.ReadMessage(); err == nil {
			t.Fatalf("a plain PING was answered with %x", unit)
		}
		// gorilla breaks a connection whose read timed out: check on a new one.
		ws.Close()
		ws, _, err = dialer.Dial(wsURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		ws.WriteMessage(websocket.BinaryMessage, transport.AppendBind(nil, opened.Session, opened.Secret, 0))
		if bound, err := read(); err != nil || bound.Type != transport.TypeBound {
			t.Fatalf("BOUND: %v %+v", err, bound)
		}
		for i := range 3 {
			ws.WriteMessage(websocket.BinaryMessage, transport.AppendPingForAnswer(nil))
			if f, err := read(); err != nil || f.Type != transport.TypePing {
				t.Fatalf("check %d: %v %+v, want a PING", i+1, err, f)
			}
		}
		// A flag bit the protocol does not define is malformed, as with
		// every frame's flags.
		ws.WriteMessage(websocket.BinaryMessage, []byte{2, transport.TypePing, 0x02})
		if f, err := read(); err != nil || f.Type != transport.TypeEnd || f.Code != session.CodeMalformed {
			t.Fatalf("a PING with flags 0x02: %v %+v, want CLOSE %d", err, f, session.CodeMalformed)
		}
	})

	t.Run("streaming", func(t *testing.T) {
		frames := openStream(t, base, transport.AppendOpen(nil, "", nil, nil))
		next := func() transport.Frame { return nextOnStream(t, frames) }
		opened := next()
		if opened.Type != transport.TypeOpened || !hasInfo(opened.Info, "ping_answer", "1") {
			t.Fatalf("OPENED: %+v", opened)
		}
		s := &httpSession{t: t, base: base, id: opened.Session, secret: opened.Secret}
		for i := range 3 {
			s.send(transport.AppendPingForAnswer(nil))
			if f := next(); f.Type != transport.TypePing {
				t.Fatalf("check %d: %+v on the stream, want a PING", i+1, f)
			}
		}
	})

	t.Run("polling", func(t *testing.T) {
		s := openPolling(t, base)
		// The answer goes to the poll held...
		answered := make(chan []transport.Frame, 1)
		start := time.Now()
		go func() {
			_, frames := post(t, s.base+"/poll", transport.AppendBind(nil, s.id, s.secret, s.received), nil)
			answered <- frames
		}()
		// The gateway holds the poll by then. (Were it not, the PING would
		// wait for it and answer it at once, as below: the test could not
		// fail for that.)
		time.Sleep(200 * time.Millisecond)
		s.send(transport.AppendPingForAnswer(nil))
		if frames := <-answered; len(frames) != 2 || frames[1].Type != transport.TypePing || time.Since(start) >= 30*time.Second {
			t.Fatalf("the poll held answered %+v after %v, want BOUND and a PING before the heartbeat", frames, time.Since(start))
		}
		// ...or, asked for between polls, to the next one, at once.
		s.send(transport.AppendPingForAnswer(nil))
		start = time.Now()
		_, frames := post(t, s.base+"/poll", transport.AppendBind(nil, s.id, s.secret, s.received), nil)
		if len(frames) != 2 || frames[1].Type != transport.TypePing || time.Since(start) >= 30*time.Second {
			t.Fatalf("the next poll answered %+v after %v, want BOUND and a PING before the heartbeat", frames, time.Since(start))
		}
	})
}

func hasInfo(info []transport.KV, key, value string) bool {
	for _, kv := range info {
		if kv.Key == key && kv.Value == value {
			return true
		}
	}
	return false
}
