package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/zap"
)

// connect starts a connection manager for the hub's current broker.
func (h *Hub) connect() error {
	h.mu.RLock()
	br, o := h.br(), h.opts
	h.mu.RUnlock()
	server := br.serverURL()
	if server == nil {
		return fmt.Errorf("embedded broker %q is not listening yet", br.cfg.Name)
	}
	keepAlive := o.keepAlive
	if keepAlive == 0 {
		keepAlive = uint16(time.Duration(br.cfg.KeepAlive) / time.Second)
	}
	sess := newResendingSession()
	will := encodeWillProperties(o.willProps)
	cfg := autopaho.ClientConfig{
		ServerUrls: []*url.URL{server},
		AttemptConnection: func(ctx context.Context, c autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			// The TLS files as last loaded: a reload that renewed them
			// (renewLogin) left this connection manager running.
			conn, err := dialBroker(ctx, u, h.br().cfg.tlsConfig, c.ConnectTimeout)
			if err != nil {
				return nil, err
			}
			var v311 *mqtt311
			if br.cfg.speaks311() {
				v311 = &mqtt311{shared: !h.dedicated}
			}
			return newBrokerConn(conn, sess.unsent, will, v311), nil
		},
		TlsCfg:                        br.cfg.tlsConfig,
		KeepAlive:                     keepAlive,
		ConnectTimeout:                time.Duration(br.cfg.ConnectTimeout),
		ReconnectBackoff:              reconnectBackoff,
		CleanStartOnInitialConnection: o.cleanStart || !h.dedicated,
		SessionExpiryInterval:         o.sessionExpiry,
		ConnectUsername:               o.username,
		ConnectPassword:               o.password,
		WillMessage:                   o.will,
		WillProperties:                o.willProps,
		OnConnectionUp:                h.onUp,
		OnConnectionDown:              h.onDown,
		OnConnectError:                h.onConnectError,
		DisconnectPacketBuilder: func() *paho.Disconnect {
			d := &paho.Disconnect{ReasonCode: 0}
			if h.fireWill.Load() {
				d.ReasonCode = 0x04 // disconnect with will message
			}
			if !h.dedicated {
				// The shared connection's broker session bridges cuts
				// (sharedSessionExpiry); one the gateway closes is over, and
				// must not keep its subscriptions and queue messages for a
				// minute.
				var none uint32
				d.Properties = &paho.DisconnectProperties{SessionExpiryInterval: &none}
			}
			return d
		},
		ClientConfig: paho.ClientConfig{
			ClientID:                   o.clientID,
			Session:                    sess,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){h.onPublish},
			EnableManualAcknowledgment: h.dedicated,
		},
	}
	build := withProblemInfo
	if h.dedicated && br.embedded == nil {
		build = withReceiveMaximum
	}
	cfg.ConnectPacketBuilder = func(c *paho.Connect, u *url.URL) (*paho.Connect, error) {
		if o.configured {
			// The login as last configured: a reload that renewed the
			// password (renewLogin) left this connection manager running.
			h.br().cfg.loginInto(c)
		}
		return build(c, u)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		cancel(nil)
		return err
	}
	h.mu.Lock()
	h.cmCancel, h.cmCtx, h.sess = cancel, ctx, sess
	h.cm.Store(cm)
	h.mu.Unlock()
	return nil
}

// DedicatedReceiveMaximum is the Receive Maximum of dedicated connections
// to external brokers: how many QoS 1/2 messages the broker may send before
// the web client has acknowledged the first. The gateway keeps each one,
// payload and all, until then (pendingAcks); paho's default of 65,535 let a
// client that never acknowledged have the gateway hold all a broker would
// send (Mosquitto allows 20 in flight by default, others far more). Not
// for the embedded broker: mochi-mqtt v2.7.9, past a client's Receive
// Maximum, sends a held message only when a packet arrives and loses count,
// and the stream stalls; it holds at most 8,192 in flight itself.
const DedicatedReceiveMaximum = 64

func withReceiveMaximum(c *paho.Connect, u *url.URL) (*paho.Connect, error) {
	c, _ = withProblemInfo(c, u)
	rm := uint16(DedicatedReceiveMaximum)
	c.Properties.ReceiveMaximum = &rm
	return c, nil
}

