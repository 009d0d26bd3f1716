package mqttgateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// An HTTP streaming client on a slow link (a phone behind a proxy that
// blocks WebSocket) gets every topic's latest value soon, as a WebSocket
// one does, over every HTTP version a browser speaks: the gateway limits
// what the stream's socket holds unsent over HTTP/1.1, plain or over TLS,
// and over HTTP/2, which browsers speak to any HTTPS site; over HTTP/3,
// QUIC's congestion control bounds it. Without the limit Linux took
// megabytes for the stream, the gateway never saw the client fall behind,
// and the client read the whole backlog before any latest value (a phone
// at 40 KB/s was 18 s behind and growing, and a cut lost more than the
// replay window held).
//
// Over HTTP/2 another session of the page streams on the same connection
// and ends before the messages come: the connection stays limited while
// any stream on it lasts.
func TestSlowStreamingClientGetsTheLatestValuesSoon(t *testing.T) {
	for _, proto := range []string{"http", "https", "h2", "h3"} {
		t.Run(proto, func(t *testing.T) { slowStreamingClient(t, proto) })
	}
}

func slowStreamingClient(t *testing.T, proto string) {
	mq := startMosquitto(t)
	port := freePort(t)
	scheme, site := "https", ""
	var roots *x509.CertPool
	if proto == "http" {
		scheme = "http"
	} else {
		caFile, certFile, keyFile := testPKI(t, t.TempDir(), "127.0.0.1")
		pem, _ := os.ReadFile(caFile)
		roots = x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		site = fmt.Sprintf("tls %s %s", certFile, keyFile)
	}
	startCaddy(t, fmt.Sprintf(`%s://127.0.0.1:%d {
	%s
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d
	}
}
`, scheme, port, site, mq.port))
	base := fmt.Sprintf("%s://127.0.0.1:%d/mqtt", scheme, port)
	client := slowLinkClient(t, proto, roots)

	s := openSlowStream(t, client, base, proto)
	if proto == "h2" {
		// Another session of the page streams on the same connection, and
		// ends.
		other := openSlowStream(t, client, base, proto)
		other.send(transport.AppendClose(nil))
		drained := make(chan struct{})
		go func() {
			for range other.frames {
			}
			close(drained)
		}()
		select {
		case <-drained:
			if err := other.ended(); err != nil {
				t.Fatalf("the other stream: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the other stream went on after its CLOSE")
		}
	}
	s.send(append(transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"}), transport.AppendSubscribe(nil, 2, 1, "slow/#", 0, 0)...))
	for results := 0; results < 2; {
		if f := s.next(); f.Type == transport.TypeResult {
			if f.Code != 0 {
				t.Fatalf("connect or subscribe: %+v", f)
			}
			results++
		}
	}

	read, readAfter := latestValuesSoon(t, mq, func() []transport.Frame { return []transport.Frame{s.next()} })
	t.Logf("the slow streaming client read %d of 2000 messages, %d of them after the publisher stopped", read, readAfter)
}

// slowLinkClient is an HTTP client of proto (http and https are HTTP/1.1)
// whose downstream is a link of about 100 KiB/s, with a small receive
// buffer, so that what the gateway sends waits on its side of the link.
// Requests over HTTP/2 and HTTP/3 share one connection, as a browser's do.
func slowLinkClient(t *testing.T, proto string, roots *x509.CertPool) *http.Client {
	tlsConfig := &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := tinyReceiveDialer().DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return slowReads{c}, nil
	}
	tr := &http.Transport{DialContext: dial}
	switch proto {
	case "https":
		tr.TLSClientConfig = tlsConfig
	case "h2":
		tlsConfig.NextProtos = []string{"h2"}
		tr.ForceAttemptHTTP2 = true
		tr.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(c, tlsConfig.Clone())
			return tc, tc.HandshakeContext(ctx)
		}
	case "h3":
		h3 := &http3.Transport{TLSClientConfig: tlsConfig,
			Dial: func(ctx context.Context, addr string, tlsConfig *tls.Config, config *quic.Config) (*quic.Conn, error) {
				udp, err := net.ListenPacket("udp", "127.0.0.1:0")
				if err != nil {
					return nil, err
				}
				to, err := net.ResolveUDPAddr("udp", addr)
				if err != nil {
					udp.Close()
					return nil, err
				}
				qt := &quic.Transport{Conn: slowPackets{udp}}
				// After h3.Close, which closes only its connections; the
				// transport does not close a socket it was given.
				t.Cleanup(func() { qt.Close(); udp.Close() })
				return qt.DialEarly(ctx, to, tlsConfig, config)
			}}
		t.Cleanup(func() { h3.Close() })
		return &http.Client{Transport: h3}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// slowReads reads at most 1 KiB every 10 ms.
type slowReads struct{ net.Conn }

func (c slowReads) Read(b []byte) (int, error) {
	time.Sleep(10 * time.Millisecond)
	return c.Conn.Read(b[:min(len(b), 1024)])
}

// slowPackets reads a datagram (at most about 1.4 KB) every 10 ms; the
// socket's receive buffer drops what does not fit, as a slow link's queue.
type slowPackets struct{ net.PacketConn }

func (c slowPackets) ReadFrom(b []byte) (int, net.Addr, error) {
	time.Sleep(10 * time.Millisecond)
	return c.PacketConn.ReadFrom(b)
}

// slowStream is a session opened by a stream through a slow link client.
type slowStream struct {
	t      *testing.T
	client *http.Client
	base   string
	opened transport.Frame
	frames <-chan transport.Frame
	ended  func() error
}

func openSlowStream(t *testing.T, client *http.Client, base, proto string) *slowStream {
	t.Helper()
	resp, err := client.Post(base+"/stream", "application/octet-stream", bytes.NewReader(transport.AppendOpen(nil, "", nil, nil)))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v %v", resp, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if want := map[string]int{"h2": 2, "h3": 3}[proto]; want != 0 && resp.ProtoMajor != want {
		t.Fatalf("the stream came over %s, want %s", resp.Proto, proto)
	}
	// Read no further ahead than the frames asked for: the link is slow.
	s := &slowStream{t: t, client: client, base: base}
	s.frames, s.ended = streamFrames(t, resp.Body, 0)
	if s.opened = s.next(); s.opened.Type != transport.TypeOpened {
		t.Fatalf("got %+v, want OPENED", s.opened)
	}
	return s
}

// next is the stream's next frame, which must come within 10 s.
func (s *slowStream) next() transport.Frame {
	s.t.Helper()
	select {
	case f, ok := <-s.frames:
		if !ok {
			s.t.Fatal("the stream ended")
		}
		return f
	case <-time.After(10 * time.Second):
		s.t.Fatal("the stream delivered nothing for 10 s")
	}
	return transport.Frame{}
}

// send posts unit to /send, after the session's SEND frame.
func (s *slowStream) send(unit []byte) {
	s.t.Helper()
	resp, err := s.client.Post(s.base+"/send", "application/octet-stream",
		bytes.NewReader(append(transport.AppendSend(nil, s.opened.Session, s.opened.Secret, 0, false), unit...)))
	if err != nil || resp.StatusCode != http.StatusNoContent {
		s.t.Fatalf("/send: %v %v", resp, err)
	}
	resp.Body.Close()
}
