package transport

import (
	"errors"
	"net/http"
	"slices"
	"sync"
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
	// returns who the user is; nil lets everyone in, with no user.
	Authenticate func(r *http.Request, user string, password []byte) (OpenResult, *session.Error)
	// Origin snapshots the web request for the policy, at open and at
	// every rebind; nil keeps nothing.
	Origin func(r *http.Request) (origin any, clientIP string)

	once     sync.Once
	upgrader websocket.Upgrader
}

// Timeouts of the transport layer.
const (
	handshakeTimeout = 10 * time.Second // first frame after the upgrade
	writeTimeout     = 30 * time.Second // one write to a client socket
	deadGrace        = 5 * time.Second  // added to 2 × heartbeat before a silent peer is dead
	batchFrames      = 256              // frames taken from the outbox per write
)

// maxFrame is the largest frame or transport unit accepted from a client:
// the largest payload plus room for the topic and properties.
func (s *Server) maxFrame() int {
	return min(s.Manager.Config().MaxMessageSize+128<<10, MaxFrame)
}

func (s *Server) init() {
	s.once.Do(func() {
		s.upgrader = websocket.Upgrader{
			ReadBufferSize:  1024,
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
	ws, err := s.upgrader.Upgrade(hijacker(w), r, nil)
	if err != nil {
		return nil // the upgrader has answered
	}
	c := &wsConn{srv: s, ws: ws, remote: r.RemoteAddr, req: r, wake: make(chan struct{}, 1), stop: make(chan struct{}),
		maxFrame: s.maxFrame()}
	c.run()
	return nil
}

// wsConn is one WebSocket connection: the reader runs on the HTTP
// handler's goroutine, the writer on its own.
type wsConn struct {
	srv      *Server
	ws       *websocket.Conn
	remote   string
	req      *http.Request // the upgrade request, for hooks
	sess     *session.Session
	maxFrame int
	bytesOut prometheus.Counter

	wake chan struct{}
	stop chan struct{} // closed when the reader is done

	mu        sync.Mutex
	closeCode session.Code // set by Close: the writer ends the connection
	closeMsg  string
}

// Wake implements session.Transport.
func (c *wsConn) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Close implements session.Transport.
func (c *wsConn) Close(code session.Code, msg string) {
	c.mu.Lock()
	if c.closeCode == 0 {
		c.closeCode, c.closeMsg = code, msg
	}
	c.mu.Unlock()
	c.Wake()
}

func (c *wsConn) heartbeat() time.Duration { return c.srv.Manager.Config().Heartbeat }

func (c *wsConn) run() {
	defer c.ws.Close()
	c.ws.SetReadLimit(int64(c.maxFrame))
	if err := c.handshake(); err != nil {
		c.srv.Log.Debug("websocket handshake failed", zap.String("remote", c.remote), zap.Error(err))
		return
	}
	conns := c.srv.Manager.Metrics().Connections.WithLabelValues("websocket")
	conns.Inc()
	defer conns.Dec()
	c.bytesOut = c.srv.Manager.Metrics().BytesOut.WithLabelValues("websocket")
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.writeLoop()
	}()
	c.readLoop()
	close(c.stop)
	c.sess.Detach(c)
	<-done
}

// fail ends a connection that never got a session.
func (c *wsConn) fail(code session.Code, msg string) {
	c.ws.SetWriteDeadline(time.Now().Add(time.Second))
	c.ws.WriteMessage(websocket.BinaryMessage, AppendEnd(nil, code, msg))
	c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(int(code), msg), time.Now().Add(time.Second))
}

// handshake reads OPEN or BIND and answers OPENED or BOUND.
func (c *wsConn) handshake() error {
	c.ws.SetReadDeadline(time.Now().Add(handshakeTimeout))
	_, unit, err := c.ws.ReadMessage()
	if err != nil {
		return err
	}
	var f Frame
	first := true
	err = SplitUnit(unit, func(b []byte) error {
		if !first {
			return errors.New("frames after OPEN or BIND before the answer")
		}
		first = false
		return Decode(b, &f)
	})
	if err != nil {
		c.fail(session.CodeMalformed, err.Error())
		return err
	}
	mgr := c.srv.Manager
	switch f.Type {
	case TypeOpen:
		if f.Version != Version {
			c.fail(session.CodeUnsupportedVersion, "this gateway speaks protocol version 1")
			return errors.New("unsupported version")
		}
		sess, serr := c.srv.open(c.req, &f, "websocket")
		if serr != nil {
			c.fail(serr.Code, serr.Message)
			return serr
		}
		cfg := mgr.Config()
		id, secret := sess.ID(), sess.Secret()
		opened := AppendOpened(nil, id, secret, uint64(cfg.Heartbeat/time.Millisecond),
			uint64(cfg.SessionTimeout/time.Millisecond), uint64(c.maxFrame), nil)
		c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := c.ws.WriteMessage(websocket.BinaryMessage, opened); err != nil {
			sess.Close(session.Errorf(session.CodeSessionUnknown, "connection lost during open"))
			return err
		}
		c.sess = sess
		applyOpenOptions(sess, f.Options)
		sess.Attach(c, false, 0)
	case TypeBind:
		sess, serr := mgr.Lookup(f.Session, f.Secret)
		if serr == nil {
			serr = sess.Attach(c, true, f.Received)
		}
		recovered(mgr, serr)
		if serr != nil {
			c.fail(serr.Code, serr.Message)
			return serr
		}
		c.srv.refreshOrigin(sess, c.req)
		c.sess = sess
		// BOUND must precede the replayed frames; the writer starts only
		// after the handshake, so the order holds.
		c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := c.ws.WriteMessage(websocket.BinaryMessage, AppendBound(nil, f.Received+1, sess.Requests())); err != nil {
			return err
		}
	default:
		c.fail(session.CodeBadRequest, "the first frame must be OPEN or BIND")
		return errors.New("first frame not OPEN or BIND")
	}
	return nil
}

func (c *wsConn) readLoop() {
	dead := 2*c.heartbeat() + deadGrace
	var f Frame
	for {
		c.ws.SetReadDeadline(time.Now().Add(dead))
		typ, unit, err := c.ws.ReadMessage()
		if err != nil {
			if errors.Is(err, websocket.ErrReadLimit) {
				c.sess.Close(session.Errorf(session.CodeFrameTooLarge, "frame exceeds %d bytes", c.maxFrame))
			}
			return
		}
		if typ != websocket.BinaryMessage {
			c.sess.Close(session.Errorf(session.CodeMalformed, "text messages are not part of the protocol"))
			return
		}
		err = SplitUnit(unit, func(b []byte) error {
			if err := Decode(b, &f); err != nil {
				return err
			}
			return dispatch(c.sess, &f)
		})
		if err != nil {
			c.sess.Close(session.Errorf(session.CodeMalformed, "%v", err))
			return
		}
	}
}

func (c *wsConn) writeLoop() {
	hb := c.heartbeat()
	ticker := time.NewTicker(hb / 2)
	defer ticker.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	events := make([]session.Event, 0, batchFrames)
	var buf []byte
	lastWrite := time.Now()
	write := func(b []byte) bool {
		c.ws.SetWriteDeadline(time.Now().Add(writeTimeout))
		if err := c.ws.WriteMessage(websocket.BinaryMessage, b); err != nil {
			c.ws.Close() // unblocks the reader
			return false
		}
		c.bytesOut.Add(float64(len(b)))
		lastWrite = time.Now()
		return true
	}
	for {
		select {
		case <-c.wake:
		case <-ticker.C:
		case <-retry.C:
		case <-c.stop:
			return
		}
		for {
			c.mu.Lock()
			code, msg := c.closeCode, c.closeMsg
			c.mu.Unlock()
			if code != 0 {
				c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(int(code), msg), time.Now().Add(time.Second))
				c.ws.Close()
				return
			}
			var ended *session.Error
			var wait time.Duration
			events, wait, ended = c.sess.Take(events[:0], batchFrames)
			if wait > 0 {
				retry.Reset(wait) // the bandwidth budget holds frames back
			}
			if len(events) == 0 && ended != nil {
				wsCode := int(ended.Code)
				if ended.Code == session.CodeOK {
					wsCode = websocket.CloseNormalClosure
				}
				write(AppendEnd(buf[:0], ended.Code, ended.Message))
				c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(wsCode, ended.Message), time.Now().Add(time.Second))
				c.ws.Close()
				return
			}
			if len(events) == 0 {
				break
			}
			// Everything pending goes out in one WebSocket message: under
			// load, many frames per syscall.
			buf = buf[:0]
			for i := range events {
				buf = AppendEvent(buf, &events[i])
			}
			clear(events) // drop message references
			if !write(buf) {
				return
			}
			if cap(buf) > 1<<20 {
				buf = nil // do not pin a large buffer on an idle connection
			}
		}
		if time.Since(lastWrite) >= hb {
			if !write(AppendPing(buf[:0])) {
				return
			}
		}
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
