package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

type hostInfo struct {
	CPUs      int    `json:"cpus"`
	LoadStart string `json:"loadavg_start"`
	LoadEnd   string `json:"loadavg_end"`
	GoVersion string `json:"go_version"`
	NoFile    uint64 `json:"nofile_limit"`
	Revision  string `json:"revision,omitempty"` // git HEAD of the checkout built; "+dirty.<digest>" with local changes
	Mosquitto string `json:"mosquitto,omitempty"`
}

// revision names the code measured: the checkout's HEAD, and whether the
// working tree differs from it (the gateway is built from the tree).
func revision() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	// With local changes, a digest of them (tracked diff and untracked
	// names), so two runs can tell whether they measured the same tree.
	st, _ := exec.Command("git", "status", "--porcelain").Output()
	if len(bytes.TrimSpace(st)) > 0 {
		diff, _ := exec.Command("git", "diff", "HEAD").Output()
		sum := sha256.Sum256(append(diff, st...))
		rev += fmt.Sprintf("+dirty.%x", sum[:4])
	}
	return rev
}

func mosquittoVersion() string {
	out, _ := exec.Command("/usr/sbin/mosquitto", "-h").Output()
	line, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(line)
}

// setupResult is one setup at one n. Times are seconds, latencies
// milliseconds, memory bytes, unless the name says otherwise.
type setupResult struct {
	Setup string  `json:"setup"` // A, B or F
	Name  string  `json:"name"`  // gateway, mosquitto-ws or floor
	N     int     `json:"n"`
	Rate  float64 `json:"rate,omitempty"` // messages per second asked (rate mode)
	Error string  `json:"error,omitempty"`

	ConnectSec float64 `json:"connect_sec"` // time to connect and subscribe n clients

	Published       uint64  `json:"published"`
	PublishedPerSec float64 `json:"published_per_sec"`
	Expected        int64   `json:"deliveries_expected"`
	Received        int64   `json:"deliveries_received"`
	Lost            int64   `json:"lost"`
	Gaps            int64   `json:"sequence_gaps"`
	Reorders        int64   `json:"reorders"`
	OverflowNotices int64   `json:"overflow_notice_drops"` // gateway NOTICE 4050 counts
	BrokerDropped   int64   `json:"broker_dropped"`        // $SYS/broker/publish/messages/dropped delta; -1 unknown
	SubsShort       int     `json:"subscribers_short"`     // subscribers that missed something
	Disconnected    int     `json:"disconnected"`
	FirstDisconnect string  `json:"first_disconnect,omitempty"`
	WindowSec       float64 `json:"window_sec"` // first publish to last delivery
	DeliveredPerSec float64 `json:"delivered_per_sec"`

	LatP50  float64 `json:"latency_p50_ms"`
	LatP99  float64 `json:"latency_p99_ms"`
	LatP999 float64 `json:"latency_p999_ms"`
	LatMax  float64 `json:"latency_max_ms"`

	CPUWindowSec           float64 `json:"cpu_window_sec"` // wall time between the CPU samples
	GatewayCPU             float64 `json:"gateway_cpu_sec"`
	BrokerCPU              float64 `json:"broker_cpu_sec"`
	GatewayCPUStat         float64 `json:"gateway_cpu_sec_proc_stat"` // utime+stime, clock-tick resolution
	BrokerCPUStat          float64 `json:"broker_cpu_sec_proc_stat"`
	ServingCPU             float64 `json:"serving_cpu_sec"`
	ServingUsPerDelivery   float64 `json:"serving_cpu_us_per_delivery"`
	GatewayUsPerDelivery   float64 `json:"gateway_cpu_us_per_delivery"`
	BrokerUsPerDelivery    float64 `json:"broker_cpu_us_per_delivery"`
	GeneratorCPU           float64 `json:"generator_cpu_sec"`
	GeneratorUsPerDelivery float64 `json:"generator_cpu_us_per_delivery"`
	OtherCPU               float64 `json:"other_processes_cpu_sec"`
	GatewayIdleCPUPerSec   float64 `json:"gateway_idle_cpu_per_sec"` // n sessions, no traffic
	BrokerIdleCPUPerSec    float64 `json:"broker_idle_cpu_per_sec"`

	GatewayRSSBase        int64   `json:"gateway_rss_base"`
	GatewayRSSIdle        int64   `json:"gateway_rss_idle"`
	GatewayRSSPeak        int64   `json:"gateway_rss_peak"`
	GatewayRSSPerSession  float64 `json:"gateway_rss_per_idle_session"`
	GoHeapPerSession      float64 `json:"gateway_go_heap_per_idle_session"`
	GoStackPerSession     float64 `json:"gateway_go_stack_per_idle_session"`
	GoHeapStackPerSession float64 `json:"gateway_go_heap_stack_per_idle_session"`
	GoroutinesPerSession  float64 `json:"gateway_goroutines_per_session"`
	GatewayHeapAfter      int64   `json:"gateway_go_heap_after_window"`
	GatewayStackAfter     int64   `json:"gateway_go_stack_after_window"`
	GatewayGOMAXPROCS     int     `json:"gateway_gomaxprocs,omitempty"`
	BrokerRSSBase         int64   `json:"broker_rss_base"`
	BrokerRSSIdle         int64   `json:"broker_rss_idle"`
	BrokerRSSPeak         int64   `json:"broker_rss_peak"`
	BrokerRSSPerSession   float64 `json:"broker_rss_per_idle_session"`
	GeneratorRSSPeak      int64   `json:"generator_rss_peak"`

	// Setup F only (floor.go). Its serving CPU is the floor child's, and
	// its deliveries are bytes received / FrameBytes.
	FrameBytes         int     `json:"floor_frame_bytes,omitempty"` // bytes per write: A's WebSocket message per delivery
	BytesExpected      int64   `json:"floor_bytes_expected,omitempty"`
	BytesReceived      int64   `json:"floor_bytes_received,omitempty"`
	FloorCPU           float64 `json:"floor_cpu_sec,omitempty"`
	FloorCPUStat       float64 `json:"floor_cpu_sec_proc_stat,omitempty"`
	FloorIdleCPUPerSec float64 `json:"floor_idle_cpu_per_sec,omitempty"`
	FloorRSSPeak       int64   `json:"floor_rss_peak,omitempty"`

	ProfilePath     string   `json:"gateway_profile,omitempty"`
	HeapProfilePath string   `json:"gateway_heap_profile_idle,omitempty"`
	Warnings        []string `json:"warnings,omitempty"`
}

