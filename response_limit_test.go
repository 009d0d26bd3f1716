package mqttgateway

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// Under a server write timeout shorter than the heartbeat (Caddy's
// `timeouts { write }`, a ceiling over the whole response that no handler
// can raise), long polls answer and streams end in time, cleanly, and the
// client renews them: an idle poll used to be cut (EOF, every one), and a
// stream cut mid-response.
func TestHTTPTransportsUnderAServerWriteTimeout(t *testing.T) {
	mq := startMosquitto(t)
	base := gatewayUnderAWriteTimeout(t, mq.port, "")

	s := openPolling(t, base)
	for range 3 {
		if data := s.poll(); len(data) != 0 { // idle: BOUND and a PING
			t.Fatalf("an idle poll brought %+v", data)
		}
	}

	// A stream over the same session ends by itself, completely (the
	// chunked body's end, not a cut), with the frames written so far.
	body := wholeStream(t, base, transport.AppendBind(nil, s.id, s.secret, s.received))
	if err := transport.SplitUnit(body, func([]byte) error { return nil }); err != nil || len(body) == 0 {
		t.Fatalf("the stream's %d bytes: %v", len(body), err)
	}
	// And the session goes on.
	time.Sleep(100 * time.Millisecond)
	s.poll()
}

// A stream that opens its session runs the authenticate hook first, and
// that time counts against the server's write timeout too: the stream
// must end within it, counted from the request's start. (It ended three
// quarters of the timeout after the hook had answered: with a hook that
// takes 400 ms under a 1 s write timeout, at 1.15 s, and was cut. Here:
// 800 ms under 2 s.)
func TestAStreamThatOpensEndsWithinTheWriteTimeout(t *testing.T) {
	mq := startMosquitto(t)
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(800 * time.Millisecond)
		hookapi.Allow(w)
	}))
	t.Cleanup(hooks.Close)
	base := gatewayUnderAWriteTimeout(t, mq.port, fmt.Sprintf("authenticate {\n\t\t\treverse_proxy %s\n\t\t}", hooks.Listener.Addr()))
	wholeStream(t, base, transport.AppendOpen(nil, "", nil, nil))
}

// wholeStream posts first to /stream and reads the response to its end,
// which must be the chunked body's end, not a cut.
func wholeStream(t *testing.T, base string, first []byte) []byte {
	t.Helper()
	resp, err := http.Post(base+"/stream", "application/octet-stream", bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("the stream was cut after %d bytes: %v", len(body), err)
	}
	return body
}

// gatewayUnderAWriteTimeout runs a gateway, with extra options, on a
// server whose write timeout (2 s) is shorter than its heartbeat (5 s),
// and returns its base URL. A quarter of 2 s leaves a loaded machine room
// to write an answer's end.
func gatewayUnderAWriteTimeout(t *testing.T, brokerPort int, extra string) string {
	t.Helper()
	httpPort := freePort(t)
	loadCaddy(t, adaptCaddyfile(t, fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
	servers {
		timeouts {
			write 2s
		}
	}
}
http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d
		heartbeat 5s
		%s
	}
}
`, httpPort, brokerPort, extra)))
	return fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)
}
