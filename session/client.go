package session

import (
	"context"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/zap"

	"github.com/caddy-mqtt/mqttgateway/session/topic"
)

// ConnectParams is a web client's CONNECT request.
type ConnectParams struct {
	Broker        string
	ClientID      string // empty: the broker's shared connection
	CleanStart    bool
	KeepAlive     uint16
	SessionExpiry uint32
	Username      string
	Password      []byte
	Will          *PublishParams
}

// PublishParams is a web client's PUBLISH request (or a will message).
type PublishParams struct {
	Topic   string
	QoS     byte
	Retain  bool
	Props   *Props
	Payload []byte
}

// Client is a broker client inside a session, named by the handle the web
// client chose. Its requests run one at a time, in order, on a goroutine
// that exists only while requests are waiting, so an idle client costs no
// goroutine and a slow broker blocks only the client that waits for it.
type Client struct {
	sess     *Session
	handle   uint64
	clientID string // empty on the shared connection
	ctx      context.Context
	cancel   context.CancelFunc

	// Guarded by sess.mu.
	ops     []queuedOp
	runReq  uint64 // the request the queue runs, and its cost while unanswered
	runCost int
	running bool
	// resultsInOrder: a RESULT of this client's went behind the frames
	// waiting (Session.resultInOrder), and its later ones follow it while
	// frames wait: a handle's RESULTs come in the order of its requests.
	resultsInOrder bool
	released       bool
	fireWill       bool // the session ended abnormally: the broker publishes the will
	ackHub         *Hub // copy of hub for ACKs, which bypass the request queue

	// Owned by the request goroutine.
	// hookGaveUp is when (Unix ns; 0: never) the authorize hook last failed
	// to answer one of the client's requests in time (hookgaveup.go). Not a
	// time.Time, and the bools together above: a client stays in its
	// allocation size class (144 bytes).
	hookGaveUp int64
	hub        *Hub
	subs       map[string]byte // filter → QoS
	// opts: the options of subs on a shared connection, which the gateway
	// applies (SubscribeOptions).
	opts map[string]SubscribeOptions
}

// setOptions records the options of the client's subscription to filter
// on a shared connection, and counts Retain As Published in the session;
// a dedicated connection's broker applies them. Runs on the request
// goroutine.
func (c *Client) setOptions(filter string, o SubscribeOptions) {
	c.dropOptions(filter)
	if c.hub.dedicated || o == (SubscribeOptions{}) {
		return
	}
	if c.opts == nil { // most clients never ask for options: no map for them
		c.opts = map[string]SubscribeOptions{}
	}
	c.opts[filter] = o
	if o.RetainAsPublished {
		c.sess.asPublished.Add(1)
	}
}

// dropOptions forgets the options of the client's subscription to filter.
func (c *Client) dropOptions(filter string) {
	if c.opts[filter].RetainAsPublished {
		c.sess.asPublished.Add(-1)
	}
	delete(c.opts, filter)
}

// queuedOp is a request (or the gateway's own work) in a client's queue.
type queuedOp struct {
	run  func()
	cost int    // counted in the session's backlog until answered or run has returned; 0: not counted
	req  uint64 // the web client's request, answered by run
}

// enqueue runs the gateway's own op after the client's earlier requests.
// It is not counted in the session's backlog, so it is never refused.
func (c *Client) enqueue(op func()) { c.queue(queuedOp{run: op}) }

// request runs a web client's request after the client's earlier ones,
// counted in the session's backlog (backlog.go) until it has run. Past
// the backlog's bound it is not queued, and the error says so: the caller
// answers it at once.
func (c *Client) request(kind requestKind, req uint64, cost int, run func()) *Error {
	s := c.sess
	s.mu.Lock()
	if !s.backlog.admit(cost, kind, s.out.limits) {
		s.mu.Unlock()
		return s.backlogFull(kind)
	}
	start := c.appendLocked(queuedOp{run: run, cost: cost, req: req})
	s.mu.Unlock()
	if start {
		go c.work()
	}
	return nil
}

