package hookapi

import (
	"context"
	"strconv"
	"testing"
	"time"
)

// Benchmarks. Run with:
//
//	go test -run='^$' -bench=. -benchmem ./hookapi/
//
// BenchmarkDecide measures decisions per second through an in-Caddy
// policy (respond + mqtt_topic with a placeholder), the path every
// publish takes when no max-age is given, and with the cache when the
// policy answers with one.

const benchPolicy = `
		@own mqtt_topic users/{http.mqtt_gateway.user}/#
		header @own Cache-Control "max-age=60"
		respond @own 200
		@public {
			path /subscribe
			mqtt_topic public/#
		}
		respond @public 200
		respond 403`

func BenchmarkDecide(b *testing.B) {
	r := authorizeRunner(b, benchPolicy)
	o := webOrigin()
	ctx := context.Background()
	cases := []struct {
		name  string
		f     Facts
		cache bool
	}{
		{"allow", publish("alice", "users/alice/inbox"), false},
		{"deny", publish("alice", "users/bob/inbox"), false},
		{"allow_cached", publish("alice", "users/alice/inbox"), true},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			r.Cache = nil
			if c.cache {
				r.Cache = NewCache(0)
			}
			want := c.name != "deny"
			b.ReportAllocs()
			start := time.Now()
			for b.Loop() {
				if d := r.Decide(ctx, o, c.f); d.Allow != want {
					b.Fatalf("decision %+v", d)
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
		})
	}
}

// BenchmarkDecideParallel is the same policy, uncached, from many
// goroutines at once, over many topics.
func BenchmarkDecideParallel(b *testing.B) {
	r := authorizeRunner(b, benchPolicy)
	o := webOrigin()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			r.Decide(context.Background(), o, publish("alice", "users/alice/"+strconv.Itoa(i%100)))
		}
	})
}

func BenchmarkMatchTopic(b *testing.B) {
	m := MatchTopic{"public/#", "users/{http.mqtt_gateway.user}/#"}
	req := hookRequest(publish("alice", "users/alice/inbox"))
	b.ReportAllocs()
	for b.Loop() {
		if ok, _ := m.MatchWithError(req); !ok {
			b.Fatal("no match")
		}
	}
}
