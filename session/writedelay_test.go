package session

import (
	"sync"
	"testing"
	"time"
)

// wakeRecorder is a transport that records when it is woken.
type wakeRecorder struct {
	mu    sync.Mutex
	wakes []time.Time
}

func (w *wakeRecorder) Wake() {
	w.mu.Lock()
	w.wakes = append(w.wakes, time.Now())
	w.mu.Unlock()
}

func (w *wakeRecorder) Close(Code, string) {}

func (w *wakeRecorder) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.wakes)
}

func (w *wakeRecorder) taken() []time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.wakes
	w.wakes = nil
	return t
}

// Many sessions (more than one chunk of the wake queue) each get messages;
// each is woken once per round, never before the delay, and its messages
// all wait for that one wake. A result wakes at once.
func TestWriteDelayWakesEachSessionOnceAfterTheDelay(t *testing.T) {
	const delay, n = 100 * time.Millisecond, 3*wakeChunk + 5
	m, err := NewManager(Config{SessionTimeout: time.Minute, Heartbeat: time.Minute, MaxMessageSize: 1 << 20,
		MaxPendingFrames: 1000, MaxPendingBytes: 1 << 20, ReplayFrames: 16, ReplayBytes: 1 << 20, WriteDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	sessions := make([]*Session, n)
	recs := make([]*wakeRecorder, n)
	for i := range sessions {
		sessions[i], _ = m.Open(OpenInfo{}, nil)
		recs[i] = &wakeRecorder{}
		if err := sessions[i].Attach(recs[i], false, 0); err != nil {
			t.Fatal(err)
		}
		recs[i].taken() // Attach wakes at once
	}
	for round := 0; round < 2; round++ {
		start := time.Now()
		for k := 0; k < 3; k++ {
			for _, s := range sessions {
				s.deliver(&Message{Topic: "a", Payload: []byte{byte(k)}})
			}
		}
		// Every session's wake, however late its timer runs on a busy
		// machine (a fixed sleep of 3 × delay once saw none), then one
		// delay more for a second wake that should not come.
		deadline := time.Now().Add(10 * time.Second)
		for i := 0; i < len(recs); i++ {
			for recs[i].count() == 0 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
		}
		time.Sleep(delay)
		for i, r := range recs {
			wakes := r.taken()
			if len(wakes) != 1 {
				t.Fatalf("round %d: session %d woken %d times for 3 messages, want once", round, i, len(wakes))
			}
			if waited := wakes[0].Sub(start); waited < delay {
				t.Fatalf("round %d: session %d woken %v after its first message, before the delay (%v)", round, i, waited, delay)
			}
			if got, _ := sessions[i].Take(nil, 16); len(got) != 3 {
				t.Fatalf("round %d: session %d has %d messages waiting, want 3", round, i, len(got))
			}
		}
	}
	sessions[0].deliver(&Message{Topic: "a"})
	sessions[0].result(1, nil, 0)
	if wakes := recs[0].taken(); len(wakes) != 1 {
		t.Fatalf("a result woke the transport %d times at once, want 1", len(wakes))
	}
}

// Messages held by the write delay are not a slow client's backlog: past
// conflate_after of them, a QoS 0 message still queues behind the others
// instead of replacing the waiting value of its topic. Once the wake has
// come and the client has not taken them for BehindAfter, the client is
// behind, and the next value is conflated. An overflow notice does not
// wait for the delay.
func TestWriteDelayHeldMessagesAreNotABacklog(t *testing.T) {
	const delay = 100 * time.Millisecond
	m, err := NewManager(Config{SessionTimeout: time.Minute, Heartbeat: time.Minute, MaxMessageSize: 1 << 20,
		MaxPendingFrames: 60, MaxPendingBytes: 1 << 20, ReplayFrames: 16, ReplayBytes: 1 << 20, ConflateAfter: 8, BehindAfter: time.Millisecond, WriteDelay: delay})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, _ := m.Open(OpenInfo{}, nil)
	rec := &wakeRecorder{}
	if err := s.Attach(rec, false, 0); err != nil {
		t.Fatal(err)
	}
	rec.taken()
	for i := 0; i < 50; i++ {
		s.deliver(&Message{Topic: "t", Payload: []byte{byte(i)}})
	}
	time.Sleep(3 * delay)
	if wakes := rec.taken(); len(wakes) != 1 {
		t.Fatalf("%d wakes, want 1", len(wakes))
	}
	// Not taken: now the client is behind. From here on values of the
	// topic are conflated: the 52nd replaces the 51st (the first queued
	// while conflating) in its place.
	s.deliver(&Message{Topic: "t", Payload: []byte{50}})
	time.Sleep(2 * time.Millisecond) // the frames wait untaken: the client is behind
	s.deliver(&Message{Topic: "t", Payload: []byte{51}})
	got, _ := s.Take(nil, 100)
	if len(got) != 51 {
		t.Fatalf("%d messages waiting, want 51 (the 50 held ones, then the 52nd in the 51st's place)", len(got))
	}
	for i, e := range got[:50] {
		if e.Msg.Payload[0] != byte(i) {
			t.Fatalf("message %d is %d: a held message was conflated", i, e.Msg.Payload[0])
		}
	}
	if last := got[50].Msg.Payload[0]; last != 51 {
		t.Fatalf("the last waiting value is %d, want 51 (conflated)", last)
	}
	time.Sleep(3 * delay)
	rec.taken()

	// Fill the queue (60 frames) with QoS 1, then one more: dropped, and
	// the overflow notice wakes the transport at once.
	for i := 0; i < 61; i++ {
		s.deliver(&Message{Topic: "q", QoS: 1, Payload: []byte{byte(i)}})
	}
	if wakes := rec.taken(); len(wakes) != 1 {
		t.Fatalf("%d wakes right after the overflow, want 1 (the notice does not wait)", len(wakes))
	}
}
