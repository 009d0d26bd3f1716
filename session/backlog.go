package session

// A web client's requests wait in their broker client's queue (Client.ops)
// for the ones before them, and then for the broker or a hook: behind a
// CONNECT to a broker that does not answer, during an outage or behind a
// slow authorize hook each may wait connect_timeout or hook_timeout, and a
// waiting PUBLISH keeps its payload. Unbounded, a client that sent 1 MiB
// publishes as fast as it could took the gateway past 1 GB in seconds, and
// max_publish_rate did not help: its refusals wait in the queue too, to be
// answered in order.
//
// So what a session's requests may hold while they wait or run, across its
// clients, is bounded as its outbound queue is: max_queued_frames requests
// and max_queued_bytes. A request past the bound is not queued: it is
// answered at once with 4051 (rate_limited), which tells the client to
// slow down and try again, and nothing else of the session is disturbed.
// The gateway's own work in a client's queue (a lost connection, a
// release) is not counted and never refused.
//
// A request that lets go of something (UNSUBSCRIBE, DISCONNECT) may go
// past the bound by as much again. A client whose publishes filled it
// must still be able to leave: a DISCONNECT refused would leave its
// dedicated connection up, and its will to fire when the session ends,
// as if the client had vanished. Those requests stay bounded, at twice
// the others' room.

// requestOverhead is what a request costs beyond the bytes it carries (its
// closure, its place in the queue), as messageSize counts an outbound
// frame.
const requestOverhead = 64

// backlog counts a session's requests from when they are queued until
// they have run. The session's mu guards it.
type backlog struct {
	requests int
	bytes    int
}

// requestKind is what the backlog knows of a request: its name in
// requests_refused_total, and whether it lets go of something.
type requestKind struct {
	action  string
	release bool
}

var (
	reqConnect      = requestKind{action: "connect"}
	reqSubscribe    = requestKind{action: "subscribe"}
	reqSetFrequency = requestKind{action: "set_frequency"}
	reqPublish      = requestKind{action: "publish"}
	reqUnsubscribe  = requestKind{action: "unsubscribe", release: true}
	reqDisconnect   = requestKind{action: "disconnect", release: true}
)

// admit counts a request of cost bytes, unless the bound l sets is
// reached; releases (UNSUBSCRIBE, DISCONNECT) have twice the room. With
// nothing waiting, any request is admitted: a publish max_message_size
// allows is never refused only for being larger than max_queued_bytes.
func (b *backlog) admit(cost int, kind requestKind, l outboxLimits) bool {
	frames, bytes := l.pendingFrames, l.pendingBytes
	if kind.release {
		frames, bytes = 2*frames, 2*bytes
	}
	if b.requests > 0 && (b.requests >= frames || b.bytes+cost > bytes) {
		return false
	}
	b.requests++
	b.bytes += cost
	return true
}

// done releases a request admitted with cost; 0 is the gateway's own
// work, which was never counted.
func (b *backlog) done(cost int) {
	if cost > 0 {
		b.requests--
		b.bytes -= cost
	}
}

// backlogFull is the answer to a request past the bound, counted by
// action in requests_refused_total.
func (s *Session) backlogFull(kind requestKind) *Error {
	s.mgr.metrics.RequestsRefused.WithLabelValues(kind.action).Inc()
	l := s.out.limits
	return Errorf(CodeRateLimited, "too many requests waiting for the broker or a hook: at most %d requests and %d bytes of a session's may wait (max_queued_frames, max_queued_bytes); retry once earlier ones are answered",
		l.pendingFrames, l.pendingBytes)
}

// The costs of requests: what they keep while they wait.

func publishCost(p *PublishParams) int {
	return requestOverhead + len(p.Topic) + len(p.Payload) + p.Props.size()
}

func connectCost(p *ConnectParams) int {
	n := requestOverhead + len(p.Broker) + len(p.ClientID) + len(p.Username) + len(p.Password)
	if p.Will != nil {
		n += publishCost(p.Will)
	}
	return n
}

func filterCost(filter string) int { return requestOverhead + len(filter) }

// size is what the properties hold in memory: each user property is a
// pair of strings (32 bytes) besides its text, so a frame of empty ones
// costs what it holds, not what it took on the wire.
func (p *Props) size() int {
	if p == nil {
		return 0
	}
	n := len(p.ContentType) + len(p.ResponseTopic) + len(p.CorrelationData)
	for _, u := range p.User {
		n += 32 + len(u.Key) + len(u.Value)
	}
	return n
}
