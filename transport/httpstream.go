package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// HTTP transports (PROTOCOL.md, "HTTP streaming" and "HTTP long polling"):
// every request is a POST whose body is a transport unit. /stream and /poll
// start with OPEN or BIND and answer with frames; /send carries the
// client's requests for a session named by its first frame, SEND.

const (
	// streamBytes ends a streaming response after this much, so proxies
	// that hold whole responses in memory are not asked for too much; the
	// client rebinds at once and nothing is lost.
	streamBytes = 4 << 20
	// pollWait is the longest a poll waits for something to send.
	pollWait = 20 * time.Second
	// pollBytes bounds a poll's answer: what is queued past it goes with
	// the next poll, which the client sends at once. Proxies limit response
	// sizes (squid's reply_body_max_size), and a poll answering a large
	// backlog at once would hold all of it in one buffer.
	pollBytes = 64 << 10
)

// responseTime is how long, from now, a poll may wait or a stream may
// last under the server's response limit (Server.ResponseLimit) for a
// request served since start, leaving a quarter of the limit for the
// answer to go out; 0: no limit. The limit counts from the request's
// start: an open's authenticate hook spends it too.
func (s *Server) responseTime(r *http.Request, start time.Time) time.Duration {
	if s.ResponseLimit == nil {
		return 0
	}
	limit := s.ResponseLimit(r)
	if limit <= 0 {
		return 0
	}
	return max(time.Until(start.Add(limit*3/4)), time.Millisecond)
}

// httpConn is the session.Transport of one streaming or polling response.
type httpConn struct {
	wake chan struct{}
	mu   sync.Mutex
	code session.Code // set by Close
	msg  string
	// heard is when the client last sent something (UnixNano): the
	// response's start, then every /send. A stream's client sends its
	// frames, PINGs included, by /send, so /send is how a stream hears it.
	heard atomic.Int64
}

func newHTTPConn() *httpConn {
	c := &httpConn{wake: make(chan struct{}, 1)}
	c.hear()
	return c
}

func (c *httpConn) hear() { c.heard.Store(time.Now().UnixNano()) }

// silentFor is how long the client has sent nothing.
func (c *httpConn) silentFor() time.Duration {
	return time.Duration(time.Now().UnixNano() - c.heard.Load())
}

func (c *httpConn) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *httpConn) Close(code session.Code, msg string) {
	c.mu.Lock()
	if c.code == 0 {
		c.code, c.msg = code, msg
	}
	c.mu.Unlock()
	c.Wake()
}

func (c *httpConn) closed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.code != 0
}

// readUnit reads a request body of at most limit bytes, within timeout: a
// body that trickles in (a byte every few seconds) would otherwise hold a
// goroutine and a connection for as long as the client likes, before any
// session or limit counts it. A body over the limit returns its first
// limit bytes with the 4002 error.
func readUnit(w http.ResponseWriter, r *http.Request, limit int, timeout time.Duration) ([]byte, *session.Error) {
	defer bodyDeadline(w, timeout)()
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	if err != nil {
		return body, bodyError(err, limit, timeout, session.CodeMalformed)
	}
	return body, nil
}

// bodyDeadline gives a request body timeout to arrive, and returns what
// lifts the deadline.
func bodyDeadline(w http.ResponseWriter, timeout time.Duration) (lift func()) {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(timeout)) != nil {
		return func() {}
	}
	return func() { rc.SetReadDeadline(time.Time{}) }
}

// bodyError says what went wrong reading a request body of at most limit
// bytes within timeout: 4002 past the limit, 4003 past the timeout, and
// otherwise (the connection was cut) code, with the error.
func bodyError(err error, limit int, timeout time.Duration, code session.Code) *session.Error {
	var tooLarge *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooLarge):
		return session.Errorf(session.CodeFrameTooLarge, "request body exceeds %d bytes", limit)
	case errors.As(err, &netErr) && netErr.Timeout():
		return session.Errorf(session.CodeBadRequest, "request body not received within %s", timeout)
	}
	return session.Errorf(code, "reading request: %v", err)
}

