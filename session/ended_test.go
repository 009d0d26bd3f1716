package session

import "testing"

// The memory of ended sessions keeps the latest endedMemory and forgets the
// older ones, so that churn holds no more.
func TestEndedIDsKeepsTheLatest(t *testing.T) {
	var e endedIDs
	id := func(i int) [16]byte { return [16]byte{byte(i), byte(i >> 8), 1} }
	for i := 0; i < endedMemory+10; i++ {
		e.add(id(i))
	}
	for i := 0; i < 10; i++ {
		if e.has(id(i)) {
			t.Fatalf("session %d of %d still remembered", i, endedMemory+10)
		}
	}
	for i := 10; i < endedMemory+10; i++ {
		if !e.has(id(i)) {
			t.Fatalf("session %d forgotten", i)
		}
	}
	if len(e.set) != endedMemory {
		t.Fatalf("%d ids in the set, want %d", len(e.set), endedMemory)
	}
}