// withProblemInfo asks the broker for its Reason Strings. autopaho gives
// the CONNECT properties for the session expiry, and paho encodes the
// Request Problem Information they leave false as 0 (MQTT 5, 3.1.2.11.7):
// a broker then leaves its reasons out of every PUBACK, SUBACK and
// DISCONNECT ("0x89 server busy", not why), and clients heard none.
func withProblemInfo(c *paho.Connect, _ *url.URL) (*paho.Connect, error) {
	if c.Properties == nil {
		c.Properties = &paho.ConnectProperties{}
	}
	c.Properties.RequestProblemInfo = true
	return c, nil
}

// brokerCall is one request to the broker on the current connection
// manager: its context ends with the caller's, after the timeout, or when
// that manager is replaced or stopped, since its broker session goes with
// it and nothing would ever answer.
type brokerCall struct {
	cm    *autopaho.ConnectionManager
	sess  *resendingSession
	ctx   context.Context
	cmCtx context.Context
	stop  func()
}

func (h *Hub) call(parent context.Context, timeout time.Duration) brokerCall {
	h.mu.RLock()
	cm, sess, cmCtx := h.conn(), h.sess, h.cmCtx
	h.mu.RUnlock()
	ctx, cancel := context.WithTimeout(parent, timeout)
	stopAfter := context.AfterFunc(cmCtx, cancel)
	return brokerCall{cm, sess, ctx, cmCtx, func() { stopAfter(); cancel() }}
}

// abandoned is why the call's connection manager went away, if it did.
func (c brokerCall) abandoned() *Error {
	e, _ := context.Cause(c.cmCtx).(*Error)
	return e
}

// restart moves a shared hub to a changed broker configuration (a reload):
// its sessions and subscriptions stay, its clients see the broker go and
// come back, as in an outage, and everything is subscribed again.
//
// A shared connection that logs in with the broker's configured
// credentials logs in with the new ones: a rotated password must reach
// the clients connected before the reload too, not only those after.
func (h *Hub) restart(br *brokerRuntime) error {
	h.mu.Lock()
	if h.opts.configured {
		h.opts.username, h.opts.password = br.cfg.credentials()
	}
	h.mu.Unlock()
	return h.replaceConnection(br, Errorf(CodeBrokerUnavailable, "broker %q reconfigured; subscriptions come back when it is connected", br.cfg.Name))
}

// warnLimited logs a warning about the hub's broker. The dedicated
// connections of a broker share lim, the broker's for that line, and one
// of theirs is a warning every 10 s, with how many were left out since;
// the others are debug lines. When a broker went down, each of its
// hundreds of dedicated clients lost its connection and failed to connect
// again at each retry, and their warnings buried the shared connection's,
// which operators need: one a cut, one an outage.
func (h *Hub) warnLimited(lim *LogLimiter, msg string, fields ...zap.Field) {
	if h.dedicated {
		skipped, ok := lim.Allow()
		if !ok {
			h.log.Debug(msg, fields...)
			return
		}
		if skipped > 0 {
			fields = append(fields, zap.Int("dedicated_left_out", skipped))
		}
	}
	h.log.Warn(msg, fields...)
}

// renewLogin moves a hub that is up to br, whose configuration differs
// from its broker's in the login alone (loginRenewed): the connection
// stays, and its next login (a reconnect) is br's. It reports whether
// the hub logs in with the broker's configured credentials, which the
// reload may have changed, and whether it was up; one that is not is left
// for a reconnect at once.
func (h *Hub) renewLogin(br *brokerRuntime) (configured, up bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.up {
		return h.opts.configured, false
	}
	h.broker.Store(br)
	if h.opts.configured {
		h.opts.username, h.opts.password = br.cfg.credentials()
	}
	return h.opts.configured, true
}

// replaceConnection gives a shared hub a new connection manager, to br,
// with a broker session of its own: the old one's unacknowledged publishes
// are not sent again. Clients get notice as in an outage.
func (h *Hub) replaceConnection(br *brokerRuntime, notice *Error) error {
	h.forgetRefusal() // the old settings' (a reload rotating the password)
	old := h.conn()
	h.mu.Lock()
	oldCancel := h.cmCancel
	if h.up {
		h.metrics.BrokerUp.WithLabelValues(h.br().cfg.Name).Dec()
	}
	h.broker.Store(br)
	h.up, h.since = false, time.Now()
	h.unreadyLocked()
	for _, fs := range h.filters {
		fs.asked = -1
	}
	h.noticeClients(notice)
	h.mu.Unlock()
	h.disconnect(old)
	oldCancel(notice)
	return h.connect()
}