// Bounds on reading a request body: a first unit (OPEN, BIND) is at most
// 64 KiB and has as long as WebSocket's handshake; a /send body may be a
// whole max_frame, from a slow phone.
const sendBodyTimeout = 30 * time.Second

// AnswerError ends an HTTP request with a CLOSE frame, so the client reads
// the same code and message on every transport.
func AnswerError(w http.ResponseWriter, status int, e *session.Error) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(AppendEnd(nil, e.Code, e.Message))
}

func statusFor(code session.Code) int {
	switch code {
	case session.CodeSessionUnknown:
		return http.StatusNotFound
	case session.CodeSessionSecret, session.CodeNotAuthenticated:
		return http.StatusForbidden
	case session.CodeFrameTooLarge:
		return http.StatusRequestEntityTooLarge
	case session.CodeTooManySessions, session.CodeShuttingDown:
		return http.StatusServiceUnavailable
	case session.CodeSessionGap, session.CodeSessionCount:
		return http.StatusConflict
	}
	return http.StatusBadRequest
}

// beginHTTP reads the OPEN or BIND that starts a /stream or /poll request
// and binds conn to its session. It returns the first frame to write
// (OPENED, with opened set, or BOUND). On error it has answered the request.
func (s *Server) beginHTTP(w http.ResponseWriter, r *http.Request, conn *httpConn, transport string) (_ *session.Session, first []byte, opened, ok bool) {
	unit, e := readUnit(w, r, s.maxFirstUnit(), handshakeTimeout)
	if e != nil {
		AnswerError(w, statusFor(e.Code), e)
		return nil, nil, false, false
	}
	// Every poll rebinds: count streams only.
	sess, first, opened, e := s.start(r, unit, conn, transport, transport == "streaming")
	if e != nil {
		AnswerError(w, statusFor(e.Code), e)
		return nil, nil, false, false
	}
	return sess, first, opened, true
}

func startBinaryResponse(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Cache-Control", "no-store")
	// Tell buffering proxies that understand it (nginx) not to buffer.
	h.Set("X-Accel-Buffering", "no")
}