// queue adds op, whose cost the session's backlog has admitted (if any).
func (c *Client) queue(op queuedOp) {
	c.sess.mu.Lock()
	start := c.appendLocked(op)
	c.sess.mu.Unlock()
	if start {
		go c.work()
	}
}

// appendLocked adds op to the queue and reports whether the request
// goroutine must be started. Called with sess.mu held.
func (c *Client) appendLocked(op queuedOp) (start bool) {
	c.ops = append(c.ops, op)
	start = !c.running
	c.running = true
	return start
}

// work runs the queue. Every op queued runs, even once the client is
// dropped or its session closed (they then fail at once, their context
// cancelled or the client detached), so the backlog is released on every
// path: an op's cost is given back when its answer goes out (Session.answer), or
// else as soon as it has returned.
func (c *Client) work() {
	for {
		c.sess.mu.Lock()
		c.sess.backlog.done(c.runCost)
		c.runCost = 0
		if len(c.ops) == 0 {
			c.running = false
			c.sess.mu.Unlock()
			return
		}
		op := c.ops[0]
		c.ops[0] = queuedOp{}
		c.ops = c.ops[1:]
		c.runReq, c.runCost = op.req, op.cost
		c.sess.mu.Unlock()
		op.run()
	}
}

// answeredLocked gives back the backlog cost of the request client c is
// running, as its answer goes out: a client that sends its next request on
// an answer must find the room the answer said was free (with
// max_queued_frames 1 it was refused 4051 while the op returned). Called
// with s.mu held.
func (s *Session) answeredLocked(c *Client) {
	if c.runCost > 0 {
		s.backlog.done(c.runCost)
		c.runCost = 0
	}
}