// check adds the sanity warnings a reader must not miss.
func (r *setupResult) check(o *options, n int) {
	warn := func(f string, a ...any) { r.Warnings = append(r.Warnings, fmt.Sprintf(f, a...)) }
	saturating := o.mode == "saturate"
	if r.Lost > 0 {
		if saturating {
			warn("LOSS: %d of %d deliveries missing (saturate mode; queues are configured not to drop, so this is still a fault)", r.Lost, r.Expected)
		} else {
			warn("!!! LOSS BELOW SATURATION: %d of %d deliveries missing (%.4f%%) !!!", r.Lost, r.Expected, 100*float64(r.Lost)/float64(r.Expected))
		}
	}
	if r.Lost < 0 {
		warn("!!! DUPLICATES: %d more deliveries than published × n !!!", -r.Lost)
	}
	if r.Reorders > 0 {
		warn("!!! %d deliveries out of order or duplicated !!!", r.Reorders)
	}
	if r.OverflowNotices > 0 {
		warn("gateway reported %d messages dropped for full queues (NOTICE 4050)", r.OverflowNotices)
	}
	if r.BrokerDropped > 0 {
		warn("Mosquitto counted %d dropped messages ($SYS/broker/publish/messages/dropped)", r.BrokerDropped)
	}
	if r.Disconnected > 0 {
		warn("!!! %d subscribers disconnected during the run; first: %s !!!", r.Disconnected, r.FirstDisconnect)
	}
	if !saturating && r.Published > 0 {
		want := r.Rate * float64(n)
		if r.DeliveredPerSec < 0.95*want {
			warn("delivered %.0f/s, below the %.0f/s asked: the system did not keep up (saturated); latency is queueing", r.DeliveredPerSec, want)
		}
		if r.PublishedPerSec < 0.95*r.Rate {
			warn("the publisher reached only %.1f of %.1f msg/s", r.PublishedPerSec, r.Rate)
		}
	}
	if r.CPUWindowSec > 0 {
		genCores := 2.0
		if o.pin {
			genCores = 1
		} else if c := float64(hostCPUs()); c > 0 {
			genCores = c
		}
		if g := r.GeneratorCPU / r.CPUWindowSec; g > 0.85*genCores || (o.pin && g > 0.85) {
			warn("the load generator used %.0f%% of its CPU: it may be the limit", 100*g/genCores)
		}
		busy := (r.ServingCPU + r.GeneratorCPU + r.OtherCPU) / r.CPUWindowSec
		if c := float64(hostCPUs()); busy > 0.9*c {
			warn("the machine was saturated (%.1f of %.0f cores busy): processes competed for CPU%s", busy, c,
				map[bool]string{true: "", false: "; -pin separates servers from the generator"}[o.pin])
		}
		if other := r.OtherCPU / r.CPUWindowSec; other > 0.25 {
			warn("other processes used %.2f cores during the window: numbers are noisy", other)
		}
	}
}

