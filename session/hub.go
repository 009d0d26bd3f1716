package session

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
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
//
// Its other parts: the broker connection (hubconn.go, poison.go,
// brokerlimits.go), subscriptions (hubsubscribe.go), messages from the
// broker (hubdeliver.go, retained.go), publishes to it (hubpublish.go),
// and a dedicated hub's client ID taken over (hubtakeover.go).
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
	present    bool // the last CONNACK's Session Present
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
	refErr chan *Error // a connect refused (any failure of a dedicated one's): see onConnectError

	// seq numbers deliveries so each session gets a message once even when
	// several of its filters match; only the broker's receive goroutine
	// touches it, the members' marks and the duplicate run below.
	seq      uint64
	dups     dupRun
	echoes   *echoes       // No Local on the shared connection (echo.go)
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
	// conns counts the connections that came up: a copy from before the
	// last one that its filters' SUBSCRIBEs did not bring again is gone
	// from the broker (sweepStaleRetainedLater).
	conns uint64
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

// hubOptions are the broker-connection settings that make hubs distinct.
type hubOptions struct {
	clientID      string // empty: shared
	username      string
	password      []byte
	configured    bool // username and password are the broker's configured ones
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
		echoes:      newEchoes(),
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

// mode names the hub's kind for metrics.
func (h *Hub) mode() string {
	if h.dedicated {
		return "dedicated"
	}
	return "shared"
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
