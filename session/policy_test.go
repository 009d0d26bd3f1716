package session

import (
	"math"
	"strings"
	"testing"
	"time"
)

// The authenticate hook's limits are read strictly: a value that would
// not limit as written (NaN, an infinity, a frequency so low that the
// spacing between messages overflowed to a negative one, which meant no
// limit) refuses the session rather than lifting the limit.
func TestParseLimits(t *testing.T) {
	for v, want := range map[string]string{
		"NaN":   "not a number of messages per second of at least 0.001",
		"+Inf":  "not a number of messages per second of at least 0.001",
		"1e-10": "not a number of messages per second of at least 0.001",
		"0":     "not a number of messages per second of at least 0.001",
		"-2":    "not a number of messages per second of at least 0.001",
		"ten":   "not a number of messages per second of at least 0.001",
	} {
		if _, err := ParseLimits(map[string]string{"max_frequency": v}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("max_frequency %q: %v, want an error saying %q", v, err, want)
		}
	}
	l, err := ParseLimits(map[string]string{"max_frequency": "0.001", "max_bandwidth": "512kbit"})
	if err != nil || l.MaxFrequency != 0.001 || l.MaxBandwidth != 64000 {
		t.Fatalf("limits %+v, %v; want a message per 1000 s and 64,000 bytes per second", l, err)
	}
}

// The authorize hook's cap on a subscription is read as strictly: a
// misspelt limit name refuses the subscription rather than leaving it
// uncapped. The session's bandwidth, which a hook service may send with
// every answer, is not a subscription's and is ignored.
func TestParseGrant(t *testing.T) {
	for _, limits := range []map[string]string{
		{"max_frequency": "NaN"}, {"max_frequency": "0"}, {"max_frequency": "ten"},
		{"max_frequncy": "2"}, {"max_frequency": "2", "max_bandwith": "1"},
	} {
		if g, err := ParseGrant(limits); err == nil {
			t.Errorf("%v: read as %+v, want an error", limits, g)
		}
	}
	if g, err := ParseGrant(map[string]string{"max_frequency": "2.5", "max_bandwidth": "64KiB"}); err != nil || g.MaxFrequency != 2.5 {
		t.Fatalf("max_frequency 2.5 beside the session's max_bandwidth: %+v, %v", g, err)
	}
	if g, err := ParseGrant(nil); err != nil || g != (Grant{}) {
		t.Fatalf("no limits: %+v, %v; want no cap", g, err)
	}
}

// Every limit ParseLimits and ParseGrant accept is one: the spacing between messages
// is never negative (no limit) nor longer than the lowest frequency's.
func FuzzParseLimits(f *testing.F) {
	for _, s := range []string{"10", "0.001", "1e-10", "NaN", "Inf", "1e308", "0x1p-20", "64KiB", "512kbit", "1Mb/s", "bit", "/s"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, freq, bandwidth string) {
		if g, err := ParseGrant(map[string]string{"max_frequency": freq}); err == nil &&
			(math.IsNaN(g.MaxFrequency) || g.MaxFrequency < MinFrequency || math.IsInf(g.MaxFrequency, 0)) {
			t.Fatalf("a subscription's max_frequency %q accepted as %v", freq, g.MaxFrequency)
		}
		l, err := ParseLimits(map[string]string{"max_frequency": freq, "max_bandwidth": bandwidth})
		if err != nil {
			return
		}
		if math.IsNaN(l.MaxFrequency) || l.MaxFrequency < MinFrequency || math.IsInf(l.MaxFrequency, 0) {
			t.Fatalf("max_frequency %q accepted as %v", freq, l.MaxFrequency)
		}
		if l.MaxBandwidth == 0 {
			t.Fatalf("max_bandwidth %q accepted as no limit", bandwidth)
		}
		m := &Manager{}
		m.cfg.Store(&Config{})
		if iv := m.interval(0, l.MaxFrequency, 0); iv < 0 || iv > 1001*time.Second {
			t.Fatalf("max_frequency %q (%v) gives a spacing of %v", freq, l.MaxFrequency, iv)
		}
	})
}