// sharedSessionExpiry is how long the broker keeps a shared connection's
// session after the connection drops, in seconds.
const sharedSessionExpiry = 60

// exponential is the reconnect schedule: quick first retries so a broker
// restart is bridged fast, then one try every 5 s at most, which costs a
// broker nothing (one connection per gateway and broker) and keeps a
// broker back from a long outage waiting for the gateway no more than 5 s.
var exponential = autopaho.NewExponentialBackoff(250*time.Millisecond, 5*time.Second, time.Second, 2)

func reconnectBackoff(attempt int) time.Duration {
	if attempt <= 0 {
		return 0
	}
	return exponential(attempt)
}

func (h *Hub) onUp(cm *autopaho.ConnectionManager, ca *paho.Connack) {
	h.forgetRefusal()
	h.metrics.BrokerUp.WithLabelValues(h.br().cfg.Name).Inc()
	h.noteLimits(ca)
	h.mu.Lock()
	wasDown := !h.since.IsZero()
	h.up, h.since, h.lastErr, h.present = true, time.Now(), nil, ca.SessionPresent
	h.conns++
	// The shared connection starts clean, so every filter must be
	// subscribed again; the reconciler does it in the background (this
	// callback must not block), and makes the hub ready when it is done.
	for f, fs := range h.filters {
		fs.asked = -1
		h.dirty[f] = struct{}{}
	}
	h.announce = wasDown && !h.dedicated
	if len(h.dirty) == 0 {
		h.readyLocked()
	} else {
		h.restoring = true
	}
	// Every session gets the current retained messages again, as a direct
	// client reconnecting would: they may have changed during the outage.
	// Not a client whose subscription asked for none (Retain Handling 2):
	// one such client of a filter is left out (a MESSAGE for all but one);
	// several, in a session with others that take them, get them too.
	if !h.dedicated {
		until := time.Now().Add(time.Duration(h.br().cfg.ConnectTimeout) + retainedWindow)
		for _, mb := range h.members {
			for f, n := range mb.filters {
				switch never := mb.never[f]; {
				case len(never) >= n: // none of the session's takes them
				case len(never) == 1:
					h.awaitAllBut(mb, f, until, never[0])
				default:
					h.await(mb, f, until, 0)
				}
			}
		}
	}
	h.mu.Unlock()
	h.log.Info("broker connected", zap.String("broker", h.br().cfg.Name), zap.Uint64("stream", h.stream), zap.Bool("dedicated", h.dedicated))
	h.emit("broker_up", map[string]any{"broker": h.br().cfg.Name, "mode": h.mode()})
	h.poke()
}

func (h *Hub) onDown() bool {
	h.mu.Lock()
	poisoned := h.noteShortConnection()
	if h.up { // a retired hub is out of the gauge already
		h.metrics.BrokerUp.WithLabelValues(h.br().cfg.Name).Dec()
	}
	h.up, h.since = false, time.Now()
	h.unreadyLocked()
	for _, fs := range h.filters {
		fs.asked = -1
	}
	closed := h.closed
	farewell := h.farewellLocked()
	var lost []*Client
	var abandon context.CancelCauseFunc
	if h.dedicated && h.yielding {
		h.kicked = true
	} else if h.dedicated && !closed {
		// (A hub the gateway closes, as at shutdown before its session
		// ends, says nothing: the session's end is the client's news.)
		for c := range h.clients {
			lost = append(lost, c)
		}
		abandon = h.cmCancel
	} else if !closed && !poisoned {
		// With the broker's reason, if it gave one: a broker draining for
		// maintenance says so, and the clients may say it on.
		why := ""
		if farewell != nil {
			why = " (the broker disconnected it: " + farewellReason(farewell) + ")"
		}
		h.noticeClients(Errorf(CodeBrokerUnavailable, "broker %q unavailable%s; subscriptions come back when it returns", h.br().cfg.Name, why))
	}
	h.mu.Unlock()
	if !closed {
		fields := []zap.Field{zap.String("broker", h.br().cfg.Name), zap.Uint64("stream", h.stream)}
		if farewell != nil {
			fields = append(fields, zap.String("broker_reason", farewellReason(farewell)))
		}
		h.warnLimited(&h.br().lostLines, "broker connection lost", fields...)
		h.emit("broker_down", map[string]any{"broker": h.br().cfg.Name, "mode": h.mode()})
	}
	if poisoned && !closed {
		go h.startAfresh() // a new connection manager: this one stops here
		return false
	}
	h.ackMu.Lock()
	clear(h.pendingAcks) // the broker redelivers them on the next connection
	h.ackMu.Unlock()
	// A dedicated connection belongs to one web client, which decides
	// whether to reconnect (as with a direct MQTT connection), so it is not
	// retried here. Its client's requests waiting on it (a publish for its
	// acknowledgment, or for the connection to come back) fail now rather
	// than at their timeout: LOST comes after them, and a busy client heard
	// of the loss 10 s late.
	why := lostBecause(h.br().cfg.Name, farewell)
	if abandon != nil {
		abandon(why)
	}
	h.tellLost(lost, why)
	return !h.dedicated && !closed
}

