package throttle

import (
	"fmt"
	"strings"

	"github.com/dustin/go-humanize"
)

// ParseBandwidth reads bytes per second as people write them: a size
// (65536, 64KiB, 100kB/s, 1MBps) or bits per second (512kbit, 512kbps,
// 1Mb/s). As networks write it, a lowercase b is a bit and an uppercase B
// a byte; k is 1000 and Ki 1024. A rate written as a bare size with a
// lowercase b (64kb) is refused: the same text is 64,000 bytes in a size
// option such as max_message_size, and eight times less here.
func ParseBandwidth(v string) (bytesPerSecond uint64, err error) {
	s := strings.TrimSuffix(strings.TrimSuffix(v, "/s"), "ps")
	rate := s != v
	bits := false
	switch {
	case strings.HasSuffix(strings.ToLower(s), "bit"):
		bits, s = true, s[:len(s)-3]
	case strings.HasSuffix(s, "b"):
		if !rate {
			n := strings.TrimRight(s, "b")
			return 0, fmt.Errorf("bandwidth %q is ambiguous: write %sbit (or %sbps) for bits, %sB for bytes per second", v, n, n, strings.ToUpper(n))
		}
		bits, s = true, s[:len(s)-1]
	}
	n, err := humanize.ParseBytes(s)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("invalid bandwidth %q (use bytes like 64KiB or bits like 512kbit)", v)
	}
	if bits {
		n /= 8
	}
	if n == 0 {
		return 0, fmt.Errorf("bandwidth %q is less than a byte per second", v)
	}
	return n, nil
}
