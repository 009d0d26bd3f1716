package transport

import (
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// Server serves the gateway's protocol over its transports for one
// session.Manager.
type Server struct {
	Manager *session.Manager
	Log     *zap.Logger
	// CheckOrigin accepts or refuses a browser's Origin; requests without
	// an Origin header are not from browsers and are not passed to it.
	CheckOrigin func(r *http.Request) bool
	// Authenticate decides a session's OPEN (the authenticate hook) and
	// returns who the user is; nil lets everyone in, with no user. It
	// calls settled once the hook is done with the request, which may be
	// after it returns (a hook that outlived its timeout): until then the
	// open keeps its place under the session limits. sessionID is the id
	// the session will have if it opens.
	Authenticate func(r *http.Request, user string, password []byte, sessionID string, settled func()) (OpenResult, *session.Error)
	// Origin snapshots the web request for the policy, at open and at
	// every rebind; nil keeps nothing.
	Origin func(r *http.Request) (origin any, clientIP string)
	// ResponseLimit is the longest a response to r may take, if the HTTP
	// server sets one (Caddy's `timeouts { write }`, a ceiling no handler
	// can raise); nil or 0: none. Long polls answer and streams end (the
	// client renews them at once) well before it, instead of being cut.
	ResponseLimit func(r *http.Request) time.Duration

	// sockWriteTimeout bounds one write to a client socket; zero is
	// writeTimeout. Tests shorten it, as a link of a few KB/s does 30 s.
	sockWriteTimeout time.Duration

	once     sync.Once
	upgrader websocket.Upgrader
	// bound and wsDelay are every WebSocket connection's, here rather
	// than in each connection (idle sessions hold them by the thousand).
	bound   writeBound
	wsDelay prometheus.Observer
	stops   serverStops
	// unknownSends limits the log of /send requests for sessions this
	// gateway does not hold.
	unknownSends session.LogLimiter
}

// Timeouts of the transport layer.
const (
	handshakeTimeout = 10 * time.Second // first frame after the upgrade
	writeTimeout     = 30 * time.Second // one write to a client socket
	deadGrace        = 5 * time.Second  // added to 2 × heartbeat before a silent peer is dead
	batchFrames      = 256              // frames taken from the outbox per write
)

// deadAfter is how long a peer may be silent before its connection counts
// as dead, the same for both sides (PROTOCOL.md, Heartbeats).
func deadAfter(heartbeat time.Duration) time.Duration { return 2*heartbeat + deadGrace }

func (s *Server) writeTimeout() time.Duration {
	if s.sockWriteTimeout > 0 {
		return s.sockWriteTimeout
	}
	return writeTimeout
}

// maxFrame is the largest frame or transport unit accepted from a client:
// the largest payload plus room for the topic and properties.
func (s *Server) maxFrame() int {
	return min(s.Manager.Config().MaxMessageSize+128<<10, MaxFrame)
}

// MaxFirstUnit bounds the unit that starts a connection, one OPEN or BIND:
// it comes before any authentication, so anyone can send it, and a user
// name, password (a token) and options are far smaller.
const MaxFirstUnit = 64 << 10

func (s *Server) maxFirstUnit() int { return min(MaxFirstUnit, s.maxFrame()) }

func (s *Server) init() {
	s.once.Do(func() {
		s.upgrader = websocket.Upgrader{
			ReadBufferSize:  512, // clients send little; idle sessions hold this
			WriteBufferSize: 4096,
			WriteBufferPool: &sync.Pool{},
			Subprotocols:    []string{Subprotocol},
			CheckOrigin: func(r *http.Request) bool {
				return r.Header.Get("Origin") == "" || s.CheckOrigin == nil || s.CheckOrigin(r)
			},
			Error: func(w http.ResponseWriter, r *http.Request, status int, reason error) {
				http.Error(w, reason.Error(), status)
			},
		}
		if s.Log == nil {
			s.Log = zap.NewNop()
		}
		s.bound = s.writeBound()
		s.wsDelay = s.Manager.Metrics().DeliveryDelay.WithLabelValues("websocket")
	})
}

// IsWebSocket reports whether r asks for a WebSocket upgrade.
func IsWebSocket(r *http.Request) bool { return websocket.IsWebSocketUpgrade(r) }

// ServeWebSocket upgrades r and runs the connection until it ends.
func (s *Server) ServeWebSocket(w http.ResponseWriter, r *http.Request) error {
	s.init()
	if !slices.Contains(websocket.Subprotocols(r), Subprotocol) {
		http.Error(w, "unsupported protocol version: offer subprotocol "+Subprotocol, http.StatusBadRequest)
		return nil
	}
	c := &wsConn{srv: s, remote: r.RemoteAddr, req: r, maxFrame: s.maxFrame()}
	c.conn.timeout = s.writeTimeout()
	ws, err := s.upgrader.Upgrade(&sharingHijacker{ResponseWriter: hijacker(w), conn: &c.conn}, r, nil)
	if err != nil {
		return nil // the upgrader has answered
	}
	c.ws = ws
	ws.SetPingHandler(c.onPing)
	// The handshake runs here, where the request's context (which the
	// authenticate hook uses) is alive. The connection then lives on a
	// goroutine of its own and the handler returns: a long-lived session
	// does not keep net/http's and Caddy's per-request state, nor the deep
	// stack of the middleware chain.
	if err := c.handshake(); err != nil {
		c.srv.Log.Debug("websocket handshake failed", zap.String("remote", c.remote), zap.Error(err))
		ws.Close()
		return nil
	}
	c.req = nil
	go c.run()
	return nil
}

// wsConn is one WebSocket connection: the reader runs on a goroutine of
// its own, the writer on the writer pool or a goroutine of its own, only
// while there is something to write.
type wsConn struct {
	// What a delivery's write reads and writes, first and together: with
	// thousands of connections each write finds its connection out of the
	// CPU's cache, and every cache line it touches costs a miss.
	mu            sync.Mutex
	ready         bool // handshake done: the writer may run
	writing       bool // a writer goroutine is running
	again         bool // woken while writing: look again before exiting
	stopped       bool // the connection is over
	pingDue       bool
	pongDue       bool
	closeCode     session.Code // set by Close: the writer ends the connection
	sess          *session.Session
	lastWriteNano atomic.Int64
	bytesOut      prometheus.Counter
	conn          sharedConn // the socket under ws, which the writer writes to
	// Owned by the writer, which borrows its buffers (poolWorker) only
	// while it writes: a connection keeps none.
	rest  []byte // the part of a message a pooled write could not write
	ended *session.Error

	srv       *Server
	ws        *websocket.Conn
	remote    string
	req       *http.Request // the upgrade request, for hooks
	maxFrame  int
	pong      []byte // the latest WebSocket ping's data, for the pong
	beatTimer *time.Timer
	closeMsg  string
}

// Wake implements session.Transport.
func (c *wsConn) Wake() { c.startWriter() }

// Close implements session.Transport.
func (c *wsConn) Close(code session.Code, msg string) {
	c.mu.Lock()
	if c.closeCode == 0 {
		c.closeCode, c.closeMsg = code, msg
	}
	c.mu.Unlock()
	c.startWriter()
}

// replaced reports whether the session moved to a newer connection.
func (c *wsConn) replaced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode != 0
}

