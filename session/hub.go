package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	pahosession "github.com/eclipse/paho.golang/paho/session"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-mqtt/mqttgateway/session/topic"
)

// Hub is one broker connection and the sessions receiving from it: the
// fan-out point. A shared hub serves every client of a broker that gives no
// client ID (per set of credentials); a dedicated hub serves exactly one
// client with its own client ID.
//
// The broker sees one SUBSCRIBE per distinct filter, whatever the number of
// sessions: sessions register filters in the hub's index, and the
// reconciler (reconcile.go) keeps the broker's subscriptions equal to the
// index's distinct filters at the highest QoS asked.
type Hub struct {
	key       string
	broker    atomic.Pointer[brokerRuntime] // replaced when a reload changes the broker
	stream    uint64
	dedicated bool
	log       *zap.Logger
	cm        atomic.Pointer[autopaho.ConnectionManager]
	cmCancel  context.CancelCauseFunc // stops the current connection manager
	cmCtx     context.Context         // its context: done once it is replaced or stopped
	sess      *resendingSession       // its paho session state
	cancel    context.CancelFunc      // stops the hub
	opts      hubOptions

	mu      sync.RWMutex
	index   topic.Index[*member]
	members map[*Session]*member
	filters map[string]*filterState
	dirty   map[string]struct{}
	clients map[*Client]struct{}
	up      bool
	since   time.Time // when up last changed
	// shortLived counts the connections in a row that ended soon after
	// they came up (poison.go).
	shortLived int
	lastErr    *Error // last connection error, for clients that wait
	closed     bool
	// usable: upCh is closed. restoring: from the connection's return
	// until its filters are subscribed again. announce: restoring after an
	// outage, so tell the clients once usable. (Beside closed, in its
	// padding: the fields fan-out reads below keep their places.)
	usable, restoring, announce bool

	wake chan struct{} // reconciler has work
	// upCh is closed while the hub is usable: connected and, after a
	// reconnect, its filters subscribed again. Publishes wait for it, so
	// one made during an outage reaches the gateway's own subscribers too
	// (the broker takes the SUBSCRIBEs first, on the same connection).
	upCh   chan struct{}
	refErr chan *Error // dedicated: first connect refused

	// seq numbers deliveries so each session gets a message once even when
	// several of its filters match; only the broker's receive goroutine
	// touches it, the members' marks and the duplicate run below.
	seq      uint64
	dups     dupRun
	subEpoch atomic.Uint64 // SUBSCRIBEs sent, for dups

	// What the broker's CONNACK said it takes (brokerlimits.go): its
	// Maximum Packet Size (0: none), and whether it lacks subscription
	// identifiers.
	maxPacket atomic.Uint32
	noSubIDs  atomic.Bool

	// retained is the hub's copy of the retained message of every topic
	// its filters cover (shared hubs), so a late subscriber gets them
	// without a broker SUBSCRIBE that would repeat them to everyone.
	retained map[string]retainedCopy
	// bySubID finds a filter by its subscription identifier.
	bySubID map[int]string

	nextSubID int // subscription identifier of the next new filter

	// A dedicated hub delivers everything its connection receives to its
	// one session, including what a persistent broker session kept while
	// the client was away, which arrives before any SUBSCRIBE. Messages
	// that arrive before the client has its CONNECT result wait in early.
	owner *Session
	early []*Message

	metrics    *Metrics
	messagesIn prometheus.Counter // this hub's broker's series, resolved once: it counts every message
	emit       func(string, map[string]any)

	// fireWill makes the closing DISCONNECT ask the broker to publish the
	// will (reason 0x04), for a shutdown configured to do so.
	fireWill atomic.Bool

	// A dedicated hub yields while a newer CONNECT with its client ID is
	// on its way to the broker (acquireHub), and is taken over only once
	// the broker accepted that one. Meanwhile a loss of its connection
	// (the broker handing the session to the newcomer) is kept in kicked,
	// not reported: the takeover or the yield's end reports it. Under mu.
	yielding, kicked bool

	// pendingAcks holds QoS 1/2 messages of a dedicated hub until the web
	// client acknowledges them, so the broker redelivers what the client
	// never saw.
	ackMu       sync.Mutex
	pendingAcks map[uint16]pendingAck
	lastAck     atomic.Int64 // when the web client last acknowledged one (UnixNano)
}