// lostBecause is what a dedicated client hears when its broker connection
// ends: 4045 when the broker said another connection took the client ID
// (another gateway instance, a device, another broker name for the same
// broker), since the client must not take it back, as it would after a
// mere outage, and the two would take it from each other for ever; else
// 4041, with the broker's reason if it gave one.
func lostBecause(broker string, farewell *packets.Disconnect) *Error {
	switch {
	case farewell == nil:
		return Errorf(CodeBrokerUnavailable, "connection to broker %q lost", broker)
	case farewell.ReasonCode == reasonSessionTakenOver:
		return Errorf(CodeClientConnected, "client id taken over by another connection to broker %q", broker)
	default:
		return Errorf(CodeBrokerUnavailable, "connection to broker %q lost: the broker disconnected it (%s)", broker, farewellReason(farewell))
	}
}

// reasonSessionTakenOver is MQTT 5's DISCONNECT reason for a connection
// whose client ID a newer connection claimed.
const reasonSessionTakenOver = 0x8E

// farewellLocked is the DISCONNECT the broker ended the hub's last
// connection with, if any. Called with h.mu held.
func (h *Hub) farewellLocked() *packets.Disconnect {
	if h.sess == nil {
		return nil
	}
	return h.sess.farewell.Load()
}

func farewellReason(d *packets.Disconnect) string {
	var text string
	if d.Properties != nil {
		text = d.Properties.ReasonString
	}
	return reason(d.ReasonCode, text)
}

// connectFailure says why a connection attempt to broker name failed, in
// words for its clients and its operators; ce is the broker's refusal, if
// its CONNACK refused, and answered whether the broker will answer the next
// attempt the same way.
func connectFailure(name string, err error) (e *Error, ce *autopaho.ConnackError, answered bool) {
	var answer *unanswered
	answered = errors.As(err, &answer) && answer.answered || lastingTLS(err)
	switch {
	case errors.As(err, &ce):
		e = Errorf(CodeBrokerRefused, "broker %q refused the connection: %s", name, reason(ce.ReasonCode, ce.Reason))
	case errors.Is(err, errMQTT311):
		e = Errorf(CodeBrokerRefused, "broker %q refused the connection: %s", name, answer.says)
	default:
		e = Errorf(CodeBrokerUnavailable, "broker %q unavailable: %s", name, dialCause(err))
	}
	return e, ce, answered
}

func (h *Hub) onConnectError(err error) {
	e, ce, answered := connectFailure(h.br().cfg.Name, err)
	h.mu.Lock()
	repeated := h.lastErr != nil && h.lastErr.Message == e.Message
	h.lastErr = e
	user, configured := h.opts.username, h.opts.configured
	h.mu.Unlock()
	// Operators see why a broker cannot be reached, with its address;
	// while it stays down for the same reason, the retries log at debug.
	log := func(msg string, fields ...zap.Field) { h.warnLimited(&h.br().failedLines, msg, fields...) }
	if repeated {
		log = h.log.Debug
	}
	// A web client's own credentials refused (bad user name or password,
	// not authorized, bad authentication method) are the client's mistake,
	// not the broker's trouble: "broker refused a client's credentials" tells
	// it at info, with the session, and this warning, which operators
	// alert on, is for the gateway's own logins and for brokers out of
	// reach.
	if ce != nil && !configured && (ce.ReasonCode == 0x86 || ce.ReasonCode == 0x87 || ce.ReasonCode == 0x8C) {
		log = h.log.Debug
	}
	// In words (paho's error ends "reason: 135): failed to connect to
	// server: "), and for refused credentials, whose user name: an
	// operator's unset {env.VAR} gives an empty one.
	fields := []zap.Field{zap.String("broker", h.br().cfg.Name), zap.String("url", h.br().cfg.URL), zap.String("error", e.Message)}
	if ce != nil && (ce.ReasonCode == 0x86 || ce.ReasonCode == 0x87) {
		fields = append(fields, zap.String("username", user))
		if user == "" {
			fields = append(fields, zap.String("hint", "no user name was given: is the broker's username set (a {env.VAR} that is not set is empty)?"))
		}
	}
	log("broker connect failed", fields...)
	// A waiting client hears a refusal at once: the broker will answer
	// the next attempt the same way (so for an answer not in MQTT 5 and a
	// TLS failure that lasts). An unreachable shared broker may come back
	// within connect_timeout (a restart), so its waiters wait for it.
	if h.dedicated || ce != nil || answered {
		select {
		case h.refErr <- e:
		default:
		}
	}
}

