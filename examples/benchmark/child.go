package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-mqtt/mqttgateway"
)

// The gateway runs in a process of its own, so /proc/<pid>/stat gives its
// CPU time alone and VmHWM its own peak memory. Rather than building
// ./examples/caddy separately, the benchmark re-executes its own binary in
// "gateway child" mode: the same imports (Caddy's standard modules and
// mqtt_gateway) and the same entry point (caddycmd.Main, so `caddy run`
// applies its GOMAXPROCS and GOMEMLIMIT logic exactly as the production
// binary does), plus a loopback-only debug listener with net/http/pprof and
// a memstats endpoint. The debug listener is idle unless the parent asks:
// memstats between measurement windows, a CPU profile during one when
// -profile is given.

const (
	envChild = "MQTTGW_BENCH_CHILD"      // "gateway": run as the gateway child
	envDebug = "MQTTGW_BENCH_DEBUG_ADDR" // the child's debug listener
	envCfg   = "MQTTGW_BENCH_CADDYFILE"  // the child's Caddyfile
)

// memStats is what the child's /memstats endpoint answers, after a GC.
type memStats struct {
	HeapAlloc    uint64 `json:"heap_alloc"`
	HeapInuse    uint64 `json:"heap_inuse"`
	StackInuse   uint64 `json:"stack_inuse"`
	Sys          uint64 `json:"sys"`
	NumGoroutine int    `json:"goroutines"`
	NumGC        uint32 `json:"num_gc"`
	GOMAXPROCS   int    `json:"gomaxprocs"`
}

func runGatewayChild() {
	if addr := os.Getenv(envDebug); addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "benchmark gateway child: debug listener: %v\n", err)
			os.Exit(1)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/memstats", func(w http.ResponseWriter, r *http.Request) {
			runtime.GC()
			runtime.GC() // the second cycle frees what the first one's finalizers released
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			json.NewEncoder(w).Encode(memStats{HeapAlloc: m.HeapAlloc, HeapInuse: m.HeapInuse, StackInuse: m.StackInuse,
				Sys: m.Sys, NumGoroutine: runtime.NumGoroutine(), NumGC: m.NumGC, GOMAXPROCS: runtime.GOMAXPROCS(0)})
		})
		go http.Serve(ln, mux)
	}
	os.Args = []string{os.Args[0], "run", "--config", os.Getenv(envCfg), "--adapter", "caddyfile"}
	caddycmd.Main()
}
