package session

import (
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mqtt/mqttgateway/throttle"
)

// Transport is what a session needs from the connection it is bound to.
// The transport's writer pulls frames with Session.Take; the session only
// signals.
type Transport interface {
	// Wake tells the writer there is something to write (frames, or the
	// session's end). It must not block.
	Wake()
	// Close ends this connection after the CLOSE frame (when the session
	// ended) has been written. It must not block.
	Close(code Code, message string)
}

// OpenInfo is what the gateway knows of a session when it opens.
type OpenInfo struct {
	User       string
	RemoteAddr string
	ClientIP   string // as Caddy's trusted_proxies resolved it; RemoteAddr's host if empty
	Transport  string
}

// Session is one web client (a browser tab, a Node.js process). It outlives
// its transport connection for the session timeout, and holds the numbered
// stream of data frames that a rebinding connection resumes.
type Session struct {
	// What fanning a message out reads and writes (deliver, Take), first
	// and together: with thousands of sessions each delivery finds its
	// session out of the CPU's cache, and every cache line it touches
	// costs a miss.
	mu        sync.Mutex
	throttled int // subscriptions with a frequency limit (throttle.go)
	conn      Transport
	closed    *Error
	mgr       *Manager
	bucket    *throttle.Bucket // the bandwidth cap (throttle.go), nil: none
	// A wake put off by the write delay is queued (writedelay.go), for
	// held messages queued since.
	wakeQueued bool
	// left: the web client went away (Leave) rather than disconnecting
	// its clients, so their wills fire. Beside wakeQueued: no padding.
	left bool
	// between: the transport was detached routinely (a long poll answered,
	// a stream ended by the gateway) and its client comes back at once.
	// It is not away but between two requests, and a backlog that builds
	// meanwhile is a slow link's, conflated as on a bound connection
	// (pushLocked). Beside left: no padding.
	between bool
	// pingAnswer: the client asked for a PING answer (pinganswer.go),
	// which the next write carries. Beside between: no padding.
	pingAnswer bool
	held       int
	out        outbox // in the session, not behind a pointer: one object less per delivery
	// written counts, at a shutdown, the bound connection that is to
	// write the session's CLOSE frame (Manager.Close); nil otherwise.
	written *sync.WaitGroup
	// overSince is when frames went past conflate_after, where the
	// transport's takes have left them since (zero: not now); behindLocked.
	overSince time.Time

	id, secret [16]byte
	info       OpenInfo
	ip         string
	created    time.Time
	log        *zap.Logger
	clients    map[uint64]*Client
	expiry     *time.Timer
	// backlog counts the clients' requests queued and running, within
	// the outbound queue's bounds (backlog.go).
	backlog backlog

	requests atomic.Uint64 // client requests received, reported in BOUND
	// dispatching is held while a connection hands a unit of requests to
	// the session, and while a rebind reads the count for BOUND: a unit is
	// counted wholly before or wholly after, never across, BOUND.
	dispatching sync.Mutex

	// Throttling (throttle.go): per-topic frequency gates of throttled
	// subscriptions, and the bandwidth budget's wake-up.
	freqs     freqTables // by stream (freqs.go)
	gate      *throttle.Gate[conflationKey, *Message]
	gateTimer sessionTimer
	gateBuf   []*Message
	// The bandwidth budget's wake-up (Take).
	budgetTimer sessionTimer

	// moved is where the client is now, once it has rebound (Rebound);
	// nil: where it opened the session (info). A pointer: most sessions
	// never rebind, and three strings in every one took the struct to the
	// next size class (64 bytes more per idle session).
	moved *whereNow

	// Set at open by the authenticate hook and the transport.
	origin       any
	capFrequency float64 // per-user cap on max_frequency, 0: none
	capBandwidth uint64  // per-user cap on max_bandwidth, 0: none
	// askedBandwidth is the client's own cap (BANDWIDTH), 0: none, kept
	// to apply the server's anew after a reload.
	askedBandwidth uint64
	publishes      *throttle.Bucket
	// addressRetained: the client takes retained messages addressed to the
	// one of its clients that subscribed (AddressRetained).
	addressRetained atomic.Bool
	// asPublished counts the session's subscriptions with Retain As
	// Published on shared connections: while there are any, live retained
	// messages come to it marked as published retained (retained.go).
	asPublished atomic.Int32
	// reportPresent: a CONNECT's result says whether the broker kept a
	// session (ReportSessionPresent).
	reportPresent atomic.Bool
	// reportUnsubscribed: the client is told of the subscriptions the
	// gateway ends (ReportUnsubscribed).
	reportUnsubscribed atomic.Bool

	// notes delivers notifications to the policy (notify.go).
	notes notifier

	// conflated and dropped count the session's messages a newer value
	// replaced and those lost at the queue's bounds, for the operator
	// (status.go, the "session closed" line); the metrics count them for
	// the whole gateway. Guarded by mu.
	conflated, dropped uint64
}

