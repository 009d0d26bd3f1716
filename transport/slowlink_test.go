package transport

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// slowLink is the client's end of a link slower than the gateway's backlog:
// reads wait while it is stalled, then take at most chunk bytes every tick.
type slowLink struct {
	net.Conn
	chunk   int
	tick    time.Duration
	stalled atomic.Pointer[chan struct{}] // nil, or closed when the client reads again
}

func (l *slowLink) Read(b []byte) (int, error) {
	if stalled := l.stalled.Load(); stalled != nil {
		<-*stalled
		time.Sleep(l.tick)
		b = b[:min(len(b), l.chunk)]
	}
	return l.Conn.Read(b)
}

// smallReceiveBuffer dials with a small receive buffer, so that what the
// client has not read holds the gateway's writes (Linux would otherwise
// buffer megabytes of it on loopback).
var smallReceiveBuffer = net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
	return c.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<10)
	})
}}

// dialSlow dials url's WebSocket through link.
func dialSlow(t *testing.T, url string, link *slowLink) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{
		Subprotocols: []string{Subprotocol},
		NetDialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := smallReceiveBuffer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			link.Conn = c
			return link, nil
		},
		ReadBufferSize: 4096,
	}
	ws, _, err := d.Dial("ws"+strings.TrimPrefix(url, "http")+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}

// slowServer is a gateway whose write timeout a test can wait out: 30 s
// is to a link of a few KB/s what a second is to this test's.
func slowServer(t *testing.T) (*session.Manager, *httptest.Server) {
	t.Helper()
	m, err := session.NewManager(session.Config{SessionTimeout: time.Minute, Heartbeat: time.Minute, MaxMessageSize: 1 << 20,
		MaxPendingFrames: 200000, MaxPendingBytes: 64 << 20, ReplayFrames: 200000, ReplayBytes: 64 << 20, ConflateAfter: 200000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	srv := &Server{Manager: m, sockWriteTimeout: time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) { srv.ServeWebSocket(w, r) })
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) { srv.ServeStream(w, r) })
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)
	return m, hs
}

// backlogFrames is a backlog of about 700 KB: two seconds at least to
// read at a slowLink's 400 KB/s, twice the test's write timeout.
const backlogFrames = 100000

// queueBacklog stalls the client's reads (a tunnel) while the session
// queues backlogFrames RESULTs, numbered from 1, and lets it read again
// a moment later.
func queueBacklog(t *testing.T, m *session.Manager, opened Frame, link *slowLink) {
	t.Helper()
	sess, serr := m.Lookup(opened.Session, opened.Secret)
	if serr != nil {
		t.Fatal(serr)
	}
	stalled := make(chan struct{})
	link.stalled.Store(&stalled)
	for req := uint64(1); req <= backlogFrames; req++ {
		sess.Bandwidth(req, 0)
	}
	time.AfterFunc(100*time.Millisecond, func() { close(stalled) })
}

// inOrder checks that RESULTs come numbered from 1; done once all came.
type inOrder struct {
	t    *testing.T
	next uint64
}

func (o *inOrder) add(f Frame) {
	if f.Type == TypeResult {
		if f.Req != o.next {
			o.t.Fatalf("RESULT %d, want %d", f.Req, o.next)
		}
		o.next++
	}
}

// frame is add for a frame still encoded, for SplitUnit.
func (o *inOrder) frame(b []byte) error {
	var f Frame
	if err := Decode(b, &f); err != nil {
		return err
	}
	o.add(f)
	return nil
}

func (o *inOrder) done() bool { return o.next > backlogFrames }

// A client on a slow link (a phone) that fell behind catches up on the
// same connection, however large its backlog: the gateway writes it in
// WebSocket messages of bounded size, each within the write timeout. The
// whole backlog as one message took longer than the timeout to read, so
// the gateway cut the connection; and since a WebSocket client gets none of
// a message until all of it has come, the client, rebinding, was replayed
// the same backlog (or more) as one message again, and never caught up.
func TestASlowClientCatchesUpWithALargeBacklog(t *testing.T) {
	m, hs := slowServer(t)
	link := &slowLink{chunk: 4 << 10, tick: 10 * time.Millisecond}
	ws := dialSlow(t, hs.URL, link)
	if err := ws.WriteMessage(websocket.BinaryMessage, AppendOpen(nil, "", nil, nil)); err != nil {
		t.Fatal(err)
	}
	var opened Frame
	if _, unit, err := ws.ReadMessage(); err != nil {
		t.Fatal(err)
	} else if err := SplitUnit(unit, func(b []byte) error { return Decode(b, &opened) }); err != nil || opened.Type != TypeOpened {
		t.Fatalf("OPENED: %v %+v", err, opened)
	}
	queueBacklog(t, m, opened, link)

	got := &inOrder{t: t, next: 1}
	size, messages := 0, 0
	for !got.done() {
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, unit, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("the connection broke after %d of %d frames: %v", got.next-1, backlogFrames, err)
		}
		size += len(unit)
		messages++
		if err := SplitUnit(unit, got.frame); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d bytes in %d messages", size, messages)
}

// The same over HTTP streaming, where the stream is written in chunks of
// the same bounded size: a chunk that left frames behind is followed at
// once by the next, not after the next message or heartbeat. (Whole, the
// backlog went as one chunk into the socket's send buffer, which Linux
// grows to megabytes for a stream: the bound spares the gateway a buffer
// the backlog's size.)
func TestASlowStreamingClientCatchesUpWithALargeBacklog(t *testing.T) {
	m, hs := slowServer(t)
	link := &slowLink{chunk: 4 << 10, tick: 10 * time.Millisecond}
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := smallReceiveBuffer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		link.Conn = c
		return link, nil
	}}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, hs.URL+"/stream", bytes.NewReader(AppendOpen(nil, "", nil, nil)))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	stream := &frameReader{r: bufio.NewReader(resp.Body), body: resp.Body}
	opened, err := stream.next()
	if err != nil || opened.Type != TypeOpened {
		t.Fatalf("OPENED: %v %+v", err, opened)
	}
	queueBacklog(t, m, opened, link)

	got := &inOrder{t: t, next: 1}
	for !got.done() {
		f, err := stream.next()
		if err != nil {
			t.Fatalf("the stream broke after %d of %d frames: %v", got.next-1, backlogFrames, err)
		}
		got.add(f)
	}
}
