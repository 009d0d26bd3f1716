package transport

import (
	"math"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// Every transport writes a session's frames the same way: whatever is
// pending, encoded into one buffer (one WebSocket message, one chunk of a
// stream, one poll answer).

// fill appends what the session has to send; when the session is over and
// nothing is left, it appends the CLOSE frame and returns the reason. (When
// a bandwidth budget holds frames back, the session wakes the connection
// when they may go.)
func fill(buf []byte, sess *session.Session, conn session.Transport, events []session.Event) ([]byte, []session.Event, *session.Error) {
	return fillWithin(buf, nil, math.MaxInt, sess, conn, events)
}

// fillWithin is fill for an answer of bounded size, a long poll's: frames
// while they fit in room (nil: no bound; see session.Room) and at most
// maxFrames of them. What does not fit waits for the next answer.
func fillWithin(buf []byte, room *session.Room, maxFrames int, sess *session.Session, conn session.Transport, events []session.Event) ([]byte, []session.Event, *session.Error) {
	taken := 0
	for {
		want := min(batchFrames, maxFrames-taken)
		var ended *session.Error
		events, ended = sess.TakeFor(conn, events[:0], want, room)
		for i := range events {
			buf = AppendEvent(buf, &events[i])
		}
		n := len(events)
		clear(events)
		taken += n
		if n == 0 && ended != nil {
			return AppendEnd(buf, ended.Code, ended.Message), events, ended
		}
		if n < want || taken >= maxFrames || room != nil && room.Bytes <= 0 {
			return buf, events, nil
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
