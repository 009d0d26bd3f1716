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
// a retained message under the new identifier may be its answer.
func TestDuplicateCopies(t *testing.T) {
	for _, tt := range []struct {
		name       string
		retain     bool
		firstID    int
		secondID   int
		subscribed bool // a SUBSCRIBE went out between the two
		want       bool
	}{
		{"live copy", false, 1, 2, false, true},
		{"live copy after a SUBSCRIBE", false, 1, 2, true, true},
		{"retained copy", true, 1, 2, false, true},
		{"retained answer to a new SUBSCRIBE", true, 1, 2, true, false},
		{"the same subscription again: a new publication", false, 1, 1, false, false},
	} {
		var d dupRun
		epoch := uint64(7)
		if d.duplicate(publishWithID("a/b", "v", tt.retain, tt.firstID), epoch) {
			t.Fatalf("%s: the first copy taken for a duplicate", tt.name)
		}
		if tt.subscribed {
			epoch++
		}
		if got := d.duplicate(publishWithID("a/b", "v", tt.retain, tt.secondID), epoch); got != tt.want {
			t.Errorf("%s: duplicate = %v, want %v", tt.name, got, tt.want)
		}
	}
}
