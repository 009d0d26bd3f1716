package session

import (
	"fmt"
	"slices"
	"testing"
)

func testLimits() outboxLimits {
	return outboxLimits{pendingFrames: 100, pendingBytes: 1 << 20, replayFrames: 10, replayBytes: 1 << 20}
}

func takeAll(o *outbox) []uint64 {
	var vals []uint64
	for _, e := range o.take(nil, 1<<30, nil) {
		vals = append(vals, e.Value)
	}
	return vals
}

func TestOutboxNumbersAndReplays(t *testing.T) {
	o := newOutbox(testLimits())
	for i := 1; i <= 40; i++ { // forces the ring to grow past its initial 16
		o.push(Event{Kind: EventNotice, Value: uint64(i)}, false)
		if i%7 == 0 {
			takeAll(o)
		}
	}
	got := takeAll(o)
	if len(got) != 5 || got[0] != 36 || got[4] != 40 {
		t.Fatalf("unexpected frames after the last take: %v", got)
	}
	// The replay window holds the last 10 written frames: 31..40.
	if err := o.rewind(30); err != nil {
		t.Fatalf("rewind within window: %v", err)
	}
	got = takeAll(o)
	if len(got) != 10 || got[0] != 31 || got[9] != 40 {
		t.Fatalf("replay = %v, want 31..40", got)
	}
	if err := o.rewind(29); err == nil || err.Code != CodeSessionGap {
		t.Fatalf("rewind before window: got %v, want session_gap", err)
	}
	if err := o.rewind(41); err == nil || err.Code != CodeSessionCount {
		t.Fatalf("rewind from the future: got %v, want session_count", err)
	}
	if err := o.rewind(40); err != nil || len(takeAll(o)) != 0 {
		t.Fatalf("rewind to the end must replay nothing, err=%v", err)
	}
}

func TestOutboxBoundsUnwrittenFrames(t *testing.T) {
	l := testLimits()
	l.pendingFrames = 3
	o := newOutbox(l)
	e := Event{Kind: EventNotice}
	for i := 0; i < 3; i++ {
		if o.full(&e) {
			t.Fatalf("full at %d, below the bound", i)
		}
		o.push(e, false)
	}
	if !o.full(&e) {
		t.Fatal("not full at the bound")
	}
	takeAll(o)
	if o.full(&e) {
		t.Fatal("still full after the frames were written")
	}
}

func TestOutboxReplayBytesBound(t *testing.T) {
	l := testLimits()
	l.replayBytes = 3 * 1100
	o := newOutbox(l)
	m := &Message{Payload: make([]byte, 1000)}
	for i := 0; i < 10; i++ {
		o.push(Event{Kind: EventMessage, Msg: m}, false)
	}
	takeAll(o)
	if held := int(o.sent - o.base + 1); held != 3 {
		t.Fatalf("replay window holds %d frames, want 3 by the byte bound", held)
	}
}

func TestOutboxConflatesUnwrittenQoS0PerTopic(t *testing.T) {
	o := newOutbox(testLimits())
	for i := 0; i < 10; i++ {
		for _, topic := range []string{"a", "b"} {
			e := Event{Kind: EventMessage, Msg: &Message{Topic: topic, Payload: []byte{byte(i)}}}
			if !o.conflate(e) {
				o.push(e, true)
			}
		}
	}
	got := o.take(nil, 100, nil)
	if len(got) != 2 || got[0].Msg.Payload[0] != 9 || got[1].Msg.Payload[0] != 9 {
		t.Fatalf("want the latest value of a and b, got %d frames", len(got))
	}
	// Once written, a topic's next value is queued, not conflated.
	e := Event{Kind: EventMessage, Msg: &Message{Topic: "a", Payload: []byte{10}}}
	if o.conflate(e) {
		t.Fatal("conflated into a frame already written")
	}
	q1 := Event{Kind: EventMessage, Msg: &Message{Topic: "a", QoS: 1}}
	o.push(q1, true)
	if o.conflate(Event{Kind: EventMessage, Msg: &Message{Topic: "a", QoS: 1}}) {
		t.Fatal("QoS 1 conflated")
	}
}

// A message addressed to one client of the session (a retained message
// for its SUBSCRIBE), or for all but one (a client's own publish, which its
// No Local keeps from it), neither takes the place of a waiting value (some
// client would lose it) nor gives its own to a newer one (some client
// would lose its latest value); a newer value still replaces the one
// waiting before it.
func TestOutboxKeepsMessagesNotForEveryClient(t *testing.T) {
	for name, special := range map[string]*Message{
		"addressed":   {Topic: "a", Payload: []byte("special"), Retain: true, Client: 2},
		"all but one": {Topic: "a", Payload: []byte("special"), Except: 2},
	} {
		t.Run(name, func(t *testing.T) {
			o := newOutbox(testLimits())
			push := func(m *Message) bool {
				e := Event{Kind: EventMessage, Msg: m}
				if o.conflate(e) {
					return true
				}
				o.push(e, true)
				return false
			}
			push(&Message{Topic: "a", Payload: []byte("live 1")})
			if push(special) {
				t.Fatal("it took the place of a value for every client")
			}
			if push(&Message{Topic: "a", Payload: []byte("live 2")}) {
				t.Fatal("a newer value took the place of one queued before it")
			}
			var got []string
			for _, e := range o.take(nil, 100, nil) {
				got = append(got, string(e.Msg.Payload))
			}
			if !slices.Equal(got, []string{"live 1", "special", "live 2"}) {
				t.Fatalf("frames %q", got)
			}
		})
	}
}