// numCPU is read before -pin narrows this process's CPU set.
var numCPU = runtime.NumCPU()

func hostCPUs() int { return numCPU }

// runPair is the setups at one n, and how they compare.
type runPair struct {
	N      int            `json:"n"`
	Rate   float64        `json:"rate,omitempty"`
	A      *setupResult   `json:"a,omitempty"`
	B      *setupResult   `json:"b,omitempty"`
	F      *setupResult   `json:"f,omitempty"`
	Ratios map[string]any `json:"ratios_a_over_b,omitempty"`
	Checks []target       `json:"targets,omitempty"`
	Floor  *floorNote     `json:"floor,omitempty"`
}

type target struct {
	Name   string  `json:"name"`
	Value  float64 `json:"value"`
	Limit  float64 `json:"limit"`
	Pass   bool    `json:"pass"`
	Detail string  `json:"detail"`
}

func ok(r *setupResult) bool { return r != nil && r.Error == "" }

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// compare fills the A/B ratios and the targets.
func (p *runPair) compare(mode string) {
	a, b := p.A, p.B
	if ok(a) && a.N > 0 {
		// The issue sets this target at N = 10,000; below that the
		// gateway's fixed memory, spread over fewer sessions, weighs in
		// (the table still shows the figure).
		if a.GoHeapStackPerSession > 0 && a.N >= 10000 {
			p.Checks = append(p.Checks, target{Name: "gateway Go heap+stacks per idle session ≤ 10 KB at N ≥ 10,000",
				Value: a.GoHeapStackPerSession / 1024, Limit: 10, Pass: a.GoHeapStackPerSession <= 10*1024,
				Detail: fmt.Sprintf("%.1f KB at N=%d", a.GoHeapStackPerSession/1024, a.N)})
		}
		if mode == "rate" || mode == "sweep" {
			p.Checks = append(p.Checks, target{Name: "no loss below saturation (A)", Value: float64(a.Lost), Limit: 0,
				Pass: a.Lost == 0 && a.Reorders == 0, Detail: fmt.Sprintf("%d lost of %d", a.Lost, a.Expected)})
		}
	}
	if !ok(a) || !ok(b) || mode == "idle" {
		if ok(a) && ok(b) {
			p.Ratios = map[string]any{
				"rss_per_idle_session": ratio(a.GatewayRSSPerSession+a.BrokerRSSPerSession, b.BrokerRSSPerSession),
			}
		}
		return
	}
	p.Ratios = map[string]any{
		"serving_cpu_per_delivery": ratio(a.ServingUsPerDelivery, b.ServingUsPerDelivery),
		"broker_cpu":               ratio(a.BrokerCPU, b.BrokerCPU),
		"latency_p50":              ratio(a.LatP50, b.LatP50),
		"latency_p99":              ratio(a.LatP99, b.LatP99),
		"delivered_per_sec":        ratio(a.DeliveredPerSec, b.DeliveredPerSec),
		"serving_rss_peak":         ratio(float64(a.GatewayRSSPeak+a.BrokerRSSPeak), float64(b.BrokerRSSPeak)),
		"rss_per_idle_session":     ratio(a.GatewayRSSPerSession+a.BrokerRSSPerSession, b.BrokerRSSPerSession),
	}
	r := ratio(a.ServingUsPerDelivery, b.ServingUsPerDelivery)
	p.Checks = append(p.Checks, target{Name: "serving CPU per delivery A ≤ ½ B", Value: r, Limit: 0.5, Pass: r > 0 && r <= 0.5,
		Detail: fmt.Sprintf("%.2f vs %.2f µs", a.ServingUsPerDelivery, b.ServingUsPerDelivery)})
	if mode != "saturate" {
		r50, r99 := ratio(a.LatP50, b.LatP50), ratio(a.LatP99, b.LatP99)
		p.Checks = append(p.Checks,
			target{Name: "latency p50 A ≤ ½ B", Value: r50, Limit: 0.5, Pass: r50 > 0 && r50 <= 0.5,
				Detail: fmt.Sprintf("%.2f vs %.2f ms", a.LatP50, b.LatP50)},
			target{Name: "latency p99 A ≤ ½ B", Value: r99, Limit: 0.5, Pass: r99 > 0 && r99 <= 0.5,
				Detail: fmt.Sprintf("%.2f vs %.2f ms", a.LatP99, b.LatP99)})
	}
	if mode != "saturate" {
		rb := ratio(a.BrokerCPU, b.BrokerCPU)
		p.Checks = append(p.Checks, target{Name: "Mosquitto CPU with the gateway ≤ 5% of direct", Value: rb * 100, Limit: 5,
			Pass: b.BrokerCPU > 0 && rb <= 0.05, Detail: fmt.Sprintf("%.3f vs %.2f s", a.BrokerCPU, b.BrokerCPU)})
	} else if a.Published > 0 && b.Published > 0 {
		// At saturation each setup publishes as much as it delivers, so
		// the same work is Mosquitto's CPU per message published.
		pa, pb := a.BrokerCPU/float64(a.Published)*1e6, b.BrokerCPU/float64(b.Published)*1e6
		rb := ratio(pa, pb)
		p.Checks = append(p.Checks, target{Name: "Mosquitto CPU per message with the gateway ≤ 5% of direct", Value: rb * 100, Limit: 5,
			Pass: pb > 0 && rb <= 0.05, Detail: fmt.Sprintf("%.1f vs %.1f µs", pa, pb)})
	}
}

