package session

import (
	"sync"
	"time"
)

// LogLimiter lets a kind of warning through at most once per Every, so
// that a client cannot flood the log with its refusals; the next line
// counts the ones left out.
type LogLimiter struct {
	Every time.Duration

	mu      sync.Mutex
	last    time.Time
	skipped int
}

// Allow reports whether to log now and how many were left out since the
// last line.
func (l *LogLimiter) Allow() (skipped int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.Every {
		l.skipped++
		return 0, false
	}
	skipped, l.last, l.skipped = l.skipped, now, 0
	return skipped, true
}
