package session

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// A connection that drops without CLOSE leaves its session waiting for a
// rebind, which the log said nothing about until the session expired,
// session_timeout later: an operator looking for a client's cut saw nothing,
// even at debug. A long poll's answer is routine, and not logged.
func TestALostConnectionIsLoggedAtDebug(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	m, err := NewManager(Config{SessionTimeout: time.Minute, Heartbeat: time.Minute, MaxMessageSize: 1 << 20,
		MaxPendingFrames: 1000, MaxPendingBytes: 1 << 20, ReplayFrames: 16, ReplayBytes: 1 << 20, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	s, _ := m.Open(OpenInfo{User: "alice", Transport: "websocket"}, nil)
	poll, ws := &wakeRecorder{}, &wakeRecorder{}
	if err := s.Attach(poll, false, 0); err != nil {
		t.Fatal(err)
	}
	s.DetachFor(poll, time.Second) // a long poll answered
	if n := logs.FilterMessageSnippet("connection lost").Len(); n != 0 {
		t.Fatalf("a long poll's answer logged as a lost connection (%d lines)", n)
	}
	if err := s.Attach(ws, false, 0); err != nil {
		t.Fatal(err)
	}
	s.Detach(ws)
	lost := logs.FilterMessageSnippet("connection lost").All()
	if len(lost) != 1 || lost[0].ContextMap()["session"] != s.IDString() || lost[0].ContextMap()["user"] != "alice" {
		t.Fatalf("lost connection logged as %v", lost)
	}
}
