package throttle

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// A topic offered at 100/s through a 2/s gate for 10 s: at most 2
// deliveries in every one-second window, and the last value offered is the
// last delivered.
func TestGateRateAndLatestValue(t *testing.T) {
	g := NewGate[string, int]()
	var deliveries []time.Time
	var last int
	interval := 500 * time.Millisecond
	for i := 0; i < 1000; i++ {
		now := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		for _, v := range g.Due(nil, now) {
			deliveries, last = append(deliveries, now), v
		}
		if ok, _ := g.Offer("t", interval, i, now); ok {
			deliveries, last = append(deliveries, now), i
		}
	}
	end := t0.Add(10 * time.Second)
	for {
		next, ok := g.Next()
		if !ok {
			break
		}
		for _, v := range g.Due(nil, next) {
			deliveries, last = append(deliveries, next), v
		}
		end = next
	}
	if last != 999 {
		t.Fatalf("last delivered %d, want 999", last)
	}
	for w := t0; w.Before(end); w = w.Add(100 * time.Millisecond) {
		n := 0
		for _, d := range deliveries {
			if !d.Before(w) && d.Before(w.Add(time.Second)) {
				n++
			}
		}
		if n > 2 {
			t.Fatalf("%d deliveries in the second from %s", n, w.Sub(t0))
		}
	}
	if len(deliveries) < 19 {
		t.Fatalf("only %d deliveries in 10 s at 2/s", len(deliveries))
	}
}

// Conflation is per key: every topic's latest value comes out.
func TestGateConflatesPerKey(t *testing.T) {
	g := NewGate[string, string]()
	for i := 0; i < 50; i++ {
		for k := 0; k < 5; k++ {
			g.Offer(fmt.Sprint(k), time.Second, fmt.Sprintf("%d:%d", k, i), t0.Add(time.Duration(i)*time.Millisecond))
		}
	}
	got := g.Due(nil, t0.Add(2*time.Second))
	if len(got) != 5 {
		t.Fatalf("due %v, want one per key", got)
	}
	seen := map[string]bool{}
	for _, v := range got {
		seen[v] = true
	}
	for k := 0; k < 5; k++ {
		if !seen[fmt.Sprintf("%d:49", k)] {
			t.Fatalf("key %d did not end on its latest value: %v", k, got)
		}
	}
	g.Prune(t0.Add(10 * time.Second))
	if g.Keys() != 0 {
		t.Fatalf("%d keys remain after prune", g.Keys())
	}
}

// Ever-new keys whose values all pass at once (a wildcard over device ids,
// each topic seen once) arm no timer, so nothing but Offer itself can forget
// them: the gate keeps the keys still within their interval, and about as
// many more, not every key it ever saw (it kept 145 bytes per topic for the
// session's life). A key within its interval stays limited.
func TestGateForgetsPassedKeysAsNewOnesCome(t *testing.T) {
	g := NewGate[int, int]()
	t0 := time.Now()
	const interval = 100 * time.Millisecond
	most := 0
	for i := 0; i < 200_000; i++ {
		now := t0.Add(time.Duration(i) * time.Millisecond) // 1,000 new keys per second
		if ok, _ := g.Offer(i, interval, i, now); !ok {
			t.Fatalf("key %d, new, was held", i)
		}
		most = max(most, g.Keys())
	}
	// 100 keys are within their interval at any time.
	if most > 2*minPruneAt {
		t.Errorf("the gate held %d keys at most, want at most %d", most, 2*minPruneAt)
	}
	end := t0.Add(199_999 * time.Millisecond)
	if ok, _ := g.Offer(199_990, interval, 0, end); ok {
		t.Error("a key offered again within its interval passed: it was forgotten too early")
	}
}

// A burst of new keys (a wildcard's retained messages), then values of a
// few of them only: no new key comes to prune the rest, and Tidy, which the
// session calls as held values are released, must.
func TestGateTidyForgetsABurstsKeys(t *testing.T) {
	g := NewGate[int, int]()
	t0 := time.Now()
	const interval = 10 * time.Second
	for i := 0; i < 50_000; i++ {
		g.Offer(i, interval, i, t0)
	}
	now := t0
	for step := 0; step < 60; step++ { // ten minutes of values for 10 keys, 1 s apart
		now = now.Add(time.Second)
		for k := 0; k < 10; k++ {
			g.Offer(k, interval, step, now)
		}
		g.Due(nil, now)
		g.Tidy(now)
	}
	if g.Keys() > 10 {
		t.Errorf("%d keys remembered after the burst's interval, want at most the 10 still in use", g.Keys())
	}
	if ok, _ := g.Offer(3, interval, 0, now); ok {
		t.Error("a key in use passed within its interval: it was forgotten")
	}
}