func TestOutboxOverflowNoticeCounts(t *testing.T) {
	o := newOutbox(testLimits())
	for i := 0; i < 5; i++ {
		o.overflow()
	}
	got := o.take(nil, 100, nil)
	if len(got) != 1 || got[0].Code != CodeOverflow || got[0].Value != 5 {
		t.Fatalf("want one notice counting 5, got %+v", got)
	}
	o.overflow()
	if got := o.take(nil, 100, nil); len(got) != 1 || got[0].Value != 1 {
		t.Fatalf("a drop after the notice was written needs a new notice: %+v", got)
	}
}

// describeFrames names frames for comparison: "result 7", "notice 2", or
// what message says of a message.
func describeFrames(events []Event, message func(*Message) string) []string {
	var names []string
	for _, e := range events {
		switch e.Kind {
		case EventResult:
			names = append(names, fmt.Sprint("result ", e.Req))
		case EventNotice:
			names = append(names, fmt.Sprint("notice ", e.Value))
		default:
			names = append(names, message(e.Msg))
		}
	}
	return names
}

// A RESULT goes ahead of the unwritten frames but behind earlier RESULTs;
// the others keep their order, and the conflation index and the pending
// overflow notice follow them.
func TestOutboxResultOvertakesBacklog(t *testing.T) {
	o := newOutbox(testLimits())
	msg := func(topic string) Event {
		return Event{Kind: EventMessage, Msg: &Message{Stream: 1, Topic: topic, Payload: []byte(topic)}}
	}
	o.push(msg("written"), true)
	takeAll(o)
	o.push(msg("a"), true)
	o.overflow() // a notice waits after "a"
	o.push(msg("b"), true)
	o.pushResult(Event{Kind: EventResult, Req: 7})
	o.pushResult(Event{Kind: EventResult, Req: 8})
	if !o.conflate(msg("b")) || !o.conflate(msg("a")) {
		t.Fatal("the conflation index lost the waiting messages")
	}
	o.overflow() // counted in the waiting notice, not a new one
	got := describeFrames(o.take(nil, 100, nil), func(m *Message) string { return m.Topic })
	if want := []string{"result 7", "result 8", "a", "notice 2", "b"}; !slices.Equal(got, want) {
		t.Fatalf("frames %q, want %q", got, want)
	}
	if o.next != 7 {
		t.Fatalf("next frame number %d, want 7 (six queued)", o.next)
	}
}

// Messages queued while the client was away are conflated at once when
// compact runs: each topic's newest QoS 0 value
// stays, at its place, and the frames that stay keep their order, the
// QoS 1 message, the RESULT and the notice among them; the numbers, the
// index and the notice follow, and a later value conflates into the one
// kept. Frames written, and those a rewind makes unwritten again, too.
func TestOutboxCompactsWhatCameBeforeItConflated(t *testing.T) {
	o := newOutbox(testLimits())
	msg := func(topic string, v byte, qos byte) Event {
		return Event{Kind: EventMessage, Msg: &Message{Stream: 1, Topic: topic, QoS: qos, Payload: []byte{v}}}
	}
	o.push(msg("written", 0, 0), false)
	takeAll(o)
	o.push(msg("a", 1, 0), false) // queued while connected, then away
	if o.loose {
		t.Fatal("a message queued while connected made the outbox loose")
	}
	o.pushAway(msg("b", 1, 0))
	o.pushAway(msg("a", 2, 1)) // QoS 1: stays, and "a" 1 is still older than "a" 3
	o.overflow()
	o.pushAway(msg("a", 3, 0))
	o.pushResultInOrder(Event{Kind: EventResult, Req: 9})
	o.pushAway(msg("b", 2, 0))
	o.pushAway(msg("a", 4, 0))
	if !o.loose {
		t.Fatal("messages queued while away must leave the outbox loose")
	}
	bytesBefore := o.pendingBytes
	if n := o.compact(); n != 3 {
		t.Fatalf("compact dropped %d, want 3 (a 1, b 1, a 3)", n)
	}
	if o.loose || o.pending() != 5 || o.next != 2+5 {
		t.Fatalf("loose %v, %d pending, next %d; want 5 pending, next 7", o.loose, o.pending(), o.next)
	}
	if o.pendingBytes >= bytesBefore {
		t.Fatalf("pending bytes %d, not below %d", o.pendingBytes, bytesBefore)
	}
	if !o.conflate(msg("b", 3, 0)) || !o.conflate(msg("a", 5, 0)) {
		t.Fatal("the values kept must be indexed: a newer one replaces them")
	}
	o.overflow() // counted in the kept notice
	describe := func(events []Event) []string {
		return describeFrames(events, func(m *Message) string { return fmt.Sprintf("%s %d q%d", m.Topic, m.Payload[0], m.QoS) })
	}
	want := []string{"a 2 q1", "notice 2", "result 9", "b 3 q0", "a 5 q0"}
	if got := describe(o.take(nil, 100, nil)); !slices.Equal(got, want) {
		t.Fatalf("frames %q, want %q", got, want)
	}
	if o.latest[conflationKey{1, "a"}] != 0 || len(o.latest) != 0 {
		t.Fatalf("written frames left in the index: %v", o.latest)
	}
	// A rewind makes written frames unwritten again, in no index.
	o.push(msg("a", 6, 0), false)
	takeAll(o)
	if err := o.rewind(1); err != nil {
		t.Fatal(err)
	}
	if !o.loose {
		t.Fatal("a rewind must leave the outbox loose")
	}
	o.compact()
	if got, want := describe(o.take(nil, 100, nil)), []string{"a 2 q1", "notice 2", "result 9", "b 3 q0", "a 6 q0"}; !slices.Equal(got, want) {
		t.Fatalf("after a rewind, frames %q, want %q", got, want)
	}
}

