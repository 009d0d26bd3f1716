package throttle

import "time"

// Bucket is a token bucket of bytes: it refills at Rate bytes per second up
// to Burst. A rate of zero means unlimited.
type Bucket struct {
	Rate   float64 // bytes per second; 0: unlimited
	Burst  float64 // bytes; at least one large frame
	tokens float64
	last   time.Time
	// While paused (Pause), the tokens at the pause: Resume gives back
	// what the rate granted meanwhile, which the burst would cut.
	pausedAt     time.Time
	pausedTokens float64
}

// NewBucket returns a full bucket. The burst is a quarter second of rate,
// at least 256 bytes: small enough that a capped client stays near its cap
// over any few seconds; frames larger than the burst still pass (see Allow).
func NewBucket(rate float64, now time.Time) *Bucket {
	b := &Bucket{}
	b.SetRate(rate, now)
	b.tokens = b.Burst
	return b
}

// NewCounter returns a full bucket that counts events rather than bytes:
// rate per second, with a second's worth of burst.
func NewCounter(rate float64, now time.Time) *Bucket {
	b := &Bucket{Rate: rate, Burst: max(rate, 1), last: now}
	b.tokens = b.Burst
	return b
}

// SetRate changes the rate at run time.
func (b *Bucket) SetRate(rate float64, now time.Time) {
	b.refill(now)
	b.pausedAt = time.Time{} // what a pause granted was at the old rate
	b.Rate = rate
	b.Burst = max(rate/4, 256)
	b.tokens = min(b.tokens, b.Burst)
}

// refill adds what the rate granted since the last call, up to the burst;
// tokens above it (Resume's) are kept, not cut.
func (b *Bucket) refill(now time.Time) {
	if !b.last.IsZero() && now.After(b.last) && b.tokens < b.Burst {
		b.tokens = min(b.Burst, b.tokens+now.Sub(b.last).Seconds()*b.Rate)
	}
	b.last = now
}

// Allow reports whether n bytes may be sent now, and takes them if so. A
// frame larger than the burst is allowed once the bucket is full, so it is
// never stuck; the debt is paid before the next frame.
func (b *Bucket) Allow(n int, now time.Time) bool {
	if b == nil || b.Rate <= 0 {
		return true
	}
	b.refill(now)
	if b.tokens >= float64(n) || b.tokens >= b.Burst {
		b.tokens -= float64(n)
		return true
	}
	return false
}

// Holds reports whether the bucket holds n bytes now, or is full: what
// waits for n bytes would not wait longer.
func (b *Bucket) Holds(n int, now time.Time) bool {
	if b == nil || b.Rate <= 0 {
		return true
	}
	b.refill(now)
	return b.tokens >= min(float64(n), b.Burst)
}

// GiveBack returns n taken by Allow for something that then did not
// happen, up to the burst.
func (b *Bucket) GiveBack(n int) {
	if b != nil && b.Rate > 0 {
		b.tokens = max(b.tokens, min(b.Burst, b.tokens+float64(n)))
	}
}

// Pause marks the start of a time in which nothing can be sent, though
// the client is still there: a long poll answered, the next not yet come.
// A bucket refills only up to its burst, so over a long round trip each
// poll's answer would carry a quarter second of rate, and the client would
// get a fraction of its cap. Resume ends the pause.
func (b *Bucket) Pause(now time.Time) {
	if b == nil || b.Rate <= 0 {
		return
	}
	b.refill(now)
	b.pausedAt, b.pausedTokens = now, b.tokens
}

// Resume ends a pause: the bucket holds what the rate granted during it,
// above the burst by at most maxGap of rate, so that the rate is the
// client's over any stretch of polls, whatever the round trip. A client
// that was away longer than maxGap gets no more than maxGap of it.
func (b *Bucket) Resume(now time.Time, maxGap time.Duration) {
	if b == nil || b.pausedAt.IsZero() {
		return
	}
	gap, paused := now.Sub(b.pausedAt), b.pausedTokens
	b.pausedAt = time.Time{}
	if b.Rate <= 0 || gap <= 0 {
		return
	}
	b.refill(now)
	granted := paused + gap.Seconds()*b.Rate
	b.tokens = max(b.tokens, min(granted, b.Burst+min(gap, maxGap).Seconds()*b.Rate))
}

// Wait is how long until n bytes would be allowed.
func (b *Bucket) Wait(n int, now time.Time) time.Duration {
	if b == nil || b.Rate <= 0 {
		return 0
	}
	b.refill(now)
	need := min(float64(n), b.Burst) - b.tokens
	if need <= 0 {
		return 0
	}
	return time.Duration(need / b.Rate * float64(time.Second))
}
