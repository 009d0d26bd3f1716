package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// The raw client against gorilla/websocket's server: handshake (accept
// key, subprotocol), what the server writes at once kept for the frame
// reader, pings answered with masked pongs, masked messages of every
// length class accepted by a server that checks masking.
func TestWSConnAgainstGorilla(t *testing.T) {
	pongs := make(chan string, 1)
	up := websocket.Upgrader{Subprotocols: []string{"mqttgw.v1"}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		ws.SetPongHandler(func(s string) error { pongs <- s; return nil })
		ws.WriteMessage(websocket.BinaryMessage, []byte("hello"))
		ws.WriteControl(websocket.PingMessage, []byte("p1"), time.Now().Add(time.Second))
		for {
			typ, m, err := ws.ReadMessage()
			if err != nil {
				return
			}
			ws.WriteMessage(typ, m)
		}
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http") + "/x"

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var c wsConn
	if err := c.dial(ctx, url, "mqttgw.v1"); err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(c.fd)
	f, err := c.setupFrame()
	if err != nil || f.op != wsOpBinary || string(f.payload) != "hello" {
		t.Fatalf("first message: op %d %q %v", f.op, f.payload, err)
	}
	for _, n := range []int{1, 200, 70000} {
		p := pattern(n)
		if err := c.writeMessage(p); err != nil {
			t.Fatal(err)
		}
		f, err := c.setupFrame() // answers the ping on the way
		if err != nil || !bytes.Equal(f.payload, p) {
			t.Fatalf("echo of %d bytes: %d bytes, %v", n, len(f.payload), err)
		}
	}
	select {
	case p := <-pongs:
		if p != "p1" {
			t.Fatalf("pong %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
}

func TestWSConnHandshakeRefused(t *testing.T) {
	up := websocket.Upgrader{} // no subprotocol: the answer names none
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" {
			http.NotFound(w, r)
			return
		}
		if ws, err := up.Upgrade(w, r, nil); err == nil {
			ws.Close()
		}
	}))
	defer srv.Close()
	base := "ws" + strings.TrimPrefix(srv.URL, "http")
	for path, want := range map[string]string{"/nope": "404", "/ws": "subprotocol"} {
		var c wsConn
		err := c.dial(context.Background(), base+path, "mqttgw.v1")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", path, err, want)
		}
	}
}
