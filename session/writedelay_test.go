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
		sessions[i], _ = m.Open(OpenInfo{})
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
		time.Sleep(3 * delay)
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
