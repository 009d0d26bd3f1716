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
	if s, _ := e.echoOf("t", []byte("v")); s != nil || e.count.Load() != 0 {
		t.Fatalf("a lapsed note was taken, or counted (%d)", e.count.Load())
	}

	for i := range maxEchoes {
		e.expect(a, 1, "t", []byte{byte(i), byte(i >> 8)})
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
