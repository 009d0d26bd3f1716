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
	first, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.WriteMessage(websocket.BinaryMessage, transport.AppendOpen(nil, "", nil, nil))
	opened := readUnitFrames(t, first)
	if len(opened) != 1 || opened[0].Type != transport.TypeOpened {
		t.Fatalf("OPEN answered %+v", opened)
	}

	second, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.WriteMessage(websocket.BinaryMessage, transport.AppendBind(nil, opened[0].Session, opened[0].Secret, 0))
	if bound := readUnitFrames(t, second); len(bound) != 1 || bound[0].Type != transport.TypeBound {
		t.Fatalf("BIND answered %+v", bound)
	}

	first.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, unit, err := first.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != int(session.CodeBadRequest) {
				t.Fatalf("the replaced connection ended with %v, want WebSocket close 4003", err)
			}
			break
		}
		transport.SplitUnit(unit, func(b []byte) error {
			var f transport.Frame
			if transport.Decode(b, &f) == nil && f.Type == transport.TypeEnd {
				t.Errorf("the replaced connection got a CLOSE frame %+v: that says the session is over", f)
			}
			return nil
		})
	}
	// The session goes on, on the second connection.
	second.WriteMessage(websocket.BinaryMessage, transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"}))
	if res := readUnitFrames(t, second); len(res) != 1 || res[0].Type != transport.TypeResult || res[0].Code != 0 {
		t.Fatalf("CONNECT on the connection that took the session: %+v", res)
	}
}

// readUnitFrames reads one WebSocket message and decodes its frames.
func readUnitFrames(t *testing.T, ws *websocket.Conn) []transport.Frame {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, unit, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var frames []transport.Frame
	if err := transport.SplitUnit(unit, func(b []byte) error {
		var f transport.Frame
		err := transport.Decode(b, &f)
		frames = append(frames, f)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return frames
}