// ackFlush is how long paho may hold an acknowledgment before it sends the
// PUBACK: it sends manual acknowledgments on a tick (SendAcksInterval,
// 50 ms by default), with margin.
const ackFlush = 80 * time.Millisecond

type pendingAck struct {
	cli *paho.Client
	p   *paho.Publish
}

// member is a session's presence in a hub: one entry in the index per
// filter the session holds, however many of its clients share that filter.
type member struct {
	sess    *Session
	mark    uint64
	filters map[string]int // filter → number of the session's subscriptions to it
	// awaiting holds, per filter, until when messages with the retain flag
	// are the broker's answer to this session's SUBSCRIBE and keep the
	// flag (retained.go).
	awaiting map[string]time.Time
}

// filterState is the broker-side state of one distinct filter.
type filterState struct {
	subID   int    // MQTT 5 subscription identifier, unique in the hub
	refs    [3]int // subscriptions wanting each QoS
	asked   int8   // QoS the broker was last asked for; -1: not subscribed
	granted byte
	waiters []chan *Error
	// answering: until when retained messages with this filter's
	// identifier are the broker's answer to its SUBSCRIBE (retained.go).
	answering time.Time
}

func (f *filterState) want() int8 {
	for q := 2; q >= 0; q-- {
		if f.refs[q] > 0 {
			return int8(q)
		}
	}
	return -1
}

// hubOptions are the broker-connection settings that make hubs distinct.
type hubOptions struct {
	clientID      string // empty: shared
	username      string
	password      []byte
	cleanStart    bool
	sessionExpiry uint32
	keepAlive     uint16
	will          *paho.WillMessage
	willProps     *paho.WillProperties
}