func (c *wsConn) heartbeat() time.Duration { return c.srv.Manager.Config().Heartbeat }

func (c *wsConn) run() {
	defer c.ws.Close()
	conns := c.srv.Manager.Metrics().Connections.WithLabelValues("websocket")
	conns.Inc()
	defer conns.Dec()
	c.bytesOut = c.srv.Manager.Metrics().BytesOut.WithLabelValues("websocket")
	c.lastWriteNano.Store(time.Now().UnixNano())
	c.mu.Lock()
	c.ready = true
	c.beatTimer = time.AfterFunc(c.heartbeat()/2, c.beat)
	c.mu.Unlock()
	c.startWriter() // what the session queued meanwhile (a replay)
	c.readLoop()
	c.mu.Lock()
	c.beatTimer.Stop()
	c.mu.Unlock()
	if c.sess.Closed() != nil && c.claimWriter() {
		// The session ended while reading (a malformed frame, the client's
		// CLOSE): its last frames and CLOSE frame must still go out.
		w := getWorker()
		for c.writePending(w) {
		}
		putWorker(w)
	}
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.sess.Detach(c)
}

// claimWriter waits for a running writer to finish and takes its role, so
// the reader can write the last frames itself. It gives up after a second.
func (c *wsConn) claimWriter() bool {
	for i := 0; i < 1000; i++ {
		c.mu.Lock()
		if c.stopped {
			c.mu.Unlock()
			return false
		}
		if !c.writing {
			c.writing = true
			c.mu.Unlock()
			return true
		}
		c.mu.Unlock()
		time.Sleep(time.Millisecond)
	}
	return false
}

