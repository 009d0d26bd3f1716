package throttle

import "time"

// LogBudget lets log lines through in bursts and then at a steady rate,
// so that a client cannot flood the log (and make it roll away its
// history) with refusals it provokes: every subscribe to a topic of its
// choosing that a hook denies is a line. The next line let through counts
// those left out. The zero value is ready to use; its owner locks it.
//
// One session's lines take at most LogShare of each LogShareWindow: a
// client flooding refusals would otherwise spend the whole budget, and
// another user's, the one an operator looks for, go unlogged.
type LogBudget struct {
	tokens  float64
	last    time.Time
	skipped int

	window time.Time      // when the sessions' counts started
	shares map[string]int // lines per session in this window
}

const (
	LogBurst       = 100 // lines at once
	LogRate        = 10  // lines per second once a burst is spent
	LogShare       = 10  // lines of one session per window
	LogShareWindow = 10 * time.Second
)

// Take reports whether to log a line of session (empty: none) at now,
// and how many were left out since the last one.
func (b *LogBudget) Take(now time.Time, session string) (skipped int, ok bool) {
	if b.last.IsZero() {
		b.tokens = LogBurst
	} else {
		b.tokens = min(LogBurst, b.tokens+now.Sub(b.last).Seconds()*LogRate)
	}
	b.last = now
	if now.Sub(b.window) >= LogShareWindow {
		b.window, b.shares = now, nil // a map no larger than a window's lines
	}
	if session != "" && b.shares[session] >= LogShare || b.tokens < 1 {
		b.skipped++
		return 0, false
	}
	if session != "" {
		if b.shares == nil {
			b.shares = map[string]int{}
		}
		b.shares[session]++
	}
	b.tokens--
	skipped, b.skipped = b.skipped, 0
	return skipped, true
}
