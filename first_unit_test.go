package mqttgateway

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// The message that starts a connection (OPEN or BIND) comes before any
// authentication: a larger one than transport.MaxFirstUnit is refused with
// CLOSE 4002 as soon as that many bytes came, instead of being read whole
// into memory (one connection sending 300 MB took 700 MB of the gateway).
func TestOversizedFirstMessageIsRefusedEarly(t *testing.T) {
	mq := startMosquitto(t)
	url, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")

	d := websocket.Dialer{Subprotocols: []string{transport.Subprotocol}}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	const total = 64 << 20
	wrote := make(chan int, 1)
	go func() {
		w, err := ws.NextWriter(websocket.BinaryMessage)
		n := 0
		for chunk := make([]byte, 64<<10); err == nil && n < total; n += len(chunk) {
			_, err = w.Write(chunk)
		}
		wrote <- n
	}()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, unit, err := ws.ReadMessage()
	if err != nil {
		t.Fatalf("no CLOSE frame: %v", err)
	}
	var f transport.Frame
	if err := transport.SplitUnit(unit, func(b []byte) error { return transport.Decode(b, &f) }); err != nil ||
		f.Type != transport.TypeEnd || f.Code != session.CodeFrameTooLarge {
		t.Fatalf("answer %+v (%v), want CLOSE 4002", f, err)
	}
	if n := <-wrote; n >= total {
		t.Fatalf("the gateway read all %d bytes of the first message", n)
	}

	// HTTP transports: the same bound on the body of /stream and /poll.
	for _, endpoint := range []string{"stream", "poll"} {
		status, frames := post(t, fmt.Sprintf("http://127.0.0.1:%d/mqtt/%s", httpPort, endpoint), bytes.Repeat([]byte{1}, transport.MaxFirstUnit+1), nil)
		if status != http.StatusRequestEntityTooLarge || len(frames) != 1 || frames[0].Code != session.CodeFrameTooLarge {
			t.Errorf("%s with an oversized first unit: %d %+v, want 413 and CLOSE 4002", endpoint, status, frames)
		}
	}
}

// A first unit that trickles in is cut when WebSocket's handshake would be
// (10 s), on /stream and /poll alike: a byte every second held the request,
// and its goroutine, for as long as the client liked, before any session
// limit counted it.
func TestTricklingFirstUnitIsCut(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	var wg sync.WaitGroup
	for _, endpoint := range []string{"stream", "poll"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", httpPort))
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST /mqtt/%s HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n", endpoint)
			answered := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(conn).ReadString('\n')
				answered <- line
			}()
			start := time.Now()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case line := <-answered:
					if !strings.Contains(line, " 400 ") {
						t.Errorf("%s: answered %q, want 400", endpoint, line)
					}
					return
				case <-tick.C:
					if time.Since(start) > 20*time.Second {
						t.Errorf("%s: a body trickling in for 20 s is still being read", endpoint)
						return
					}
					conn.Write([]byte("1\r\n\x00\r\n")) // one byte of a unit, every second
				}
			}
		}()
	}
	wg.Wait()
}

// A client may check that WebSocket carries data both ways before it opens
// a session (the JS client does, before it leaves a lesser transport): each
// lone PING before OPEN gets a PING, and an OPEN afterwards opens a session.
// The PINGs do not extend the handshake's 10 s: a connection that only
// pings is cut like one that sends nothing.
func TestPingBeforeOpenChecksTheRoundTrip(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	d := websocket.Dialer{Subprotocols: []string{transport.Subprotocol}}
	readFrame := func(ws *websocket.Conn) (transport.Frame, error) {
		var f transport.Frame
		ws.SetReadDeadline(time.Now().Add(20 * time.Second))
		_, unit, err := ws.ReadMessage()
		if err == nil {
			err = transport.SplitUnit(unit, func(b []byte) error { return transport.Decode(b, &f) })
		}
		return f, err
	}

	ws, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	for i := 0; i < 2; i++ {
		if err := ws.WriteMessage(websocket.BinaryMessage, transport.AppendPing(nil)); err != nil {
			t.Fatal(err)
		}
		if f, err := readFrame(ws); err != nil || f.Type != transport.TypePing {
			t.Fatalf("PING %d before OPEN: answer %+v (%v), want PING", i+1, f, err)
		}
	}
	if err := ws.WriteMessage(websocket.BinaryMessage, transport.AppendOpen(nil, "", nil, nil)); err != nil {
		t.Fatal(err)
	}
	if f, err := readFrame(ws); err != nil || f.Type != transport.TypeOpened {
		t.Fatalf("OPEN after PINGs: answer %+v (%v), want OPENED", f, err)
	}

	pinger, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pinger.Close()
	start := time.Now()
	for {
		if err := pinger.WriteMessage(websocket.BinaryMessage, transport.AppendPing(nil)); err != nil {
			break // cut
		}
		f, err := readFrame(pinger)
		if err != nil {
			break
		}
		if f.Type != transport.TypePing {
			t.Fatalf("answer %+v to a PING before OPEN", f)
		}
		if time.Since(start) > 20*time.Second {
			t.Fatal("a connection that only pings is still open after 20 s; the handshake allows 10")
		}
		time.Sleep(500 * time.Millisecond)
	}
}
