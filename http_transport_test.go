package mqttgateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// httpSession drives the HTTP transports with plain net/http, frame by
// frame, as a client without WebSocket would.
type httpSession struct {
	t        *testing.T
	base     string
	id       [16]byte
	secret   [16]byte
	received uint64
}

func post(t *testing.T, url string, body []byte, header map[string]string) (int, []transport.Frame) {
	t.Helper()
	status, _, frames := postSized(t, url, body, header)
	return status, frames
}

// postSized is post that also returns the response body's size.
func postSized(t *testing.T, url string, body []byte, header map[string]string) (status, size int, frames []transport.Frame) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if err := transport.SplitUnit(b, func(fb []byte) error {
		var f transport.Frame
		if err := transport.Decode(fb, &f); err != nil {
			return err
		}
		frames = append(frames, f)
		return nil
	}); err != nil {
		t.Fatalf("response of %s does not decode: %v (%x)", url, err, b)
	}
	return resp.StatusCode, len(b), frames
}

func openPolling(t *testing.T, base string) *httpSession {
	status, frames := post(t, base+"/poll", transport.AppendOpen(nil, "", nil, nil), nil)
	if status != 200 || len(frames) == 0 || frames[0].Type != transport.TypeOpened {
		t.Fatalf("open by poll: %d %+v", status, frames)
	}
	return &httpSession{t: t, base: base, id: frames[0].Session, secret: frames[0].Secret}
}

func (s *httpSession) send(unit []byte) {
	s.t.Helper()
	status, frames := post(s.t, s.base+"/send", append(transport.AppendSend(nil, s.id, s.secret, 0, false), unit...), nil)
	if status != http.StatusNoContent {
		s.t.Fatalf("send: %d %+v", status, frames)
	}
}

// pollingSubscribed opens a long-polling session whose client connects to
// broker main and subscribes to filter at QoS 1 (requests 1 and 2).
func pollingSubscribed(t *testing.T, base, filter string) *httpSession {
	t.Helper()
	s := openPolling(t, base)
	s.send(append(transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"}),
		transport.AppendSubscribe(nil, 2, 1, filter, 1, 0)...))
	if r := s.pollUntil(2); r[0].Req != 1 || r[0].Code != 0 || r[1].Req != 2 || r[1].Code != 0 {
		t.Fatalf("connect and subscribe: %+v", r)
	}
	return s
}

// poll returns the data frames of one poll and counts them.
func (s *httpSession) poll() []transport.Frame {
	s.t.Helper()
	data, _ := s.pollSized()
	return data
}

// pollSized is poll that also returns the answer's size.
func (s *httpSession) pollSized() (data []transport.Frame, size int) {
	s.t.Helper()
	status, size, frames := postSized(s.t, s.base+"/poll", transport.AppendBind(nil, s.id, s.secret, s.received), nil)
	if status != 200 || len(frames) == 0 || frames[0].Type != transport.TypeBound || frames[0].Value != s.received+1 {
		s.t.Fatalf("poll: %d %+v", status, frames)
	}
	for _, f := range frames[1:] {
		if f.Type != transport.TypePing {
			data = append(data, f)
		}
	}
	s.received += uint64(len(data))
	return data, size
}

// pollUntil polls until n data frames arrived.
func (s *httpSession) pollUntil(n int) []transport.Frame {
	var all []transport.Frame
	deadline := time.Now().Add(10 * time.Second)
	for len(all) < n && time.Now().Before(deadline) {
		all = append(all, s.poll()...)
	}
	if len(all) < n {
		s.t.Fatalf("got %d frames, want %d: %+v", len(all), n, all)
	}
	return all
}

