package topic

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// Benchmarks. Run with:
//
//	go test -run='^$' -bench=. -benchmem ./session/topic/
//
// Match and Index.Match must report 0 allocs/op.

var sink bool

func BenchmarkMatch(b *testing.B) {
	cases := []struct{ name, filter, topic string }{
		{"exact", "sensors/site42/dev17/temperature", "sensors/site42/dev17/temperature"},
		{"plus", "sensors/+/+/temperature", "sensors/site42/dev17/temperature"},
		{"hash", "sensors/site42/#", "sensors/site42/dev17/temperature"},
		{"miss", "sensors/site43/+/temperature", "sensors/site42/dev17/temperature"},
		{"dollar", "#", "$SYS/broker/uptime"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink = Match(c.filter, c.topic)
			}
		})
	}
}

func BenchmarkIndexMatch(b *testing.B) {
	x, names := benchIndex(10000)
	for _, name := range names {
		b.Run(name, func(b *testing.B) {
			calls := 0
			fn := func(string, int) { calls++ }
			b.ReportAllocs()
			for b.Loop() {
				x.Match(name, fn)
			}
			b.ReportMetric(float64(calls)/float64(b.N), "matches/op")
		})
	}
}

func BenchmarkIndexAddRemove(b *testing.B) {
	x, _ := benchIndex(10000)
	b.ReportAllocs()
	for b.Loop() {
		x.Add("sensors/site42/dev17/+", -3)
		x.Remove("sensors/site42/dev17/+", -3)
	}
}

func BenchmarkValidateName(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink = ValidateName("sensors/site42/dev17/temperature") == nil
	}
}

func BenchmarkValidateFilter(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink = ValidateFilter("sensors/+/dev17/#") == nil
	}
}

func BenchmarkContains(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sink = Contains("users/+/inbox/#", "users/alice/inbox/+")
	}
}

// BenchmarkIndexMemory reports the heap an index holds per filter, for
// long filters (1,000 of about 1 KiB, 10 levels of 100 bytes, each level
// its own): a subscriber's memory is mostly its filters'.
func BenchmarkIndexMemory(b *testing.B) {
	filters := make([]string, 1000)
	for i := range filters {
		levels := make([]string, 10)
		for l := range levels {
			levels[l] = fmt.Sprintf("%03d-%d-%s", i, l, strings.Repeat("x", 92))
		}
		filters[i] = strings.Join(levels, "/")
	}
	var held float64
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		x := new(Index[int])
		for i, f := range filters {
			x.Add(f, i)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held = float64(after.HeapAlloc-before.HeapAlloc) / float64(len(filters))
		runtime.KeepAlive(x)
	}
	b.ReportMetric(held, "B/filter")
}
