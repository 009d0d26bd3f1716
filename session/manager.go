package session

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/zap"

	"github.com/caddy-mqtt/mqttgateway/session/topic"
	"github.com/caddy-mqtt/mqttgateway/throttle"
)

// Config is what a Manager needs; the Caddy module fills it from its own
// configuration and has already applied defaults.
type Config struct {
	// Name of the gateway, as a label of its metrics.
	Name                      string
	Brokers                   []*BrokerConfig
	SessionTimeout            time.Duration
	Heartbeat                 time.Duration
	MaxMessageSize            int
	MaxClientsPerSession      int
	MaxSubscriptionsPerClient int
	// Longest topic name or filter a web client may give (0: MQTT's
	// 65,535): every filter is held in the hub's and the session's indexes.
	MaxTopicLength int
	// Outbox bounds per session: frames not yet written, and frames kept
	// after writing so a rebinding connection can be replayed. The
	// pending bounds also bound the client's requests waiting to be
	// handled (backlog.go).
	MaxPendingFrames int
	MaxPendingBytes  int
	ReplayFrames     int
	ReplayBytes      int
	// Waiting frames past which QoS 0 messages are conflated per topic,
	// once the client is behind: they have waited BehindAfter (0: 20 ms)
	// without its transport taking any (outbox.go).
	ConflateAfter int
	BehindAfter   time.Duration
	// End a session whose queue is full when a QoS 1/2 message arrives,
	// instead of dropping it with an overflow notice.
	OverflowClose bool
	// Caps on what clients may ask: messages per second per topic of a
	// subscription, and bytes per second per session (0: no cap).
	MaxFrequency float64
	MaxBandwidth int64
	// Most publishes per second per session (0: no limit); more get 4051.
	MaxPublishRate float64
	// Share names of the shared subscriptions dedicated clients may join
	// ("*": any); none by default (shared.go).
	SharedSubscriptions []string
	// How long a broker message may wait for others to share its write
	// (0: none, every message is written at once); see writedelay.go.
	WriteDelay time.Duration
	// Most live sessions in all, and per client IP (0: no limit).
	MaxSessions      int
	MaxSessionsPerIP int
	// Policy decides actions (the authorize hook); nil allows everything.
	Policy Policy
	// HookTimeout is how long the policy may take for one request (0: 1 s).
	// A shutdown waits up to twice it for the close notifications of the
	// sessions it ends: the one in flight, then the close.
	HookTimeout time.Duration
	// WillsOnShutdown makes a gateway shutdown fire the wills of dedicated
	// clients, as if their connections had failed; by default a shutdown is
	// a clean disconnect and wills do not fire.
	WillsOnShutdown bool
	// Emit publishes a Caddy event (session_opened, session_closed,
	// broker_up, broker_down); nil emits nothing. It must not block.
	Emit   func(event string, data map[string]any)
	Logger *zap.Logger
	// DeferEmbedded: embedded brokers listen from StartEmbedded on, not
	// as soon as they are configured (Caddy starts them with its apps).
	DeferEmbedded bool
}

type brokerRuntime struct {
	cfg      *BrokerConfig
	url      *url.URL // an external broker's
	embedded *EmbeddedBroker
	// copiesPerSub: the broker has sent a publication once per matching
	// subscription of a connection (a hub's dups dropped a copy), as
	// Mosquitto does; others send one copy for all (the embedded broker).
	// Learnt once for every hub of the broker; retained.go relies on it.
	copiesPerSub atomic.Bool
	// removed: a reload took the broker out of the config; its series
	// are gone from the metrics (forgetBroker), and its last clients'
	// departures must not bring them back. Set and read under m.mu.
	removed atomic.Bool
	// lostLines and failedLines limit the warnings of the broker's
	// dedicated connections (Hub.warnLimited).
	lostLines, failedLines LogLimiter
}

// serverURL is where the broker listens; nil for an embedded broker not
// started yet.
func (br *brokerRuntime) serverURL() *url.URL {
	if br.embedded != nil {
		return br.embedded.URL()
	}
	return br.url
}

