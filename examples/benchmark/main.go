// Command benchmark measures fan-out through mqtt_gateway against
// Mosquitto's own WebSocket listener, in one run on one machine:
//
//	A: N web clients ── WebSocket ──▶ gateway (Caddy) ── 1 MQTT conn ──▶ Mosquitto ◀── publisher
//	B: N MQTT clients ── WebSocket ──────────────────────────────────▶ Mosquitto ◀── publisher
//	F: N TCP readers ◀── one prebuilt frame per write ── floor child (the floor: see floor.go)
//
// For each setup it reports deliveries and loss, delivered messages per
// second, latency, the CPU time and peak memory of each serving process
// (from /proc), the CPU per delivery of the serving side, memory per idle
// session, and the load generator's own CPU; then the ratios A/B and the
// targets of the issue, and (rate modes) how far A and B are above the
// floor F of one loopback write per delivery. See README.md.
//
//	go run ./examples/benchmark -mode rate -n 1000 -rate 80 -duration 10s
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

type options struct {
	mode     string
	ns       []int
	rates    []float64
	duration time.Duration
	size     int
	window   int
	setups   []string
	pin      bool
	json     bool
	dialers  int
	topic    string
	profile  bool
	keep     bool
	drain    time.Duration
	bclient  string
	readers  int
	coalesce time.Duration
	wdelay   time.Duration
	tls      bool
	dir      string
}

