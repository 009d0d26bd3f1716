package session

import "time"

// outbox is a session's numbered stream of data frames: frames not yet
// written, and behind them a bounded window of written frames kept for
// replay when the client rebinds after a dropped connection.
//
// Frames are numbered from 1 in the order they are queued; the client counts
// what it receives, so "received" in a BIND names the last frame it has.
// The outbox is not synchronised: the session's mutex guards it.
type outbox struct {
	ring []slot // circular; holds frames numbered base .. next-1
	head int    // ring index of frame number base
	base uint64 // number of the oldest frame held
	next uint64 // number the next queued frame gets
	sent uint64 // number of the last frame handed to a transport

	sentBytes    int // bytes held by written frames (replay window)
	pendingBytes int // bytes held by unwritten frames

	// latest maps a topic to its unwritten QoS 0 message while the outbox
	// conflates, so a newer value replaces it in place.
	latest map[conflationKey]uint64

	// loose is set while unwritten QoS 0 messages queued while the client
	// was away (pushAway), or sent again by a rewind, may wait in no
	// index: compact conflates them once the client falls behind.
	loose bool

	// notice is the number of the unwritten overflow NOTICE, 0 if none:
	// further drops add to its count instead of queueing more notices.
	notice uint64

	// resultsEnd is where pushResult puts the next RESULT: the number
	// after the unwritten RESULTs that lead the unwritten frames, when it
	// is past sent (otherwise they are found again from sent+1). Without
	// it every RESULT scanned all the unwritten ones before it, and a unit
	// of 250,000 requests from a client that did not read cost minutes of
	// CPU.
	resultsEnd uint64

	limits outboxLimits
}

// slot is one frame in the ring: a broker message (nearly every frame, held
// as the *Message every session shares), or any other event, boxed. A
// session's replay window is hundreds of slots, so a slot is two words
// rather than a whole Event (eight): a quarter of the memory, of the
// garbage collector's scanning, and of the cache lines fan-out touches.
type slot struct {
	msg *Message
	ctl *Event
}

func slotOf(e Event) slot {
	if e.Kind == EventMessage {
		return slot{msg: e.Msg}
	}
	ctl := new(Event) // only here: taking e's address would allocate for messages too
	*ctl = e
	return slot{ctl: ctl}
}

func (s *slot) event() Event {
	if s.msg != nil {
		return Event{Kind: EventMessage, Msg: s.msg}
	}
	return *s.ctl
}

func (s *slot) size() int {
	if s.msg != nil {
		return messageSize(s.msg)
	}
	return s.ctl.size()
}

func (s *slot) wireSize() int {
	if s.msg != nil {
		return messageWireSize(s.msg)
	}
	return s.ctl.wireSize()
}

type conflationKey struct {
	stream uint64
	topic  string
}

type outboxLimits struct {
	pendingFrames int // unwritten frames before the session overflows
	pendingBytes  int
	conflateAfter int           // unwritten frames past which QoS 0 is conflated...
	behindAfter   time.Duration // ...once they have waited this long untaken
	replayFrames  int           // written frames kept for replay
	replayBytes   int
}

// at is the slot of frame number n, which the ring holds.
func (o *outbox) at(n uint64) *slot {
	return &o.ring[(o.head+int(n-o.base))%len(o.ring)]
}

func newOutbox(l outboxLimits) *outbox {
	return &outbox{ring: make([]slot, 4), base: 1, next: 1, limits: l} // grows on demand; idle sessions stay small
}

// pending is the number of frames queued and not yet written.
func (o *outbox) pending() int { return int(o.next - 1 - o.sent) }

// full reports whether e would exceed the bounds on unwritten frames.
func (o *outbox) full(e *Event) bool {
	return o.pending() >= o.limits.pendingFrames || o.pendingBytes+e.size() > o.limits.pendingBytes
}

// DefaultBehindAfter is how long frames stay past conflate_after, the
// transport not taking them back under it, before the client counts as
// behind.
//
// The number of waiting frames alone does not say a client is behind: a
// burst from the broker (500 messages in a millisecond) outruns any
// writer for a moment, and conflating it took a third of a fast local
// client's QoS 0 messages, a chat's lines among them. A client that
// keeps up takes the frames back under conflate_after within a
// millisecond (a write takes up to 16 KiB of them); one whose socket is
// full, or whose stream blocks, or that takes less than comes, does not.
// 20 ms tells them apart and still conflates for a slow client before
// its queue grows far.
const DefaultBehindAfter = 20 * time.Millisecond

