package session

import (
	"sync"
	"time"
)

// LogLimiter lets a kind of warning through at most once per logEvery, so
// that a client cannot flood the log with its refusals; the next line
// counts the ones left out. The zero value is ready to use.
type LogLimiter struct {
	mu      sync.Mutex
	last    time.Time
	skipped int
}

const logEvery = 10 * time.Second

// Allow reports whether to log now and how many were left out since the
// last line.
func (l *LogLimiter) Allow() (skipped int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < logEvery {
		l.skipped++
		return 0, false
	}
	skipped, l.last, l.skipped = l.skipped, now, 0
	return skipped, true
}