func main() {
	switch os.Getenv(envChild) {
	case "gateway":
		runGatewayChild()
		return
	case "floor":
		runFloorChild()
		return
	}
	var o options
	var nList, rateList, setups string
	flag.StringVar(&o.mode, "mode", "rate", "rate (fixed -rate for -duration), saturate (as fast as deliveries keep up), sweep (rate mode over each -n), idle (memory of N idle sessions only)")
	flag.StringVar(&nList, "n", "1000", "subscribers; a comma list runs each in turn (sweep default: 1000,5000,10000)")
	flag.StringVar(&rateList, "rate", "80", "messages per second published (rate, sweep); a comma list pairs with -n (sweep default: 80000/n, the same deliveries per second at every n)")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "publishing time of each measured window")
	flag.IntVar(&o.size, "size", 100, "payload bytes (at least 17: send time, sequence number, kind)")
	flag.IntVar(&o.window, "window", 200, "saturate: messages the publisher may be ahead of the average subscriber")
	flag.StringVar(&setups, "setups", "", "setups to run, in this order: a (through the gateway), b (Mosquitto's WebSocket listener), f (the floor: one loopback write per delivery; rate and sweep only) (default a,b,f in rate and sweep, a,b in saturate and idle)")
	flag.BoolVar(&o.pin, "pin", false, "pin the servers (gateway, Mosquitto) to CPU 0 and this load generator to CPU 1")
	flag.BoolVar(&o.json, "json", false, "write the results as JSON on stdout (the table goes to stderr)")
	flag.IntVar(&o.dialers, "dialers", 32, "subscribers connecting at once")
	flag.StringVar(&o.topic, "topic", "bench/fanout", "topic published and subscribed")
	flag.BoolVar(&o.profile, "profile", false, "record a CPU profile of the gateway during setup A's measured window and print its top functions (kept in the work dir)")
	flag.BoolVar(&o.keep, "keep", false, "keep the work dir (server configs and logs)")
	flag.DurationVar(&o.drain, "drain", 5*time.Second, "after publishing, how long deliveries may stall before the rest counts as lost")
	flag.IntVar(&o.readers, "readers", 0, "reactor threads reading the subscribers' sockets (epoll, one OS thread each; default GOMAXPROCS, so 1 with -pin)")
	flag.DurationVar(&o.coalesce, "coalesce", 100*time.Microsecond, "reactors pause this long after each batch of reads, so a server's write seldom has to wake them (it pays that wake-up on loopback); up to this much (plus 50 µs timer slack) is added to some latencies; 0: no pause")
	flag.BoolVar(&o.tls, "tls", false, "setup A over TLS (wss://, Caddy's internal CA), as with Caddy's automatic HTTPS; its subscribers are gorilla/websocket clients, a goroutine each (-setups a only)")
	flag.DurationVar(&o.wdelay, "write-delay", 0, "the gateway's write_delay (setup A): how long a message may wait for others to share its write; 0: none")
	flag.StringVar(&o.bclient, "bclient", "raw", "setup B's subscribers: raw (minimal MQTT 5 reader, allocation-free like A's) or paho (paho.golang's Client; about 3× Mosquitto's CPU per delivery in the generator)")
	flag.Parse()

	explicit := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if o.mode == "sweep" && !explicit["n"] {
		nList = "1000,5000,10000"
	}
	var err error
	if o.ns, err = parseInts(nList); err != nil {
		fatalf("-n: %v", err)
	}
	if o.mode == "sweep" && !explicit["rate"] {
		for _, n := range o.ns {
			o.rates = append(o.rates, 80000/float64(n))
		}
	} else if o.rates, err = parseFloats(rateList); err != nil {
		fatalf("-rate: %v", err)
	}
	if len(o.rates) == 1 {
		for len(o.rates) < len(o.ns) {
			o.rates = append(o.rates, o.rates[0])
		}
	}
	if len(o.rates) != len(o.ns) {
		fatalf("-rate has %d values for %d values of -n", len(o.rates), len(o.ns))
	}
	switch o.mode {
	case "rate", "saturate", "sweep", "idle":
	default:
		fatalf("-mode: %q is not rate, saturate, sweep or idle", o.mode)
	}
	if setups == "" {
		// F, the floor, only means something next to a rate: it writes on
		// the publisher's schedule (see floor.go).
		setups = "a,b"
		if o.mode == "rate" || o.mode == "sweep" {
			setups = "a,b,f"
		}
	}
	for _, s := range strings.Split(setups, ",") {
		s = strings.ToLower(strings.TrimSpace(s))
		if s != "a" && s != "b" && s != "f" {
			fatalf("-setups: %q is not a, b or f", s)
		}
		if s == "f" && o.mode != "rate" && o.mode != "sweep" {
			fatalf("-setups: f (the floor) runs in rate and sweep modes only, not %s", o.mode)
		}
		o.setups = append(o.setups, s)
	}
	if o.bclient != "raw" && o.bclient != "paho" {
		fatalf("-bclient: %q is not raw or paho", o.bclient)
	}
	if o.tls && (len(o.setups) != 1 || o.setups[0] != "a") {
		fatalf("-tls measures setup A alone (-setups a): B and F have no TLS to compare with")
	}
	if o.size < payloadHeader {
		fatalf("-size must be at least %d", payloadHeader)
	}

	nofile := raiseNoFile()
	for _, n := range o.ns {
		if uint64(n)+256 > nofile {
			fatalf("n = %d needs more open files than the limit allows (%d)", n, nofile)
		}
	}
	var pinNote string
	if o.pin {
		if runtime.NumCPU() < 2 {
			fatalf("-pin needs at least 2 CPUs")
		}
		if err := pinSelf(1); err != nil {
			fatalf("-pin: %v", err)
		}
		pinSelf(1) // threads started meanwhile
		pinNote = "servers on CPU 0, generator on CPU 1"
	}
	pinCPU := -1
	if o.pin {
		pinCPU = 1
	}
	if err := startReactors(o.readers, pinCPU, o.coalesce); err != nil {
		fatalf("readers: %v", err)
	}

	o.dir, err = os.MkdirTemp("", "mqttgw-bench-")
	if err != nil {
		fatalf("%v", err)
	}
	if o.keep || o.profile {
		logf("work dir (kept): %s", o.dir)
	} else {
		defer os.RemoveAll(o.dir)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	rep := &report{
		Mode: o.mode, DurationSec: o.duration.Seconds(), Size: o.size, Window: o.window, Pin: o.pin, PinNote: pinNote,
		WriteDelayMs: float64(o.wdelay) / 1e6,
		Host: hostInfo{CPUs: runtime.NumCPU(), LoadStart: loadAvg(), GoVersion: runtime.Version(), NoFile: nofile,
			Revision: revision(), Mosquitto: mosquittoVersion()},
	}
	for i, n := range o.ns {
		rr := runPair{N: n, Rate: o.rates[i]}
		if o.mode == "saturate" || o.mode == "idle" {
			rr.Rate = 0
		}
		for _, s := range o.setups {
			var res *setupResult
			var err error
			if s == "f" {
				res, err = runFloor(ctx, &o, n, o.rates[i])
			} else {
				res, err = runSetup(ctx, &o, s, n, o.rates[i])
			}
			if err != nil {
				if ctx.Err() != nil {
					fatalf("interrupted")
				}
				logf("setup %s, n=%d: %v", strings.ToUpper(s), n, err)
				res = &setupResult{Setup: strings.ToUpper(s), N: n, Error: err.Error()}
			}
			switch s {
			case "a":
				rr.A = res
			case "b":
				rr.B = res
			case "f":
				rr.F = res
			}
		}
		rr.compare(o.mode)
		rr.compareFloor()
		rep.Runs = append(rep.Runs, rr)
	}
	rep.Host.LoadEnd = loadAvg()
	rep.print(&o)
}