// StartEmbedded makes the embedded brokers listen (those that do already
// are left alone).
func (m *Manager) StartEmbedded() error {
	m.brokersMu.RLock()
	defer m.brokersMu.RUnlock()
	for name, br := range m.brokers {
		if br.embedded == nil || br.embedded.URL() != nil {
			continue // a reload keeps it listening, or staged it (StageEmbedded), which said so
		}
		if err := br.embedded.Start(); err != nil {
			return fmt.Errorf("broker %q: %w", name, err)
		}
		m.log.Info("embedded broker listening", zap.String("broker", name), zap.String("url", br.embedded.URL().String()))
	}
	return nil
}

// Manager owns a gateway's sessions and broker connections.
type Manager struct {
	cfg       atomic.Pointer[Config] // replaced by Reconfigure
	log       *zap.Logger            // follows the running config's logger (logger.go)
	setLogger func(*zap.Logger)      // points log at a config's logger
	// refusedOpens limits the log of refused opens (session limits).
	refusedOpens LogLimiter
	// logins slows down broker password guessing (loginthrottle.go);
	// throttledLogins limits the log of the CONNECTs it refuses.
	logins          loginThrottle
	throttledLogins LogLimiter
	// droppedNotes limits the log of notifications dropped (notify.go).
	droppedNotes LogLimiter
	// closeNotes counts the sessions that ended and whose close
	// notification has yet to reach the policy; stopping is set when Close
	// begins (notify.go).
	closeNotes atomic.Int64
	stopping   atomic.Bool
	metrics    *Metrics
	streams    atomic.Uint64

	brokersMu sync.RWMutex
	brokers   map[string]*brokerRuntime

	mu       sync.Mutex
	sessions map[[16]byte]*Session
	ended    endedIDs // the latest sessions to end (ended.go)
	// perIP counts sessions by limitKey, and opens still before their
	// authenticate hook (Admit); admitting counts those for max_sessions.
	perIP     map[string]int
	admitting int
	hubs      map[string]*Hub // shared hubs by broker and credentials, dedicated by broker and client ID
	// ending holds, for dedicated hubs whose last client left, a channel
	// closed once their connection is: the client ID's next connection
	// waits for it (acquireHub), so the broker has the old one's
	// acknowledgments and clean DISCONNECT before it hands the session on.
	ending map[string]chan struct{}
	closed bool

	wakes wakeQueue // sessions whose write waits for the write delay

	refusals refusalLog // the budget of "request refused" lines (refusals.go)
}