func TestLongPollingEndToEnd(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "heartbeat 2s")
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)
	s := pollingSubscribed(t, base, "poll/#")
	mosquittoPub(t, mq.port, "-t", "poll/a", "-m", "one")
	mosquittoPub(t, mq.port, "-t", "poll/b", "-m", "two")
	msgs := s.pollUntil(2)
	if string(msgs[0].Publish.Payload) != "one" || string(msgs[1].Publish.Payload) != "two" {
		t.Fatalf("messages: %+v", msgs)
	}

	// A lost poll response: the client polls again with its old count and
	// the server replays.
	mosquittoPub(t, mq.port, "-t", "poll/c", "-m", "three")
	before := s.received
	if got := s.pollUntil(1); string(got[0].Publish.Payload) != "three" {
		t.Fatalf("third: %+v", got)
	}
	s.received = before // pretend that response never arrived
	if got := s.pollUntil(1); string(got[0].Publish.Payload) != "three" {
		t.Fatalf("replay: %+v", got)
	}

	// Publish through /send, receive through the broker.
	wait := mosquittoSub(t, mq.port, "-t", "up/x", "-C", "1")
	time.Sleep(300 * time.Millisecond)
	s.send(transport.AppendPublish(nil, 3, 1, &session.PublishParams{Topic: "up/x", QoS: 1, Payload: []byte("from poll")}))
	if r := s.pollUntil(1); r[0].Req != 3 || r[0].Code != 0 {
		t.Fatalf("publish result %+v", r)
	}
	if got := wait(); string(bytes.TrimSpace(got)) != "from poll" {
		t.Fatalf("mosquitto_sub got %q", got)
	}
}

// openStream posts body to /stream and returns the response's frames as
// they come; the channel closes when the response ends.
func openStream(t *testing.T, base string, body []byte) <-chan transport.Frame {
	t.Helper()
	resp, err := http.Post(base+"/stream", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	frames, _ := streamFrames(t, resp.Body, 100)
	return frames
}

// streamFrames reads the frames of a stream's body as they come, whole
// across chunks, into a channel of capacity buffer, closed when the body
// ends, the test ends, or a frame does not decode (an error of the test).
// Once it is closed, ended tells why the body ended: nil at its end.
func streamFrames(t *testing.T, body io.Reader, buffer int) (frames <-chan transport.Frame, ended func() error) {
	out := make(chan transport.Frame, buffer)
	var end error
	go func() {
		defer close(out)
		var pending []byte
		buf := make([]byte, 4096)
		for {
			n, err := body.Read(buf)
			pending = append(pending, buf[:n]...)
			for {
				size, used := binary.Uvarint(pending)
				if used <= 0 || len(pending) < used+int(size) {
					break
				}
				var f transport.Frame
				if err := transport.Decode(pending[used:used+int(size)], &f); err != nil {
					t.Errorf("a stream's frame does not decode: %v", err)
					return
				}
				select {
				case out <- f:
				case <-t.Context().Done():
					return
				}
				pending = pending[used+int(size):]
			}
			if err != nil {
				if err != io.EOF {
					end = err
				}
				return
			}
		}
	}()
	return out, func() error { return end }
}

// nextOnStream is the next frame of a stream openStream reads.
func nextOnStream(t *testing.T, frames <-chan transport.Frame) transport.Frame {
	t.Helper()
	select {
	case f := <-frames:
		return f
	case <-time.After(10 * time.Second):
		t.Fatal("the stream delivered nothing")
	}
	return transport.Frame{}
}

func TestStreamingDeliversAsFramesCome(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)
	frames := openStream(t, base, transport.AppendOpen(nil, "", nil, nil))
	next := func() transport.Frame { return nextOnStream(t, frames) }
	opened := next()
	if opened.Type != transport.TypeOpened {
		t.Fatalf("first frame %+v", opened)
	}
	s := &httpSession{t: t, base: base, id: opened.Session, secret: opened.Secret}
	s.send(append(transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"}),
		transport.AppendSubscribe(nil, 2, 1, "stream/#", 0, 0)...))
	if r := next(); r.Req != 1 || r.Code != 0 {
		t.Fatalf("connect: %+v", r)
	}
	if r := next(); r.Req != 2 || r.Code != 0 {
		t.Fatalf("subscribe: %+v", r)
	}
	mosquittoPub(t, mq.port, "-t", "stream/x", "-m", "live")
	if m := next(); m.Type != transport.TypeMessage || string(m.Publish.Payload) != "live" {
		t.Fatalf("message: %+v", m)
	}
}