// forgetRefusal drops a refusal nobody took from refErr: the connection is
// up, or a new one starts, so it is not the answer to a later request (a
// publish in a later outage got a refusal from before the last connection
// instead of waiting for the broker).
func (h *Hub) forgetRefusal() {
	select {
	case <-h.refErr:
	default:
	}
}

// sessionPresent reports whether the broker kept a session for a dedicated
// hub's client ID, as its connection's CONNACK said. The shared
// connection's session is the gateway's, none of its clients'.
func (h *Hub) sessionPresent() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.dedicated && h.present
}

// readyLocked opens the hub to publishes, and tells its clients the
// broker is back if it was away. Called with h.mu held.
func (h *Hub) readyLocked() {
	h.restoring = false
	if h.usable {
		return
	}
	h.usable = true
	close(h.upCh)
	if !h.dedicated && len(h.retained) > 0 {
		h.sweepStaleRetainedLater()
	}
	if h.announce {
		h.announce = false
		h.noticeClients(&Error{Code: CodeOK, Message: fmt.Sprintf("broker %q available again", h.br().cfg.Name)})
	}
}

// unreadyLocked closes the hub to publishes until it is ready again.
// Waiters keep the channel they have, which readyLocked closes. Called with
// h.mu held.
func (h *Hub) unreadyLocked() {
	h.restoring = false
	if h.usable {
		h.usable = false
		h.upCh = make(chan struct{})
	}
}

// restored makes a restoring hub ready once the reconciler has nothing
// left to send.
func (h *Hub) restored() {
	h.mu.Lock()
	if h.restoring && h.up && len(h.dirty) == 0 {
		h.readyLocked()
	}
	h.mu.Unlock()
}

// awaitUp waits until the broker connection is up. A refused connection
// (bad credentials) fails at once; an unreachable broker fails when the
// connect timeout passes, counted from arrived: when the client's request
// came in, so requests queued behind one another during an outage each
// wait at most the timeout, and fail in the order they came.
func (h *Hub) awaitUp(ctx context.Context, arrived time.Time) *Error {
	h.mu.RLock()
	usable, ch := h.usable, h.upCh
	// A dedicated connection that went down is not coming back (onDown);
	// a shared one gets a new connection manager on a reload and is.
	var abandoned <-chan struct{}
	if h.dedicated {
		abandoned = h.cmCtx.Done()
	}
	cmCtx := h.cmCtx
	h.mu.RUnlock()
	if usable {
		return nil
	}
	ctx, cancel := context.WithDeadline(ctx, arrived.Add(time.Duration(h.br().cfg.ConnectTimeout)))
	defer cancel()
	select {
	case <-ch:
		return nil
	case e := <-h.refErr:
		return e
	case <-abandoned:
		if e, ok := context.Cause(cmCtx).(*Error); ok {
			return e
		}
		return Errorf(CodeBrokerUnavailable, "broker %q connection closed", h.br().cfg.Name)
	case <-ctx.Done():
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.lastErr != nil {
			return h.lastErr
		}
		e := Errorf(CodeBrokerUnavailable, "broker %q unavailable: no connection within %s", h.br().cfg.Name, time.Duration(h.br().cfg.ConnectTimeout))
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && !h.up {
			// A silent broker: the attempt in flight has not failed yet, and
			// if this client was the hub's last, the hub closes before it
			// does, with "broker connect failed" never logged. Operators
			// hear it now, once (onConnectError logs its own cause after).
			h.lastErr = e
			h.warnLimited(&h.br().failedLines, "broker connect failed", zap.String("broker", h.br().cfg.Name), zap.String("url", h.br().cfg.URL), zap.String("error", e.Message))
		}
		return e
	}
}