// subscriber is either kind of load-generator client.
type subscriber interface {
	state() *subState
	endedWith() string
	close()
}

// subBase is embedded by every subscriber kind: its account, which the
// recorder writes, and why its connection ended early. It provides state
// and endedWith of the subscriber interface, the same for every kind.
type subBase struct {
	st    subState
	ended atomic.Pointer[string]
}

func (b *subBase) state() *subState { return &b.st }

// end records why the connection ended. The first reason is kept: what
// follows it (reads on a closed connection, our own close) is a
// consequence.
func (b *subBase) end(msg string) { b.ended.CompareAndSwap(nil, &msg) }

// endedWith is why the connection ended early, or "".
func (b *subBase) endedWith() string {
	if p := b.ended.Load(); p != nil {
		return *p
	}
	return ""
}

// runSetup runs one setup at one n: fresh servers, n subscribers, the
// measured window, and the numbers.
func runSetup(ctx context.Context, o *options, setup string, n int, rate float64) (*setupResult, error) {
	label := strings.ToUpper(setup)
	res := &setupResult{Setup: label, N: n, Rate: rate}
	if o.mode == "saturate" || o.mode == "idle" {
		res.Rate = 0
	}
	if setup == "a" {
		res.Name = "gateway"
	} else {
		res.Name = "mosquitto-ws"
	}

	mq, err := startMosquitto(o.dir, o.pin)
	if err != nil {
		return nil, fmt.Errorf("mosquitto: %w", err)
	}
	defer mq.stop()
	var gw *gateway
	if setup == "a" {
		if gw, err = startGateway(o.dir, o.pin, mq.tcpPort, o.wdelay, o.tls); err != nil {
			return nil, fmt.Errorf("gateway: %w", err)
		}
		defer gw.stop()
	}

	pub, err := dialPublisher(ctx, mq.tcpPort, o.topic, o.size)
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	defer pub.close()

	// Memory before the sessions, for the per-session figures.
	time.Sleep(300 * time.Millisecond)
	var memBase memStats
	if gw != nil {
		res.GatewayRSSBase, _ = procMem(gw.pid)
		if memBase, err = gw.memStats(); err != nil {
			return nil, fmt.Errorf("gateway memstats: %w", err)
		}
	}
	res.BrokerRSSBase, _ = procMem(mq.pid)

	// Subscribers.
	rec := &recorder{}
	subs := make([]subscriber, n)
	logf("%s: connecting %d subscribers", label, n)
	t0 := time.Now()
	if err := connectAll(ctx, o.dialers, n, func(ctx context.Context, i int) (subscriber, error) {
		switch {
		case setup == "a" && o.tls:
			return dialGatewayTLS(ctx, gw.wsURL(), o.topic, i, rec)
		case setup == "a":
			return dialGateway(ctx, gw.wsURL(), o.topic, i, rec)
		}
		url := fmt.Sprintf("ws://127.0.0.1:%d/", mq.wsPort)
		if o.bclient == "paho" {
			return dialMosquitto(ctx, url, o.topic, i, rec)
		}
		return dialMosquittoRaw(ctx, url, o.topic, i, rec)
	}, subs); err != nil {
		closeAll(subs)
		return nil, err
	}
	defer closeAll(subs)
	res.ConnectSec = time.Since(t0).Seconds()
	logf("%s: %d subscribers in %.1fs", label, n, res.ConnectSec)

	// Idle memory: n sessions, each with a client on the shared connection
	// (A) or an MQTT connection (B) and one subscription, nothing flowing.
	time.Sleep(time.Second)
	if gw != nil {
		res.GatewayRSSIdle, _ = procMem(gw.pid)
		res.GatewayRSSPerSession = float64(res.GatewayRSSIdle-res.GatewayRSSBase) / float64(n)
		m, err := gw.memStats()
		if err != nil {
			return nil, fmt.Errorf("gateway memstats: %w", err)
		}
		res.GoHeapPerSession = (float64(m.HeapAlloc) - float64(memBase.HeapAlloc)) / float64(n)
		res.GoStackPerSession = (float64(m.StackInuse) - float64(memBase.StackInuse)) / float64(n)
		res.GoHeapStackPerSession = res.GoHeapPerSession + res.GoStackPerSession
		res.GoroutinesPerSession = float64(m.NumGoroutine-memBase.NumGoroutine) / float64(n)
		res.GatewayGOMAXPROCS = m.GOMAXPROCS
		if o.profile {
			path := filepath.Join(o.dir, fmt.Sprintf("gateway-heap-idle-n%d.pprof", n))
			if err := gw.fetch("/debug/pprof/heap", path, time.Minute); err != nil {
				res.Warnings = append(res.Warnings, "heap profile: "+err.Error())
			} else {
				res.HeapProfilePath = path
			}
			// Where the sessions' goroutines wait, for the stack figure.
			gw.fetch("/debug/pprof/goroutine?debug=1", filepath.Join(o.dir, fmt.Sprintf("gateway-goroutines-idle-n%d.txt", n)), time.Minute)
		}
	}
	res.BrokerRSSIdle, _ = procMem(mq.pid)
	res.BrokerRSSPerSession = float64(res.BrokerRSSIdle-res.BrokerRSSBase) / float64(n)

	if o.mode == "idle" {
		res.finishMemory(gw, mq)
		res.GeneratorRSSPeak = selfMaxRSS()
		return res, nil
	}

	// Every subscription live end to end before measuring.
	if err := probe(ctx, pub, rec, n); err != nil {
		return nil, err
	}
	droppedBase := pub.dropped.Load()

	// One idle second: what the servers burn with n sessions and no
	// traffic (Mosquitto's service loop, the gateway's timers), the
	// baseline inside every window's CPU figures.
	i0, i0gw, it := procCPUPrecise(mq.pid), 0.0, time.Now()
	if gw != nil {
		i0gw = procCPUPrecise(gw.pid)
	}
	time.Sleep(time.Second)
	idle := time.Since(it).Seconds()
	res.BrokerIdleCPUPerSec = (procCPUPrecise(mq.pid) - i0) / idle
	if gw != nil {
		res.GatewayIdleCPUPerSec = (procCPUPrecise(gw.pid) - i0gw) / idle
	}

	// The measured window.
	type cpuSample struct{ gw, mq, gwTicks, mqTicks, self, sys float64 }
	sample := func() cpuSample {
		s := cpuSample{mq: procCPUPrecise(mq.pid), mqTicks: procCPU(mq.pid), self: selfCPU(), sys: systemBusy()}
		if gw != nil {
			s.gw, s.gwTicks = procCPUPrecise(gw.pid), procCPU(gw.pid)
		}
		return s
	}
	var profErr error
	var profWG sync.WaitGroup
	profPath := filepath.Join(o.dir, fmt.Sprintf("gateway-cpu-n%d.pprof", n))
	c0 := sample()
	start := time.Now()
	if gw != nil && o.profile {
		profWG.Add(1)
		go func() { defer profWG.Done(); profErr = gw.profile(o.duration, profPath) }()
	}
	var published uint64
	switch o.mode {
	case "saturate":
		logf("%s: publishing as fast as %d subscribers keep up (window %d) for %s", label, n, o.window, o.duration)
		published, err = pub.runSaturate(ctx, o.duration, o.window, n, &rec.delivered)
	default:
		logf("%s: publishing %.0f msg/s for %s to %d subscribers", label, rate, o.duration, n)
		published, err = pub.runRate(ctx, rate, o.duration)
	}
	pubEnd := time.Now()
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	expected := int64(published) * int64(n)
	last := drain(ctx, &rec.delivered, expected, o.drain)
	c1 := sample()
	wall := time.Since(start).Seconds()
	profWG.Wait()

	res.Published = published
	res.PublishedPerSec = float64(published) / pubEnd.Sub(start).Seconds()
	res.Expected = expected
	res.Received = rec.delivered.Load()
	res.Lost = expected - res.Received
	// The window runs from the first publish to the last delivery; in rate
	// mode at least the published messages' nominal span (published/rate),
	// so a system that keeps up shows exactly the rate asked.
	if o.mode != "saturate" {
		if nominal := start.Add(time.Duration(float64(published) / rate * float64(time.Second))); nominal.After(last) {
			last = nominal
		}
	}
	res.WindowSec = last.Sub(start).Seconds()
	if res.WindowSec > 0 {
		res.DeliveredPerSec = float64(res.Received) / res.WindowSec
	}
	qs, mx, _ := rec.hist.summary(0.5, 0.99, 0.999)
	res.LatP50, res.LatP99, res.LatP999, res.LatMax = qs[0]/1e6, qs[1]/1e6, qs[2]/1e6, mx/1e6
	res.CPUWindowSec = wall
	res.BrokerCPU = c1.mq - c0.mq
	res.GatewayCPU = c1.gw - c0.gw
	res.BrokerCPUStat = c1.mqTicks - c0.mqTicks
	res.GatewayCPUStat = c1.gwTicks - c0.gwTicks
	res.ServingCPU = res.BrokerCPU + res.GatewayCPU
	res.GeneratorCPU = c1.self - c0.self
	res.OtherCPU = max(0, (c1.sys-c0.sys)-res.ServingCPU-res.GeneratorCPU)
	if res.Received > 0 {
		res.ServingUsPerDelivery = res.ServingCPU * 1e6 / float64(res.Received)
		res.BrokerUsPerDelivery = res.BrokerCPU * 1e6 / float64(res.Received)
		res.GatewayUsPerDelivery = res.GatewayCPU * 1e6 / float64(res.Received)
		res.GeneratorUsPerDelivery = res.GeneratorCPU * 1e6 / float64(res.Received)
	}
	res.finishMemory(gw, mq)
	res.GeneratorRSSPeak = selfMaxRSS()
	if gw != nil {
		// After the traffic: what the sessions hold now (replay windows,
		// grown buffers and stacks), after a GC.
		if m, err := gw.memStats(); err == nil {
			res.GatewayHeapAfter, res.GatewayStackAfter = int64(m.HeapAlloc), int64(m.StackInuse)
		}
	}

	// What each subscriber saw.
	for _, s := range subs {
		st := s.state()
		res.Gaps += st.gaps.Load()
		res.Reorders += st.reorders.Load()
		res.OverflowNotices += st.notices.Load()
		if why := s.endedWith(); why != "" {
			res.Disconnected++
			if res.FirstDisconnect == "" {
				res.FirstDisconnect = why
			}
		}
		if st.received.Load() < int64(published) {
			res.SubsShort++
		}
	}
	// Mosquitto publishes $SYS counters every sys_interval (1 s).
	time.Sleep(1100 * time.Millisecond)
	if d := pub.dropped.Load(); d >= 0 && droppedBase >= 0 {
		res.BrokerDropped = d - droppedBase
	} else {
		res.BrokerDropped = -1
	}
	if gw != nil && o.profile {
		if profErr != nil {
			res.Warnings = append(res.Warnings, "profile: "+profErr.Error())
		} else {
			res.ProfilePath = profPath
		}
	}
	res.check(o, n)
	logf("%s: %d/%d deliveries, %.0f/s, p50 %.2f ms p99 %.2f ms, serving CPU %.2f µs/delivery",
		label, res.Received, res.Expected, res.DeliveredPerSec, res.LatP50, res.LatP99, res.ServingUsPerDelivery)
	return res, nil
}