// ReportSessionPresent makes a CONNECT's successful result carry the
// broker's Session Present flag for the client ID (false on the shared
// connection, whose broker session is the gateway's). A client asks with
// the OPEN option session_present; older ones, which could not read the
// flag, do not get it.
func (s *Session) ReportSessionPresent() { s.reportPresent.Store(true) }

// AddressRetained makes the retained messages the hub has for a shared
// connection's SUBSCRIBE go to the client that subscribed, and to it only
// (Message.Client), as a broker answers each SUBSCRIBE: a second client of
// the session subscribing a filter the session holds, or a client
// subscribing again, gets them too, and the session's other clients do not
// see them again. A client asks with the OPEN option addressed_retained;
// older ones, which could not read such a MESSAGE, get them as before.
func (s *Session) AddressRetained() { s.addressRetained.Store(true) }

// Dispatch runs fn, which hands one unit of client frames to the session,
// unless the connection has been replaced (stale reports that): the frames
// of a connection that lost the session to a newer one are dropped, since
// the client resends what BOUND did not count.
func (s *Session) Dispatch(stale func() bool, fn func() error) error {
	s.dispatching.Lock()
	defer s.dispatching.Unlock()
	if stale() {
		return nil
	}
	return fn()
}

// Rebind attaches a resuming transport and returns the request count for
// its BOUND, with no unit of requests dispatched in between.
func (s *Session) Rebind(t Transport, received uint64) (uint64, *Error) {
	s.dispatching.Lock()
	defer s.dispatching.Unlock()
	if err := s.Attach(t, true, received); err != nil {
		return 0, err
	}
	return s.requests.Load(), nil
}

// whereNow is the latest connection of a session: on call, where the
// client is now, not where it opened the session.
type whereNow struct{ remote, clientIP, transport string }

// Rebound records the address, the client IP (as trusted_proxies
// resolved it; "": the address's) and the transport of a connection that
// rebound the session, for the logs and the admin API.
func (s *Session) Rebound(remote, clientIP, transport string) {
	w := whereNow{remote, OpenInfo{RemoteAddr: remote, ClientIP: clientIP}.ip(), transport}
	s.mu.Lock()
	if s.moved == nil {
		s.moved = new(whereNow)
	}
	*s.moved = w
	s.mu.Unlock()
}

// whereLocked is where the client is now. Called with s.mu held.
func (s *Session) whereLocked() whereNow {
	if s.moved != nil {
		return *s.moved
	}
	return whereNow{s.info.RemoteAddr, s.ip, s.info.Transport}
}

// CountRequest counts a request frame received from the client.
func (s *Session) CountRequest() { s.requests.Add(1) }

