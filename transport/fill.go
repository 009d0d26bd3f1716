package transport

import "github.com/caddy-mqtt/mqttgateway/session"

// Every transport writes a session's frames the same way: whatever is
// pending, encoded into one buffer (one WebSocket message, one chunk of a
// stream, one poll answer).

// fill appends what the session has to send; when the session is over and
// nothing is left, it appends the CLOSE frame and returns the reason. (When
// a bandwidth budget holds frames back, the session wakes the connection
// when they may go.)
func fill(buf []byte, sess *session.Session, conn session.Transport, events []session.Event) ([]byte, []session.Event, *session.Error) {
	for {
		var ended *session.Error
		events, ended = sess.TakeFor(conn, events[:0], batchFrames)
		for i := range events {
			buf = AppendEvent(buf, &events[i])
		}
		n := len(events)
		clear(events)
		if n == 0 && ended != nil {
			return AppendEnd(buf, ended.Code, ended.Message), events, ended
		}
		if n < batchFrames {
			return buf, events, nil
		}
	}
}