// Rebinding with a wrong secret, an unknown session, or a count from the
// future gets a clear error, and the real session is unharmed.
func TestBindErrors(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "replay_frames 2")
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)
	s := openPolling(t, base)

	wrong := s.secret
	wrong[0] ^= 1
	cases := []struct {
		name   string
		body   []byte
		status int
		code   session.Code
	}{
		{"wrong secret", transport.AppendBind(nil, s.id, wrong, 0), 403, session.CodeSessionSecret},
		{"unknown session", transport.AppendBind(nil, [16]byte{1, 2, 3}, s.secret, 0), 404, session.CodeSessionUnknown},
		{"count from the future", transport.AppendBind(nil, s.id, s.secret, 99), 409, session.CodeSessionCount},
		{"not a frame", []byte{7, 1, 2}, 400, session.CodeMalformed},
	}
	for _, tc := range cases {
		status, frames := post(t, base+"/poll", tc.body, nil)
		if status != tc.status || len(frames) != 1 || frames[0].Type != transport.TypeEnd || frames[0].Code != tc.code {
			t.Errorf("%s: status %d frames %+v, want %d and CLOSE %d", tc.name, status, frames, tc.status, tc.code)
		}
	}
	status, _ := post(t, base+"/send", append(transport.AppendSend(nil, s.id, wrong, 0, false), transport.AppendPing(nil)...), nil)
	if status != 403 {
		t.Errorf("send with a wrong secret: %d", status)
	}
	// A SEND frame with a count its flags do not announce: the answer says
	// what is wrong with it, not only that a SEND frame is expected.
	send := transport.AppendSend(nil, s.id, s.secret, 0, false)
	send = append([]byte{send[0] + 1}, append(send[1:], 3)...) // one byte more: a count, flag bit 0 clear
	status, frames := post(t, base+"/send", append(send, transport.AppendPing(nil)...), nil)
	if status != 400 || len(frames) != 1 || frames[0].Code != session.CodeBadRequest || !strings.Contains(frames[0].Message, "1 bytes after its last field") {
		t.Errorf("send with a malformed SEND frame: %d %+v, want 400 and CLOSE 4003 saying what is wrong with it", status, frames)
	}

	// The session itself still works; then a gap beyond the replay window
	// (2 frames) is reported as such.
	s.send(append(transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"}),
		transport.AppendSubscribe(nil, 2, 1, "gap/#", 0, 0)...))
	s.pollUntil(2)
	for i := 0; i < 4; i++ {
		mosquittoPub(t, mq.port, "-t", "gap/x", "-m", fmt.Sprint(i))
	}
	s.pollUntil(4)
	status, frames = post(t, base+"/poll", transport.AppendBind(nil, s.id, s.secret, 1), nil)
	if status != 409 || len(frames) != 1 || frames[0].Code != session.CodeSessionGap {
		t.Fatalf("gap: %d %+v", status, frames)
	}
}

// A long-polling client whose next poll is lost on its way learns so only
// when its dead-connection deadline (2 × heartbeat + 5 s) passes, and then
// rebinds. Its session must still be there: it waits that long before its
// session_timeout starts, as on the other transports. (It expired
// session_timeout after the last answered poll, and a silent stall of 30 s
// lost the session and its messages.) A client that never comes back is
// still let go, that much later.
func TestLongPollSessionOutlivesALostPoll(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "heartbeat 500ms\n\tsession_timeout 1s")
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)
	const notice = 2*500*time.Millisecond + 5*time.Second

	s := openPolling(t, base)
	s.poll()                    // held for a heartbeat, answered with a PING
	time.Sleep(3 * time.Second) // session_timeout and more, well within the client's deadline
	s.poll()                    // BOUND, not CLOSE 4010

	time.Sleep(notice + time.Second + 1500*time.Millisecond)
	s.expectGone("a client away past the deadline and session_timeout")
}