// fail ends a connection that never got a session.
func (c *wsConn) fail(code session.Code, msg string) {
	c.ws.SetWriteDeadline(time.Now().Add(time.Second))
	c.ws.WriteMessage(websocket.BinaryMessage, AppendEnd(nil, code, msg))
	c.closeWith(int(code), msg)
}

// closeWith sends the WebSocket close frame, waiting at most a second.
func (c *wsConn) closeWith(code int, msg string) {
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, msg), time.Now().Add(time.Second))
}

// handshake reads OPEN or BIND and answers OPENED or BOUND. The session is
// bound to c before the answer is written, but c's writer cannot run until
// run starts it, so the answer precedes every frame the session queues.
func (c *wsConn) handshake() error {
	// One deadline for the whole handshake, reachability checks included:
	// PINGs cannot keep a connection without a session open any longer.
	c.ws.SetReadDeadline(time.Now().Add(handshakeTimeout))
	var unit []byte
	for {
		var err error
		if unit, err = c.readFirstUnit(); err != nil {
			return err
		}
		if !isLonePing(unit) {
			break
		}
		// A client checking that WebSocket carries data both ways on its
		// network, without opening a session (PROTOCOL.md, WebSocket).
		c.ws.SetWriteDeadline(time.Now().Add(c.srv.writeTimeout()))
		if err := c.ws.WriteMessage(websocket.BinaryMessage, AppendPing(nil)); err != nil {
			return err
		}
	}
	sess, first, opened, serr := c.srv.start(c.req, unit, c, "websocket", true)
	if serr != nil {
		c.fail(serr.Code, serr.Message)
		return serr
	}
	c.sess = sess
	c.ws.SetWriteDeadline(time.Now().Add(c.srv.writeTimeout()))
	if err := c.ws.WriteMessage(websocket.BinaryMessage, first); err != nil {
		if opened {
			sess.Close(session.Errorf(session.CodeSessionUnknown, "connection lost during open"))
		} else {
			sess.Detach(c) // the session waits for another rebind, as for any lost connection
		}
		return err
	}
	return nil
}

// readFirstUnit reads a message that may start the connection: binary and
// at most maxFirstUnit bytes, or the connection fails with a CLOSE frame.
func (c *wsConn) readFirstUnit() ([]byte, error) {
	typ, r, err := c.ws.NextReader()
	if err != nil {
		return nil, err
	}
	limit := c.srv.maxFirstUnit()
	unit, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, err
	}
	if len(unit) > limit {
		e := session.Errorf(session.CodeFrameTooLarge, "the first message (OPEN or BIND) exceeds %d bytes", limit)
		c.fail(e.Code, e.Message)
		return nil, e
	}
	if typ != websocket.BinaryMessage {
		e := session.Errorf(session.CodeMalformed, "text messages are not part of the protocol")
		c.fail(e.Code, e.Message)
		return nil, e
	}
	return unit, nil
}

// isLonePing reports whether a unit is one PING frame and nothing else.
func isLonePing(unit []byte) bool {
	return len(unit) == 2 && unit[0] == 1 && unit[1] == TypePing
}

// readUnit reads one WebSocket message, or the first max_frame + 1 bytes
// of a longer one, which ends the session with a CLOSE frame 4002. (With
// gorilla's read limit, gorilla would answer a close frame 1009 first,
// and the client would take its session for merely disconnected.)
func (c *wsConn) readUnit() (int, []byte, error) {
	typ, r, err := c.ws.NextReader()
	if err != nil {
		return 0, nil, err
	}
	unit, err := io.ReadAll(io.LimitReader(r, int64(c.maxFrame)+1))
	return typ, unit, err
}