// Connect attaches a new client to a broker.
func (s *Session) Connect(req, handle uint64, p ConnectParams) {
	br := s.mgr.broker(p.Broker)
	if br == nil {
		s.result(req, Errorf(CodeUnknownBroker, "no broker named %q", TrimText(p.Broker)), 0)
		return
	}
	if p.ClientID == "" && (p.Will != nil || p.SessionExpiry > 0) {
		// The shared connection is many clients': no one client's will or
		// broker session can be kept on it. Refused rather than dropped,
		// which a client would only notice once its will failed to fire.
		s.result(req, Errorf(CodeBadRequest, "a will or a session expiry needs a client ID (a dedicated connection): on the shared connection neither exists"), 0)
		return
	}
	if err := checkConnectText(p); err != nil {
		s.result(req, Errorf(CodeBadRequest, "%s", TrimText(err.Error())), 0)
		return
	}
	if p.ClientID != "" && strings.HasPrefix(p.ClientID, br.cfg.ClientIDPrefix) {
		// The gateway's shared connections are named so. A client connecting
		// with one's ID (a broker may disclose it: Mosquitto's log topic,
		// EMQX's client events) makes the broker end that connection, every
		// session's on it, as MQTT's session takeover; and the gateway, taking
		// it back at once, ends the client's in turn, again and again.
		s.result(req, Errorf(CodeBadRequest, "client ID %q: IDs beginning with %q are the gateway's own (client_id_prefix)",
			TrimText(p.ClientID), br.cfg.ClientIDPrefix), 0)
		return
	}
	if p.Will != nil {
		err := s.mgr.checkPublish(p.Will)
		if err == nil {
			err = checkWillSize(p.Will)
		}
		if err == nil {
			err = br.cfg.check311Publish(p.Will, "will properties")
		}
		if err != nil {
			s.result(req, err, 0)
			return
		}
	}
	if err := br.cfg.check311Connect(&p); err != nil {
		s.result(req, err, 0)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{sess: s, handle: handle, ctx: ctx, cancel: cancel, subs: map[string]byte{}, clientID: p.ClientID}
	s.mu.Lock()
	if s.closed != nil {
		s.mu.Unlock()
		cancel()
		return
	}
	if s.clients[handle] != nil {
		s.mu.Unlock()
		cancel()
		s.result(req, Errorf(CodeClientConnected, "client handle %d is already connected", handle), 0)
		return
	}
	if len(s.clients) >= s.mgr.config().MaxClientsPerSession {
		s.mu.Unlock()
		cancel()
		s.result(req, Errorf(CodeTooManyClients, "at most %d clients per session", s.mgr.config().MaxClientsPerSession), 0)
		return
	}
	// Admitted with the handle, so a refused CONNECT leaves none behind.
	cost := connectCost(&p)
	if !s.backlog.admit(cost, reqConnect, s.out.limits) {
		s.mu.Unlock()
		cancel()
		s.result(req, s.backlogFull(reqConnect), 0)
		return
	}
	s.clients[handle] = c
	s.mu.Unlock()

	c.queue(queuedOp{cost: cost, req: req, run: func() {
		_, err := s.authorize(c.ctx, Action{Kind: "connect", Broker: p.Broker, ClientID: p.ClientID, Username: p.Username, Password: p.Password,
			CleanStart: p.CleanStart, SessionExpiry: p.SessionExpiry})
		if err == nil && p.Will != nil {
			// A will is a publish the broker makes later on the client's
			// behalf: it needs the same permission now.
			_, err = s.authorize(c.ctx, Action{Kind: "publish", Broker: p.Broker, ClientID: p.ClientID, Topic: p.Will.Topic,
				QoS: p.Will.QoS, Retain: p.Will.Retain, Size: len(p.Will.Payload), ResponseTopic: p.Will.Props.responseTopic(), Will: true})
		}
		// The client's own broker credentials: a refusal counts against
		// its address, and too many make it wait (loginthrottle.go).
		own := p.Username != "" || len(p.Password) > 0
		if err == nil && own {
			err = s.beginLogin(p)
		}
		if err != nil {
			s.dropClient(c)
			s.result(req, err, 0)
			return
		}
		hub, old, err := s.mgr.acquireHub(c, br, p)
		if err == nil {
			err = hub.awaitUp(c.ctx, time.Now())
			if err != nil {
				s.mgr.releaseHub(hub, c)
			}
			switch {
			case old == nil:
			case err == nil:
				old.takeOver()
			default:
				s.mgr.keepHub(old)
			}
		}
		if own {
			s.endLogin(p, err)
		}
		if err != nil {
			s.dropClient(c)
			s.result(req, err, 0)
			return
		}
		c.hub = hub
		s.mu.Lock()
		c.ackHub = hub
		s.mu.Unlock()
		s.connected(req, hub.stream, hub.sessionPresent())
		hub.ready(s)
	}})
}

// beginLogin asks the login throttle whether a CONNECT with the client's
// own credentials may go to the broker now.
func (s *Session) beginLogin(p ConnectParams) *Error {
	err := s.mgr.logins.begin(s.ip, time.Now())
	if err != nil {
		if skipped, ok := s.mgr.throttledLogins.Allow(); ok {
			s.log.Warn("broker login refused: too many refused credentials from this address", zap.String("session", s.IDString()),
				zap.String("user", s.info.User), zap.String("client_ip", s.ip), zap.String("broker", p.Broker),
				zap.Int("not_logged_before", skipped))
		}
	}
	return err
}

// endLogin gives the login throttle the broker's answer, and logs a
// refusal: who tried which broker account, from where.
func (s *Session) endLogin(p ConnectParams, err *Error) {
	refused := err != nil && err.Code == CodeBrokerRefused
	s.mgr.logins.end(s.ip, refused, time.Now())
	if refused {
		s.log.Info("broker refused a client's credentials", zap.String("session", s.IDString()), zap.String("user", s.info.User),
			zap.String("client_ip", s.ip), zap.String("broker", p.Broker), zap.String("username", TrimText(p.Username)),
			zap.String("reason", err.Message))
	}
}

// client finds a connected client, or answers the request with an error.
func (s *Session) client(req, handle uint64) *Client {
	s.mu.Lock()
	c := s.clients[handle]
	s.mu.Unlock()
	if c == nil {
		s.result(req, notConnected(handle), 0)
	}
	return c
}

// notConnected answers a request for a client that has no broker
// connection, in the words of the application's side.
func notConnected(handle uint64) *Error {
	return Errorf(CodeBadRequest, "client %d is not connected: it never was, its CONNECT failed, or it disconnected", handle)
}

// Subscribe adds a subscription to a client. maxFrequency is in messages per
// second, 0 for unlimited.
//
// A SUBSCRIBE that fails leaves the client without a subscription to its
// filter, one it held before included (PROTOCOL.md): the client forgets the
// filter on any failure, so a subscription kept here would go on sending
// what nobody dispatches; and a refusal by the policy (a member removed from
// a room who subscribes again) must not leave the old one delivering.
func (s *Session) Subscribe(req, handle uint64, filter string, qos byte, opts SubscribeOptions, maxFrequency float64) {
	c := s.client(req, handle)
	if c == nil {
		return
	}
	arrived := time.Now()
	fail := func(err *Error) {
		s.dropSubscription(c, filter)
		s.result(req, err, 0)
	}
	// ownRefusal: the gateway's, not the hook's or the broker's (refusals.go).
	ownRefusal := func(err *Error) {
		s.refused("subscribe", c.brokerName(), filter, err)
		fail(err)
	}
	if err := c.request(reqSubscribe, req, filterCost(filter), func() {
		// Checked in the client's queue, so even a refusal is answered in
		// the order of the requests (PROTOCOL.md).
		if err := validSubscriptionFilter(filter); err != nil {
			ownRefusal(Errorf(CodeInvalidFilter, "invalid filter %q: %v", TrimText(filter), err))
			return
		}
		if err := s.mgr.checkTopicLength(filter, CodeInvalidFilter, "filter"); err != nil {
			ownRefusal(err)
			return
		}
		if qos > 2 {
			ownRefusal(Errorf(CodeInvalidQoS, "qos %d is not 0, 1 or 2", qos))
			return
		}
		if c.hub == nil {
			ownRefusal(notConnected(handle)) // it holds no subscription to drop
			return
		}
		if err := checkShared(s.mgr.config(), filter, c.hub.dedicated, opts); err != nil {
			ownRefusal(err)
			return
		}
		if err := c.hub.br().cfg.check311Subscribe(opts, c.hub.dedicated); err != nil {
			ownRefusal(err)
			return
		}
		// During an outage a subscription fails like a publish, with the
		// broker's unavailability, once the connect timeout has passed.
		if err := c.hub.awaitUp(c.ctx, arrived); err != nil {
			fail(err)
			return
		}
		grant, err := c.authorize(arrived, Action{Kind: "subscribe", Broker: c.hub.br().cfg.Name, ClientID: c.clientID, Topic: filter, QoS: qos})
		if err != nil {
			fail(err)
			return
		}
		old, had := c.subs[filter]
		if !had && len(c.subs) >= s.mgr.config().MaxSubscriptionsPerClient {
			ownRefusal(Errorf(CodeTooManySubscriptions, "at most %d subscriptions per client", s.mgr.config().MaxSubscriptionsPerClient))
			return
		}
		// In force before the broker's SUBACK: a live message may follow it
		// at once. Put back if the subscription fails.
		prev := c.opts[filter]
		c.setOptions(filter, opts)
		granted, err := c.hub.subscribe(c.ctx, s, c.handle, filter, qos, opts, opts.wantsRetained(had))
		if err != nil {
			c.setOptions(filter, prev) // none if it had none
			fail(err)
			return
		}
		if had { // a repeated subscribe replaces the old one, as in MQTT
			c.hub.unsubscribe(s, c.handle, filter, old, prev)
		}
		c.subs[filter] = qos
		s.mu.Lock()
		s.setFrequency(c, c.hub.stream, filter, qos, maxFrequency, grant.MaxFrequency)
		s.mu.Unlock()
		s.result(req, nil, uint64(granted))
	}); err != nil {
		// Not queued (too many requests waiting): the held subscription
		// goes all the same, after the requests before this one.
		c.enqueue(func() { s.dropSubscription(c, filter) })
		s.refused("subscribe", "", filter, err)
		s.result(req, err, 0)
	}
}

// SetFrequency changes the frequency limit of a client's subscription
// without resubscribing.
func (s *Session) SetFrequency(req, handle uint64, filter string, maxFrequency float64) {
	c := s.client(req, handle)
	if c == nil {
		return
	}
	if err := c.request(reqSetFrequency, req, filterCost(filter), func() {
		qos, ok := c.subs[filter]
		if !ok || c.hub == nil {
			s.result(req, Errorf(CodeBadRequest, "client %d has no subscription to %q", handle, TrimText(filter)), 0)
			return
		}
		s.mu.Lock()
		s.setFrequency(c, c.hub.stream, filter, qos, maxFrequency, s.freqs.of(c.hub.stream).hookCap(filter, c))
		s.mu.Unlock()
		s.result(req, nil, 0)
	}); err != nil {
		s.result(req, err, 0)
	}
}

// Unsubscribe removes a subscription of a client.
func (s *Session) Unsubscribe(req, handle uint64, filter string) {
	c := s.client(req, handle)
	if c == nil {
		return
	}
	if err := c.request(reqUnsubscribe, req, filterCost(filter), func() {
		if c.hub == nil {
			s.result(req, notConnected(handle), 0)
			return
		}
		s.dropSubscription(c, filter)
		if !c.hub.dedicated {
			s.result(req, nil, 0) // the client filters what it dispatches by its subscriptions
			return
		}
		// A dedicated client dispatches whatever its stream brings (a
		// persistent session's messages may match none of its filters):
		// its answer comes after the messages the broker sent before the
		// UNSUBACK, as a direct client's does.
		timeout := time.NewTimer(time.Duration(c.hub.br().cfg.ConnectTimeout))
		defer timeout.Stop()
		select {
		case <-c.hub.unsubscribed(filter):
		case <-timeout.C:
		case <-c.ctx.Done():
		}
		s.resultInOrder(req)
	}); err != nil {
		s.result(req, err, 0)
	}
}

// dropSubscription ends a client's subscription to filter, if it has one,
// and tells the notify hook, as an UNSUBSCRIBE does. Run in the client's
// queue.
func (s *Session) dropSubscription(c *Client, filter string) {
	qos, ok := c.subs[filter]
	if !ok || c.hub == nil {
		return
	}
	s.notify(Action{Kind: "unsubscribe", Broker: c.hub.br().cfg.Name, ClientID: c.clientID, Topic: filter, QoS: qos})
	delete(c.subs, filter)
	c.hub.unsubscribe(s, c.handle, filter, qos, c.opts[filter])
	c.dropOptions(filter)
	s.mu.Lock()
	s.clearFrequency(c, c.hub.stream, filter)
	s.mu.Unlock()
}

// Publish sends a message from a client to its broker.
func (s *Session) Publish(req, handle uint64, p PublishParams) {
	// The gateway's refusals (an invalid or oversized message, the rate
	// limit, too many requests waiting, a denial) are "refused"; the
	// broker's, "error".
	refuse := func(err *Error) {
		s.mgr.metrics.Publishes.WithLabelValues("refused").Inc()
		s.result(req, err, 0)
	}
	// ownRefusal: the gateway's, not the hook's (refusals.go).
	ownRefusal := func(broker string, err *Error) {
		s.refused("publish", broker, p.Topic, err)
		refuse(err)
	}
	c := s.client(req, handle)
	if c == nil {
		return
	}
	arrived := time.Now()
	allowed := s.allowPublish() // counted when it came
	if err := c.request(reqPublish, req, publishCost(&p), func() {
		// Refusals too are answered in the order of the requests.
		if err := s.mgr.checkPublish(&p); err != nil {
			ownRefusal(c.brokerName(), err)
			return
		}
		if !allowed {
			ownRefusal(c.brokerName(), Errorf(CodeRateLimited, "more than max_publish_rate publishes per second"))
			return
		}
		if c.hub == nil {
			ownRefusal("", notConnected(handle))
			return
		}
		if err := c.hub.br().cfg.check311Publish(&p, "message properties"); err != nil {
			ownRefusal(c.brokerName(), err)
			return
		}
		if _, err := c.authorize(arrived, Action{Kind: "publish", Broker: c.hub.br().cfg.Name, ClientID: c.clientID, Topic: p.Topic,
			QoS: p.QoS, Retain: p.Retain, Size: len(p.Payload), ResponseTopic: p.Props.responseTopic()}); err != nil {
			refuse(err)
			return
		}
		var withdraw func()
		if c.keepsOwn(p.Topic) {
			withdraw = c.hub.echoes.expect(s, c.handle, p.Topic, p.Payload)
		}
		err := c.hub.publish(c.ctx, arrived, &paho.Publish{Topic: p.Topic, QoS: p.QoS, Retain: p.Retain,
			Payload: p.Payload, Properties: p.Props.toPaho()})
		if err != nil && withdraw != nil {
			withdraw()
		}
		result := "ok"
		if err != nil {
			result = "error"
		}
		s.mgr.metrics.Publishes.WithLabelValues(result).Inc()
		s.result(req, err, 0)
	}); err != nil {
		if allowed {
			s.givePublishBack() // refused before its rate was spent
		}
		ownRefusal("", err)
	}
}

// brokerName is the name of the broker the client is connected to, or "".
// Run in the client's queue.
func (c *Client) brokerName() string {
	if c.hub == nil {
		return ""
	}
	return c.hub.br().cfg.Name
}

// keepsOwn reports whether the client's own publish to topic must not come
// back to it on a shared connection: it holds subscriptions matching the
// topic, all with No Local (one without would get the message, as from a
// broker). A dedicated connection's broker applies No Local itself.
func (c *Client) keepsOwn(name string) bool {
	if len(c.opts) == 0 {
		return false
	}
	matched := false
	for f := range c.subs {
		if topic.Match(f, name) {
			if !c.opts[f].NoLocal {
				return false
			}
			matched = true
		}
	}
	return matched
}

// Disconnect detaches a client from its broker.
func (s *Session) Disconnect(req, handle uint64) {
	c := s.client(req, handle)
	if c == nil {
		return
	}
	if err := c.request(reqDisconnect, req, requestOverhead, func() {
		// The web client asked for this: a clean end, without the will,
		// even when its session ended meanwhile with wills to fire (a
		// page's pagehide listener disconnects, then the page goes).
		s.mu.Lock()
		c.fireWill = false
		s.mu.Unlock()
		if c.hub != nil {
			s.notify(Action{Kind: "disconnect", Broker: c.hub.br().cfg.Name, ClientID: c.clientID})
		}
		c.detach()
		s.dropClient(c)
		s.result(req, nil, 0)
	}); err != nil {
		s.result(req, err, 0)
	}
}

// Ack acknowledges a QoS 1/2 message of a dedicated stream.
func (s *Session) Ack(stream, packetID uint64) {
	s.mu.Lock()
	hub := s.dedicatedHubLocked(stream)
	s.mu.Unlock()
	if hub != nil && packetID > 0 && packetID <= 0xFFFF {
		hub.ack(uint16(packetID))
	}
}

// dedicatedHubLocked is the dedicated hub of a stream of the session, or
// nil. Called with s.mu held.
func (s *Session) dedicatedHubLocked(stream uint64) *Hub {
	for _, c := range s.clients {
		if h := c.hubRef(); h != nil && h.stream == stream && h.dedicated {
			return h
		}
	}
	return nil
}

// hubRef reads the hub from outside the request goroutine; call it with
// sess.mu held.
func (c *Client) hubRef() *Hub { return c.ackHub }

// lost tells the web client its broker connection is gone (dedicated
// clients) and frees the handle.
func (c *Client) lost(err *Error) {
	c.enqueue(func() {
		if c.hub == nil {
			return
		}
		c.detach()
		c.sess.dropClient(c)
		c.sess.push(Event{Kind: EventLost, Handle: c.handle, Code: err.Code, Text: err.Message})
	})
}

// detach releases the client's subscriptions and its hub. Runs on the
// request goroutine.
func (c *Client) detach() {
	if c.hub == nil {
		return
	}
	// A dedicated connection's subscriptions belong to its broker session,
	// which may outlive the connection (session expiry): disconnecting
	// must not unsubscribe, or the broker would keep nothing meanwhile.
	if !c.hub.dedicated {
		for f, q := range c.subs {
			c.hub.unsubscribe(c.sess, c.handle, f, q, c.opts[f])
		}
	}
	c.sess.mu.Lock()
	for f := range c.subs {
		c.sess.clearFrequency(c, c.hub.stream, f)
	}
	c.sess.mu.Unlock()
	clear(c.subs)
	for f := range c.opts {
		c.dropOptions(f)
	}
	c.sess.mu.Lock()
	fireWill := c.fireWill
	c.sess.mu.Unlock()
	if fireWill && c.hub.dedicated {
		c.hub.fireWill.Store(true)
	}
	c.sess.mgr.releaseHub(c.hub, c)
	c.hub = nil
	c.sess.mu.Lock()
	c.ackHub = nil
	c.sess.mu.Unlock()
}

// closeGrace bounds how long the requests a web client sent before its
// CLOSE may still take (an authorize hook, the broker's PUBACK) before they
// are cancelled.
const closeGrace = 10 * time.Second

// release ends a client whose session is over, and the detach runs after
// its queued requests. fireWill asks the broker to publish the client's
// will, as it would for a connection that ended without a DISCONNECT.
// finishQueued is for a session the web client closed: as MQTT carries out
// a PUBLISH sent before DISCONNECT, the requests it sent before CLOSE (a
// page's last publish as it goes) are carried out, for up to closeGrace.
// Otherwise blocked requests are cancelled at once. Either way the session
// hears (clientReleased) once the requests before the release have run.
func (c *Client) release(fireWill, finishQueued bool) {
	c.sess.mu.Lock()
	if c.released {
		c.sess.mu.Unlock()
		c.sess.clientReleased()
		return
	}
	c.released = true
	c.fireWill = fireWill
	c.sess.mu.Unlock()
	if !finishQueued {
		c.cancel()
		c.enqueue(func() {
			c.detach()
			c.sess.clientReleased()
		})
		return
	}
	grace := time.AfterFunc(closeGrace, c.cancel)
	c.enqueue(func() {
		grace.Stop()
		c.cancel()
		c.detach()
		c.sess.clientReleased()
	})
}

func (s *Session) dropClient(c *Client) {
	s.mu.Lock()
	if s.clients[c.handle] == c {
		delete(s.clients, c.handle)
	}
	s.mu.Unlock()
	c.cancel()
	s.log.Debug("client dropped", zap.String("session", s.IDString()), zap.Uint64("handle", c.handle))
}
