package session

// SubscribeOptions are MQTT 5's subscription options besides the QoS
// (MQTT 5, 3.8.3.1), as a web client asks for them in a SUBSCRIBE.
//
// A dedicated connection passes them to the broker, which applies them. On
// a shared connection the gateway applies them itself, for each client:
// the broker sees one subscription per filter for every session, and the
// options of one client must not change what another gets.
type SubscribeOptions struct {
	// NoLocal: the client's own publishes are not sent back to it.
	NoLocal bool
	// RetainAsPublished: messages keep the retain flag they were published
	// with; without it a message is flagged retained only when it is sent
	// because the client subscribed.
	RetainAsPublished bool
	// RetainHandling says when a SUBSCRIBE gets the retained messages of
	// its filter: RetainAlways, RetainIfNew or RetainNever.
	RetainHandling byte
}

// The values of SubscribeOptions.RetainHandling, as in MQTT 5.
const (
	RetainAlways byte = 0 // at every SUBSCRIBE
	RetainIfNew  byte = 1 // only when the client did not hold the subscription
	RetainNever  byte = 2 // never
)

// wantsRetained reports whether a SUBSCRIBE with these options gets the
// retained messages, had telling whether the client held the subscription.
func (o SubscribeOptions) wantsRetained(had bool) bool {
	return o.RetainHandling == RetainAlways || o.RetainHandling == RetainIfNew && !had
}