// expectGone rebinds and expects the session to have expired (4010).
func (s *httpSession) expectGone(what string) {
	s.t.Helper()
	status, frames := post(s.t, s.base+"/poll?wait=0", transport.AppendBind(nil, s.id, s.secret, s.received), nil)
	if status != http.StatusNotFound || len(frames) != 1 || frames[0].Code != session.CodeSessionUnknown {
		s.t.Fatalf("%s: %d %+v, want the session gone (4010)", what, status, frames)
	}
}

// A poll the client gives up on (a page that went away with its poll held)
// gets no grace: its session ends session_timeout later, as a WebSocket
// whose client closed it.
func TestLongPollAbandonedByItsClientExpiresOnTime(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "heartbeat 10s\n\tsession_timeout 1s")
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)
	s := openPolling(t, base)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/poll", bytes.NewReader(transport.AppendBind(nil, s.id, s.secret, 0)))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("the held poll was answered (%d) within 300 ms of a 10 s heartbeat", resp.StatusCode)
	}
	time.Sleep(2500 * time.Millisecond) // session_timeout and more, far within 2 × heartbeat + 5 s
	s.expectGone("after an abandoned poll and session_timeout")
}

// The gateway ends a stream itself after streamBytes (4 MiB) and the client
// renews it at once; a renewal lost on its way shows only at the client's
// dead-connection deadline. The session must wait for it, as between long
// polls: it expired session_timeout after the stream's end.
func TestStreamRenewalLostOnItsWayKeepsTheSession(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "heartbeat 500ms\n\tsession_timeout 1s")
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)

	frames := openStream(t, base, transport.AppendOpen(nil, "", nil, nil))
	f := <-frames
	if f.Type != transport.TypeOpened {
		t.Fatalf("first frame %+v", f)
	}
	s := &httpSession{t: t, base: base, id: f.Session, secret: f.Secret}
	s.send(append(transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"}),
		transport.AppendSubscribe(nil, 2, 1, "renew/#", 0, 0)...))
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	// Five MiB of messages: more than a stream carries.
	for i := 0; i < 5; i++ {
		mosquittoPub(t, mq.port, "-t", "renew/big", "-f", big)
	}
	for f := range frames {
		if f.Type == transport.TypeResult || f.Type == transport.TypeMessage {
			s.received++
		}
	}
	if s.received < 4 {
		t.Fatalf("the stream ended after %d data frames, before it carried 4 MiB", s.received)
	}

	time.Sleep(3 * time.Second) // session_timeout and more, well within the client's deadline
	status, got := post(t, base+"/poll?wait=0", transport.AppendBind(nil, s.id, s.secret, s.received), nil)
	if status != http.StatusOK || len(got) == 0 || got[0].Type != transport.TypeBound {
		t.Fatalf("renewing after a lost renewal: %d %+v, want BOUND", status, got)
	}
}

// A WebSocket client that loses its connection rebinds and receives what
// was published meanwhile.
func TestWebSocketResumeReplaysMissedMessages(t *testing.T) {
	mq := startMosquitto(t)
	url, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	c := dial(t, url)
	connectSubscribe(t, c, "resume/#", 0)
	mosquittoPub(t, mq.port, "-t", "resume/a", "-m", "before")
	nextMessage(t, c)
	id, secret := c.Opened.Session, c.Opened.Secret
	c.Drop()
	for i := 0; i < 3; i++ {
		mosquittoPub(t, mq.port, "-t", "resume/a", "-m", fmt.Sprint("during ", i))
	}
	// Data frames so far: CONNECT and SUBSCRIBE results, one message.
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)
	s := &httpSession{t: t, base: base, id: id, secret: secret, received: 3}
	got := s.pollUntil(3)
	for i, f := range got {
		if string(f.Publish.Payload) != fmt.Sprint("during ", i) {
			t.Fatalf("replayed %d: %q", i, f.Publish.Payload)
		}
	}
}

