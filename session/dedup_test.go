package session

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"
)

func publishWithID(topic, payload string, retain bool, id int) *paho.Publish {
	return &paho.Publish{Topic: topic, Payload: []byte(payload), Retain: retain,
		Properties: &paho.PublishProperties{SubscriptionIdentifier: &id}}
}

// Copies of one publication (one per matching subscription, each with its
// identifier) are dropped after the first; a SUBSCRIBE sent between two
// copies of a live message does not make the second news (a web client got
// a message twice when another subscribed at that moment), while after it
// a retained message under the new identifier may be its answer. A message
// under the identifier of a filter first subscribed after the previous one
// came is a new publication: the broker had no such subscription to send
// a copy for (a repeated "on" was lost when the filter that brought the
// first was replaced).
func TestDuplicateCopies(t *testing.T) {
	for _, tt := range []struct {
		name       string
		retain     bool
		firstID    int
		secondID   int
		subscribed bool // a SUBSCRIBE went out between the two
		secondNew  bool // ... and it was secondID's first
		want       bool
	}{
		{"live copy", false, 1, 2, false, false, true},
		{"live copy after a SUBSCRIBE", false, 1, 2, true, false, true},
		{"retained copy", true, 1, 2, false, false, true},
		{"retained answer to a new SUBSCRIBE", true, 1, 2, true, false, false},
		{"the same subscription again: a new publication", false, 1, 1, false, false, false},
		{"a filter subscribed since: a new publication", false, 1, 2, true, true, false},
		{"a retained one through a filter subscribed since", true, 1, 2, true, true, false},
	} {
		var d dupRun
		epoch := uint64(7)
		d.subscribing(tt.firstID, 3)
		if !tt.secondNew {
			d.subscribing(tt.secondID, 5) // held before the first copy came
		}
		if d.duplicate(publishWithID("a/b", "v", tt.retain, tt.firstID), epoch) {
			t.Fatalf("%s: the first copy taken for a duplicate", tt.name)
		}
		if tt.subscribed {
			epoch++
		}
		if tt.secondNew {
			d.subscribing(tt.secondID, epoch)
		}
		if got := d.duplicate(publishWithID("a/b", "v", tt.retain, tt.secondID), epoch); got != tt.want {
			t.Errorf("%s: duplicate = %v, want %v", tt.name, got, tt.want)
		}
	}
}