// over reports whether more than conflate_after frames wait, held ones
// (waiting only for the write delay, which says nothing of the client)
// apart.
func (o *outbox) over(held int) bool {
	return o.pending()-held >= o.limits.conflateAfter
}

// conflate replaces the unwritten QoS 0 message of e's topic with e, if
// there is one. The frame keeps its number and place: the client sees the
// newer value where the older would have been.
func (o *outbox) conflate(e Event) bool {
	if !conflatable(e) || o.latest == nil {
		return false
	}
	n, ok := o.latest[conflationKey{e.Msg.Stream, e.Msg.Topic}]
	if !ok || n <= o.sent {
		return false
	}
	old := o.at(n)
	o.pendingBytes += e.size() - old.size()
	*old = slotOf(e)
	return true
}

// conflatable reports whether e is a QoS 0 message for every client of the
// session whose subscriptions match, which a newer value of its topic may
// replace while it waits, and which may replace an older one. A message
// for one client (addressed) or for all but one (a client's own publish,
// Message.Except) is neither: for some client the value it would replace
// or be replaced by is the latest.
func conflatable(e Event) bool {
	return e.Kind == EventMessage && e.Msg.QoS == 0 && e.Msg.Client == 0 && e.Msg.Except == 0
}

// push queues a frame. Callers check full first: push itself never
// refuses, because control frames (results, notices) must always get out.
func (o *outbox) push(e Event, track bool) {
	if track && conflatable(e) {
		if o.latest == nil {
			o.latest = map[conflationKey]uint64{}
		}
		o.latest[conflationKey{e.Msg.Stream, e.Msg.Topic}] = o.next
	} else if e.Kind == EventMessage && o.latest != nil {
		// A QoS 1/2 message (or an untracked one) of a topic whose older
		// value waits: a newer QoS 0 value must not take that older one's
		// place, ahead of this message, but come after it.
		delete(o.latest, conflationKey{e.Msg.Stream, e.Msg.Topic})
	}
	n := int(o.next - o.base)
	if n == len(o.ring) {
		o.grow()
	}
	o.ring[(o.head+n)%len(o.ring)] = slotOf(e)
	o.next++
	o.pendingBytes += e.size()
}

// pushAway queues a frame for a client that is away: unindexed, so that a
// client back on a good link gets every message, until compact.
func (o *outbox) pushAway(e Event) {
	o.push(e, false)
	if conflatable(e) {
		o.loose = true
	}
}

// pushResult queues a RESULT behind the unwritten RESULTs but ahead of
// every other unwritten frame: results do not wait behind a backlog of
// broker messages (a slow client's, or a bandwidth cap's), so a capped
// dashboard's commands are confirmed at once, and they stay in order. The
// client has seen none of the frames they overtake, so their numbers may
// shift by one; the indexes into them follow.
func (o *outbox) pushResult(e Event) {
	o.push(e, false)
	first, pushed := max(o.sent+1, o.resultsEnd), *o.at(o.next - 1)
	for first < o.next-1 && o.at(first).ctl != nil && o.at(first).ctl.Kind == EventResult {
		first++
	}
	o.resultsEnd = first + 1
	for n := o.next - 1; n > first; n-- {
		*o.at(n) = *o.at(n - 1)
	}
	*o.at(first) = pushed
	for k, n := range o.latest {
		if n >= first {
			o.latest[k] = n + 1
		}
	}
	if o.notice >= first {
		o.notice++
	}
}

// pushResultInOrder queues a RESULT behind every unwritten frame. Other
// clients' RESULTs still overtake it (pushResult): one client's wait is not
// the session's.
func (o *outbox) pushResultInOrder(e Event) {
	o.push(e, false)
}

// overflow records a message dropped for a full outbox: the client is told
// with a NOTICE (code 4050) whose value counts the drops since the last
// notice it received.
func (o *outbox) overflow() {
	if o.notice > o.sent {
		o.at(o.notice).ctl.Value++
		return
	}
	o.notice = o.next
	o.push(Event{Kind: EventNotice, Code: CodeOverflow, Text: "messages dropped: the client cannot keep up", Value: 1}, false)
}

func (o *outbox) grow() {
	n := int(o.next - o.base)
	ring := make([]slot, 2*len(o.ring))
	for i := 0; i < n; i++ {
		ring[i] = o.ring[(o.head+i)%len(o.ring)]
	}
	o.ring, o.head = ring, 0
}