// RESULTs keep overtaking waiting messages, in order, after some frames
// were written and after a rebind rewinds to frames written before: the
// position pushResult remembers follows both.
func TestOutboxResultsAfterTakeAndRewind(t *testing.T) {
	o := newOutbox(testLimits())
	msg := func(topic string) Event {
		return Event{Kind: EventMessage, Msg: &Message{Stream: 1, Topic: topic, Payload: []byte(topic)}}
	}
	names := func(events []Event) []string {
		var got []string
		for _, e := range events {
			if e.Kind == EventResult {
				got = append(got, fmt.Sprint("result ", e.Req))
			} else {
				got = append(got, e.Msg.Topic)
			}
		}
		return got
	}
	o.push(msg("m1"), true)
	o.push(msg("m2"), true)
	o.pushResult(Event{Kind: EventResult, Req: 1})
	if got := names(o.take(nil, 2, nil)); !slices.Equal(got, []string{"result 1", "m1"}) {
		t.Fatalf("first take %q", got)
	}
	o.pushResult(Event{Kind: EventResult, Req: 2})
	o.pushResult(Event{Kind: EventResult, Req: 3})
	if got := names(o.take(nil, 1, nil)); !slices.Equal(got, []string{"result 2"}) {
		t.Fatalf("second take %q", got)
	}
	// The client got only frame 1 (result 1): m1 and result 2 are replayed,
	// and a new result goes ahead of them.
	if err := o.rewind(1); err != nil {
		t.Fatal(err)
	}
	o.pushResult(Event{Kind: EventResult, Req: 4})
	if got, want := names(o.take(nil, 100, nil)), []string{"result 4", "m1", "result 2", "result 3", "m2"}; !slices.Equal(got, want) {
		t.Fatalf("after the rewind %q, want %q", got, want)
	}
}

// A client that sends requests and reads nothing piles up RESULTs; each
// must cost the same, not a scan of all before it.
func BenchmarkOutboxResultBacklog(b *testing.B) {
	lim := testLimits()
	lim.pendingFrames = 1 << 30
	o := newOutbox(lim)
	o.push(Event{Kind: EventMessage, Msg: &Message{Stream: 1, Topic: "t", Payload: []byte("x")}}, true)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		o.pushResult(Event{Kind: EventResult, Req: uint64(i)})
	}
}

// RESULTs are never dropped, so a client that sends requests and reads
// nothing ends its session with 4050 once twice the queue's bound waits,
// instead of having the gateway queue them without end.
func TestUnreadResultsEndTheSession(t *testing.T) {
	m, err := NewManager(Config{SessionTimeout: 1, Heartbeat: 1, MaxMessageSize: 1 << 20,
		MaxPendingFrames: 10, MaxPendingBytes: 1 << 20, ReplayFrames: 4, ReplayBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := m.Open(OpenInfo{}, nil)
	for req := range uint64(19) {
		s.result(req, nil, 0)
	}
	s.mu.Lock()
	alive := s.closed == nil
	s.mu.Unlock()
	if !alive {
		t.Fatal("19 unread results (under twice max_queued_frames 10) ended the session")
	}
	for req := range uint64(5) {
		s.result(19+req, nil, 0)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed == nil || closed.Code != CodeOverflow {
		t.Fatalf("after 24 unread results the session ended with %+v, want 4050", closed)
	}
}
