package transport

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// Every transport writes a session's frames the same way: what is pending,
// encoded into one buffer (one WebSocket message, one chunk of a stream,
// one poll answer), up to a bound.

// writeBytes bounds one WebSocket message or chunk of a stream (but for a
// single frame larger than it). A client that fell behind (a phone in a
// tunnel) has a backlog of up to max_queued_bytes, and written whole it is
// one write of megabytes: longer than the write timeout on a slow link,
// which cut the connection, and a WebSocket client gets nothing of a
// message until all of it has come, so the replay after the rebind was the
// same message again. Bounded, each write gets its own deadline, a pong
// waits for one write at most, and the writer's buffer stays small. 16 KiB
// is what a socket takes unsent (unsent_linux.go), so that a message a
// slow client's socket has room for goes whole and at once, and a phone
// gets its values every fraction of a second, not in bursts seconds apart
// (64 KiB at 40 KB/s: 1.6 s). Under load it still carries a hundred frames
// per syscall, and saturation runs as fast as with 64 KiB or no bound.
const writeBytes = 16 << 10

// writeBound is what one write of a connection may carry: so that a write
// cut on its way can be replayed from the next, at most half the replay
// window, the other half for the writes before it the client may not have
// read yet.
type writeBound struct{ frames, bytes int }

func (s *Server) writeBound() writeBound {
	cfg := s.Manager.Config()
	return writeBound{frames: max(cfg.ReplayFrames/2, 1), bytes: max(min(writeBytes, cfg.ReplayBytes/2), 1)}
}

// fill appends what the session has to send, up to one write's bound;
// more reports frames left for the next write. When the session is over
// and nothing is left, it appends the CLOSE frame and returns the reason.
// (When a bandwidth budget holds frames back, the session wakes the
// connection when they may go.)
func fill(buf []byte, bound writeBound, sess *session.Session, conn session.Transport, events []session.Event, delay prometheus.Observer) (_ []byte, _ []session.Event, ended *session.Error, more bool) {
	room := session.Room{Bytes: bound.bytes}
	return fillWithin(buf, &room, bound.frames, sess, conn, events, delay)
}

// fillWithin is fill for a write bounded by room (see session.Room) and
// maxFrames, a long poll's answer or a connection's write: what does not
// fit waits for the next (and more says so). delay, if not nil, observes
// how long the oldest live message the write carries has waited.
func fillWithin(buf []byte, room *session.Room, maxFrames int, sess *session.Session, conn session.Transport, events []session.Event, delay prometheus.Observer) (_ []byte, _ []session.Event, ended *session.Error, more bool) {
	taken := 0
	var oldest int64
	defer func() {
		if oldest != 0 && delay != nil {
			delay.Observe(float64(time.Now().UnixNano()-oldest) / 1e9)
		}
	}()
	for {
		want := min(batchFrames, maxFrames-taken)
		events, ended = sess.TakeFor(conn, events[:0], want, room)
		if room.Ping { // the client checks its connection (AnswerPing)
			room.Ping = false
			buf = AppendPing(buf)
		}
		for i := range events {
			e := &events[i]
			if e.Kind == session.EventMessage && e.Msg.Arrived != 0 && (oldest == 0 || e.Msg.Arrived < oldest) {
				oldest = e.Msg.Arrived
			}
			buf = AppendEvent(buf, e)
		}
		n := len(events)
		clear(events)
		taken += n
		if n == 0 && ended != nil {
			return AppendEnd(buf, ended.Code, ended.Message), events, ended, false
		}
		if full := taken >= maxFrames || room.Full || room.Bytes <= 0; full || n < want {
			return buf, events, nil, full
		}
	}
}

// frameSize is the size of e's frame on the wire. A message's encoding is
// the one its every subscriber shares, made here if no transport has yet.
func frameSize(e *session.Event) int {
	if e.Kind == session.EventMessage {
		return len(e.Msg.Encoded(EncodeMessage))
	}
	var scratch [128]byte
	return len(AppendEvent(scratch[:0], e))
}