// NewManager prepares the brokers (starting embedded ones) for a gateway.
func NewManager(cfg Config) (*Manager, error) {
	m := &Manager{brokers: map[string]*brokerRuntime{},
		sessions: map[[16]byte]*Session{}, hubs: map[string]*Hub{}, metrics: newMetrics(cfg.Name)}
	m.metrics.Queued = newQueueCollector(m, cfg.Name)
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	m.log, m.setLogger = newReloadableLogger(cfg.Logger)
	if err := m.Reconfigure(cfg); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func (m *Manager) emit(event string, data map[string]any) {
	if emit := m.config().Emit; emit != nil {
		emit(event, data)
	}
}

// Log is the gateway's logger (through the running config's).
func (m *Manager) Log() *zap.Logger { return m.log }

// Metrics are the gateway's Prometheus collectors.
func (m *Manager) Metrics() *Metrics { return m.metrics }

// Config returns the configuration the manager runs with.
func (m *Manager) Config() Config { return *m.cfg.Load() }

func (m *Manager) config() *Config { return m.cfg.Load() }

// broker finds a configured broker by name.
func (m *Manager) broker(name string) *brokerRuntime {
	m.brokersMu.RLock()
	defer m.brokersMu.RUnlock()
	return m.brokers[name]
}

// Embedded returns the embedded broker of that name, or nil.
func (m *Manager) Embedded(name string) *EmbeddedBroker {
	if br := m.broker(name); br != nil {
		return br.embedded
	}
	return nil
}

// Open creates a session, in the place a (from Admit) holds for it; with a
// nil a, if the session limits allow one now.
func (m *Manager) Open(info OpenInfo, a *Admission) (*Session, *Error) {
	s := &Session{mgr: m, info: info, created: time.Now(), log: m.log, clients: map[uint64]*Client{},
		out: *newOutbox(m.outboxLimits())}
	if a != nil {
		s.id = a.id // the id the authenticate hook was told
	} else {
		rand.Read(s.id[:])
	}
	rand.Read(s.secret[:])
	cfg := m.config()
	ip := info.ip()
	s.ip = ip
	m.mu.Lock()
	if a != nil && !a.done && !m.closed {
		a.done = true // its place in the counts is the session's now
		m.admitting--
	} else {
		if a != nil {
			a.cancelLocked()
		}
		if err := m.refuseOpenLocked(cfg, ip); err != nil {
			m.mu.Unlock()
			return nil, err
		}
		m.countIPLocked(ip)
	}
	if cfg.MaxBandwidth > 0 {
		// The server's cap holds whether or not the client asks for one.
		s.bucket = throttle.NewBucket(float64(cfg.MaxBandwidth), s.created)
	}
	m.sessions[s.id] = s
	m.mu.Unlock()
	m.metrics.Sessions.Inc()
	m.metrics.SessionsOpened.WithLabelValues(info.Transport).Inc()
	// client_ip is the client's address as trusted_proxies resolve it:
	// behind a load balancer, remote is the balancer's.
	m.emit("session_opened", map[string]any{"session": s.IDString(), "user": info.User, "remote": info.RemoteAddr, "client_ip": ip, "transport": info.Transport})
	m.log.Info("session opened", zap.String("session", s.IDString()), zap.String("user", info.User),
		zap.String("remote", info.RemoteAddr), zap.String("client_ip", ip), zap.String("transport", info.Transport))
	return s, nil
}

// An Admission holds a place under max_sessions and max_sessions_per_ip
// for a session whose authenticate hook runs: opens in flight count, or a
// client could start any number of them at once (a basic_auth check of an
// unknown user costs a second of CPU each).
type Admission struct {
	m  *Manager
	ip string
	// The id the session will have: the authenticate hook is told it, so a
	// presence service can pair an open with the session's later actions
	// and its close.
	id [16]byte
	// Guarded by m.mu. done: used by Open, or given back; refused and
	// hookDone: see Refuse.
	done, refused, hookDone bool
}

// Admit takes a place for a session for info, or says why there is none
// (shutting down, max_sessions, max_sessions_per_ip): the transport asks
// before it runs the authenticate hook, and gives the place to Open, or
// back with Cancel.
func (m *Manager) Admit(info OpenInfo) (*Admission, *Error) {
	ip := info.ip()
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.refuseOpenLocked(m.config(), ip); err != nil {
		return nil, err
	}
	m.countIPLocked(ip)
	m.admitting++
	a := &Admission{m: m, ip: ip}
	rand.Read(a.id[:])
	return a, nil
}

// SessionID is the id, in hex, the session will have if it opens.
func (a *Admission) SessionID() string { return hex.EncodeToString(a.id[:]) }

// Refuse gives the place back for a session the hook refused, once the
// hook is done with it (HookDone), not when it answered: past its timeout,
// a basic_auth check of an unknown user goes on for a second of CPU.
func (a *Admission) Refuse() {
	a.m.mu.Lock()
	a.refused = true
	if a.hookDone {
		a.cancelLocked()
	}
	a.m.mu.Unlock()
}

// HookDone says the authenticate hook is done with the open, which may be
// after it answered (one that outlived its timeout). After Open, it does
// nothing.
func (a *Admission) HookDone() {
	a.m.mu.Lock()
	a.hookDone = true
	if a.refused {
		a.cancelLocked()
	}
	a.m.mu.Unlock()
}

func (a *Admission) cancelLocked() {
	if a.done {
		return
	}
	a.done = true
	a.m.admitting--
	a.m.uncountIPLocked(a.ip)
}

func (m *Manager) countIPLocked(ip string) {
	if m.perIP == nil {
		m.perIP = map[string]int{}
	}
	m.perIP[ip]++
}

func (m *Manager) uncountIPLocked(ip string) {
	if m.perIP[ip]--; m.perIP[ip] <= 0 {
		delete(m.perIP, ip)
	}
}

func (m *Manager) refuseOpenLocked(cfg *Config, ip string) *Error {
	var err *Error
	switch {
	case m.closed:
		return Errorf(CodeShuttingDown, "gateway is shutting down")
	case cfg.MaxSessions > 0 && len(m.sessions)+m.admitting >= cfg.MaxSessions:
		err = Errorf(CodeTooManySessions, "the gateway has reached max_sessions (%d)", cfg.MaxSessions)
	case cfg.MaxSessionsPerIP > 0 && m.perIP[ip] >= cfg.MaxSessionsPerIP:
		err = Errorf(CodeTooManySessions, "too many sessions from %s (max_sessions_per_ip %d)", ip, cfg.MaxSessionsPerIP)
	default:
		return nil
	}
	// An operator must see that the limits bite (behind a balancer
	// without trusted_proxies, max_sessions_per_ip counts the balancer).
	if skipped, ok := m.refusedOpens.Allow(); ok {
		m.log.Warn("session refused", zap.String("reason", err.Message), zap.String("client_ip", ip),
			zap.Int("not_logged_before", skipped))
	}
	return err
}

// ip is what the session limits count: Caddy's client IP, else the
// connection's, and for IPv6 its /64 (limitKey).
func (info OpenInfo) ip() string {
	ip := info.ClientIP
	if ip == "" {
		ip = clientIP(info.RemoteAddr)
	}
	return limitKey(ip)
}

// limitKey is an IPv4 address itself and an IPv6 address's /64: one
// subscriber line is given a /64 at least, and picks any address in it at
// will, so counting whole IPv6 addresses would let one client open as
// many sessions as it likes past max_sessions_per_ip.
func limitKey(ip string) string {
	a, err := netip.ParseAddr(ip)
	switch {
	case err != nil:
		return ip
	case a.Is4In6() || a.Is4():
		return a.Unmap().String() // ::ffff:192.0.2.1 is 192.0.2.1
	}
	p, _ := a.WithZone("").Prefix(64)
	return p.String()
}

// Lookup finds a live session for a rebind, checking its secret in
// constant time.
func (m *Manager) Lookup(id, secret [16]byte) (*Session, *Error) {
	m.mu.Lock()
	s := m.sessions[id]
	ended := s == nil && m.ended.has(id)
	m.mu.Unlock()
	if s == nil {
		if ended {
			return nil, &Error{Code: CodeSessionUnknown, Message: endedMessage}
		}
		return nil, Errorf(CodeSessionUnknown, "unknown or expired session")
	}
	if subtle.ConstantTimeCompare(s.secret[:], secret[:]) != 1 {
		return nil, Errorf(CodeSessionSecret, "wrong session secret")
	}
	return s, nil
}

// Sessions is the number of live sessions.
func (m *Manager) Sessions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.sessions)
}