// floorNote relates A and B to the floor F (floor.go): what one loopback
// TCP write per delivery costs, and so the least A/B can be while the
// gateway makes one write per delivery.
type floorNote struct {
	FloorUs    float64 `json:"floor_us_per_delivery"`
	BAboveUs   float64 `json:"b_above_floor_us,omitempty"`       // B − F
	AAboveUs   float64 `json:"a_above_floor_us,omitempty"`       // A − F
	MinAOverB  float64 `json:"min_a_over_b_one_write,omitempty"` // F / B
	hasA, hasB bool
}

// compareFloor fills the floor note when F ran.
func (p *runPair) compareFloor() {
	f := p.F
	if !ok(f) || f.ServingUsPerDelivery <= 0 {
		return
	}
	n := &floorNote{FloorUs: f.ServingUsPerDelivery}
	if ok(p.B) && p.B.ServingUsPerDelivery > 0 {
		n.hasB = true
		n.BAboveUs = p.B.ServingUsPerDelivery - n.FloorUs
		n.MinAOverB = n.FloorUs / p.B.ServingUsPerDelivery
	}
	if ok(p.A) && p.A.ServingUsPerDelivery > 0 {
		n.hasA = true
		n.AAboveUs = p.A.ServingUsPerDelivery - n.FloorUs
	}
	p.Floor = n
}

