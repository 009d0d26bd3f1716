package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unsafe"
)

// freePort asks the kernel for a free loopback port. Another process could
// take it before ours binds it; on a test machine that is rare, and the
// server's start-up check would report it.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// server is a child process serving the load: Mosquitto or the gateway.
type server struct {
	name string
	cmd  *exec.Cmd
	pid  int
	logf string // its output, for post-mortems
}

func startServer(name string, pin bool, logPath string, env []string, args ...string) (*server, error) {
	if pin {
		// taskset execs the program in place, so the pid is the server's.
		args = append([]string{"taskset", "-c", "0"}, args...)
	}
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // never outlive the benchmark
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	logFile.Close()
	return &server{name: name, cmd: cmd, pid: cmd.Process.Pid, logf: logPath}, nil
}

// stop ends the server: SIGTERM, then SIGKILL if it lingers.
func (s *server) stop() {
	if s == nil || s.cmd.ProcessState != nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

func (s *server) alive() bool {
	return s != nil && syscall.Kill(s.pid, 0) == nil && !strings.Contains(readFileString(fmt.Sprintf("/proc/%d/stat", s.pid)), ") Z ")
}

// tail returns the end of the server's log, for error messages.
func (s *server) tail() string {
	b, _ := os.ReadFile(s.logf)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func waitListening(addr string, timeout time.Duration, s *server) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if s != nil && !s.alive() {
			return fmt.Errorf("%s exited during start-up:\n%s", s.name, s.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening on %s after %s:\n%s", s.name, addr, timeout, s.tail())
}

// mosquitto is a Debian mosquitto started on free loopback ports, with a TCP
// listener (the publisher, the gateway) and a WebSocket listener (setup B).
type mosquitto struct {
	*server
	tcpPort, wsPort int
}

func startMosquitto(dir string, pin bool) (*mosquitto, error) {
	tcp, err := freePort()
	if err != nil {
		return nil, err
	}
	ws, err := freePort()
	if err != nil {
		return nil, err
	}
	// max_queued_messages: for QoS 0 to a connected MQTT 5 client,
	// Mosquitto 2.0 drops a message (silently, only counted in
	// $SYS/broker/publish/messages/dropped) when the client's queue holds
	// more than its receive maximum plus max_queued_messages; raised so a
	// subscriber that lags during a burst is queued for, not dropped.
	// max_inflight_messages 0 (no limit) does the same for MQTT 3 clients.
	// sys_interval 1 refreshes the dropped counter the publisher reads.
	conf := fmt.Sprintf(`# written by examples/benchmark
per_listener_settings false
allow_anonymous true
persistence false
max_queued_messages 1000000
max_queued_bytes 0
max_inflight_messages 0
sys_interval 1
log_dest stderr
log_type error
log_type warning
listener %d 127.0.0.1
protocol mqtt
listener %d 127.0.0.1
protocol websockets
`, tcp, ws)
	confPath := filepath.Join(dir, fmt.Sprintf("mosquitto-%d.conf", tcp))
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	bin := "/usr/sbin/mosquitto"
	if _, err := os.Stat(bin); err != nil {
		if p, err := exec.LookPath("mosquitto"); err == nil {
			bin = p
		}
	}
	s, err := startServer("mosquitto", pin, filepath.Join(dir, fmt.Sprintf("mosquitto-%d.log", tcp)), nil, bin, "-c", confPath)
	if err != nil {
		return nil, err
	}
	m := &mosquitto{server: s, tcpPort: tcp, wsPort: ws}
	for _, p := range []int{tcp, ws} {
		if err := waitListening(fmt.Sprintf("127.0.0.1:%d", p), 10*time.Second, s); err != nil {
			s.stop()
			return nil, err
		}
	}
	return m, nil
}

// gateway is Caddy with mqtt_gateway in a child process (see child.go).
type gateway struct {
	*server
	port      int
	debugAddr string
	tls       bool
}

func startGateway(dir string, pin bool, brokerPort int, writeDelay time.Duration, overTLS bool) (*gateway, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dport, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, fmt.Sprintf("gateway-%d.log", port))
	// Queue limits far above what a run can build up, and conflation
	// pushed out of reach: the benchmark measures delivery of every
	// message, as Mosquitto (with max_queued_messages raised) does; the
	// defaults (conflate_after 64) would replace waiting QoS 0 values of the
	// one topic by newer ones under a burst, which is the gateway's
	// intended behaviour for slow clients but would count as loss here.
	site, global := fmt.Sprintf("http://127.0.0.1:%d", port), "auto_https off"
	if overTLS {
		// Caddy's own CA, its certificates kept in the work dir.
		site = fmt.Sprintf("https://127.0.0.1:%d", port)
		global = fmt.Sprintf("auto_https disable_redirects\n\tlocal_certs\n\tskip_install_trust\n\tstorage file_system %s",
			filepath.Join(dir, "caddy-data"))
	}
	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
	%s
	log {
		output file %s
		level WARN
	}
}

%s {
	bind 127.0.0.1
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d
		max_queued_frames 1000000
		max_queued_bytes 4GiB
		conflate_after 1000000
		write_delay %s
	}
}
`, global, logPath, site, brokerPort, writeDelay)
	cfgPath := filepath.Join(dir, fmt.Sprintf("Caddyfile-%d", port))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	debugAddr := fmt.Sprintf("127.0.0.1:%d", dport)
	s, err := startServer("gateway", pin, filepath.Join(dir, fmt.Sprintf("gateway-%d.out", port)),
		[]string{envChild + "=gateway", envDebug + "=" + debugAddr, envCfg + "=" + cfgPath}, exe)
	if err != nil {
		return nil, err
	}
	g := &gateway{server: s, port: port, debugAddr: debugAddr, tls: overTLS}
	for _, a := range []string{fmt.Sprintf("127.0.0.1:%d", port), debugAddr} {
		if err := waitListening(a, 30*time.Second, s); err != nil {
			s.stop()
			return nil, err
		}
	}
	return g, nil
}

func (g *gateway) wsURL() string {
	if g.tls {
		return fmt.Sprintf("wss://127.0.0.1:%d/mqtt/ws", g.port)
	}
	return fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", g.port)
}

// memStats asks the gateway for its Go memory statistics (after a GC).
func (g *gateway) memStats() (memStats, error) {
	var m memStats
	c := http.Client{Timeout: 30 * time.Second}
	resp, err := c.Get("http://" + g.debugAddr + "/memstats")
	if err != nil {
		return m, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&m)
	return m, err
}

// profile records a CPU profile of the gateway for d into path.
func (g *gateway) profile(d time.Duration, path string) error {
	return g.fetch(fmt.Sprintf("/debug/pprof/profile?seconds=%d", int(d.Seconds()+0.5)), path, d+30*time.Second)
}

// fetch saves what the gateway's debug listener answers at p.
func (g *gateway) fetch(p, path string, timeout time.Duration) error {
	c := http.Client{Timeout: timeout}
	resp, err := c.Get("http://" + g.debugAddr + p)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s: %s: %s", p, resp.Status, buf.String())
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// /proc sampling.

const clkTck = 100 // USER_HZ: 100 on every Linux ABI Go supports

func readFileString(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// procCPU is a process's user+system CPU time in seconds, from
// /proc/<pid>/stat (all its threads, clock-tick resolution).
func procCPU(pid int) float64 {
	s := readFileString(fmt.Sprintf("/proc/%d/stat", pid))
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// After the comm: state(0) ppid(1) ... utime(11) stime(12).
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	return float64(u+st) / clkTck
}

// procCPUPrecise is a process's CPU time in seconds at nanosecond
// resolution: the sum of sum_exec_runtime over its threads
// (/proc/<pid>/task/*/schedstat), the figure the kernel scales utime+stime
// to. Time of threads that have exited is missing (Go and Mosquitto keep
// theirs), so procCPU stays beside it as a cross-check.
func procCPUPrecise(pid int) float64 {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var ns uint64
	for _, t := range tasks {
		f := strings.Fields(readFileString(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name())))
		if len(f) > 0 {
			v, _ := strconv.ParseUint(f[0], 10, 64)
			ns += v
		}
	}
	return float64(ns) / 1e9
}

// procMem returns VmRSS and VmHWM (peak RSS) in bytes.
func procMem(pid int) (rss, hwm int64) {
	for _, line := range strings.Split(readFileString(fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		var dst *int64
		switch {
		case strings.HasPrefix(line, "VmRSS:"):
			dst = &rss
		case strings.HasPrefix(line, "VmHWM:"):
			dst = &hwm
		default:
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 2 {
			v, _ := strconv.ParseInt(f[1], 10, 64)
			*dst = v << 10
		}
	}
	return rss, hwm
}

// selfCPU is this process's CPU time (the load generator and publisher).
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func selfMaxRSS() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss << 10
}

// systemBusy is the machine's busy CPU time in seconds (all CPUs), from
// /proc/stat: to tell how much other processes ran during a window.
func systemBusy() float64 {
	s := readFileString("/proc/stat")
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy uint64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, _ := strconv.ParseUint(v, 10, 64)
		busy += n
	}
	return float64(busy) / clkTck
}

func loadAvg() string {
	f := strings.Fields(readFileString("/proc/loadavg"))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// raiseNoFile lifts the soft open-files limit to the hard one (children
// inherit it): N subscribers need N sockets here and N in the server.
func raiseNoFile() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	want := rl
	want.Cur = rl.Max
	if want.Max < 1<<20 {
		// Root may raise the hard limit too; fine when it fails.
		try := syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &try) == nil {
			return try.Cur
		}
	}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want) != nil {
		return rl.Cur
	}
	return want.Cur
}

// pinSelf moves every thread of this process to cpu (threads created later
// inherit the mask from their creator) and sizes GOMAXPROCS to match.
func pinSelf(cpu int) error {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := pinThread(tid, cpu); err != nil {
			return err
		}
	}
	runtime.GOMAXPROCS(1)
	return nil
}

// pinThread sets the CPU affinity of thread tid (0: the calling thread) to
// cpu alone.
func pinThread(tid, cpu int) error {
	var mask [16]uint64
	mask[cpu/64] |= 1 << (cpu % 64)
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask)))
	if e != 0 {
		return fmt.Errorf("sched_setaffinity(%d): %v", tid, e)
	}
	return nil
}
