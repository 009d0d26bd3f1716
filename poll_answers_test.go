package mqttgateway

import (
	"fmt"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/transport"
)

// A long-polling client that comes back to a backlog gets it in answers of
// bounded size, poll after poll, and each answer fits the replay window: a
// lost one is replayed to the next poll. (A poll answered everything
// queued at once: up to max_queued_bytes in one body, which proxies with
// a response-size limit refuse, and past replay_frames an answer lost on
// its way lost its session and messages with it.)
func TestALongPollAnswersABacklogInBoundedParts(t *testing.T) {
	mq := startMosquitto(t)
	wsURL, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "heartbeat 2s")
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)
	const answerBytes = 64 << 10 // transport.pollBytes, as PROTOCOL.md documents it

	s := pollingSubscribed(t, base, "backlog/#")

	pub := dial(t, wsURL)
	h := connectMain(t, pub)
	for _, c := range []struct {
		what      string
		n, size   int
		maxFrames int
	}{
		{"many small messages", 2000, 20, DefaultReplayFrames},
		{"large messages", 300, 4000, answerBytes / 4000},
	} {
		topic := fmt.Sprintf("backlog/%d", c.size)
		expectResults(t, publishAll(t, pub, h, topic, c.n, c.size), c.n, 0, c.what)
		time.Sleep(300 * time.Millisecond) // the last ones on their way from the broker

		first, size := s.pollSized()
		if size > answerBytes || len(first) > c.maxFrames || len(first) == 0 {
			t.Fatalf("%s: the first answer has %d frames in %d bytes, want at most %d frames in %d bytes",
				c.what, len(first), size, c.maxFrames, answerBytes)
		}
		s.received -= uint64(len(first)) // that answer never arrived
		again, _ := s.pollSized()
		if len(again) == 0 || again[0].Type != transport.TypeMessage || again[0].Publish.Topic != topic {
			t.Fatalf("%s: the answer after a lost one starts with %+v, want the lost one's first message", c.what, again)
		}
		got := len(again)
		polls := 2
		deadline := time.Now().Add(20 * time.Second)
		for got < c.n && time.Now().Before(deadline) {
			data, size := s.pollSized()
			if size > answerBytes+c.size {
				t.Fatalf("%s: an answer of %d bytes", c.what, size)
			}
			for _, f := range data {
				if f.Type != transport.TypeMessage || f.Publish.Topic != topic || len(f.Publish.Payload) != c.size {
					t.Fatalf("%s: unexpected frame %+v", c.what, f)
				}
			}
			got += len(data)
			polls++
		}
		if got != c.n {
			t.Fatalf("%s: %d messages arrived, want %d", c.what, got, c.n)
		}
		t.Logf("%s: %d messages in %d polls", c.what, c.n, polls)
	}
}

// An answer within replay_bytes on the wire must be within it in the
// replay window too, which counts each frame's memory (64 bytes of
// overhead a message, where its frame has about 8): with replay_bytes
// 64KiB, a poll answered 256 messages of 200 bytes (56 KB on the wire, 70
// KB held) and the window kept only the newest of them, so the answer,
// lost on its way, could not be replayed and the session ended (4012).
func TestALostPollAnswerIsReplayedUnderASmallReplayBytes(t *testing.T) {
	mq := startMosquitto(t)
	wsURL, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "heartbeat 2s\nreplay_bytes 64KiB")
	base := fmt.Sprintf("http://127.0.0.1:%d/mqtt", httpPort)

	s := pollingSubscribed(t, base, "replay/#")
	pub := dial(t, wsURL)
	h := connectMain(t, pub)
	const n = 600
	expectResults(t, publishAll(t, pub, h, "replay/x", n, 200), n, 0, "publishes")
	time.Sleep(300 * time.Millisecond) // the last ones on their way from the broker

	first, size := s.pollSized()
	t.Logf("the first answer: %d frames in %d bytes", len(first), size)
	s.received -= uint64(len(first)) // that answer never arrived
	again, _ := s.pollSized()        // fails the test if the session ended
	if len(again) == 0 || again[0].Publish.Topic != "replay/x" {
		t.Fatalf("the answer after a lost one: %+v", again)
	}
}
