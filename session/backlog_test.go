package session

import (
	"context"
	"testing"
	"time"
)

// A request's answer gives its place in the backlog back as it goes out,
// not once the gateway's work for it has returned: a client that sends its
// next request on the answer finds the room the answer freed. With
// max_queued_frames 1 such a request was refused 4051 now and then.
func TestAnswerFreesItsPlaceInTheBacklog(t *testing.T) {
	m, err := NewManager(Config{SessionTimeout: time.Minute, Heartbeat: time.Minute, MaxMessageSize: 1 << 20,
		MaxPendingFrames: 1, MaxPendingBytes: 1 << 20, ReplayFrames: 16, ReplayBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, _ := m.Open(OpenInfo{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &Client{sess: s, handle: 1, ctx: ctx, cancel: cancel, subs: map[string]byte{}}
	s.mu.Lock()
	s.clients[1] = c
	s.mu.Unlock()

	answered, finish := make(chan struct{}), make(chan struct{})
	if err := c.request(reqPublish, 7, 100, func() {
		s.result(7, nil, 0)
		close(answered)
		<-finish // the work after the answer (metrics, logs) still running
	}); err != nil {
		t.Fatal(err)
	}
	<-answered
	if err := c.request(reqPublish, 8, 100, func() {}); err != nil {
		t.Fatalf("a request sent on the answer to the one before: %v", err)
	}
	close(finish)
	// Each cost was given back once: the backlog is empty again.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		requests, bytes := s.backlog.requests, s.backlog.bytes
		s.mu.Unlock()
		if requests == 0 && bytes == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the backlog holds %d requests and %d bytes after both ran", requests, bytes)
		}
		time.Sleep(time.Millisecond)
	}
}