func (m *Manager) forget(s *Session, reason *Error) {
	m.mu.Lock()
	_, ok := m.sessions[s.id]
	delete(m.sessions, s.id)
	if ok {
		m.uncountIPLocked(s.ip)
		m.ended.add(s.id)
	}
	m.mu.Unlock()
	if ok {
		m.emit("session_closed", map[string]any{"session": s.IDString(), "user": s.info.User, "code": int(reason.Code), "reason": reason.Message})
		m.metrics.Sessions.Dec()
		m.metrics.SessionsClosed.WithLabelValues(strconv.Itoa(int(reason.Code))).Inc()
	}
}

// Hubs reports every broker connection's state.
func (m *Manager) Hubs() []HubStatus {
	m.mu.Lock()
	hubs := make([]*Hub, 0, len(m.hubs))
	for _, h := range m.hubs {
		hubs = append(hubs, h)
	}
	m.mu.Unlock()
	out := make([]HubStatus, len(hubs))
	for i, h := range hubs {
		out[i] = h.Status()
	}
	return out
}

// hubKey names the broker connection a CONNECT gets. Shared connections
// that log in with the broker's configured credentials (their clients gave
// none) share one key whatever those are: a reload that changes them
// changes that connection's login (Hub.restart, or Hub.renewLogin for
// the password alone), and the clients that connect afterwards join it,
// rather than a second one.
func hubKey(br *brokerRuntime, p ConnectParams, configured bool) string {
	if p.ClientID != "" {
		return "dedicated\x00" + br.cfg.Name + "\x00" + p.ClientID
	}
	if configured {
		return "shared\x00" + br.cfg.Name + "\x00configured"
	}
	sum := sha256.Sum256(p.Password)
	return "shared\x00" + br.cfg.Name + "\x00" + p.Username + "\x00" + hex.EncodeToString(sum[:])
}

