package mqttgateway

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// An HTTP streaming client on a slow link (a phone behind a proxy that
// blocks WebSocket) gets every topic's latest value soon, as a WebSocket
// one does: over HTTP/1.1, plain or over TLS, the gateway limits what the
// stream's socket holds unsent. Without the limit Linux took megabytes for
// the stream, the gateway never saw the client fall behind, and the
// client read the whole backlog before any latest value (a phone at 40
// KB/s was 18 s behind and growing, and a cut lost more than the replay
// window held).
func TestSlowStreamingClientGetsTheLatestValuesSoon(t *testing.T) {
	t.Run("http", func(t *testing.T) { slowStreamingClient(t, false) })
	t.Run("https", func(t *testing.T) { slowStreamingClient(t, true) })
}

func slowStreamingClient(t *testing.T, overTLS bool) {
	mq := startMosquitto(t)
	httpPort := freePort(t)
	scheme, site, client := "http", "", http.DefaultClient
	var tlsConfig *tls.Config
	if overTLS {
		dir := t.TempDir()
		caFile, certFile, keyFile := testPKI(t, dir, "127.0.0.1")
		pem, _ := os.ReadFile(caFile)
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(pem)
		// HTTP/1.1, as Node's fetch and a browser without HTTP/2 speak it.
		tlsConfig = &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}
		scheme, site = "https", fmt.Sprintf("tls %s %s", certFile, keyFile)
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	}
	startCaddy(t, fmt.Sprintf(`%s://127.0.0.1:%d {
	%s
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d
	}
}
`, scheme, httpPort, site, mq.port))
	base := fmt.Sprintf("%s://127.0.0.1:%d/mqtt", scheme, httpPort)

	// The stream, on a socket with a small receive buffer, read slowly.
	conn, err := tinyReceiveDialer().Dial("tcp", fmt.Sprintf("127.0.0.1:%d", httpPort))
	if err != nil {
		t.Fatal(err)
	}
	if overTLS {
		conn = tls.Client(conn, tlsConfig.Clone())
	}
	t.Cleanup(func() { conn.Close() })
	req, _ := http.NewRequest(http.MethodPost, base+"/stream", bytes.NewReader(transport.AppendOpen(nil, "", nil, nil)))
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(conn, 4096), req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("stream: %v %v", resp, err)
	}
	body := bufio.NewReaderSize(resp.Body, 4096)
	next := func() transport.Frame {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := binary.ReadUvarint(body)
		frame := make([]byte, n)
		if err == nil {
			_, err = io.ReadFull(body, frame)
		}
		var f transport.Frame
		if err == nil {
			err = transport.Decode(frame, &f)
		}
		if err != nil {
			t.Fatalf("reading the stream: %v", err)
		}
		return f
	}
	opened := next()
	if opened.Type != transport.TypeOpened {
		t.Fatalf("got %+v, want OPENED", opened)
	}
	send := append(transport.AppendSend(nil, opened.Session, opened.Secret, 0, false),
		append(transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"}), transport.AppendSubscribe(nil, 2, 1, "slow/#", 0, 0)...)...)
	if resp, err := client.Post(base+"/send", "application/octet-stream", bytes.NewReader(send)); err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("/send: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	for results := 0; results < 2; {
		if f := next(); f.Type == transport.TypeResult {
			if f.Code != 0 {
				t.Fatalf("connect or subscribe: %+v", f)
			}
			results++
		}
	}

	read, readAfter := latestValuesSoon(t, mq, func() []transport.Frame {
		f := next()
		time.Sleep(10 * time.Millisecond) // about 100 KiB/s
		return []transport.Frame{f}
	})
	t.Logf("the slow streaming client read %d of 2000 messages, %d of them after the publisher stopped", read, readAfter)
}