// A stream's client is heard by its /send requests, PINGs included. One
// that sends nothing for 2 × heartbeat + 5 s is gone (a frozen page, a
// machine off the network, while the kernel still takes the writes): its
// response ends, as a silent WebSocket's connection does, and the session
// waits for a rebind. A client that keeps pinging keeps its stream.
func TestStreamingEndsForASilentClient(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "heartbeat 500ms")
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)
	const dead = 2*500*time.Millisecond + 5*time.Second

	open := func() (*httpSession, <-chan transport.Frame) {
		frames := openStream(t, base, transport.AppendOpen(nil, "", nil, nil))
		f := <-frames
		if f.Type != transport.TypeOpened {
			t.Fatalf("first frame %+v", f)
		}
		return &httpSession{t: t, base: base, id: f.Session, secret: f.Secret}, frames
	}
	// ended waits for the end of a stream and says when it came.
	ended := func(frames <-chan transport.Frame) <-chan time.Time {
		at := make(chan time.Time, 1)
		go func() {
			for range frames {
			}
			at <- time.Now()
		}()
		return at
	}
	start := time.Now()
	silent, silentFrames := open()
	pinging, pingingFrames := open()
	silentEnd, pingingEnd := ended(silentFrames), ended(pingingFrames)

	stopPinging := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		for {
			select {
			case <-stopPinging:
				return
			case <-time.After(400 * time.Millisecond):
				pinging.send(transport.AppendPing(nil))
			}
		}
	}()

	select {
	case at := <-silentEnd:
		if took := at.Sub(start); took < dead {
			t.Fatalf("the silent client's stream ended after %v, before the deadline of %v", took, dead)
		}
	case <-time.After(dead + 10*time.Second):
		t.Fatalf("the silent client's stream still runs %v after the deadline", 10*time.Second)
	}
	// The pinging client has been heard all along.
	select {
	case <-pingingEnd:
		t.Fatal("the stream of a client that sends its PINGs ended")
	case <-time.After(time.Second):
	}
	close(stopPinging)
	<-pinged

	// The silent client's session is alive: it rebinds (on a poll, which
	// answers at once with wait=0) and finds it.
	status, frames := post(t, base+"/poll?wait=0", transport.AppendBind(nil, silent.id, silent.secret, 0), nil)
	if status != http.StatusOK || len(frames) == 0 || frames[0].Type != transport.TypeBound {
		t.Fatalf("rebind after the stream ended: %d %+v", status, frames)
	}
}