// answerHead is the size of an HTTP/1.1 answer's head with headers h (and
// those net/http adds: Date, Content-Length), on the wire.
func answerHead(h http.Header) int {
	n := len("HTTP/1.1 200 OK\r\n") + len("Date: Mon, 02 Jan 2006 15:04:05 GMT\r\n") + len("Content-Length: 65536\r\n") + len("\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	return n
}

// ServeStream serves POST /stream: one long response carrying the
// session's frames as they come.
func (s *Server) ServeStream(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	s.init()
	conn := newHTTPConn()
	sess, first, _, ok := s.beginHTTP(w, r, conn, "streaming")
	if !ok {
		return nil
	}
	// A stream the gateway ends itself (at streamBytes, or as the server
	// stops) is renewed by the client at once, and a renewal lost on its
	// way shows only when the client's dead-connection deadline passes:
	// then the session waits that long before its timeout starts, as
	// between long polls. A stream that ends because the client is gone or
	// silent gets no more than session_timeout.
	var notice time.Duration
	defer func() { sess.DetachFor(conn, notice) }()
	m := s.Manager.Metrics()
	m.Connections.WithLabelValues("streaming").Inc()
	defer m.Connections.WithLabelValues("streaming").Dec()
	bytesOut := m.BytesOut.WithLabelValues("streaming")
	delay := m.DeliveryDelay.WithLabelValues("streaming")
	rc := http.NewResponseController(w)
	defer limitStreamSocket(r)()
	startBinaryResponse(w)
	w.WriteHeader(http.StatusOK)
	buf := first
	written := 0
	hb := s.Manager.Config().Heartbeat
	// A client that sends nothing, not even its PINGs, for this long is
	// gone (a frozen page, a machine off the network) even though the
	// kernel still takes writes for it: the response ends, as a WebSocket
	// read deadline would, and the session waits session_timeout for a
	// rebind (PROTOCOL.md, Heartbeats).
	dead := deadAfter(hb)
	ticker := time.NewTicker(hb / 2)
	defer ticker.Stop()
	// Under a response limit the stream ends in time, as at streamBytes.
	var limited <-chan time.Time
	if d := s.responseTime(r, start); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		limited = t.C
	}
	lastWrite := time.Time{}
	bound := s.writeBound()
	events := make([]session.Event, 0, batchFrames)
	stopping := s.stops.stopping(r)
	for {
		var ended *session.Error
		var more bool
		buf, events, ended, more = fill(buf, bound, sess, conn, events, delay)
		if conn.closed() {
			return nil // replaced by a newer connection of the session
		}
		if len(buf) == 0 && time.Since(lastWrite) >= hb {
			buf = AppendPing(buf)
		}
		if len(buf) > 0 {
			rc.SetWriteDeadline(time.Now().Add(s.writeTimeout()))
			if _, err := w.Write(buf); err != nil {
				return nil
			}
			if err := rc.Flush(); err != nil {
				return nil
			}
			bytesOut.Add(float64(len(buf)))
			written += len(buf)
			lastWrite = time.Now()
			buf = buf[:0]
		}
		if ended != nil {
			return nil
		}
		if written >= streamBytes {
			notice = dead
			return nil
		}
		if more {
			continue
		}
		select {
		case <-conn.wake:
		case <-ticker.C:
			if conn.silentFor() > dead {
				return nil
			}
		case <-r.Context().Done():
			return nil
		case <-stopping:
			notice = dead
			return nil // see shutdown.go
		case <-limited:
			notice = dead
			return nil
		}
	}
}