// acquireHub finds or starts the broker connection a CONNECT asks for and
// attaches c to it. A dedicated connection whose client ID is already in
// use (old) yields to it: the caller takes old over once the broker has
// accepted the new connection, as an MQTT broker does with a second
// connection of the same client ID, or gives it back (keepHub) if not. A
// newcomer the broker refuses (a wrong password) must not end the client
// that holds the ID.
//
// A client that gives no credentials of its own connects with the
// broker's configured ones, on a shared or a dedicated connection alike:
// the broker's password stays in the gateway, never in a page. The wire
// cannot tell an empty password from none (PROTOCOL.md), so an empty one
// counts as none.
//
// The CONNECT may have waited (for its hook) through a reload that changed
// its broker: it gets the broker as configured when its hub is found or
// started, under m.mu, where a reload's restart of the broker's hubs
// (hubsOf) finds the hub, too.
func (m *Manager) acquireHub(c *Client, br *brokerRuntime, asked ConnectParams) (h, old *Hub, _ *Error) {
	name := br.cfg.Name
	var key string
	var p ConnectParams
	var configured bool
	for {
		if br = m.broker(name); br == nil {
			return nil, nil, Errorf(CodeUnknownBroker, "broker %q was removed from the gateway", name)
		}
		p = asked
		if len(p.Password) == 0 {
			p.Password = nil
		}
		configured = p.Username == "" && p.Password == nil
		if configured {
			p.Username, p.Password = br.cfg.credentials()
		}
		key = hubKey(br, p, configured)
		m.mu.Lock()
		if p.ClientID != "" {
			m.awaitEnding(key)
		}
		if m.broker(name) == br {
			break
		}
		m.mu.Unlock() // reconfigured meanwhile: again, with the new settings
	}
	if m.closed {
		m.mu.Unlock()
		return nil, nil, Errorf(CodeShuttingDown, "gateway is shutting down")
	}
	h = m.hubs[key]
	if h != nil && h.dedicated {
		old, h = h, nil
		delete(m.hubs, key)
		old.yield()
	}
	if h == nil {
		o := hubOptions{clientID: p.ClientID, username: p.Username, password: p.Password, configured: configured,
			cleanStart: p.CleanStart, sessionExpiry: p.SessionExpiry, keepAlive: p.KeepAlive}
		if p.Will != nil {
			o.will = &paho.WillMessage{Topic: p.Will.Topic, QoS: p.Will.QoS, Retain: p.Will.Retain, Payload: p.Will.Payload}
			o.willProps = p.Will.Props.willToPaho()
		}
		var err error
		h, err = startHub(key, br, m.streams.Add(1), o, m.log, m.metrics, m.emit)
		if err != nil {
			m.mu.Unlock()
			if old != nil {
				m.keepHub(old)
			}
			return nil, nil, Errorf(CodeBrokerUnavailable, "broker %q: %v", br.cfg.Name, err)
		}
		m.hubs[key] = h
	}
	h.addClient(c)
	m.mu.Unlock()
	m.metrics.BrokerClients.WithLabelValues(br.cfg.Name, h.mode()).Inc()
	return h, old, nil
}