func (r *setupResult) finishMemory(gw *gateway, mq *mosquitto) {
	if gw != nil {
		_, r.GatewayRSSPeak = procMem(gw.pid)
	}
	_, r.BrokerRSSPeak = procMem(mq.pid)
}

// connectAll connects n subscribers, k at a time.
func connectAll(ctx context.Context, k, n int, dial func(context.Context, int) (subscriber, error), subs []subscriber) error {
	var next atomic.Int64
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	var done atomic.Int64
	stopProgress := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				logf("  … %d/%d connected", done.Load(), n)
			case <-stopProgress:
				return
			}
		}
	}()
	defer close(stopProgress)
	for w := 0; w < k; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				mu.Lock()
				failed := firstErr != nil
				mu.Unlock()
				if failed {
					return
				}
				dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				s, err := dial(dctx, i)
				cancel()
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("subscriber %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				subs[i] = s
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return firstErr
}

func closeAll(subs []subscriber) {
	var wg sync.WaitGroup
	ch := make(chan subscriber)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range ch {
				s.close()
			}
		}()
	}
	for _, s := range subs {
		if s != nil {
			ch <- s
		}
	}
	close(ch)
	wg.Wait()
}

// probe publishes probe messages until every subscriber has received one,
// so the measured window starts with every subscription live end to end.
func probe(ctx context.Context, pub *publisher, rec *recorder, n int) error {
	deadline := time.Now().Add(30 * time.Second)
	for seq := uint64(1); ; seq++ {
		if err := pub.publish(ctx, seq, kindProbe); err != nil {
			return fmt.Errorf("probe: %w", err)
		}
		for t := time.Now().Add(200 * time.Millisecond); time.Now().Before(t); {
			if rec.probed.Load() >= int64(n) {
				return nil
			}
			time.Sleep(5 * time.Millisecond)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("only %d of %d subscribers received a probe message within 30s", rec.probed.Load(), n)
		}
	}
}

// drain waits until every expected delivery has arrived or deliveries have
// stalled for idle; it returns when the last delivery was seen (10 ms
// resolution).
func drain(ctx context.Context, delivered *atomic.Int64, expected int64, idle time.Duration) time.Time {
	last := time.Now()
	prev := delivered.Load()
	for {
		cur := delivered.Load()
		now := time.Now()
		if cur != prev {
			prev, last = cur, now
		}
		if cur >= expected || now.Sub(last) > idle || ctx.Err() != nil {
			return last
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func parseFloats(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, v)
	}
	return out, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "benchmark: %s\n", fmt.Sprintf(format, args...))
	os.Exit(2)
}