// Drop discards a key's waiting value and leaves the other keys' in order;
// Drain releases every waiting value at once.
func TestGateDropAndDrain(t *testing.T) {
	g := NewGate[string, string]()
	iv := time.Second
	for _, k := range []string{"a", "b", "c", "d"} {
		g.Offer(k, iv, k+"0", t0) // delivered
	}
	for i, k := range []string{"a", "b", "c", "d"} {
		g.Offer(k, iv, k+"1", t0.Add(time.Duration(i+1)*time.Millisecond)) // held
	}
	g.Drop("b")
	g.Drop("x") // unknown: nothing happens
	if g.Waiting() != 3 {
		t.Fatalf("%d waiting after a drop, want 3", g.Waiting())
	}
	if got := fmt.Sprint(g.Due(nil, t0.Add(time.Second))); got != "[a1 c1 d1]" {
		t.Fatalf("due after dropping b: %s", got)
	}
	g.Offer("a", iv, "a2", t0.Add(1100*time.Millisecond))
	g.Offer("b", iv, "b2", t0.Add(1100*time.Millisecond)) // b's interval has passed: at once
	g.Offer("c", iv, "c2", t0.Add(1100*time.Millisecond))
	if got := fmt.Sprint(g.Drain(nil, t0.Add(1200*time.Millisecond))); got != "[a2 c2]" || g.Waiting() != 0 {
		t.Fatalf("drained %s, %d left waiting", got, g.Waiting())
	}
	if ok, _ := g.Offer("a", iv, "a3", t0.Add(1300*time.Millisecond)); ok {
		t.Fatal("a drained value starts an interval like a delivered one")
	}
}

// Take hands the held value over for delivery now; the key's interval runs
// on, so the next value offered within it waits.
func TestGateTake(t *testing.T) {
	g := NewGate[string, string]()
	iv := time.Second
	g.Offer("a", iv, "a0", t0)                       // delivered
	g.Offer("a", iv, "a1", t0.Add(time.Millisecond)) // held
	if v, ok := g.Take("a"); !ok || v != "a1" || g.Waiting() != 0 {
		t.Fatalf("took %q (%v), %d left waiting; want a1 and none", v, ok, g.Waiting())
	}
	if _, ok := g.Take("a"); ok {
		t.Fatal("took a value twice")
	}
	if ok, _ := g.Offer("a", iv, "a2", t0.Add(2*time.Millisecond)); ok {
		t.Fatal("a value offered within the interval went at once after a take")
	}
	if got := fmt.Sprint(g.Due(nil, t0.Add(time.Second))); got != "[a2]" {
		t.Fatalf("due: %s, want [a2]", got)
	}
}

// A weighed gate keeps the weight of what it holds through every way a
// value comes and goes: held, replaced, released when due, dropped,
// drained. Its owner bounds memory by it.
func TestWeighedGateKeepsTheWeightHeld(t *testing.T) {
	g := NewWeighedGate[string, string](func(v string) int { return len(v) })
	second := time.Second
	check := func(step string, want int) {
		t.Helper()
		if g.Held() != want {
			t.Fatalf("%s: held %d, want %d", step, g.Held(), want)
		}
	}
	for i, k := range []string{"a", "b", "c"} {
		if ok, _ := g.Offer(k, time.Duration(i+1)*second, "first", t0); !ok {
			t.Fatalf("%s: the first value waits", k)
		}
	}
	check("values delivered at once", 0)
	g.Offer("a", second, "12345", t0)
	g.Offer("b", 2*second, "123", t0)
	g.Offer("c", 3*second, "1", t0)
	check("three held", 9)
	g.Offer("a", second, "12", t0)
	check("a replaced by a lighter value", 6)
	if got := g.Due(nil, t0.Add(second)); len(got) != 1 || got[0] != "12" {
		t.Fatalf("due after 1 s: %q", got)
	}
	check("a released", 4)
	g.Drop("b")
	check("b dropped", 1)
	g.Offer("b", 2*second, "1234", t0.Add(second))
	if got := g.Drain(nil, t0.Add(second)); len(got) != 2 {
		t.Fatalf("drained %q", got)
	}
	check("drained", 0)
}

func TestBucketRate(t *testing.T) {
	b := NewBucket(1250, t0) // 10 kbit/s
	sent := 0
	for ms := 0; ms < 10000; ms++ {
		now := t0.Add(time.Duration(ms) * time.Millisecond)
		for b.Allow(100, now) {
			sent += 100
		}
	}
	// 10 s at 1250 B/s plus the initial burst.
	if want := 12500 + int(b.Burst); sent > want+100 || sent < 12500 {
		t.Fatalf("sent %d bytes, want about %d", sent, want)
	}
	if w := b.Wait(100, t0.Add(10*time.Second)); w <= 0 || w > 100*time.Millisecond {
		t.Fatalf("wait %s", w)
	}
	var unlimited *Bucket
	if !unlimited.Allow(1<<30, t0) {
		t.Fatal("nil bucket limits")
	}
}

