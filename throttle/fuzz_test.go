package throttle

import (
	"fmt"
	"testing"
)

// ParseBandwidth reads what people and hooks write: whatever it accepts
// is a rate of at least a byte per second, and the rate it gives reads
// back the same when written in bytes per second.
func FuzzParseBandwidth(f *testing.F) {
	for _, s := range []string{"65536", "64KiB", "100kB/s", "1MBps", "512kbit", "512kbps", "1Mb/s", "64kb", "4bit", "bit", "/s", "ps", "1.5GiB", "-1", "18446744073709551615B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, err := ParseBandwidth(v)
		if err != nil {
			return
		}
		if n == 0 {
			t.Fatalf("%q accepted as 0 bytes per second", v)
		}
		again, err := ParseBandwidth(fmt.Sprintf("%dB/s", n))
		if err != nil || again != n {
			t.Fatalf("%q is %d bytes per second, which reads back as %d, %v", v, n, again, err)
		}
	})
}