func (c *wsConn) readLoop() {
	dead := deadAfter(c.heartbeat())
	for {
		c.ws.SetReadDeadline(time.Now().Add(dead))
		typ, unit, err := c.readUnit()
		if err != nil {
			return
		}
		if len(unit) > c.maxFrame {
			c.sess.Close(session.Errorf(session.CodeFrameTooLarge, "message exceeds max_frame (%d bytes)", c.maxFrame))
			return
		}
		if typ != websocket.BinaryMessage {
			c.sess.Close(session.Errorf(session.CodeMalformed, "text messages are not part of the protocol"))
			return
		}
		if e := dispatchUnit(c.sess, unit, c.replaced); e != nil {
			c.sess.Close(e)
			return
		}
	}
}

// The writer runs only while there is something to write: Wake starts it
// when it is not running, and it exits once the outbox is empty. An idle
// connection costs its reader goroutine and a heartbeat timer, nothing
// more. The writer runs on the writer pool with writes that never block,
// and moves to a goroutine of its own only when the socket is full or the
// connection must close. Writes through crypto/tls block, so a TLS
// connection's pooled writes are small ones the socket has room for
// (tlsroom_linux.go); larger ones, and every write where the kernel cannot
// say, have a goroutine of their own.

// pooledRounds is how many times a pool worker fills and writes for one
// connection before putting it at the back of the queue, so one busy
// connection does not hold a worker from the others.
const pooledRounds = 4

// startWriter is Wake's other half: it starts the writer, or tells the
// running one to look again.
func (c *wsConn) startWriter() {
	c.mu.Lock()
	if !c.ready || c.stopped {
		c.mu.Unlock()
		return
	}
	if c.writing {
		c.again = true
		c.mu.Unlock()
		return
	}
	c.writing = true
	c.mu.Unlock()
	if c.conn.pooled() {
		pool.submit(c)
	} else {
		go c.flush()
	}
}

// flushPooled is the writer on a pool worker: it writes what the socket
// takes without waiting, and hands anything else (a full socket, a pong,
// the end of the connection) to flush on a goroutine.
func (c *wsConn) flushPooled(w *poolWorker) {
	for round := 0; ; round++ {
		c.mu.Lock()
		switch {
		case c.stopped:
			c.writing = false
			c.mu.Unlock()
			return
		case c.closeCode != 0 || c.pongDue:
			c.mu.Unlock()
			go c.flush()
			return
		case round == pooledRounds:
			c.mu.Unlock()
			pool.submit(c)
			return
		}
		c.again = false
		ping := c.pingDue
		c.pingDue = false
		c.mu.Unlock()
		buf, events, ended, more := fill(w.frameBuf(), c.srv.bound, c.sess, c, w.events, c.srv.wsDelay)
		if ping && len(buf) == wsHeaderRoom && time.Since(c.lastWrite()) >= c.heartbeat()/2 {
			buf = AppendPing(buf) // the heartbeat, when nothing else went out
		}
		w.events, w.buf = events, buf[:0]
		if ended != nil { // buf ends with the CLOSE frame
			c.rest, c.ended = wsMessage(buf), ended
			w.buf = nil // now c.rest's
			go c.flush()
			return
		}
		if len(buf) > wsHeaderRoom {
			msg := wsMessage(buf)
			now := time.Now()
			n, err := c.conn.tryWrite(msg, now)
			if err != nil {
				c.ws.Close() // unblocks the reader
				c.writerDone()
				return
			}
			c.wrote(n, now)
			if n < len(msg) {
				c.rest = msg[n:]
				w.buf = nil // now c.rest's
				go c.flush()
				return
			}
		}
		w.trim()
		if !more && c.idle() {
			return
		}
	}
}

// flush is the writer on a goroutine of its own: it writes until nothing is
// left, blocking as long as the write deadline allows, then exits.
func (c *wsConn) flush() {
	if c.rest != nil {
		// The rest of a message a pooled write began goes first: nothing
		// else may be written on the socket before it.
		rest := c.rest
		c.rest = nil
		if !c.write(rest) {
			c.writerDone()
			return
		}
	}
	w := getWorker()
	defer putWorker(w)
	for {
		c.mu.Lock()
		c.again = false
		code, msg, stopped := c.closeCode, c.closeMsg, c.stopped
		c.mu.Unlock()
		if stopped {
			c.writerDone()
			return
		}
		if code != 0 { // the session moved to another connection
			c.closeWith(int(code), msg)
			c.ws.Close()
			c.writerDone()
			return
		}
		if !c.writePending(w) {
			c.writerDone()
			return
		}
		if c.idle() {
			return
		}
	}
}

