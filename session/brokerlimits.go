package session

import (
	"errors"
	"net"
	"strings"

	"github.com/eclipse/paho.golang/paho"
)

// What the broker said in its CONNACK that it takes.
//
// A broker that sets a Maximum Packet Size drops the connection of a client
// that sends a larger packet (MQTT 5, 3.2.2.3.6). On the shared connection
// that is every session's connection, and paho sends an unacknowledged QoS
// 1/2 publish again after each reconnect, and the reconciler a SUBSCRIBE:
// one oversized packet would take the connection down again and again, for
// everyone. So the gateway measures its packets against the broker's limit
// and refuses the ones that would not fit, before they are sent.
//
// A broker without subscription identifiers (3.2.2.3.12; AWS IoT Core is
// one) gets SUBSCRIBEs without them: paho refuses to send one that has an
// identifier. Its overlapping filters may then deliver a message twice to
// a session (dedup.go needs the identifiers).
//
// The rest (Maximum QoS, Retain Available, wildcards) paho checks itself,
// before sending; refusedByBroker turns its error into the client's 4043.

// noteLimits records the limits of the connection that just came up.
func (h *Hub) noteLimits(ca *paho.Connack) {
	var max uint32
	noSubIDs := false
	if ca != nil && ca.Properties != nil {
		if ca.Properties.MaximumPacketSize != nil {
			max = *ca.Properties.MaximumPacketSize
		}
		noSubIDs = !ca.Properties.SubIDAvailable
	}
	h.maxPacket.Store(max)
	h.noSubIDs.Store(noSubIDs)
}

// refusedByBroker reports, as a 4043, a packet paho would not send because
// the broker said it does not take it; nil for any other error.
func refusedByBroker(what string, err error) *Error {
	if !errors.Is(err, paho.ErrInvalidArguments) {
		return nil
	}
	why := strings.TrimPrefix(err.Error(), paho.ErrInvalidArguments.Error()+": ")
	return Errorf(CodeBrokerRejected, "the broker does not take this %s: %s", what, TrimText(why))
}

// tooLarge refuses a packet the broker would not take. The packet is
// measured only when the broker announced a limit: measuring encodes it.
func (h *Hub) tooLarge(what string, size func() int) *Error {
	max := h.maxPacket.Load()
	if max == 0 {
		return nil
	}
	if n := size(); n > int(max) {
		return Errorf(CodeMessageTooLarge, "the broker takes packets of at most %d bytes; this %s would be %d", max, what, n)
	}
	return nil
}

// unsubscribeFits reports whether an UNSUBSCRIBE whose filters take used
// bytes has room for filter too.
func (h *Hub) unsubscribeFits(used int, filter string) bool {
	max := h.maxPacket.Load()
	// Fixed header (at most 5 bytes), packet identifier, empty properties.
	return max == 0 || 5+2+1+used+2+len(filter) <= int(max)
}

// packetSize is the size on the wire of a packet as paho encodes it (its
// Buffers): the variable header and payload, and the fixed header, one
// byte of type and flags and the remaining length, a variable byte integer.
func packetSize(body net.Buffers) int {
	n := 0
	for _, b := range body {
		n += len(b)
	}
	size := 1 + n
	for rem := n; ; rem >>= 7 {
		size++
		if rem < 128 {
			return size
		}
	}
}