// ServePoll serves POST /poll: it answers with what is pending (up to
// pollBytes), waiting up to pollWait for something to send.
func (s *Server) ServePoll(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	s.init()
	conn := newHTTPConn()
	sess, first, opened, ok := s.beginHTTP(w, r, conn, "polling")
	if !ok {
		return nil
	}
	// The next poll may be lost on its way, which the client notices only
	// when nothing arrived for its dead-connection deadline (PROTOCOL.md,
	// Heartbeats): after an answered poll the session waits that long
	// before its timeout starts, as it does on the other transports, whose
	// connections the gateway itself declares dead after that deadline. A
	// poll the client gave up on (it went away) gets no more than
	// session_timeout.
	notice := deadAfter(s.Manager.Config().Heartbeat)
	defer func() { sess.DetachFor(conn, notice) }()
	m := s.Manager.Metrics()
	m.Connections.WithLabelValues("polling").Inc() // while the poll is held
	defer m.Connections.WithLabelValues("polling").Dec()
	delay := m.DeliveryDelay.WithLabelValues("polling")
	wait := min(pollWait, s.Manager.Config().Heartbeat)
	if d := s.responseTime(r, start); d > 0 {
		wait = min(wait, d) // answered before the server cuts it
	}
	if r.URL.Query().Get("wait") == "0" {
		// A client resuming after a drop needs BOUND now, to resend what
		// was lost, not when the next message comes.
		wait = 0
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	buf := first
	events := make([]session.Event, 0, batchFrames)
	stopping := s.stops.stopping(r)
	// An answer is at most pollBytes and, so that one lost on its way can
	// be replayed to the next poll, within the replay window (PROTOCOL.md,
	// HTTP long polling; the room checks replay_bytes).
	//
	// Under a bandwidth cap the answer's head and BOUND count too.
	startBinaryResponse(w)
	room := session.Room{Bytes: pollBytes - len(buf), Size: frameSize, Overhead: answerHead(w.Header()) + len(buf)}
	maxFrames := max(s.Manager.Config().ReplayFrames, 1)
	for {
		var ended *session.Error
		buf, events, ended, _ = fillWithin(buf, &room, maxFrames, sess, conn, events, delay)
		// A new session's OPENED is an answer by itself: the client needs
		// the session id before it can send anything.
		if opened || len(buf) > len(first) || ended != nil || conn.closed() {
			break
		}
		if wait == 0 {
			break
		}
		select {
		case <-conn.wake:
			continue
		case <-timer.C:
			buf = AppendPing(buf)
		case <-stopping: // see shutdown.go
			buf = AppendPing(buf)
		case <-r.Context().Done():
			notice = 0
			return nil
		}
		break
	}
	w.Header().Set("Content-Length", fmt.Sprint(len(buf)))
	w.WriteHeader(http.StatusOK)
	w.Write(buf)
	m.BytesOut.WithLabelValues("polling").Add(float64(len(buf)))
	return nil
}

// ServeSend serves POST /send: the client's frames for a session named by
// the body's first frame, SEND, with the session's secret (and the count
// of requests sent before, which makes repeating a /send safe). The secret
// travels in the body, not in a header: Caddy's access logs record request
// headers. Results arrive on the session's stream or poll, as on
// WebSocket.
func (s *Server) ServeSend(w http.ResponseWriter, r *http.Request) error {
	s.init()
	defer bodyDeadline(w, sendBodyTimeout)()
	limit := s.maxFrame() + sendFrameRoom
	body := http.MaxBytesReader(w, r.Body, int64(limit))
	// The SEND frame first, and the session it names: the rest of a body
	// for no session (up to max_frame, from anyone) is never read. Read
	// whole before the lookup, such bodies could make the gateway hold
	// that much per request for sendBodyTimeout, counted by no limit.
	var head Frame
	headUnit, err := readSendHead(body, limit)
	if err == nil {
		_, err = firstFrame(headUnit, &head)
	}
	if err != nil || head.Type != TypeSend {
		unread(w, r)
		var e *session.Error
		if errors.As(err, &e) {
			AnswerError(w, statusFor(e.Code), e)
			return nil
		}
		why := "a /send body begins with a SEND frame naming the session"
		if err != nil { // say what is wrong with it, as a WebSocket's 4000 does
			why += ": " + err.Error()
		}
		AnswerError(w, http.StatusBadRequest, session.Errorf(session.CodeBadRequest, "%s", why))
		return nil
	}
	sess, e := s.Manager.Lookup(head.Session, head.Secret)
	if e != nil {
		unread(w, r)
		s.sendRefused(r, e)
		AnswerError(w, statusFor(e.Code), e)
		return nil
	}
	rest, err := io.ReadAll(body)
	if err != nil {
		// A body cut on its way (a network failure) dispatches nothing, and
		// the client, rebinding, learns from BOUND which requests to send
		// again.
		e = bodyError(err, limit, sendBodyTimeout, session.CodeBadRequest)
		if e.Code == session.CodeFrameTooLarge {
			// Too large for any unit: the client broke the protocol, as with
			// a frame over max_frame below or an oversized WebSocket message,
			// and its session ends. Left alive, it could not go on: the
			// client would send the same requests again after each rebind.
			sess.Close(e)
		}
		AnswerError(w, statusFor(e.Code), e)
		return nil
	}
	// The session may have ended while the body came (up to
	// sendBodyTimeout): its requests then go nowhere, and the client hears
	// so, as before the body was read after the lookup.
	if sess, e = s.Manager.Lookup(head.Session, head.Secret); e != nil {
		AnswerError(w, statusFor(e.Code), e)
		return nil
	}
	if c, ok := sess.Bound().(*httpConn); ok {
		c.hear()
		// The requests in this body are decided on what it came with, as a
		// poll's are: a page that refreshed its token cookie is seen with the
		// new one, not with the stream's, for as long as the stream lasts.
		s.refreshOrigin(sess, r)
	}
	if len(rest) > s.maxFrame() { // the client broke the protocol
		e := session.Errorf(session.CodeFrameTooLarge, "request body exceeds %d bytes", s.maxFrame()+sendFrameRoom)
		sess.Close(e)
		AnswerError(w, statusFor(e.Code), e)
		return nil
	}
	refusal, e := dispatchSend(sess, rest, head.Requests, head.Counted)
	if e != nil {
		sess.Close(e)
		AnswerError(w, http.StatusBadRequest, e)
		return nil
	}
	if refusal != sendRun {
		// Not a CLOSE: the session is fine. The client takes the answer for
		// a broken connection, rebinds, and sends again from BOUND's count.
		why := "the session has moved to a WebSocket: this /send is a late copy"
		if refusal == sendGap {
			why = fmt.Sprintf("this /send follows request %d but the gateway has received %d: an earlier /send has not arrived",
				head.Requests, sess.Requests())
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, why, http.StatusConflict)
		return nil
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sendFrameRoom is the most a SEND frame takes, beside the frames a /send
// carries (which max_frame bounds, as a WebSocket message).
const sendFrameRoom = 64

// firstFrame decodes unit's first frame into f and returns the frames
// after it.
func firstFrame(unit []byte, f *Frame) (rest []byte, err error) {
	frame, rest, err := nextFrame(unit)
	if err == nil {
		err = Decode(frame, f)
	}
	return rest, err
}

// readSendHead reads the length prefix and the first frame of a /send
// body (of at most limit bytes), and returns them as a unit of that one
// frame. A SEND frame is at most sendFrameRoom bytes: a first frame that
// claims more is not one, and is not read.
func readSendHead(body io.Reader, limit int) ([]byte, error) {
	head := make([]byte, 0, sendFrameRoom+8)
	// The prefix's bytes up to its last (high bit clear), read one at a
	// time so that nothing past the frame is read; the codec decodes it.
	for len(head) == 0 || head[len(head)-1] >= 0x80 {
		if len(head) == 8 {
			return nil, ErrMalformed // longer than a uvarint may be
		}
		var b [1]byte
		if _, err := io.ReadFull(body, b[:]); err != nil {
			return nil, headError(err, limit)
		}
		head = append(head, b[0])
	}
	r := reader{b: head}
	n := r.uvarint()
	if r.err != nil || n == 0 || n > sendFrameRoom {
		return nil, fmt.Errorf("%w: a first frame of %d bytes", ErrMalformed, n)
	}
	head = head[:len(head)+int(n)]
	if _, err := io.ReadFull(body, head[len(head)-int(n):]); err != nil {
		return nil, headError(err, limit)
	}
	return head, nil
}

// unread answers a /send whose body is left unread by closing its
// connection afterwards (HTTP/1): net/http would otherwise read the rest
// of the body (through Caddy's idle-timeout reader) before it sends the
// answer, and a client that announced a large body and sends it slowly
// would wait for its answer, and hold the connection, that long.
func unread(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
}

// headError is the error of a /send whose SEND frame did not arrive whole.
func headError(err error, limit int) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrMalformed
	}
	return bodyError(err, limit, sendBodyTimeout, session.CodeBadRequest)
}

// sendRefused counts and logs (at most once per 10 s) a /send for a session
// this gateway does not hold: after a restart a client sends one, but a
// stream of them means a load balancer sends a session's requests to
// instances that do not hold it. One for a session that ended here lately
// (on its way as the session ended) is no such sign.
func (s *Server) sendRefused(r *http.Request, e *session.Error) {
	s.Manager.Metrics().SendsRefused.WithLabelValues(strconv.Itoa(int(e.Code))).Inc()
	if e.Code != session.CodeSessionUnknown || session.SessionEnded(e) {
		return
	}
	if skipped, ok := s.unknownSends.Allow(); ok {
		s.Log.Warn("/send for a session this gateway does not hold; if there are many, is the load balancer sticky?",
			zap.String("remote", r.RemoteAddr), zap.Int("not_logged_before", skipped))
	}
}