// The session secret never reaches an access log: Caddy's record every
// request header and URL, so it travels in the body of /send (its SEND
// frame) and of BIND, nowhere else.
func TestSecretStaysOutOfAccessLogs(t *testing.T) {
	mq := startMosquitto(t)
	logFile := filepath.Join(t.TempDir(), "access.log")
	httpPort := freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	log {
		output file %s
	}
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d
		heartbeat 1s
	}
}
`, httpPort, logFile, mq.port))
	s := openPolling(t, fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort))
	s.send(transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"}))
	s.pollUntil(1)
	var log []byte
	deadline := time.Now().Add(5 * time.Second)
	for !bytes.Contains(log, []byte("/mqtt/send")) {
		if time.Now().After(deadline) {
			t.Fatalf("the access log has no /send: %s", log)
		}
		time.Sleep(50 * time.Millisecond)
		log, _ = os.ReadFile(logFile)
	}
	if secret := hex.EncodeToString(s.secret[:]); bytes.Contains(bytes.ToLower(log), []byte(secret)) {
		t.Fatalf("the access log has the session secret %s:\n%s", secret, log)
	}
}

// Someone who opens an endpoint by hand (a browser tab, curl) is told what
// it is and what it takes, not handed an empty 400 or 405.
func TestEndpointsOpenedByHandSayWhatTheyAre(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	for _, tc := range []struct {
		endpoint string
		status   int
		says     string
	}{
		{"ws", http.StatusBadRequest, "takes a WebSocket upgrade with subprotocol " + transport.Subprotocol},
		{"stream", http.StatusMethodNotAllowed, "(stream): it takes POST requests"},
		{"poll", http.StatusMethodNotAllowed, "(poll): it takes POST requests"},
		{"send", http.StatusMethodNotAllowed, "(send): it takes POST requests"},
	} {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/mqtt/%s", httpPort, tc.endpoint))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status || !bytes.Contains(body, []byte(tc.says)) {
			t.Errorf("GET /mqtt/%s: %d %q, want %d saying %q", tc.endpoint, res.StatusCode, body, tc.status, tc.says)
		}
		if tc.status == http.StatusMethodNotAllowed && res.Header.Get("Allow") != "POST, OPTIONS" {
			t.Errorf("GET /mqtt/%s: Allow %q", tc.endpoint, res.Header.Get("Allow"))
		}
	}
}

// A /send too large for max_frame ends its session with CLOSE 4002, as an
// oversized WebSocket message does, whether the body is past the limit on
// what is read or only its frames are: left alive, a session whose client
// counted that request could never go on (each rebind would send it again,
// or every later /send would be a gap). Other sessions are unharmed.
func TestOversizedSendEndsItsSession(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "max_message_size 1KiB\n\theartbeat 1s")
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)
	bystander := openPolling(t, base)
	maxFrame := 1<<10 + 128<<10 // max_message_size and room for a frame's other fields

	for _, tc := range []struct {
		what  string
		frame int // bytes of frames after the SEND frame
	}{
		{"a body past the read limit", maxFrame + 4096},
		{"frames just over max_frame", maxFrame + 1},
	} {
		s := openPolling(t, base)
		body := append(transport.AppendSend(nil, s.id, s.secret, 0, false), make([]byte, tc.frame)...)
		status, frames := post(t, base+"/send", body, nil)
		if status != http.StatusRequestEntityTooLarge || len(frames) != 1 || frames[0].Type != transport.TypeEnd || frames[0].Code != session.CodeFrameTooLarge {
			t.Fatalf("%s: %d %+v, want 413 and CLOSE 4002", tc.what, status, frames)
		}
		s.expectGone(tc.what)
	}
	bystander.send(transport.AppendPing(nil))
	bystander.poll() // BOUND and the heartbeat's PING: alive
}

// The hook decides the requests of a /send on that /send's headers, on
// HTTP streaming as on long polling: a page that refreshed its token
// cookie is seen with the new one. (On streaming the hook saw the
// stream's headers for as long as it lasted, so short-lived tokens in
// cookies were refused after their first expiry.)
func TestHookSeesTheCookieOfEachSend(t *testing.T) {
	mq := startMosquitto(t)
	cookies := make(chan string, 4)
	wsURL := gatewayWithHook(t, mq.port, "authorize", "", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/subscribe" {
			cookies <- r.Header.Get("Cookie")
		}
		w.WriteHeader(http.StatusNoContent)
	})
	base := strings.TrimSuffix(strings.Replace(wsURL, "ws://", "http://", 1), "/ws")
	frames := openStream(t, base, transport.AppendOpen(nil, "", nil, nil))
	opened := nextOnStream(t, frames)
	unit := append(transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"}),
		transport.AppendSubscribe(nil, 2, 1, "cookie/#", 0, 0)...)
	status, answer := post(t, base+"/send", append(transport.AppendSend(nil, opened.Session, opened.Secret, 0, false), unit...),
		map[string]string{"Cookie": "token=refreshed"})
	if status != http.StatusNoContent {
		t.Fatalf("send: %d %+v", status, answer)
	}
	select {
	case c := <-cookies:
		if c != "token=refreshed" {
			t.Errorf("the hook saw Cookie %q, want the /send's", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the subscribe never reached the hook")
	}
}

// A /send is answered as soon as its SEND frame names no session of the
// gateway's: the rest of its body is never read. Before, every /send body,
// up to max_frame (128 MiB with the largest max_message_size), was read
// into memory, for up to 30 s, before the secret was checked: anyone could
// make the gateway hold that much per request, with no session and no
// per-IP limit counting it. A wrong secret is answered as soon, and a
// session's own /send still runs.
func TestSendBodyIsNotReadForAnUnknownSession(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "max_message_size 64MiB")
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)
	s := openPolling(t, base)
	for _, tc := range []struct {
		what            string
		session, secret [16]byte
		code            session.Code
		status          int
	}{
		{"an unknown session", [16]byte{1, 2, 3}, [16]byte{4}, session.CodeSessionUnknown, http.StatusNotFound},
		{"a wrong secret", s.id, [16]byte{4}, session.CodeSessionSecret, http.StatusForbidden},
	} {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", httpPort))
		if err != nil {
			t.Fatal(err)
		}
		head := transport.AppendSend(nil, tc.session, tc.secret, 0, false)
		// A body that claims 64 MiB and brings only its SEND frame.
		fmt.Fprintf(conn, "POST /mqtt/send HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
			httpPort, 64<<20)
		conn.Write(head)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			t.Fatalf("%s: no answer before the body: %v", tc.what, err)
		}
		body, _ := io.ReadAll(resp.Body)
		conn.Close()
		var end transport.Frame
		err = transport.SplitUnit(body, func(b []byte) error { return transport.Decode(b, &end) })
		if resp.StatusCode != tc.status || err != nil || end.Type != transport.TypeEnd || end.Code != tc.code {
			t.Errorf("%s: %d %+v (%v), want %d and CLOSE %d", tc.what, resp.StatusCode, end, err, tc.status, tc.code)
		}
	}
	s.send(transport.AppendPing(nil)) // the session's own /send still runs
	s.poll()
}

// A site that compresses (encode, as many do) leaves the gateway's streams and poll
// answers alone: they are not of a type Caddy compresses, so each frame goes out as it
// is written rather than when a compressor flushes, and a stream costs no compressor's
// memory. (encode weighs only a response whose first write is at least its
// minimum_length, 512 bytes by default, as a rebind's backlog is: here every response
// is weighed, so that its type alone decides.)
func TestEncodeLeavesStreamsAndPollsUncompressed(t *testing.T) {
	mq := startMosquitto(t)
	port := freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	encode zstd gzip {
		minimum_length 1
	}
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d
	}
}
`, port, mq.port))
	// Without the transport's own gzip, which would hide an encoding.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	for _, endpoint := range []string{"stream", "poll"} {
		req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/mqtt/%s", port, endpoint), bytes.NewReader(transport.AppendOpen(nil, "", nil, nil)))
		req.Header.Set("Content-Type", "application/octet-stream")
		req.Header.Set("Accept-Encoding", "zstd, gzip")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 256)
		n, _ := io.ReadAtLeast(resp.Body, buf, 1)
		resp.Body.Close()
		var opened transport.Frame
		err = transport.SplitUnit(buf[:n], func(b []byte) error { return transport.Decode(b, &opened) })
		if ce := resp.Header.Get("Content-Encoding"); ce != "" || err != nil || opened.Type != transport.TypeOpened {
			t.Errorf("/%s: Content-Encoding %q, first frame %+v (%v)", endpoint, ce, opened, err)
		}
	}
}
