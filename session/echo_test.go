package session

import (
	"testing"
	"time"
)

// A note is taken by the first message with its topic and payload, once;
// a withdrawn or lapsed note takes nothing; at the bound nothing is noted.
func TestEchoNotes(t *testing.T) {
	e := newEchoes()
	a, b := &Session{}, &Session{}
	e.expect(a, 1, "t", []byte("v"))
	e.expect(b, 2, "t", []byte("v"))
	for _, tc := range []struct {
		topic, payload string
		sess           *Session
		client         uint64
	}{
		{"t", "w", nil, 0}, // another payload
		{"u", "v", nil, 0}, // another topic
		{"tv", "", nil, 0}, // the split between topic and payload counts
		{"t", "v", a, 1},   // the oldest note first
		{"t", "v", b, 2},   // then the next
		{"t", "v", nil, 0}, // none left
	} {
		if s, c := e.echoOf(tc.topic, []byte(tc.payload)); s != tc.sess || c != tc.client {
			t.Fatalf("echoOf(%q, %q) = %p, %d; want %p, %d", tc.topic, tc.payload, s, c, tc.sess, tc.client)
		}
	}

	withdraw := e.expect(a, 1, "t", []byte("v"))
	withdraw()
	if s, _ := e.echoOf("t", []byte("v")); s != nil || e.count.Load() != 0 {
		t.Fatalf("a withdrawn note was taken, or counted (%d)", e.count.Load())
	}

	e.expect(a, 1, "t", []byte("v"))
	for _, list := range e.notes {
		list[0].until = time.Now().Add(-time.Second)
	}
	if s, _ := e.echoOf("t", []byte("v")); s != nil || e.count.Load() != 0 || len(e.bySession) != 0 {
		t.Fatalf("a lapsed note was taken, or counted (%d, %d sessions)", e.count.Load(), len(e.bySession))
	}
}

// Notes no message takes are swept once they lapse, with their sessions.
func TestLapsedEchoNotesAreSwept(t *testing.T) {
	e := newEchoes()
	for i := range 100 {
		e.expect(&Session{}, 1, "$SYS/x", []byte{byte(i)})
	}
	for _, list := range e.notes {
		for _, n := range list {
			n.until = time.Now().Add(-time.Second)
		}
	}
	e.echoOf("other/topic", []byte("live"))
	if e.count.Load() != 100 {
		t.Fatalf("%d notes before the sweep is due, want 100", e.count.Load())
	}
	e.nextSweep = time.Now().Add(-time.Second) // echoTTL has passed
	e.echoOf("other/topic", []byte("live"))
	if e.count.Load() != 0 || len(e.notes) != 0 || len(e.bySession) != 0 {
		t.Fatalf("after the sweep: %d notes, %d hashes, %d sessions; want none", e.count.Load(), len(e.notes), len(e.bySession))
	}
}

// A session has a share of the notes: past it, its own publishes go
// unnoted, and another session's are still noted; past the hub's bound,
// nobody's are.
func TestEchoNotesAreShared(t *testing.T) {
	e := newEchoes()
	a, b := &Session{}, &Session{}
	for i := range maxEchoesPerSession + 1 {
		e.expect(a, 1, "t", []byte{byte(i), byte(i >> 8)})
	}
	past := maxEchoesPerSession // the note past the share
	if s, _ := e.echoOf("t", []byte{byte(past), byte(past >> 8)}); s != nil {
		t.Fatal("a session's note past its share was kept")
	}
	e.expect(b, 2, "t", []byte("b"))
	if s, _ := e.echoOf("t", []byte("b")); s != b {
		t.Fatal("another session's note was not kept once the first had used its share")
	}
	for i := range maxEchoes {
		e.expect(&Session{}, 1, "u", []byte{byte(i), byte(i >> 8), byte(i >> 16)})
	}
	e.expect(b, 2, "full", nil)
	if s, _ := e.echoOf("full", nil); s != nil {
		t.Fatal("a note was kept past maxEchoes")
	}
	if s, _ := e.echoOf("t", []byte{0, 0}); s != a {
		t.Fatal("the notes before the bound were not kept")
	}
	e.expect(b, 2, "full", nil) // room again
	if s, _ := e.echoOf("full", nil); s != b {
		t.Fatal("no note once there was room again")
	}
}
