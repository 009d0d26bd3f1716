package transport

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// wsPair upgrades a loopback connection the way ServeWebSocket does and
// returns the server's shared socket and a gorilla client.
func wsPair(t *testing.T) (*sharedConn, *websocket.Conn) { return wsPairOver(t, false) }

// wsPairOver is wsPair over plain TCP or TLS.
func wsPairOver(t *testing.T, overTLS bool) (*sharedConn, *websocket.Conn) {
	t.Helper()
	got := make(chan *sharedConn, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hj := &sharingHijacker{ResponseWriter: w, conn: &sharedConn{}}
		if _, err := (&websocket.Upgrader{}).Upgrade(hj, r, nil); err != nil {
			t.Error(err)
			return
		}
		got <- hj.conn
	})
	srv := httptest.NewUnstartedServer(handler)
	dialer := *websocket.DefaultDialer
	scheme := "ws"
	if overTLS {
		srv.StartTLS()
		dialer.TLSClientConfig = srv.Client().Transport.(*http.Transport).TLSClientConfig
		scheme = "wss"
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	client, _, err := dialer.Dial(scheme+strings.TrimPrefix(srv.URL, "https"[:len(scheme)+2]), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	sc := <-got
	t.Cleanup(func() { sc.Close() })
	if !sc.pooled() || sc.tls != overTLS {
		t.Fatalf("TLS %v: the writer pool cannot write the connection (direct %v, tls %v)", overTLS, sc.direct, sc.tls)
	}
	return sc, client
}

// Messages framed in place by wsMessage read back through a WebSocket
// client as the same payloads, for every header size, through both the
// blocking and the non-blocking write.
func TestWSMessageFraming(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		t.Run(fmt.Sprint("tls=", overTLS), func(t *testing.T) { testWSMessageFraming(t, overTLS) })
	}
}

func testWSMessageFraming(t *testing.T, overTLS bool) {
	sc, client := wsPairOver(t, overTLS)
	for _, n := range []int{0, 1, 125, 126, 1000, 65535, 65536, 300000} {
		for _, try := range []bool{false, true} {
			payload := bytes.Repeat([]byte{byte(n), byte(n >> 8)}, n/2)
			buf := append(make([]byte, wsHeaderRoom), payload...)
			done := make(chan struct{})
			go func() {
				defer close(done)
				msg := wsMessage(buf)
				if try {
					w, err := sc.tryWrite(msg, time.Now())
					if err != nil {
						t.Error(err)
						return
					}
					msg = msg[w:] // the socket was full: the rest blocks
				}
				if len(msg) == 0 {
					return
				}
				if err := sc.writeAll(msg, time.Now()); err != nil {
					t.Error(err)
				}
			}()
			typ, got, err := client.ReadMessage()
			if err != nil || typ != websocket.BinaryMessage || !bytes.Equal(got, payload) {
				t.Fatalf("%d bytes (non-blocking %v): type %d, %d bytes back, %v", n, try, typ, len(got), err)
			}
			<-done
		}
	}
}

// A pool worker's write to a TLS connection never waits: when the client
// stops reading, tryWrite soon writes nothing (its message goes to a
// goroutine that may wait), and what it did write arrives whole and in
// order when the client reads again.
func TestTLSTryWriteNeverWaits(t *testing.T) {
	sc, client := wsPairOver(t, true)
	payload := bytes.Repeat([]byte("m"), 200)
	written := make(chan int, 1)
	go func() {
		for i := 0; ; i++ {
			binary.BigEndian.PutUint32(payload, uint32(i))
			n, err := sc.tryWrite(wsMessage(append(make([]byte, wsHeaderRoom), payload...)), time.Now())
			if err != nil {
				t.Error(err)
			}
			if n == 0 || err != nil {
				written <- i
				return
			}
		}
	}()
	var n int
	select {
	case n = <-written:
	case <-time.After(20 * time.Second):
		t.Fatal("tryWrite did not stop writing to a client that reads nothing: it waited for the socket")
	}
	if n == 0 {
		t.Fatal("tryWrite wrote nothing to an idle connection")
	}
	for i := 0; i < n; i++ {
		_, got, err := client.ReadMessage()
		if err != nil || len(got) != len(payload) || binary.BigEndian.Uint32(got) != uint32(i) {
			t.Fatalf("message %d of %d: %d bytes, number %d, %v", i, n, len(got), binary.BigEndian.Uint32(got), err)
		}
	}
	t.Logf("%d messages of %d bytes written before the socket had no room", n, len(payload))
}

