package session

// yield marks a dedicated hub whose client ID a newer CONNECT claims; see
// yielding.
func (h *Hub) yield() {
	h.mu.Lock()
	h.yielding = true
	h.mu.Unlock()
}

// keep ends a yield whose newcomer the broker did not accept: the hub
// goes on, unless it lost its connection meanwhile, which its clients now
// hear of as they would have.
func (h *Hub) keep() {
	h.mu.Lock()
	h.yielding = false
	kicked := h.kicked
	h.kicked = false
	var lost []*Client
	if kicked && !h.closed {
		for c := range h.clients {
			lost = append(lost, c)
		}
	}
	farewell := h.farewellLocked()
	h.mu.Unlock()
	h.tellLost(lost, lostBecause(h.br().cfg.Name, farewell))
}

// tellLost tells a dedicated hub's clients its broker connection is gone.
func (h *Hub) tellLost(clients []*Client, why *Error) {
	for _, c := range clients {
		c.lost(why)
	}
}

// takeOver ends a dedicated connection whose client ID a newer web client
// claimed: its client is told why, then the connection closes cleanly.
func (h *Hub) takeOver() {
	h.takeOverWith(Errorf(CodeClientConnected, "client id taken over by a newer connection"))
}

// takeOverWith ends the hub's connection, telling each client why with LOST.
func (h *Hub) takeOverWith(reason *Error) {
	h.mu.Lock()
	if !h.closed {
		h.retireLocked()
	}
	h.closed = true
	var clients []*Client
	for c := range h.clients {
		clients = append(clients, c)
	}
	h.mu.Unlock()
	for _, c := range clients {
		c.lost(reason)
	}
	h.stop()
}