// Holds tells whether n bytes are in the bucket without taking them, and
// a full bucket holds anything: what waits for more than the burst would
// wait forever.
func TestBucketHolds(t *testing.T) {
	b := NewBucket(4000, t0) // a burst of 1000
	if !b.Holds(1000, t0) || !b.Holds(5000, t0) {
		t.Fatal("a full bucket must hold the burst and anything larger")
	}
	if !b.Allow(900, t0) || b.Holds(200, t0) || !b.Holds(100, t0) {
		t.Fatal("after 900 of 1000 taken, 100 are held and 200 are not")
	}
	if !b.Holds(100, t0) || !b.Allow(100, t0) || b.Holds(1, t0) {
		t.Fatal("Holds must not take what it finds")
	}
	if later := t0.Add(50 * time.Millisecond); !b.Holds(200, later) || b.Holds(201, later) {
		t.Fatal("50 ms at 4000 B/s refills 200 bytes")
	}
	var unlimited *Bucket
	if !unlimited.Holds(1<<30, t0) {
		t.Fatal("nil bucket limits")
	}
}

// A client that can take data only between pauses (a long poller: an
// answer, then a round trip until the next poll) gets its rate over any
// stretch of polls, not a burst per round trip; and no more than its rate.
func TestBucketPausesKeepTheRate(t *testing.T) {
	const rate = 4000 // a burst of 1000
	for _, rtt := range []time.Duration{100 * time.Millisecond, 600 * time.Millisecond, 1500 * time.Millisecond} {
		for _, pause := range []bool{false, true} {
			b := NewBucket(rate, t0)
			sent, now := 0, t0
			for now.Before(t0.Add(60 * time.Second)) {
				// The answer, a moment after the poll came: what the
				// bucket lets go.
				now = now.Add(time.Millisecond)
				for b.Allow(100, now) {
					sent += 100
				}
				if pause {
					b.Pause(now)
				}
				now = now.Add(rtt) // the next poll comes
				b.Resume(now, 2*time.Second)
			}
			got := float64(sent) / now.Sub(t0).Seconds()
			t.Logf("round trip %s, pause %v: %.0f B/s", rtt, pause, got)
			if got > rate*1.03 {
				t.Errorf("round trip %s, pause %v: %.0f B/s, over the rate of %d", rtt, pause, got, rate)
			}
			// Without the pause, the burst cuts what each round trip
			// granted: 1000 bytes a round trip.
			want := min(float64(rate), 1000/rtt.Seconds())
			if pause {
				want = rate
			}
			if got < want*0.97 {
				t.Errorf("round trip %s, pause %v: %.0f B/s, want about %.0f", rtt, pause, got, want)
			}
		}
	}
	// A client away longer than the gap gets the burst and the gap's rate.
	b := NewBucket(rate, t0)
	b.Allow(1000, t0)
	b.Pause(t0)
	b.Resume(t0.Add(time.Minute), 2*time.Second)
	if !b.Allow(9000, t0.Add(time.Minute)) || b.Allow(100, t0.Add(time.Minute)) {
		t.Fatal("after a minute away, the bucket must hold its burst and 2 s of rate: 9000 bytes")
	}
	// A rate changed while paused drops what the pause granted.
	b = NewBucket(rate, t0)
	b.Allow(1000, t0)
	b.Pause(t0)
	t1 := t0.Add(time.Second)
	b.SetRate(rate, t1)
	b.Resume(t1, 2*time.Second)
	if !b.Allow(1000, t1) || b.Holds(1, t1) {
		t.Fatal("a SetRate during a pause must leave the bucket at its burst")
	}
	var unlimited *Bucket
	unlimited.Pause(t0)
	unlimited.Resume(t0, time.Second)
}

func BenchmarkGateOffer(b *testing.B) {
	g := NewGate[string, int]()
	keys := make([]string, 100)
	for i := range keys {
		keys[i] = fmt.Sprintf("sensors/%d/temp", i)
	}
	b.ReportAllocs()
	now := t0
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Millisecond)
		g.Offer(keys[i%len(keys)], 500*time.Millisecond, i, now)
		if i%64 == 0 {
			g.Due(nil, now)
		}
	}
}

func BenchmarkBucketAllow(b *testing.B) {
	bk := NewBucket(1<<20, t0)
	b.ReportAllocs()
	now := t0
	for i := 0; i < b.N; i++ {
		now = now.Add(time.Microsecond)
		bk.Allow(100, now)
	}
}
