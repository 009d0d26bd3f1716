package main

import (
	"encoding/binary"
	"math/bits"
	"sync/atomic"
)

// Payload layout (little endian), padded with zeros to -size bytes:
//
//	[0:8)   send time, UnixNano, taken just before the publish call
//	[8:16)  sequence number, from 1 in each measured run
//	[16]    kind: kindProbe or kindMeasured
const (
	payloadHeader = 17
	kindProbe     = 1
	kindMeasured  = 2
)

func fillPayload(p []byte, sent int64, seq uint64, kind byte) {
	binary.LittleEndian.PutUint64(p[0:], uint64(sent))
	binary.LittleEndian.PutUint64(p[8:], seq)
	p[16] = kind
}

// Latency histogram: log-linear buckets over nanoseconds, 64 per power of
// two (under 1.6% relative error), exact below 128 ns. Recording is one
// atomic add; shards spread the adds of concurrent readers over several
// cache lines.
const (
	histSub     = 64
	histMaxLog  = 40 // values clamp at 2^40 ns (18 min)
	histBuckets = (histMaxLog-6)*histSub + 2*histSub
	histShards  = 8
)

type histShard struct {
	b   [histBuckets]atomic.Uint64
	max atomic.Int64
	_   [64]byte
}

type histogram struct{ shards [histShards]histShard }

func histIndex(v uint64) int {
	if v >= 1<<histMaxLog {
		v = 1<<histMaxLog - 1
	}
	shift := bits.Len64(v) - 7
	if shift <= 0 {
		return int(v)
	}
	return shift*histSub + int(v>>uint(shift))
}

// histValue is the middle of a bucket.
func histValue(i int) float64 {
	if i < 2*histSub {
		return float64(i)
	}
	shift := i/histSub - 1
	mant := uint64(i - shift*histSub)
	return float64(mant<<uint(shift)) + float64(uint64(1)<<uint(shift))/2
}

func (h *histogram) record(shard int, ns int64) {
	if ns < 0 {
		ns = 0
	}
	s := &h.shards[shard%histShards]
	s.b[histIndex(uint64(ns))].Add(1)
	for {
		m := s.max.Load()
		if ns <= m || s.max.CompareAndSwap(m, ns) {
			return
		}
	}
}

// summary returns the quantiles asked (0..1) and the maximum, in ns.
func (h *histogram) summary(qs ...float64) (out []float64, maxNs float64, count uint64) {
	var merged [histBuckets]uint64
	var mx int64
	for s := range h.shards {
		for i := range merged {
			n := h.shards[s].b[i].Load()
			merged[i] += n
			count += n
		}
		mx = max(mx, h.shards[s].max.Load())
	}
	out = make([]float64, len(qs))
	if count == 0 {
		return out, 0, 0
	}
	for qi, q := range qs {
		target := uint64(q*float64(count) + 0.5)
		if target < 1 {
			target = 1
		}
		var acc uint64
		for i, n := range merged {
			acc += n
			if acc >= target {
				out[qi] = min(histValue(i), float64(mx))
				break
			}
		}
	}
	return out, float64(mx), count
}

// recorder collects the deliveries of one setup's subscribers.
type recorder struct {
	hist      histogram
	delivered atomic.Int64 // measured messages received, all subscribers
	probed    atomic.Int64 // subscribers that have seen a probe
}

// subState is one subscriber's account, written by its reader only
// (atomics so the coordinator can watch progress).
type subState struct {
	id       int
	received atomic.Int64 // measured messages
	gaps     atomic.Int64 // sequence numbers skipped (lost messages)
	reorders atomic.Int64 // sequence numbers at or below one already seen
	notices  atomic.Int64 // overflow NOTICEs (gateway) counting dropped messages
	probes   atomic.Int64
	lastSeq  uint64
}

// onPayload accounts one delivered message. It allocates nothing.
func (r *recorder) onPayload(s *subState, p []byte, now int64) {
	if len(p) < payloadHeader {
		return
	}
	switch p[16] {
	case kindMeasured:
		sent := int64(binary.LittleEndian.Uint64(p[0:]))
		seq := binary.LittleEndian.Uint64(p[8:])
		r.hist.record(s.id, now-sent)
		switch {
		case seq == s.lastSeq+1:
		case seq > s.lastSeq+1:
			s.gaps.Add(int64(seq - s.lastSeq - 1))
		default:
			s.reorders.Add(1)
		}
		if seq > s.lastSeq {
			s.lastSeq = seq
		}
		s.received.Add(1)
		r.delivered.Add(1)
	case kindProbe:
		if s.probes.Add(1) == 1 {
			r.probed.Add(1)
		}
	}
}
