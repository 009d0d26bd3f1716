package hookapi

import (
	"sync"
	"time"
)

// logBudget lets log lines through in bursts and then at a steady rate,
// so that a client cannot flood the log (and make it roll away its
// history) with refusals it provokes: every subscribe to a topic of its
// choosing that the hook denies is a line. The next line let through
// counts those left out. The zero value is ready to use.
type logBudget struct {
	mu      sync.Mutex
	tokens  float64
	last    time.Time
	skipped int
}

const (
	logBurst = 100 // lines at once
	logRate  = 10  // lines per second once a burst is spent
)

// take reports whether to log a line at now, and how many were left out
// since the last one.
func (b *logBudget) take(now time.Time) (skipped int, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last.IsZero() {
		b.tokens = logBurst
	} else {
		b.tokens = min(logBurst, b.tokens+now.Sub(b.last).Seconds()*logRate)
	}
	b.last = now
	if b.tokens < 1 {
		b.skipped++
		return 0, false
	}
	b.tokens--
	skipped, b.skipped = b.skipped, 0
	return skipped, true
}