func newClientID(prefix string) string {
	var b [8]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func (h *Hub) br() *brokerRuntime                { return h.broker.Load() }
func (h *Hub) conn() *autopaho.ConnectionManager { return h.cm.Load() }

func newHub(key string, br *brokerRuntime, stream uint64, dedicated bool, log *zap.Logger, metrics *Metrics, emit func(string, map[string]any)) *Hub {
	h := &Hub{
		key:         key,
		stream:      stream,
		dedicated:   dedicated,
		log:         log,
		members:     map[*Session]*member{},
		filters:     map[string]*filterState{},
		dirty:       map[string]struct{}{},
		clients:     map[*Client]struct{}{},
		wake:        make(chan struct{}, 1),
		upCh:        make(chan struct{}),
		refErr:      make(chan *Error, 1),
		pendingAcks: map[uint16]pendingAck{},
		retained:    map[string]retainedCopy{},
		bySubID:     map[int]string{},
		metrics:     metrics,
		messagesIn:  metrics.MessagesIn.WithLabelValues(br.cfg.Name),
		emit:        emit,
	}
	h.broker.Store(br)
	return h
}

func startHub(key string, br *brokerRuntime, stream uint64, o hubOptions, log *zap.Logger, metrics *Metrics, emit func(string, map[string]any)) (*Hub, error) {
	h := newHub(key, br, stream, o.clientID != "", log, metrics, emit)
	if !h.dedicated {
		// The shared connection starts clean, then keeps its broker session
		// across reconnects for a minute: QoS 1/2 flows interrupted by a cut
		// complete exactly once, and messages queued meanwhile arrive.
		o.sessionExpiry = sharedSessionExpiry
	}
	if o.clientID == "" {
		o.clientID = newClientID(br.cfg.ClientIDPrefix)
	}
	h.opts = o
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	if err := h.connect(); err != nil {
		cancel()
		return nil, err
	}
	go h.reconcile(ctx)
	return h, nil
}

// connect starts a connection manager for the hub's current broker.
func (h *Hub) connect() error {
	br, o := h.br(), h.opts
	server := br.serverURL()
	if server == nil {
		return fmt.Errorf("embedded broker %q is not listening yet", br.cfg.Name)
	}
	keepAlive := o.keepAlive
	if keepAlive == 0 {
		keepAlive = uint16(time.Duration(br.cfg.KeepAlive) / time.Second)
	}
	sess := newResendingSession()
	cfg := autopaho.ClientConfig{
		ServerUrls: []*url.URL{server},
		AttemptConnection: func(ctx context.Context, c autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			conn, err := dialBroker(ctx, u, c.TlsCfg, c.ConnectTimeout)
			if err != nil {
				return nil, err
			}
			return &brokerConn{Conn: conn, unsent: sess.unsent}, nil
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
func (h *Hub) restart(br *brokerRuntime) error {
	return h.replaceConnection(br, Errorf(CodeBrokerUnavailable, "broker %q reconfigured; subscriptions come back when it is connected", br.cfg.Name))
}

// replaceConnection gives a shared hub a new connection manager, to br,
// with a broker session of its own: the old one's unacknowledged publishes
// are not sent again. Clients get notice as in an outage.
func (h *Hub) replaceConnection(br *brokerRuntime, notice *Error) error {
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

// notSent reports whether a publish failed before paho stored or wrote the
// message, so sending it again cannot duplicate it.
func notSent(err error) bool {
	return errors.Is(err, autopaho.ConnectionDownError) || errors.Is(err, pahosession.ErrNoConnection)
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

// mode names the hub's kind for metrics.
func (h *Hub) mode() string {
	if h.dedicated {
		return "dedicated"
	}
	return "shared"
}

func (h *Hub) onUp(cm *autopaho.ConnectionManager, ca *paho.Connack) {
	h.metrics.BrokerUp.WithLabelValues(h.br().cfg.Name).Inc()
	h.noteLimits(ca)
	h.mu.Lock()
	wasDown := !h.since.IsZero()
	h.up, h.since, h.lastErr = true, time.Now(), nil
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
	if !h.dedicated {
		until := time.Now().Add(time.Duration(h.br().cfg.ConnectTimeout) + retainedWindow)
		for _, mb := range h.members {
			for f := range mb.filters {
				h.await(mb, f, until)
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
	var lost []*Client
	if h.dedicated && h.yielding {
		h.kicked = true
	} else if h.dedicated {
		for c := range h.clients {
			lost = append(lost, c)
		}
	} else if !closed && !poisoned {
		h.noticeClients(Errorf(CodeBrokerUnavailable, "broker %q unavailable; subscriptions come back when it returns", h.br().cfg.Name))
	}
	h.mu.Unlock()
	if !closed {
		h.log.Warn("broker connection lost", zap.String("broker", h.br().cfg.Name), zap.Uint64("stream", h.stream))
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
	// retried here.
	h.tellLost(lost)
	return !h.dedicated && !closed
}

func (h *Hub) onConnectError(err error) {
	var e *Error
	var ce *autopaho.ConnackError
	if errors.As(err, &ce) {
		e = Errorf(CodeBrokerRefused, "broker %q refused the connection: %s", h.br().cfg.Name, reason(ce.ReasonCode, ce.Reason))
	} else {
		e = Errorf(CodeBrokerUnavailable, "broker %q unavailable: %s", h.br().cfg.Name, dialCause(err))
	}
	h.mu.Lock()
	repeated := h.lastErr != nil && h.lastErr.Message == e.Message
	h.lastErr = e
	h.mu.Unlock()
	// Operators see why a broker cannot be reached, with its address;
	// while it stays down for the same reason, the retries log at debug.
	log := h.log.Warn
	if repeated {
		log = h.log.Debug
	}
	log("broker connect failed", zap.String("broker", h.br().cfg.Name), zap.String("url", h.br().cfg.URL), zap.Error(err))
	if h.dedicated || ce != nil {
		select {
		case h.refErr <- e:
		default:
		}
	}
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
	case <-ctx.Done():
		h.mu.RLock()
		defer h.mu.RUnlock()
		if h.lastErr != nil {
			return h.lastErr
		}
		return Errorf(CodeBrokerUnavailable, "broker %q unavailable: no connection within %s", h.br().cfg.Name, time.Duration(h.br().cfg.ConnectTimeout))
	}
}

// onPublish runs on the broker connection's receive goroutine for every
// message. It encodes nothing and copies nothing per session: each matching
// session gets the same *Message once.
func (h *Hub) onPublish(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	if h.dups.duplicate(p, h.subEpoch.Load()) {
		if h.dedicated && p.QoS > 0 {
			pr.Client.Ack(p) // the first copy carries the delivery
		}
		return true, nil
	}
	h.messagesIn.Inc()
	// The broker's DUP flag reaches the client: it may have had the
	// message before (a QoS 1/2 delivery resent after a reconnect).
	m := &Message{Stream: h.stream, Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Dup: p.Duplicate(), Props: propsFromPaho(p.Properties)}
	if h.dedicated && p.QoS > 0 {
		m.PacketID = p.PacketID
		h.ackMu.Lock()
		h.pendingAcks[p.PacketID] = pendingAck{pr.Client, p}
		h.ackMu.Unlock()
	}
	if h.dedicated {
		h.mu.Lock()
		if h.owner == nil {
			h.early = append(h.early, m)
		} else {
			h.owner.deliver(m)
		}
		h.mu.Unlock()
		return true, nil
	}
	if p.Retain {
		h.onRetained(m, subID(p))
		return true, nil
	}
	h.mu.RLock()
	h.seq++
	seq := h.seq
	delivered := 0
	h.index.Match(p.Topic, func(_ string, mb *member) {
		if mb.mark != seq {
			mb.mark = seq
			mb.sess.deliver(m)
			delivered++
		}
	})
	h.mu.RUnlock()
	h.metrics.MessagesOut.Add(float64(delivered))
	return true, nil
}

// ack forwards the web client's acknowledgement of a QoS 1/2 message to the
// broker (dedicated hubs only).
func (h *Hub) ack(packetID uint16) {
	h.ackMu.Lock()
	pa, ok := h.pendingAcks[packetID]
	delete(h.pendingAcks, packetID)
	h.ackMu.Unlock()
	if !ok {
		return
	}
	if err := pa.cli.Ack(pa.p); err != nil {
		h.log.Debug("ack to broker failed", zap.Error(err))
	}
	h.lastAck.Store(time.Now().UnixNano())
}

// subscribe registers filter for sess at qos and waits until the broker
// holds it at that QoS or better. It returns the QoS the broker granted.
func (h *Hub) subscribe(ctx context.Context, sess *Session, filter string, qos byte) (byte, *Error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return 0, Errorf(CodeBrokerUnavailable, "broker connection closed")
	}
	mb := h.members[sess]
	if mb == nil {
		mb = &member{sess: sess, filters: map[string]int{}}
		h.members[sess] = mb
	}
	fs := h.filters[filter]
	if fs == nil {
		h.nextSubID = h.nextSubID%maxSubID + 1
		fs = &filterState{asked: -1, subID: h.nextSubID}
		h.filters[filter] = fs
		h.bySubID[fs.subID] = filter
		if !h.closed { // a closed hub is out of the gauge (retireLocked)
			h.metrics.Subscriptions.WithLabelValues(h.br().cfg.Name).Inc()
		}
	}
	fs.refs[qos]++
	// Index before the broker subscribes: retained messages arrive right
	// after the SUBACK and must find this session.
	mb.filters[filter]++
	first := mb.filters[filter] == 1
	if first {
		h.index.Add(filter, mb)
	}
	if h.up && fs.asked >= int8(qos) && fs.waiters == nil {
		// The broker holds the filter already: this session's retained
		// messages come from the hub's copy, and nobody else sees them.
		if first && !h.dedicated {
			h.sendRetained(mb, filter)
		}
		granted := min(fs.granted, qos)
		h.mu.Unlock()
		return granted, nil
	}
	if !h.dedicated {
		h.await(mb, filter, time.Now().Add(time.Duration(h.br().cfg.ConnectTimeout)))
	}
	ch := make(chan *Error, 1)
	fs.waiters = append(fs.waiters, ch)
	h.dirty[filter] = struct{}{}
	h.mu.Unlock()
	h.poke()

	timeout := time.NewTimer(time.Duration(h.br().cfg.ConnectTimeout))
	defer timeout.Stop()
	var err *Error
	select {
	case err = <-ch:
	case <-timeout.C:
		err = Errorf(CodeBrokerTimeout, "broker %q did not confirm the subscription in time", h.br().cfg.Name)
	case <-ctx.Done():
		err = Errorf(CodeBrokerUnavailable, "subscription cancelled")
	}
	if err != nil {
		h.unsubscribe(sess, filter, qos)
		return 0, err
	}
	h.mu.Lock()
	granted := min(fs.granted, qos)
	if !h.dedicated {
		// The broker sends retained messages right after the SUBACK.
		h.await(mb, filter, time.Now().Add(retainedWindow))
	}
	h.mu.Unlock()
	return granted, nil
}

// unsubscribe releases one subscription of sess to filter at qos.
func (h *Hub) unsubscribe(sess *Session, filter string, qos byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	mb := h.members[sess]
	fs := h.filters[filter]
	if mb == nil || fs == nil || mb.filters[filter] == 0 {
		return
	}
	fs.refs[qos]--
	if mb.filters[filter]--; mb.filters[filter] == 0 {
		delete(mb.filters, filter)
		delete(mb.awaiting, filter)
		h.index.Remove(filter, mb)
		if len(mb.filters) == 0 {
			delete(h.members, sess)
		}
	}
	if fs.want() < 0 {
		h.dirty[filter] = struct{}{}
		h.poke()
		h.pruneRetained(filter)
	}
}

// publish sends a message to the broker and waits for the QoS flow to
// complete.
//
// While the connection is down it waits for it (up to the connect timeout)
// rather than failing at once: a short outage costs a client latency, not a
// failed publish. A QoS 1/2 publish interrupted by a cut is completed by
// paho's session state after the reconnect, and this call waits for that.
func (h *Hub) publish(ctx context.Context, arrived time.Time, p *paho.Publish) *Error {
	if err := h.awaitUp(ctx, arrived); err != nil {
		return err
	}
	if err := h.tooLarge("publish", func() int { return packetSize(p.Packet().Buffers()) }); err != nil {
		return err
	}
	timeout := time.Duration(h.br().cfg.ConnectTimeout)
	for attempt := 0; ; attempt++ {
		c := h.call(ctx, timeout)
		discards := c.sess.discards.Load()
		resp, err := c.cm.Publish(c.ctx, p)
		c.stop()
		if e := c.abandoned(); e != nil && err != nil {
			return Errorf(e.Code, "publish not confirmed: %s; it may not have been delivered", e.Message)
		}
		// The broker came back without the gateway's session (restarted
		// without persistence, or it expired), and paho dropped the
		// unacknowledged publish: at least once means sending it again;
		// exactly once cannot be kept.
		dropped := err != nil && c.sess.discards.Load() != discards && strings.Contains(err.Error(), "not fully acknowledged")
		if resp != nil && resp.ReasonCode >= 0x80 {
			text := ""
			if resp.Properties != nil {
				text = resp.Properties.ReasonString
			}
			return Errorf(CodeBrokerRejected, "broker rejected the publish: %s", reason(resp.ReasonCode, text))
		}
		if err == nil {
			return nil
		}
		if refused := refusedByBroker("publish", err); refused != nil {
			return refused
		}
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return Errorf(CodeBrokerTimeout, "broker did not acknowledge the publish in time; it may still be delivered")
		case dropped && p.QoS == 2:
			return Errorf(CodeBrokerUnavailable, "broker %q lost the gateway's session before confirming the publish: it may or may not have been delivered, and is not sent again", h.br().cfg.Name)
		case attempt < 10 && (notSent(err) || p.QoS == 0 || dropped):
			// The connection went down before the message was stored or
			// written (a QoS 0 message has no session state either), or its
			// session went: send it again once the connection is back. The
			// pause lets the hub see the connection go down before awaitUp
			// looks.
			select {
			case <-ctx.Done():
				return Errorf(CodeBrokerUnavailable, "publish cancelled")
			case <-time.After(50 * time.Millisecond):
			}
			if e := h.awaitUp(ctx, time.Now()); e != nil {
				return e
			}
			continue
		}
		return Errorf(CodeBrokerUnavailable, "publish failed: %v", err)
	}
}

// ready starts deliveries of a dedicated hub to sess, once the client's
// CONNECT result is queued (so the client knows the stream).
func (h *Hub) ready(sess *Session) {
	if !h.dedicated {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.owner = sess
	for _, m := range h.early {
		sess.deliver(m)
	}
	h.early = nil
}

// noticeClients tells every session with a client on this shared hub that
// the broker went away or came back: a NOTICE whose value is the stream.
// Called with h.mu held.
func (h *Hub) noticeClients(e *Error) {
	told := map[*Session]bool{}
	for c := range h.clients {
		if !told[c.sess] {
			told[c.sess] = true
			c.sess.push(Event{Kind: EventNotice, Code: e.Code, Text: e.Message, Value: h.stream})
		}
	}
}

func (h *Hub) addClient(c *Client) {
	h.mu.Lock()
	h.clients[c] = struct{}{}
	h.mu.Unlock()
}

// removeClient detaches c and reports how many clients remain.
func (h *Hub) removeClient(c *Client) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients, c)
	return len(h.clients)
}

// close disconnects from the broker (a clean DISCONNECT, so no will fires).
func (h *Hub) close(reason string) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	h.retireLocked()
	h.mu.Unlock()
	h.log.Info("broker connection closed", zap.String("broker", h.br().cfg.Name), zap.Uint64("stream", h.stream),
		zap.Bool("dedicated", h.dedicated), zap.String("reason", reason))
	h.stop()
}

// stop ends the hub's broker connection (a clean DISCONNECT, for at most
// 2 s) and its goroutines.
func (h *Hub) stop() {
	// An acknowledgment the web client just gave may still wait for paho's
	// tick: a DISCONNECT before it would make the broker send the message
	// again to the client ID's next connection.
	if wait := ackFlush - time.Since(time.Unix(0, h.lastAck.Load())); h.dedicated && wait > 0 {
		time.Sleep(wait)
	}
	h.disconnect(h.conn())
	h.mu.Lock()
	cmCancel := h.cmCancel
	h.mu.Unlock()
	cmCancel(Errorf(CodeBrokerUnavailable, "broker connection closed"))
	h.cancel()
}

// disconnect sends cm's broker a clean DISCONNECT, waiting at most 2 s.
func (h *Hub) disconnect(cm *autopaho.ConnectionManager) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := cm.Disconnect(ctx); err != nil {
		h.log.Debug("broker disconnect", zap.Error(err))
	}
}

// forgetFilterLocked drops a filter nobody wants any more, once the broker
// no longer has it. Called with h.mu held.
func (h *Hub) forgetFilterLocked(f string) {
	if fs := h.filters[f]; fs != nil && h.bySubID[fs.subID] == f {
		delete(h.bySubID, fs.subID)
	}
	delete(h.filters, f)
	if !h.closed { // a closed hub is out of the gauge (retireLocked)
		h.metrics.Subscriptions.WithLabelValues(h.br().cfg.Name).Dec()
	}
}

// retireLocked takes a closing hub out of the gauges, once: the caller
// marks it closed. Called with h.mu held.
func (h *Hub) retireLocked() {
	name := h.br().cfg.Name
	if h.up {
		h.metrics.BrokerUp.WithLabelValues(name).Dec()
		h.up = false
	}
	h.metrics.Subscriptions.WithLabelValues(name).Sub(float64(len(h.filters)))
}

// HubStatus is a hub's state for operators.
type HubStatus struct {
	Broker        string    `json:"broker"`
	Stream        uint64    `json:"stream"`
	Dedicated     bool      `json:"dedicated"`
	Connected     bool      `json:"connected"`
	Since         time.Time `json:"since"`
	Subscriptions int       `json:"subscriptions"`
	Clients       int       `json:"clients"`
}

// Status reports the hub's connection state and the filters it holds.
func (h *Hub) Status() HubStatus {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return HubStatus{Broker: h.br().cfg.Name, Stream: h.stream, Dedicated: h.dedicated, Connected: h.up,
		Since: h.since, Subscriptions: len(h.filters), Clients: len(h.clients)}
}

// yield marks a dedicated hub whose client ID a newer CONNECT claims; see
// yielding.
func (h *Hub) yield() {
	h.mu.Lock()
	h.yielding = true
	h.mu.Unlock()
}

// keep ends a yield whose newcomer the broker did not accept: the hub
// goes on, unless it lost its connection meanwhile, which its clients now
// hear of as they would have.
func (h *Hub) keep() {
	h.mu.Lock()
	h.yielding = false
	kicked := h.kicked
	h.kicked = false
	var lost []*Client
	if kicked && !h.closed {
		for c := range h.clients {
			lost = append(lost, c)
		}
	}
	h.mu.Unlock()
	h.tellLost(lost)
}

// tellLost tells a dedicated hub's clients its broker connection is gone.
func (h *Hub) tellLost(clients []*Client) {
	for _, c := range clients {
		c.lost(Errorf(CodeBrokerUnavailable, "connection to broker %q lost", h.br().cfg.Name))
	}
}

// takeOver ends a dedicated connection whose client ID a newer web client
// claimed: its client is told why, then the connection closes cleanly.
func (h *Hub) takeOver() {
	h.takeOverWith(Errorf(CodeClientConnected, "client id taken over by a newer connection"))
}

// takeOverWith ends the hub's connection, telling each client why with LOST.
func (h *Hub) takeOverWith(reason *Error) {
	h.mu.Lock()
	if !h.closed {
		h.retireLocked()
	}
	h.closed = true
	var clients []*Client
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.Unlock()
	for _, c := range clients {
		c.lost(reason)
	}
	h.stop()
}