// idle ends the writer's turn unless it was woken while writing; then it
// reports false and the writer looks again.
func (c *wsConn) idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.again {
		return false
	}
	c.writing = false
	return true
}

// lookAgain has the writer look again before it ends its turn: a write
// left frames for the next.
func (c *wsConn) lookAgain() {
	c.mu.Lock()
	c.again = true
	c.mu.Unlock()
}

// writerDone marks the writer stopped for good.
func (c *wsConn) writerDone() {
	c.mu.Lock()
	c.writing = false
	c.stopped = true
	c.mu.Unlock()
}

// writePending writes what the session has (or what a pooled writer left
// when the session ended), and a PING when the heartbeat is due. It reports
// false when the connection is finished.
func (c *wsConn) writePending(w *poolWorker) bool {
	ended := c.ended
	if ended == nil {
		// What is pending goes out in one WebSocket message, up to the
		// write bound: under load, many frames per syscall.
		var buf []byte
		var more bool
		buf, w.events, ended, more = fill(w.frameBuf(), c.srv.bound, c.sess, c, w.events, c.srv.wsDelay)
		w.buf = buf[:0]
		if len(buf) > wsHeaderRoom && !c.write(wsMessage(buf)) {
			return false
		}
		w.trim()
		if more {
			c.lookAgain()
		}
	}
	if ended != nil { // the CLOSE frame is written; the WebSocket close follows
		wsCode := int(ended.Code)
		if ended.Code == session.CodeOK {
			wsCode = websocket.CloseNormalClosure
		}
		c.closeWith(wsCode, ended.Message)
		c.ws.Close()
		return false
	}
	c.mu.Lock()
	ping, pongDue, pong := c.pingDue, c.pongDue, c.pong
	c.pingDue, c.pongDue = false, false
	c.mu.Unlock()
	if pongDue && !c.write(wsPong(pong)) {
		return false
	}
	if ping && time.Since(c.lastWrite()) >= c.heartbeat()/2 {
		return c.write(wsMessage(AppendPing(w.frameBuf())))
	}
	return true
}

// write writes a whole WebSocket message, blocking up to the deadline.
func (c *wsConn) write(msg []byte) bool {
	now := time.Now()
	if err := c.conn.writeAll(msg, now); err != nil {
		c.ws.Close() // unblocks the reader
		return false
	}
	c.wrote(len(msg), now)
	return true
}

func (c *wsConn) wrote(n int, now time.Time) {
	if n > 0 {
		c.bytesOut.Add(float64(n))
		c.lastWriteNano.Store(now.UnixNano())
	}
}

func (c *wsConn) lastWrite() time.Time { return time.Unix(0, c.lastWriteNano.Load()) }

// onPing answers a WebSocket ping (the protocol has its own PING frames,
// but clients and proxies may send WebSocket ones) from the writer:
// gorilla's own handler would write from the reader, waiting behind a
// message in progress with a deadline already running. Only the latest
// ping is answered, as RFC 6455 allows.
func (c *wsConn) onPing(data string) error {
	c.mu.Lock()
	c.pong, c.pongDue = []byte(data), true
	c.mu.Unlock()
	c.startWriter()
	return nil
}

// beat runs every half heartbeat on a timer: a connection that has sent
// nothing for a heartbeat gets a PING, from the writer.
func (c *wsConn) beat() {
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return
	}
	if time.Since(c.lastWrite()) >= c.heartbeat() {
		c.pingDue = true
	}
	due := c.pingDue
	c.beatTimer.Reset(c.heartbeat() / 2)
	c.mu.Unlock()
	if due {
		c.startWriter()
	}
}

// hijacker finds the writer that can hijack the connection under Caddy's
// wrappers (which expose it through Unwrap, as http.ResponseController
// expects, while gorilla/websocket asserts http.Hijacker directly).
func hijacker(w http.ResponseWriter) http.ResponseWriter {
	for {
		if _, ok := w.(http.Hijacker); ok {
			return w
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		w = u.Unwrap()
	}
}