// keepHub gives a yielding hub its client ID back after the newcomer
// failed, unless yet another CONNECT has taken the ID meanwhile.
func (m *Manager) keepHub(old *Hub) {
	m.mu.Lock()
	free := m.hubs[old.key] == nil && !m.closed
	if free {
		m.hubs[old.key] = old
	}
	m.mu.Unlock()
	if free {
		old.keep()
	} else {
		old.takeOver()
	}
}

// releaseHub detaches c; the last client to leave closes the connection.
func (m *Manager) releaseHub(h *Hub, c *Client) {
	m.mu.Lock()
	// Under m.mu, as in the reload that removes a broker: its series stay gone.
	if br := h.br(); !br.removed.Load() {
		m.metrics.BrokerClients.WithLabelValues(br.cfg.Name, h.mode()).Dec()
	}
	n := h.removeClient(c)
	if n == 0 && m.hubs[h.key] == h {
		delete(m.hubs, h.key)
	}
	var closed chan struct{}
	if n == 0 && h.dedicated {
		if m.ending == nil {
			m.ending = map[string]chan struct{}{}
		}
		closed = make(chan struct{})
		m.ending[h.key] = closed
	}
	m.mu.Unlock()
	if n == 0 {
		go func() {
			h.close("no client uses it")
			if closed != nil {
				m.mu.Lock()
				if m.ending[h.key] == closed {
					delete(m.ending, h.key)
				}
				m.mu.Unlock()
				close(closed)
			}
		}()
	}
}

// closeHubs closes hubs (each a clean DISCONNECT of at most 2 s) at once,
// and returns when all are closed.
func closeHubs(hubs []*Hub) {
	inParallel(hubs, func(h *Hub) { h.close("the gateway is shutting down") })
}

// closeWriteWait bounds how long a shutdown waits for the sessions' CLOSE
// frames to be written.
const closeWriteWait = 2 * time.Second