// take appends up to max unwritten frames to dst, marks them written, and
// trims the replay window to its bounds. allow, when set, may stop the take
// before a frame (a bandwidth budget, an answer's size).
func (o *outbox) take(dst []Event, max int, allow func(*slot) bool) []Event {
	for o.sent+1 < o.next && max > 0 {
		s := o.at(o.sent + 1)
		if allow != nil && !allow(s) {
			break
		}
		e := s.event()
		dst = append(dst, e)
		o.sent++
		if o.latest != nil && e.Kind == EventMessage && e.Msg.QoS == 0 {
			k := conflationKey{e.Msg.Stream, e.Msg.Topic}
			if o.latest[k] == o.sent {
				delete(o.latest, k)
			}
		}
		n := s.size()
		o.pendingBytes -= n
		o.sentBytes += n
		max--
	}
	for o.base <= o.sent && (int(o.sent-o.base+1) > o.limits.replayFrames || o.sentBytes > o.limits.replayBytes) {
		o.dropOldest()
	}
	if o.sent+1 >= o.next {
		o.loose = false
	}
	return dst
}

// compact drops every unwritten QoS 0 message that a newer one of its
// topic, further back, supersedes, and indexes those left in latest: what
// conflate does as messages come, done once the client falls behind for
// those queued while it was away or sent again by a rewind. Without it a client back from a spell away (up to
// max_queued_bytes queued, unconflated, so that one that keeps up loses
// nothing) on a slow link read through all of it before any newer value:
// a phone on 40 KB/s was 50 s behind after 45 s away, and caught up slowly.
// Frames that stay keep their order; those after a dropped one move up and
// take smaller numbers, as pushResult's overtaken frames do (the client
// has seen none of them). It returns the number dropped.
func (o *outbox) compact() int {
	o.loose = false
	first := o.sent + 1
	if first >= o.next {
		return 0
	}
	last := make(map[conflationKey]uint64)
	for n := first; n < o.next; n++ {
		if e := o.at(n).event(); conflatable(e) {
			last[conflationKey{e.Msg.Stream, e.Msg.Topic}] = n
		}
	}
	if o.latest == nil {
		o.latest = make(map[conflationKey]uint64, len(last))
	}
	clear(o.latest)
	keep, notice, dropped := first, uint64(0), 0
	for n := first; n < o.next; n++ {
		f := *o.at(n)
		e := f.event()
		k := conflationKey{}
		if e.Kind == EventMessage {
			k = conflationKey{e.Msg.Stream, e.Msg.Topic}
		}
		switch {
		case conflatable(e) && last[k] != n:
			o.pendingBytes -= f.size()
			dropped++
			continue
		case conflatable(e):
			o.latest[k] = keep // as push indexes it
		case e.Kind == EventMessage:
			delete(o.latest, k) // as push: a newer value must not overtake it
		}
		if n == o.notice {
			notice = keep
		}
		*o.at(keep) = f
		keep++
	}
	for n := keep; n < o.next; n++ {
		*o.at(n) = slot{} // release the messages for the garbage collector
	}
	o.next = keep
	if o.notice > o.sent {
		o.notice = notice
	}
	o.resultsEnd = 0 // found again from sent+1
	return dropped
}

func (o *outbox) dropOldest() {
	s := &o.ring[o.head]
	o.sentBytes -= s.size()
	*s = slot{} // release the message for the garbage collector
	o.head = (o.head + 1) % len(o.ring)
	o.base++
}

// peek returns the wire size of the next unwritten frame, if any.
func (o *outbox) peek() (wireSize int, ok bool) {
	if o.sent+1 >= o.next {
		return 0, false
	}
	return o.at(o.sent + 1).wireSize(), true
}

// rewind prepares a replay for a client that has received frames up to and
// including number received: the next take starts at received+1.
func (o *outbox) rewind(received uint64) *Error {
	if received > o.sent {
		return Errorf(CodeSessionCount, "client claims frame %d but only %d were sent", received, o.sent)
	}
	if received+1 < o.base {
		return Errorf(CodeSessionGap, "frames %d to %d are no longer buffered", received+1, o.base-1)
	}
	for n := o.sent; n > received; n-- {
		size := o.at(n).size()
		o.sentBytes -= size
		o.pendingBytes += size
	}
	if o.sent > received {
		o.loose = true // the replayed messages are in no index
	}
	o.sent = received
	o.resultsEnd = 0 // the frames to replay may lead with messages
	return nil
}

// release drops every frame, for a session that is over.
func (o *outbox) release() {
	clear(o.ring)
	o.latest, o.loose = nil, false
	o.base, o.sent, o.sentBytes, o.pendingBytes = o.next, o.next-1, 0, 0
	o.head = 0
}