// line is the floor note as the table prints it.
func (n *floorNote) line() string {
	above := func(who string, d float64) string {
		if d < 0 {
			return fmt.Sprintf("%s is %.2f µs below it", who, -d)
		}
		return fmt.Sprintf("%s is %.2f µs above it", who, d)
	}
	s := fmt.Sprintf("floor: one loopback TCP write per delivery costs %.2f µs (F)", n.FloorUs)
	if n.hasB {
		s += "; " + above("B", n.BAboveUs)
	}
	if n.hasA {
		s += "; " + above("A", n.AAboveUs)
	}
	if n.hasB {
		s += fmt.Sprintf("; with one write per delivery A/B cannot go below F/B = %.2f / %.2f = %.2f",
			n.FloorUs, n.FloorUs+n.BAboveUs, n.MinAOverB)
	}
	return s
}

type report struct {
	Mode        string  `json:"mode"`
	DurationSec float64 `json:"duration_sec"`
	Size        int     `json:"size"`
	Window      int     `json:"window,omitempty"`
	Pin         bool    `json:"pin"`
	PinNote     string  `json:"pin_note,omitempty"`
	// The gateway's write_delay in setup A, ms (0: none).
	WriteDelayMs float64   `json:"write_delay_ms,omitempty"`
	Host         hostInfo  `json:"host"`
	Runs         []runPair `json:"runs"`
}

