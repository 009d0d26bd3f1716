package session

// outbox is a session's numbered stream of data frames: frames not yet
// written, and behind them a bounded window of written frames kept for
// replay when the client rebinds after a dropped connection.
//
// Frames are numbered from 1 in the order they are queued; the client counts
// what it receives, so "received" in a BIND names the last frame it has.
// The outbox is not synchronised: the session's mutex guards it.
type outbox struct {
	ring []Event // circular; holds frames numbered base .. next-1
	head int     // ring index of frame number base
	base uint64  // number of the oldest frame held
	next uint64  // number the next queued frame gets
	sent uint64  // number of the last frame handed to a transport

	sentBytes    int // bytes held by written frames (replay window)
	pendingBytes int // bytes held by unwritten frames

	limits outboxLimits
}

type outboxLimits struct {
	pendingFrames int // unwritten frames before the session overflows
	pendingBytes  int
	replayFrames  int // written frames kept for replay
	replayBytes   int
}

func newOutbox(l outboxLimits) *outbox {
	return &outbox{ring: make([]Event, 16), base: 1, next: 1, limits: l}
}

// pending is the number of frames queued and not yet written.
func (o *outbox) pending() int { return int(o.next - 1 - o.sent) }

// push queues a frame. It reports false, queuing nothing, when the unwritten
// frames are at their bound: the caller decides what overflow means.
func (o *outbox) push(e Event) bool {
	if o.pending() >= o.limits.pendingFrames || o.pendingBytes+e.size() > o.limits.pendingBytes {
		return false
	}
	n := int(o.next - o.base)
	if n == len(o.ring) {
		o.grow()
	}
	o.ring[(o.head+n)%len(o.ring)] = e
	o.next++
	o.pendingBytes += e.size()
	return true
}

func (o *outbox) grow() {
	n := int(o.next - o.base)
	ring := make([]Event, 2*len(o.ring))
	for i := 0; i < n; i++ {
		ring[i] = o.ring[(o.head+i)%len(o.ring)]
	}
	o.ring, o.head = ring, 0
}

// take appends up to max unwritten frames to dst, marks them written, and
// trims the replay window to its bounds.
func (o *outbox) take(dst []Event, max int) []Event {
	for o.sent+1 < o.next && max > 0 {
		e := o.ring[(o.head+int(o.sent+1-o.base))%len(o.ring)]
		dst = append(dst, e)
		o.sent++
		o.pendingBytes -= e.size()
		o.sentBytes += e.size()
		max--
	}
	for o.base <= o.sent && (int(o.sent-o.base+1) > o.limits.replayFrames || o.sentBytes > o.limits.replayBytes) {
		o.dropOldest()
	}
	return dst
}

func (o *outbox) dropOldest() {
	e := &o.ring[o.head]
	o.sentBytes -= e.size()
	*e = Event{} // release the message for the garbage collector
	o.head = (o.head + 1) % len(o.ring)
	o.base++
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
		e := &o.ring[(o.head+int(n-o.base))%len(o.ring)]
		o.sentBytes -= e.size()
		o.pendingBytes += e.size()
	}
	o.sent = received
	return nil
}

// release drops every frame, for a session that is over.
func (o *outbox) release() {
	clear(o.ring)
	o.base, o.sent, o.sentBytes, o.pendingBytes = o.next, o.next-1, 0, 0
	o.head = 0
}
