package mqttgateway

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// A BIND on another connection takes the session (PROTOCOL.md, Close): the
// WebSocket it was on is closed with code 4003 and no CLOSE frame, since the
// session goes on, and the close code tells that connection's client that
// someone else bound it. A CLOSE frame would say the session is over.
func TestBindFromAnotherConnectionTakesTheSession(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	d := websocket.Dialer{Subprotocols: []string{transport.Subprotocol}}
	dial := func() *rawConn {
		ws, _, err := d.Dial(url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ws.Close() })
		return &rawConn{ws: ws}
	}
	first := dial()
	first.ws.WriteMessage(websocket.BinaryMessage, transport.AppendOpen(nil, "", nil, nil))
	opened, _ := first.next(5 * time.Second)
	if opened.Type != transport.TypeOpened {
		t.Fatalf("OPEN answered %+v", opened)
	}

	second := dial()
	second.ws.WriteMessage(websocket.BinaryMessage, transport.AppendBind(nil, opened.Session, opened.Secret, 0))
	if bound, _ := second.next(5 * time.Second); bound.Type != transport.TypeBound {
		t.Fatalf("BIND answered %+v", bound)
	}

	for {
		f, ok := first.next(5 * time.Second)
		if !ok {
			var ce *websocket.CloseError
			if !errors.As(first.err, &ce) || ce.Code != int(session.CodeBadRequest) {
				t.Fatalf("the replaced connection ended with %v, want WebSocket close 4003", first.err)
			}
			break
		}
		if f.Type == transport.TypeEnd {
			t.Errorf("the replaced connection got a CLOSE frame %+v: that says the session is over", f)
		}
	}
	// The session goes on, on the second connection.
	second.ws.WriteMessage(websocket.BinaryMessage, transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"}))
	if res, _ := second.next(5 * time.Second); res.Type != transport.TypeResult || res.Code != 0 {
		t.Fatalf("CONNECT on the connection that took the session: %+v", res)
	}
}