// Bound is the transport the session is bound to, nil between two.
func (s *Session) Bound() Transport {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// Requests is the number of request frames received from the client.
func (s *Session) Requests() uint64 { return s.requests.Load() }

// ID is the session's 128-bit random identifier.
func (s *Session) ID() [16]byte { return s.id }

// Secret is the per-session secret a rebinding connection must present.
func (s *Session) Secret() [16]byte { return s.secret }

// IDString is the session id in hex, for logs.
func (s *Session) IDString() string { return hex.EncodeToString(s.id[:]) }

// Info is what the session was opened with.
func (s *Session) Info() OpenInfo { return s.info }

// Manager is the gateway the session belongs to.
func (s *Session) Manager() *Manager { return s.mgr }

// Attach binds a transport to the session. With resume, the transport
// continues after data frame number received, and frames after it are
// replayed. A transport already bound is closed: the newest connection wins,
// so a client whose old connection is half-dead is not locked out.
func (s *Session) Attach(t Transport, resume bool, received uint64) *Error {
	s.mu.Lock()
	if s.closed != nil {
		s.mu.Unlock()
		return Errorf(CodeSessionUnknown, "session has ended")
	}
	if resume {
		if err := s.out.rewind(received); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	old := s.conn
	s.conn = t
	s.overSince = time.Time{}
	if s.bucket != nil {
		s.bucket.Resume(time.Now(), pauseCredit) // no-op unless a poll or stream was answered
	}
	if s.expiry != nil {
		s.expiry.Stop()
		s.expiry = nil
	}
	s.mu.Unlock()
	if old != nil && old != t {
		old.Close(CodeBadRequest, "session resumed on another connection")
	}
	t.Wake()
	return nil
}

// pauseCredit bounds what a capped client's budget gains between two
// requests beyond its burst (Bucket.Resume): enough for a round trip and
// a full answer's transfer on a slow link, while a client that was away
// longer gets no larger answer than that.
const pauseCredit = 2 * time.Second

// Detach unbinds a transport whose connection is gone. The session waits
// for a rebind for the session timeout, then ends.
func (s *Session) Detach(t Transport) { s.DetachFor(t, 0) }

// DetachFor is Detach for a transport whose client may learn only after
// notice that it has to rebind: the session waits notice more. A long
// poll's answer is such a detach: the client polls again at once, and if
// that poll is lost on the way, it learns so only when its own dead-
// connection deadline passes, as a WebSocket's peer would.
func (s *Session) DetachFor(t Transport, notice time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == t && s.written != nil {
		// The connection that was to write the CLOSE frame of a shutdown
		// is done: written, or gone.
		s.written.Done()
		s.written = nil
	}
	if s.conn != t || s.closed != nil {
		return
	}
	s.conn = nil
	s.between = notice > 0
	if s.between && s.bucket != nil {
		// Until the client's next request comes, nothing can be sent: the
		// bandwidth cap's budget accrues meanwhile (Bucket.Pause).
		s.bucket.Pause(time.Now())
	}
	timeout := s.mgr.config().SessionTimeout
	// The timer may fire while a rebind holds s.mu (Stop then returns
	// false): it ends the session only if it is still the session's expiry,
	// decided under the lock a rebind takes.
	var expiry *time.Timer
	expiry = time.AfterFunc(notice+timeout, func() {
		s.mu.Lock()
		if s.expiry != expiry || s.conn != nil || s.closed != nil {
			s.mu.Unlock()
			return
		}
		s.expiry = nil
		s.closed = Errorf(CodeSessionUnknown, "session expired")
		s.mu.Unlock()
		s.finish()
	})
	s.expiry = expiry
	if notice == 0 { // a long poll's answer is routine, not a lost connection
		s.log.Debug("connection lost; the session waits for a rebind", zap.String("session", s.IDString()),
			zap.String("user", s.info.User), zap.String("transport", s.info.Transport), zap.Duration("session_timeout", timeout))
	}
}

// Take appends up to limit frames waiting to be written to dst. When the
// session's bandwidth budget holds frames back, the transport is woken
// when they may go. When the session has ended, it returns the reason.
func (s *Session) Take(dst []Event, limit int) ([]Event, *Error) {
	return s.take(nil, dst, limit, nil)
}

// TakeFor is Take for the writer of transport t: a transport the session
// has left for a newer one takes nothing. Its writer may still be running
// (woken by the Close that Attach sends it), and frames it took would be
// lost: the rebind's BOUND has told the client that the new connection
// replays them. A room, if not nil, bounds an answer of bounded size (a
// long poll's): the take stops before the first frame that does not fit.
func (s *Session) TakeFor(t Transport, dst []Event, limit int, room *Room) ([]Event, *Error) {
	return s.take(t, dst, limit, room)
}

// Room bounds what the TakeFor calls of one answer may take: frames of
// at most Bytes together, each as Size measures it (its encoding on the
// wire), and no more than the replay window holds, as it counts them, so
// that the answer, lost on its way, can be replayed. Unless frames were
// taken before for the same answer (Started), the first frame goes
// whatever its size: a frame larger than Bytes would never go. TakeFor
// counts what it takes in room, so one Room serves a whole answer.
//
// Size nil measures a frame by an estimate of its encoding (the frame's
// payload and topic, and a few bytes), which is enough to bound a write.
//
// Overhead is what the answer costs on the wire besides its frames (an
// HTTP response's head). Under a bandwidth cap it is charged with the
// answer's first frame, which waits until the budget covers the frames
// queued behind it too, up to the budget's burst: answers of a frame or
// two each spent most of the cap on heads, and took over twice the cap
// on the wire.
type Room struct {
	Bytes    int
	Started  bool
	Size     func(*Event) int
	Overhead int
	// Full is set when the next frame was left for want of room.
	Full bool
	// Ping is set when the answer is to carry a PING the client asked
	// for (AnswerPing); the caller appends it and clears Ping.
	Ping bool
	held int // the replay window's measure of the frames taken
}

func (s *Session) take(t Transport, dst []Event, limit int, room *Room) ([]Event, *Error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed != nil {
		return dst, s.closed
	}
	if t != nil && s.conn != t {
		return dst, nil
	}
	s.takePingLocked(room)
	// The transport keeps up, for now, once what it leaves is back under
	// conflate_after (behindLocked).
	defer func() {
		if !s.out.over(s.held) {
			s.overSince = time.Time{}
		}
	}()
	if s.out.loose && s.out.over(s.held) && s.behindLocked() {
		// Also when no message comes: the backlog's topics may have gone
		// quiet, and the client would read all of it.
		s.compactLocked()
	}
	if s.bucket == nil && room == nil {
		return s.out.take(dst, limit, nil), nil
	}
	var now time.Time
	if s.bucket != nil {
		now = time.Now()
	}
	n := len(dst)
	full := false
	head, need := 0, 0 // the answer's head, and the budget its first frame waits for
	if room != nil && !room.Started && s.bucket != nil {
		head = room.Overhead
	}
	dst = s.out.take(dst, limit, func(f *slot) bool {
		var size, held int
		if room != nil {
			if room.Size != nil {
				e := f.event()
				size = room.Size(&e)
			} else {
				size = f.wireSize()
			}
			held = f.size()
			// The replay window keeps the newest frames up to replayBytes
			// as f.size counts them, which is more than their wire size.
			if room.Started && (size > room.Bytes || room.held+held > s.out.limits.replayBytes) {
				full, room.Full = true, true
				return false
			}
		}
		cost := f.wireSize()
		if head > 0 {
			if want := head + s.out.pendingBytes; !s.bucket.Holds(want, now) {
				need = want
				return false
			}
			cost += head
		}
		if s.bucket != nil && !s.bucket.Allow(cost, now) {
			return false
		}
		if room != nil {
			room.Bytes -= size
			room.held += held
			room.Started = true
		}
		head = 0
		return true
	})
	if size, ok := s.out.peek(); ok && len(dst)-n < limit && !full && s.bucket != nil {
		// The budget stopped the take.
		s.budgetTimer.arm(now.Add(max(s.bucket.Wait(max(size, need), now), time.Millisecond)), now, func() func() { return s.budgetWake })
	}
	return dst, nil
}

// compactLocked conflates the messages in no index (queued while the
// client was away, or replayed), once the client is behind (outbox.compact).
// Called with s.mu held.
func (s *Session) compactLocked() {
	if n := s.out.compact(); n > 0 {
		s.mgr.metrics.Conflated.Add(float64(n))
		s.conflated += uint64(n)
		s.held = min(s.held, s.out.pending())
	}
}

// budgetWake wakes the transport when the bandwidth budget lets the next
// frame go (budgetTimer, armed by Take).
func (s *Session) budgetWake() {
	s.mu.Lock()
	s.budgetTimer.fired()
	conn := s.conn
	s.mu.Unlock()
	if conn != nil {
		conn.Wake()
	}
}

// Closed reports why the session ended, or nil while it is live.
func (s *Session) Closed() *Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// pushLocked queues a data frame. Called with s.mu held.
//
// A client that cannot keep up (its writes block, or its bandwidth cap
// holds frames back) makes frames wait here. Once it is behind (past
// conflate_after waiting frames for DefaultBehindAfter), or
// always under a bandwidth cap, a QoS 0 message replaces the waiting
// value of its topic instead of queuing behind it: the client gets the
// current state, in bounded memory. At the queue's bounds a message is
// dropped and counted in an overflow NOTICE, or, with overflow close, a
// QoS 1/2 message ends the session with code 4050: never silently.
func (s *Session) pushLocked(e Event) {
	if s.closed != nil {
		return
	}
	o := &s.out
	delay := s.mgr.config().WriteDelay
	wakeNow := e.Kind != EventMessage || delay == 0
	if e.Kind == EventMessage {
		// While no connection is bound the client is not slow, it is
		// away: frames wait unconflated (up to the queue's bounds) so a
		// resuming client loses nothing. Frames held by the write delay
		// (held) do not make a client slow either. A long-polling client
		// between two polls is not away: on a slow link its answers take
		// most of the time, and its backlog grew without end, unconflated
		// (a phone at 40 KB/s was 30 s behind after 45 s, and growing).
		over := (s.conn != nil || s.between) && o.over(s.held)
		// Past conflate_after, messages are indexed by topic, so that
		// once the client is behind the newest replaces them.
		track := s.bucket != nil || over
		away := !track && s.conn == nil && !s.between
		if track || away {
			// A message published at QoS 1 for QoS 0 subscriptions is a
			// QoS 0 value: conflated, or compacted once the client is
			// back from away (a sensor publishing at QoS 1 to a
			// dashboard).
			e.Msg = s.receivedQoS(e.Msg)
		}
		conflate := s.bucket != nil || over && s.behindLocked()
		if conflate && o.loose {
			s.compactLocked()
		}
		switch {
		case conflate && o.conflate(e):
			s.mgr.metrics.Conflated.Inc()
			s.conflated++
		case o.full(&e):
			if e.Msg.QoS > 0 && s.mgr.config().OverflowClose {
				s.overflowed("too many messages queued for a slow client")
				return
			}
			s.droppedLocked(e.Msg)
			wakeNow = true // the overflow notice does not wait
		case away:
			o.pushAway(e)
		default:
			o.push(e, track)
			if !wakeNow {
				s.held++
			}
		}
	} else if e.Kind == EventResult {
		if o.pending() >= resultsFactor*o.limits.pendingFrames || o.pendingBytes >= resultsFactor*o.limits.pendingBytes {
			// A client that sends requests and does not read their
			// RESULTs (which are never dropped) would have the gateway
			// queue them without end: 250,000 from one 1 MB message.
			s.overflowed("too many results queued: the client does not read them")
			return
		}
		if e.InOrder {
			o.pushResultInOrder(e)
		} else {
			o.pushResult(e)
		}
	} else {
		o.push(e, false)
	}
	if s.conn == nil {
		return
	}
	if !wakeNow {
		if !s.wakeQueued {
			s.wakeQueued = true
			s.mgr.wakes.add(s, delay)
		}
		return
	}
	s.conn.Wake()
}

// behindLocked reports whether the client is behind: frames have stayed
// past conflate_after for behindAfter, its transport's takes not bringing
// them back under it (such a take restarts the clock: a take that leaves
// them past it does not, or a slow client taking 16 KiB at a time was
// seldom behind for long). Called with s.mu held, when they are past it.
func (s *Session) behindLocked() bool {
	now := time.Now()
	if s.overSince.IsZero() {
		s.overSince = now
		return false
	}
	return now.Sub(s.overSince) >= s.out.limits.behindAfter
}

// droppedLocked counts a message dropped at a bound (the queue's, or that
// of the values frequency limits hold) in the overflow NOTICE. A QoS 1/2
// message of a dedicated stream is acknowledged to the broker: the drop is
// the loss the NOTICE counts. Unacknowledged, it would stall the stream:
// paho acknowledges in the order messages arrived, so every later
// acknowledgment would wait behind it, and the broker, its in-flight
// window full, would send nothing more until the client reconnected.
// Called with s.mu held.
func (s *Session) droppedLocked(m *Message) {
	s.mgr.metrics.Dropped.Inc()
	s.dropped++
	s.out.overflow()
	if m.PacketID == 0 {
		return
	}
	if h := s.dedicatedHubLocked(m.Stream); h != nil {
		h.ack(uint16(m.PacketID))
	}
}

func (s *Session) push(e Event) {
	s.mu.Lock()
	s.pushLocked(e)
	s.mu.Unlock()
}

// overflowed ends the session with 4050 from pushLocked, with s.mu held.
// The release runs on its own goroutine: the caller may hold a hub's lock.
func (s *Session) overflowed(why string) {
	s.closed = Errorf(CodeOverflow, "%s", why)
	go s.finish()
}

// resultsFactor: unwritten frames may reach this many times the queue's
// bounds (max_queued_frames, max_queued_bytes) with RESULTs, which are
// never dropped, before the session ends with 4050.
const resultsFactor = 2

// deliver queues a broker message. It is the fan-out hot path: no
// allocation, one lock; throttled subscriptions go through the gate.
func (s *Session) deliver(m *Message) {
	s.mu.Lock()
	// A closed session gets messages until its clients have detached from
	// their hubs; pushLocked drops them, and the gate is gone (finish).
	// An addressed message is one client's answer to its SUBSCRIBE: no
	// limit holds it back, and no other value takes its place.
	if s.throttled > 0 && s.closed == nil && m.Client == 0 { // throttled, not gate: it is on the cache line fan-out reads anyway
		if m = s.admit(m); m == nil {
			s.mu.Unlock()
			return
		}
	}
	s.pushLocked(Event{Kind: EventMessage, Msg: m})
	s.mu.Unlock()
}

// connected answers a CONNECT that succeeded: the client's stream, and
// whether the broker kept a session for its client ID.
func (s *Session) connected(req, stream uint64, present bool) {
	s.answer(Event{Kind: EventResult, Req: req, Value: stream, ConnectFlags: s.reportPresent.Load(), SessionPresent: present})
}

// resultInOrder answers a request behind the frames already waiting, where
// a RESULT usually overtakes them: a dedicated client's UNSUBSCRIBE, whose
// messages the broker sent before its UNSUBACK reach a direct client before
// the answer, and which the client does not filter by its subscriptions (a
// persistent session's may match none).
func (s *Session) resultInOrder(req uint64) {
	s.answer(Event{Kind: EventResult, Req: req, InOrder: true})
}

func (s *Session) result(req uint64, err *Error, value uint64) {
	e := Event{Kind: EventResult, Req: req, Value: value}
	if err != nil {
		e.Code, e.Text = err.Code, err.Message
	}
	s.answer(e)
}

// answer queues a request's result, and gives its place in the backlog
// back (answeredLocked).
func (s *Session) answer(e Event) {
	s.mu.Lock()
	if c := s.runningLocked(e.Req); c != nil {
		s.answeredLocked(c)
		// After a RESULT of the client's that went behind the frames
		// waiting, its later ones go behind too until those are written
		// (conservatively: until nothing waits), so that none overtakes it.
		e.InOrder = e.InOrder || c.resultsInOrder && s.out.pending() > 0
		c.resultsInOrder = e.InOrder
	}
	s.pushLocked(e)
	s.mu.Unlock()
}

// runningLocked returns the client whose queue runs request req, if any.
// Called with s.mu held.
func (s *Session) runningLocked(req uint64) *Client {
	for _, c := range s.clients {
		if c.running && c.runReq == req {
			return c
		}
	}
	return nil
}

// Close ends the session: its clients are disconnected, its subscriptions
// released, and its transport (if any) told why.
func (s *Session) Close(reason *Error) { s.closeWith(reason, nil, false) }

// Leave ends the session for a web client that went away without
// disconnecting its clients (its page was closed, reloaded or left): as
// Close by the client, queued requests included, but the dedicated
// clients' wills fire, as a direct MQTT connection's do when its page
// goes. An explicit disconnect before it is a clean one still.
func (s *Session) Leave() {
	s.closeWith(&Error{Code: CodeOK, Message: "closed by the client: its page went away"}, nil, true)
}

// closeAwaitingWrite is Close that, if written is not nil and a connection
// is bound to write the CLOSE frame, counts it in written until that
// connection is done (Detach).
func (s *Session) closeAwaitingWrite(reason *Error, written *sync.WaitGroup) {
	s.closeWith(reason, written, false)
}

func (s *Session) closeWith(reason *Error, written *sync.WaitGroup, left bool) {
	s.mu.Lock()
	if s.closed != nil {
		s.mu.Unlock()
		return
	}
	s.closed, s.left = reason, left
	if written != nil && s.conn != nil {
		written.Add(1)
		s.written = written
	}
	s.mu.Unlock()
	s.finish()
}

// clientsLocked returns the session's clients. Called with s.mu held.
func (s *Session) clientsLocked() []*Client {
	clients := make([]*Client, 0, len(s.clients))
	for _, c := range s.clients {
		clients = append(clients, c)
	}
	return clients
}

// finish releases what a closed session holds.
func (s *Session) finish() {
	s.mu.Lock()
	clients := s.clientsLocked()
	if s.expiry != nil {
		s.expiry.Stop()
	}
	conn := s.conn
	s.out.release()
	s.gateTimer.stop()
	s.budgetTimer.stop()
	s.gate = nil // deliver no longer admits (closed)
	reason, left := s.closed, s.left
	frames, conflated, dropped := s.out.next-1, s.conflated, s.dropped
	now := s.whereLocked()
	s.mu.Unlock()
	// A will is for a client that vanished: the session expired, broke the
	// protocol, was ended by the gateway, or its page went away (Leave). A
	// session the web client closed is a clean DISCONNECT, and so is a
	// shutdown (4090) unless wills_on_shutdown says otherwise
	// (Manager.Close).
	fireWill := left || (reason.Code != CodeOK && reason.Code != CodeShuttingDown)
	s.closeAfter(len(clients))
	for _, c := range clients {
		c.release(fireWill, reason.Code == CodeOK)
	}
	s.mgr.forget(s, reason)
	if conn != nil {
		conn.Wake()
	}
	s.log.Info("session closed", zap.String("session", s.IDString()), zap.String("user", s.info.User),
		zap.String("remote", s.info.RemoteAddr), zap.String("client_ip", s.info.ip()), zap.String("transport", s.info.Transport), zap.Uint32("code", uint32(reason.Code)),
		zap.String("reason", reason.Message), zap.Duration("duration", time.Since(s.created)),
		zap.Uint64("frames", frames), zap.Uint64("conflated", conflated), zap.Uint64("dropped", dropped),
		zap.String("last_remote", now.remote), zap.String("last_client_ip", now.clientIP), zap.String("last_transport", now.transport))
}
