package session

// endedMemory is how many of the latest sessions to end a manager
// remembers (16 bytes each, and a map entry).
const endedMemory = 1024

// endedMessage is what a request for a remembered session is told.
const endedMessage = "session ended"

// endedIDs remembers the ids of the latest sessions that ended, so that a
// request for one, already on its way when the session ended (a /send
// when close_sessions ended it, a rebind after the session timed out), is
// told the session ended. Without it, such a request looked like one for a
// session this gateway never held, and the gateway logged "is the load
// balancer sticky?" for it, the wrong hint. A ring, so that churn of
// sessions holds no more than endedMemory of them.
type endedIDs struct {
	ring [endedMemory][16]byte
	next int
	n    int
	set  map[[16]byte]struct{}
}

// add remembers id, forgetting the oldest when full. Called with the
// manager's mu held.
func (e *endedIDs) add(id [16]byte) {
	if e.set == nil {
		e.set = make(map[[16]byte]struct{}, endedMemory)
	}
	if e.n == endedMemory {
		delete(e.set, e.ring[e.next])
	} else {
		e.n++
	}
	e.ring[e.next] = id
	e.next = (e.next + 1) % endedMemory
	e.set[id] = struct{}{}
}

// has reports whether id is a remembered session. Called with the
// manager's mu held.
func (e *endedIDs) has(id [16]byte) bool {
	_, ok := e.set[id]
	return ok
}

// SessionEnded reports whether e says the session asked for ended here
// lately (rather than being unknown to this gateway).
func SessionEnded(e *Error) bool {
	return e != nil && e.Code == CodeSessionUnknown && e.Message == endedMessage
}