// The non-blocking write of a delivery allocates nothing.
func TestTryWriteAllocatesNothing(t *testing.T) {
	sc, client := wsPair(t)
	go io.Copy(io.Discard, client.NetConn())
	msg := wsMessage(append(make([]byte, wsHeaderRoom), bytes.Repeat([]byte("x"), 120)...))
	now := time.Now()
	whole := 0
	allocs := testing.AllocsPerRun(1000, func() {
		n, err := sc.tryWrite(msg, now)
		if err != nil {
			t.Fatal(err)
		}
		if n == len(msg) {
			whole++
		}
		// A short write (the socket's unsent limit, when the reader lags) is
		// fine here: the reader discards the bytes, and only allocations count.
		sc.partial = false
	})
	if whole == 0 {
		t.Fatal("no write went whole")
	}
	if allocs != 0 {
		t.Fatalf("%.1f allocations per write", allocs)
	}
}

// The writer writes on the descriptor itself, and the kernel gives a closed
// descriptor's number to the next socket at once: a write after Close must
// fail, not reach whoever has the number now.
func TestDirectWriteNeverOutlivesClose(t *testing.T) {
	sc, client := wsPair(t)
	msg := wsMessage(append(make([]byte, wsHeaderRoom), []byte("for the closed connection only")...))
	// One write first: the write deadline is then set, and the write after
	// Close goes straight to the descriptor.
	if _, err := sc.tryWrite(msg, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, got, err := client.ReadMessage(); err != nil || !bytes.Equal(got, msg[2:]) {
		t.Fatalf("first message: %q %v", got, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fd := sc.fd
	sc.Close()

	// A new connection, which the kernel numbers like the closed one (the
	// lowest free number).
	dialed, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer dialed.Close()
	accepted, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer accepted.Close()
	reused := false
	for _, c := range []net.Conn{dialed, accepted} {
		raw, _ := c.(*net.TCPConn).SyscallConn()
		raw.Control(func(f uintptr) { reused = reused || int(f) == fd })
	}

	if n, err := sc.tryWrite(msg, time.Now()); err == nil || n != 0 {
		t.Fatalf("write after Close: %d bytes, error %v", n, err)
	}
	for _, c := range []net.Conn{dialed, accepted} {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, _ := c.Read(make([]byte, 64)); n > 0 {
			t.Fatalf("another socket (descriptor number reused: %v) received %d bytes of the closed connection's write", reused, n)
		}
	}
	if !reused {
		t.Logf("descriptor %d was not reused by the new connection: the check above is weaker", fd)
	}
}

// Once a close frame is out (gorilla's answer to the client's close, or
// ours), no data frame follows it (RFC 6455 §5.5.1): browsers report
// "Data frame received after close".
func TestNoDataFrameAfterCloseFrame(t *testing.T) {
	for _, overTLS := range []bool{false, true} {
		sc, client := wsPairOver(t, overTLS)
		if _, err := sc.Write([]byte{0x88, 2, 0x03, 0xe8}); err != nil { // close 1000, as gorilla writes it
			t.Fatal(err)
		}
		msg := wsMessage(append(make([]byte, wsHeaderRoom), "too late"...))
		if n, err := sc.tryWrite(msg, time.Now()); err == nil || n != 0 {
			t.Fatalf("TLS %v: a pooled write after the close frame: %d bytes, %v", overTLS, n, err)
		}
		if err := sc.writeAll(msg, time.Now()); err == nil {
			t.Fatalf("TLS %v: a blocking write after the close frame went out", overTLS)
		}
		_, _, err := client.ReadMessage()
		if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
			t.Fatalf("TLS %v: the client read %v, want the close frame and nothing before it", overTLS, err)
		}
	}
}
