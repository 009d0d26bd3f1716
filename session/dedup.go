package session

import (
	"bytes"
	"slices"
	"sync"

	"github.com/eclipse/paho.golang/paho"
)

// A broker may send one copy of a message per matching subscription of a
// connection (Mosquitto does, by default), and a shared connection holds the
// overlapping filters of many sessions (a/# for one, a/+/c for another). The
// hub matches each message against its own index, so a second copy would be
// delivered twice.
//
// Each filter is subscribed with its own MQTT 5 subscription identifier. The
// copies of one publication arrive back to back, carrying the identifiers of
// different subscriptions; a second publication with the same content
// repeats an identifier already seen, unless the filters changed in
// between: a filter subscribed since (a new identifier) may be the only one
// to bring it, the filter that brought the first one gone. So a message
// whose topic, payload and retain flag equal the previous one's, and whose
// identifier is new in that run and was first subscribed before the run
// began, is a copy and is dropped: the broker cannot have sent a copy of a
// publication for a subscription it had not been asked for when it sent
// the first. A broker that sends one copy with all identifiers never
// triggers the rule; one without subscription identifiers (id 0) is never
// deduplicated.

// maxSubID is the largest subscription identifier MQTT 5 allows.
const maxSubID = 268435455

type dupRun struct {
	topic   string
	payload []byte
	retain  bool
	ids     []int
	epoch   uint64

	// firstSent: each identifier's first SUBSCRIBE, as the epoch it
	// made; written by subscribers, read on the receive goroutine.
	mu        sync.Mutex
	firstSent map[int]uint64
}

// subscribing notes that a SUBSCRIBE with identifier id is about to go out,
// at epoch (after counting it).
func (d *dupRun) subscribing(id int, epoch uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.firstSent == nil {
		d.firstSent = map[int]uint64{}
	}
	if _, ok := d.firstSent[id]; !ok {
		d.firstSent[id] = epoch
	}
}

// dropped forgets a filter's identifier, gone with the filter.
func (d *dupRun) dropped(id int) {
	d.mu.Lock()
	delete(d.firstSent, id)
	d.mu.Unlock()
}

// subscribedBy reports whether id was first subscribed at or before epoch
// (an identifier it does not know, gone since, was).
func (d *dupRun) subscribedBy(id int, epoch uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	first, ok := d.firstSent[id]
	return !ok || first <= epoch
}

func subID(p *paho.Publish) int {
	if p.Properties == nil || p.Properties.SubscriptionIdentifier == nil {
		return 0
	}
	return *p.Properties.SubscriptionIdentifier
}

// duplicate reports whether p is another copy of the previous message, and
// records p otherwise. epoch counts the hub's SUBSCRIBEs: the broker's
// answer to a new SUBSCRIBE (its retained messages) may repeat the previous
// message under a new identifier without being a copy of it. Only a
// retained message can be such an answer: a SUBSCRIBE sent between two
// copies of a live one (the receive goroutine can lag) does not make the
// second one news.
func (d *dupRun) duplicate(p *paho.Publish, epoch uint64) bool {
	id := subID(p)
	if id != 0 && len(d.ids) > 0 && (epoch == d.epoch || !p.Retain) && p.Topic == d.topic && p.Retain == d.retain &&
		bytes.Equal(p.Payload, d.payload) && !slices.Contains(d.ids, id) && d.subscribedBy(id, d.epoch) {
		d.ids = append(d.ids, id)
		return true
	}
	d.topic, d.payload, d.retain, d.epoch = p.Topic, p.Payload, p.Retain, epoch
	d.ids = append(d.ids[:0], id)
	return false
}

// forget ends the run: the next message is not taken for a copy of the
// previous one.
func (d *dupRun) forget() {
	d.topic, d.payload, d.ids = "", nil, d.ids[:0]
}
