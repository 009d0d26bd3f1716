package session

// A client that suspects its connection (the device changed networks,
// woke from sleep, or its page came back to the foreground) asks for a
// PING answer (PROTOCOL.md, Heartbeats). A connection left silent by a
// network switch shows nothing until the heartbeat deadline, 45 s by
// default; an answer that does not come within a few seconds lets the
// client rebind at once.

// AnswerPing has the session's connection write a PING soon: with the
// next frames it writes, or alone. Over HTTP streaming and long polling
// the request arrives on /send and the answer goes on the stream or in a
// poll's answer, the very path a client needs to know works. A session
// between two polls answers in the next poll.
func (s *Session) AnswerPing() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed != nil {
		return
	}
	s.pingAnswer = true
	if s.conn != nil {
		s.conn.Wake()
	}
}

// takePingLocked moves a PING answer that is due to room (Room.Ping).
// Called by take with s.mu held, for the session's current connection.
func (s *Session) takePingLocked(room *Room) {
	if s.pingAnswer && room != nil {
		s.pingAnswer = false
		room.Ping = true
	}
}