func (rep *report) print(o *options) {
	out := io.Writer(os.Stdout)
	if o.json {
		out = os.Stderr
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		defer enc.Encode(rep)
	}
	w := func(f string, a ...any) { fmt.Fprintf(out, f, a...) }
	pin := "no (generator and servers share all CPUs)"
	if rep.Pin {
		pin = "yes: " + rep.PinNote
	}
	w("\nmqtt_gateway fan-out benchmark: mode %s, payload %d B, duration %s, pin %s\n", rep.Mode, rep.Size, o.duration, pin)
	if o.wdelay > 0 {
		w("gateway write_delay %s: A's messages wait up to that long to share writes (less CPU, more latency)\n", o.wdelay)
	}
	w("host: %d CPUs, %s, %s, code %s; load average %s at start, %s at end\n", rep.Host.CPUs, rep.Host.GoVersion,
		rep.Host.Mosquitto, rep.Host.Revision, rep.Host.LoadStart, rep.Host.LoadEnd)
	over := ""
	if o.tls {
		over = " over TLS (wss://)"
	}
	w("A = N web clients%s → gateway (Caddy, separate process) → 1 MQTT connection → Mosquitto 2.0; B = N MQTT clients → Mosquitto's WebSocket listener\n", over)
	for _, p := range rep.Runs {
		if p.F != nil {
			w("F = the floor: a minimal server writing, on the publisher's schedule, one prebuilt frame of A's size to each of N plain TCP connections, one write per delivery\n")
			break
		}
	}

	for _, p := range rep.Runs {
		w("\n")
		head := fmt.Sprintf("N = %d", p.N)
		if p.Rate > 0 {
			head += fmt.Sprintf(", %.4g msg/s published (%.0f deliveries/s asked)", p.Rate, p.Rate*float64(p.N))
		}
		if rep.Mode == "saturate" {
			head += fmt.Sprintf(", saturate (window %d)", rep.Window)
		}
		if p.A != nil && p.A.GatewayGOMAXPROCS > 0 {
			head += fmt.Sprintf("; gateway GOMAXPROCS %d", p.A.GatewayGOMAXPROCS)
		}
		w("── %s ──\n", head)
		cols := []*setupResult{p.A, p.B}
		if p.F != nil {
			cols = append(cols, p.F)
		}
		// F's column shows only the rows that mean something for a bare
		// TCP writer (rowF); the others print "-" there.
		line := func(label string, f func(r *setupResult) string, ratio string, forF bool) {
			w("%-40s", label)
			for _, r := range cols {
				v := "-"
				if r != nil && r.Error == "" && (r.Setup != "F" || forF) {
					v = f(r)
				} else if r != nil && r.Error != "" {
					v = "error"
				}
				w("%22s", v)
			}
			if ratio != "" {
				w("%12s", ratio)
			}
			w("\n")
		}
		row := func(label string, f func(r *setupResult) string, ratio string) { line(label, f, ratio, false) }
		rowF := func(label string, f func(r *setupResult) string, ratio string) { line(label, f, ratio, true) }
		isF := func(r *setupResult) bool { return r.Setup == "F" }
		w("%-40s%22s%22s", "", "A: gateway", "B: mosquitto WS")
		if p.F != nil {
			w("%22s", "F: floor, 1 write")
		}
		w("%12s\n", "A/B")
		rt := func(k string) string {
			if v, ok := p.Ratios[k].(float64); ok && v > 0 {
				return fmt.Sprintf("%.2f", v)
			}
			return ""
		}
		isA := func(r *setupResult) bool { return r.Setup == "A" }
		mb := func(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }
		rowF("connect + subscribe N (s)", func(r *setupResult) string { return fmt.Sprintf("%.1f", r.ConnectSec) }, "")
		if rep.Mode != "idle" {
			rowF("published (msgs)", func(r *setupResult) string { return fmt.Sprint(r.Published) }, "")
			rowF("deliveries expected", func(r *setupResult) string { return fmt.Sprint(r.Expected) }, "")
			rowF("deliveries received", func(r *setupResult) string { return fmt.Sprint(r.Received) }, "")
			rowF("lost", func(r *setupResult) string {
				if r.Lost != 0 {
					return fmt.Sprintf("%d !!!", r.Lost)
				}
				return "0"
			}, "")
			if p.F != nil {
				rowF("F: bytes per delivery (A's WS message)", func(r *setupResult) string {
					if !isF(r) {
						return "-"
					}
					return fmt.Sprint(r.FrameBytes)
				}, "")
				rowF("F: bytes expected / received", func(r *setupResult) string {
					if !isF(r) {
						return "-"
					}
					return fmt.Sprintf("%d / %d", r.BytesExpected, r.BytesReceived)
				}, "")
			}
			rowF("delivered msgs/s", func(r *setupResult) string { return fmt.Sprintf("%.0f", r.DeliveredPerSec) }, rt("delivered_per_sec"))
			latLabel := "latency p50 (ms)"
			if rep.Mode == "saturate" {
				latLabel = "latency p50 (ms, queueing at window)"
			}
			row(latLabel, func(r *setupResult) string { return fmt.Sprintf("%.2f", r.LatP50) }, rt("latency_p50"))
			row("latency p99 (ms)", func(r *setupResult) string { return fmt.Sprintf("%.2f", r.LatP99) }, rt("latency_p99"))
			row("latency p99.9 / max (ms)", func(r *setupResult) string { return fmt.Sprintf("%.1f / %.1f", r.LatP999, r.LatMax) }, "")
			rowF("window: first publish → last delivery (s)", func(r *setupResult) string { return fmt.Sprintf("%.2f", r.WindowSec) }, "")
			row("gateway CPU (s)", func(r *setupResult) string {
				if !isA(r) {
					return "-"
				}
				return fmt.Sprintf("%.2f (%.0f%%)", r.GatewayCPU, 100*r.GatewayCPU/r.CPUWindowSec)
			}, "")
			row("Mosquitto CPU (s)", func(r *setupResult) string {
				return fmt.Sprintf("%.2f (%.0f%%)", r.BrokerCPU, 100*r.BrokerCPU/r.CPUWindowSec)
			}, rt("broker_cpu"))
			if p.F != nil {
				rowF("floor child CPU (s)", func(r *setupResult) string {
					if !isF(r) {
						return "-"
					}
					return fmt.Sprintf("%.2f (%.0f%%)", r.FloorCPU, 100*r.FloorCPU/r.CPUWindowSec)
				}, "")
			}
			row("idle CPU, gateway / Mosquitto (ms/s)", func(r *setupResult) string {
				if !isA(r) {
					return fmt.Sprintf("- / %.1f", r.BrokerIdleCPUPerSec*1e3)
				}
				return fmt.Sprintf("%.1f / %.1f", r.GatewayIdleCPUPerSec*1e3, r.BrokerIdleCPUPerSec*1e3)
			}, "")
			rowF("serving CPU per delivery (µs)", func(r *setupResult) string { return fmt.Sprintf("%.2f", r.ServingUsPerDelivery) }, rt("serving_cpu_per_delivery"))
			row("  of which gateway / Mosquitto (µs)", func(r *setupResult) string {
				return fmt.Sprintf("%.2f / %.3f", r.GatewayUsPerDelivery, r.BrokerUsPerDelivery)
			}, "")
			rowF("generator CPU (s, % of a core)", func(r *setupResult) string {
				return fmt.Sprintf("%.2f (%.0f%%)", r.GeneratorCPU, 100*r.GeneratorCPU/r.CPUWindowSec)
			}, "")
			rowF("generator CPU per delivery (µs)", func(r *setupResult) string { return fmt.Sprintf("%.2f", r.GeneratorUsPerDelivery) }, "")
			rowF("other processes' CPU (cores)", func(r *setupResult) string { return fmt.Sprintf("%.2f", r.OtherCPU/r.CPUWindowSec) }, "")
		}
		row("gateway peak RSS (MB)", func(r *setupResult) string {
			if !isA(r) {
				return "-"
			}
			return mb(r.GatewayRSSPeak)
		}, "")
		row("Mosquitto peak RSS (MB)", func(r *setupResult) string { return mb(r.BrokerRSSPeak) }, "")
		row("serving peak RSS (MB)", func(r *setupResult) string { return mb(r.GatewayRSSPeak + r.BrokerRSSPeak) }, rt("serving_rss_peak"))
		row("RSS per idle session (KB, serving side)", func(r *setupResult) string {
			return fmt.Sprintf("%.1f", (r.GatewayRSSPerSession+r.BrokerRSSPerSession)/1024)
		}, rt("rss_per_idle_session"))
		row("  gateway Go heap + stacks per session (KB)", func(r *setupResult) string {
			if !isA(r) {
				return "-"
			}
			return fmt.Sprintf("%.1f + %.1f", r.GoHeapPerSession/1024, r.GoStackPerSession/1024)
		}, "")
		row("  gateway goroutines per session", func(r *setupResult) string {
			if !isA(r) {
				return "-"
			}
			return fmt.Sprintf("%.2f", r.GoroutinesPerSession)
		}, "")
		if rep.Mode != "idle" {
			row("gateway Go heap + stacks after window (MB)", func(r *setupResult) string {
				if !isA(r) {
					return "-"
				}
				return fmt.Sprintf("%s + %s", mb(r.GatewayHeapAfter), mb(r.GatewayStackAfter))
			}, "")
		}
		rowF("generator peak RSS (MB)", func(r *setupResult) string { return mb(r.GeneratorRSSPeak) }, "")

		for _, r := range cols {
			if r == nil {
				continue
			}
			if r.Error != "" {
				w("%s: ERROR: %s\n", r.Setup, r.Error)
			}
			for _, x := range r.Warnings {
				w("%s: WARNING: %s\n", r.Setup, x)
			}
		}
		if p.Floor != nil {
			w("%s\n", p.Floor.line())
		}
		if len(p.Checks) > 0 {
			w("targets (issue):\n")
			for _, c := range p.Checks {
				mark := "FAIL"
				if c.Pass {
					mark = "PASS"
				}
				w("  %s  %-52s %s\n", mark, c.Name, c.Detail)
			}
		}
		for _, r := range cols {
			if r == nil {
				continue
			}
			if r.ProfilePath != "" {
				pprofTop(w, "gateway CPU profile, measured window", r.ProfilePath)
			}
			if r.HeapProfilePath != "" {
				pprofTop(w, "gateway heap in use, N idle sessions", r.HeapProfilePath, "-sample_index=inuse_space")
			}
		}
	}
}

// pprofTop prints the top functions of a profile, flat and cumulative.
func pprofTop(w func(string, ...any), title, path string, extra ...string) {
	for _, cum := range []bool{false, true} {
		args := append([]string{"tool", "pprof", "-top", "-nodecount=25"}, extra...)
		kind := "flat"
		if cum {
			args = append(args, "-cum")
			kind = "cumulative"
		}
		b, err := exec.Command("go", append(args, path)...).CombinedOutput()
		w("%s (%s), %s:\n", title, path, kind)
		if err != nil {
			w("  (go tool pprof: %v)\n", err)
		}
		for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
			w("  %s\n", line)
		}
	}
}