// waitAtMost waits for wg, for at most d.
func waitAtMost(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// awaitEnding waits, for at most endingWait, until the connection of a
// dedicated hub with key that is being closed is gone. Called with m.mu
// held; it releases and retakes it while it waits.
func (m *Manager) awaitEnding(key string) {
	closed := m.ending[key]
	if closed == nil {
		return
	}
	m.mu.Unlock()
	select {
	case <-closed:
	case <-time.After(endingWait):
	}
	m.mu.Lock()
}

// endingWait bounds awaitEnding: a clean DISCONNECT takes at most 2 s,
// after at most ackFlush for acknowledgments.
const endingWait = 3 * time.Second

// checkTopicLength refuses a topic or filter longer than max_topic_length.
func (m *Manager) checkTopicLength(t string, code Code, what string) *Error {
	if max := m.config().MaxTopicLength; max > 0 && len(t) > max {
		return Errorf(code, "%s %q is %d bytes, longer than max_topic_length (%d)", what, TrimText(t), len(t), max)
	}
	return nil
}

// checkPublish validates a publish (or will) before it reaches a broker.
func (m *Manager) checkPublish(p *PublishParams) *Error {
	if err := topic.ValidateName(p.Topic); err != nil {
		return Errorf(CodeInvalidTopic, "invalid topic %q: %v", TrimText(p.Topic), err)
	}
	if err := m.checkTopicLength(p.Topic, CodeInvalidTopic, "topic"); err != nil {
		return err
	}
	if rt := p.Props.responseTopic(); rt != "" {
		if err := m.checkTopicLength(rt, CodeInvalidTopic, "response topic"); err != nil {
			return err
		}
	}
	if p.QoS > 2 {
		return Errorf(CodeInvalidQoS, "qos %d is not 0, 1 or 2", p.QoS)
	}
	if max := m.config().MaxMessageSize; len(p.Payload) > max {
		return Errorf(CodeMessageTooLarge, "payload of %d bytes exceeds max_message_size %d", len(p.Payload), max)
	}
	if err := p.Props.check(p.Payload); err != nil {
		return Errorf(CodeBadRequest, "invalid properties: %s", TrimText(err.Error()))
	}
	return nil
}

// Close ends every session with code shutting_down, disconnects from
// brokers cleanly and stops embedded brokers.
func (m *Manager) Close() { m.CloseBecause("gateway is shutting down") }

// CloseBecause is Close, with why in the sessions' CLOSE frames and the
// "session closed" lines: a gateway a reload removed or renamed says so,
// where "shutting down" sent on-call looking for a restart.
func (m *Manager) CloseBecause(why string) {
	notesDeadline := time.Now().Add(m.closeNotesWait())
	m.stopping.Store(true)
	m.mu.Lock()
	m.closed = true
	if m.config() != nil && m.config().WillsOnShutdown {
		for _, h := range m.hubs {
			if h.dedicated {
				h.fireWill.Store(true)
			}
		}
	}
	sessions := make([]*Session, 0, len(m.sessions))
	for _, s := range m.sessions {
		sessions = append(sessions, s)
	}
	// Dedicated broker connections end first, and the sessions hear 4090
	// only then. A client reconnects as soon as it hears it, through this
	// gateway's successor after a reload that renamed it, and its CONNECT
	// with the same client id would take over a connection not yet ended:
	// the broker then publishes the will the clean DISCONNECT is for.
	var dedicated []*Hub
	for key, h := range m.hubs {
		if h.dedicated {
			dedicated = append(dedicated, h)
			delete(m.hubs, key)
		}
	}
	m.mu.Unlock()
	closeHubs(dedicated)
	// The sessions' CLOSE frames are written before Close returns (and
	// Caddy, stopping, exits), for at most closeWriteWait: a client that
	// got none cannot tell a shutdown from a network failure.
	var written sync.WaitGroup
	for _, s := range sessions {
		s.closeAwaitingWrite(Errorf(CodeShuttingDown, "%s", why), &written)
	}
	waitAtMost(&written, closeWriteWait)
	m.mu.Lock()
	hubs := make([]*Hub, 0, len(m.hubs))
	for _, h := range m.hubs {
		hubs = append(hubs, h)
	}
	clear(m.hubs)
	// Dedicated hubs whose sessions ended before: their DISCONNECT too
	// goes out before Close returns.
	var ending []chan struct{}
	for _, closed := range m.ending {
		ending = append(ending, closed)
	}
	m.mu.Unlock()
	closeHubs(hubs)
	deadline := time.After(endingWait)
	for _, closed := range ending {
		select {
		case <-closed:
		case <-deadline:
		}
	}
	m.awaitCloseNotes(notesDeadline)
	m.brokersMu.Lock()
	for _, br := range m.brokers {
		if br.embedded != nil {
			br.embedded.release()
		}
	}
	clear(m.brokers) // released once, however often Close is called
	m.brokersMu.Unlock()
}

// sessionsMatching returns the live sessions match selects by their open
// info and id (all of them if match is nil).
func (m *Manager) sessionsMatching(match func(info OpenInfo, id [16]byte) bool) []*Session {
	m.mu.Lock()
	defer m.mu.Unlock()
	var chosen []*Session
	for id, s := range m.sessions {
		if match == nil || match(s.info, id) {
			chosen = append(chosen, s)
		}
	}
	return chosen
}

// CloseSessions ends, with reason, the live sessions match selects by
// their open info and id, and returns how many.
func (m *Manager) CloseSessions(match func(info OpenInfo, id [16]byte) bool, reason *Error) int {
	chosen := m.sessionsMatching(match)
	for _, s := range chosen {
		s.Close(reason)
	}
	return len(chosen)
}
