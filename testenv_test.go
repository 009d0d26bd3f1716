package mqttgateway

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// Real parts for integration tests: a Mosquitto process on a loopback port
// and an in-process Caddy loaded from a Caddyfile.

// freePort returns a loopback port that is free now, below the kernel's
// range of ephemeral ports: a port the kernel picks (listening on port 0)
// is in that range, and it may give it to the next outgoing connection
// (mosquitto_pub's own end, an HTTP request) before the test binds it,
// which failed a test now and then with "address already in use".
//
// A port is handed out once per process: a test that asks for two before
// it listens on either (a gateway's site and a metrics site) got the same
// port twice now and then, and Caddy refused the config ("ambiguous site
// definition").
func freePort(t testing.TB) int {
	t.Helper()
	lo, hi := portsBelowEphemeral()
	for range 200 {
		port := lo + rand.IntN(hi-lo)
		if _, given := portsGiven.LoadOrStore(port, true); given {
			continue
		}
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			ln.Close()
			return port
		}
	}
	t.Fatalf("no free port in %d-%d", lo, hi)
	return 0
}

// portsGiven holds the ports freePort handed out.
var portsGiven sync.Map

// every calls f every interval, from another goroutine, until the test
// ends or f returns false.
func every(t testing.TB, interval time.Duration, f func() bool) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(interval):
			}
			if !f() {
				return
			}
		}
	}()
}

// portsBelowEphemeral is the range freePort picks from: the 10,000 ports
// below the kernel's ephemeral ones (Linux: ip_local_port_range).
func portsBelowEphemeral() (lo, hi int) {
	hi = 32768 // Linux's default low end
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11024 {
				hi = n
			}
		}
	}
	return hi - 10000, hi
}

func waitPort(t testing.TB, port int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens on port %d", port)
}

// mosquittoBin finds the broker binary: Debian installs it in /usr/sbin,
// which an ordinary user's PATH lacks.
func mosquittoBin(t testing.TB) string {
	t.Helper()
	if bin, err := exec.LookPath("mosquitto"); err == nil {
		return bin
	}
	bin := "/usr/sbin/mosquitto"
	if _, err := os.Stat(bin); err != nil {
		t.Fatal("mosquitto is required for integration tests: apt-get install mosquitto mosquitto-clients")
	}
	return bin
}

// mosquitto is a broker process started for one test.
type mosquitto struct {
	bin  string
	port int
	log  string // empty unless conf logs to a file
	cmd  *exec.Cmd
	conf string
}

// startMosquitto runs Debian's mosquitto on a free loopback port. It logs
// every SUBSCRIBE to a file, so tests can observe what the broker saw.
func startMosquitto(t testing.TB) *mosquitto {
	t.Helper()
	return startMosquittoWith(t, func(string) string { return "allow_anonymous true\n" })
}

// startMosquittoWith is startMosquitto with the listener's settings from
// conf, which may first write files they name into dir (the broker's
// directory, readable by the user it runs as).
func startMosquittoWith(t testing.TB, conf func(dir string) string) *mosquitto {
	t.Helper()
	bin := mosquittoBin(t)
	dir := brokerDir(t, "mosquitto-", 0o777) // it writes its log there
	m := &mosquitto{bin: bin, port: freePort(t), log: filepath.Join(dir, "mosquitto.log"), conf: filepath.Join(dir, "mosquitto.conf")}
	settings := fmt.Sprintf("listener %d 127.0.0.1\n%slog_dest file %s\nlog_type all\nconnection_messages true\npersistence false\n", m.port, conf(dir), m.log)
	if os.Geteuid() == 0 {
		// Dropping to its own user would clear the broker's death signal
		// (start), so a test killed by -timeout would leave it running.
		settings += "user root\n"
	}
	if err := os.WriteFile(m.conf, []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	m.start(t)
	t.Cleanup(m.stop)
	return m
}

// brokerDir is a temporary directory, removed after the test, that a
// broker may use with mode's rights: mosquitto started as root drops to a
// user of its own, and t.TempDir's parent is private.
func brokerDir(t testing.TB, prefix string, mode os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, mode)
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// start runs the broker on m.conf, again after stop for a restart, and
// returns once it listens.
func (m *mosquitto) start(t testing.TB) {
	t.Helper()
	m.cmd = exec.Command(m.bin, "-c", m.conf)
	// A test binary killed by -timeout runs no Cleanup: without this the
	// broker outlives it, with every file descriptor it inherited.
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitPort(t, m.port)
}

func (m *mosquitto) stop() {
	if m.cmd != nil && m.cmd.Process != nil {
		m.cmd.Process.Kill()
		m.cmd.Wait()
	}
}

// subscribeCount counts the SUBSCRIBE packets for filter in the broker's log.
func (m *mosquitto) subscribeCount(t testing.TB, filter string) int {
	b, err := os.ReadFile(m.log)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(b), "\n") {
		// mosquitto logs "<time>: <client id> <qos> <filter>" for each
		// subscription of a SUBSCRIBE packet.
		f := strings.Fields(line)
		if len(f) == 4 && f[3] == filter && (f[2] == "0" || f[2] == "1" || f[2] == "2") {
			n++
		}
	}
	return n
}

// mosquittoPub publishes with Debian's mosquitto_pub.
func mosquittoPub(t testing.TB, port int, args ...string) {
	t.Helper()
	out, err := exec.Command("mosquitto_pub", append([]string{"-h", "127.0.0.1", "-p", fmt.Sprint(port)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub: %v: %s", err, out)
	}
}

// mosquittoSub starts mosquitto_sub for count messages; wait returns its
// output.
func mosquittoSub(t testing.TB, port int, args ...string) (wait func() []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	cmd := exec.CommandContext(ctx, "mosquitto_sub", append([]string{"-h", "127.0.0.1", "-p", fmt.Sprint(port)}, args...)...)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	return func() []byte {
		defer cancel()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("mosquitto_sub %s: %v (27: -W timed out), having received %q", strings.Join(args, " "), err, out.Bytes())
		}
		return out.Bytes()
	}
}

// testGlobals are the global options of test Caddyfiles: nothing is left
// behind (no admin socket, no autosaved config, no certificates).
const testGlobals = "{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n}\n"

// startCaddy loads site blocks, under testGlobals, into the in-process
// Caddy. Caddy has one running config per process, so tests that use it
// do not run in parallel.
func startCaddy(t testing.TB, body string) {
	t.Helper()
	loadCaddy(t, adaptCaddyfile(t, testGlobals+body))
}

// adaptCaddyfile turns a whole Caddyfile into JSON config. It is formatted
// first, so that the adapter's warnings are only about what matters.
func adaptCaddyfile(t testing.TB, text string) []byte {
	t.Helper()
	cfg := caddyfile.Format([]byte(text))
	js, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(cfg, nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, cfg)
	}
	for _, w := range warnings {
		t.Logf("caddyfile warning: %s", w)
	}
	return js
}

// loadCaddy runs the JSON config js, and stops Caddy when the test ends.
func loadCaddy(t testing.TB, js []byte) {
	t.Helper()
	if err := caddy.Load(js, true); err != nil {
		t.Fatalf("loading config: %v", err)
	}
	t.Cleanup(func() { caddy.Stop() })
}

// expectOutageNotices reads the two NOTICEs that tell c its broker went
// away and is back; who names c in a failure.
func expectOutageNotices(t testing.TB, c *gwclient.Client, who string) {
	t.Helper()
	for _, want := range []session.Code{session.CodeBrokerUnavailable, session.CodeOK} {
		if f := nextMessage(t, c); f.Type != transport.TypeNotice || f.Code != want {
			t.Fatalf("%s: %+v, want a NOTICE %d", who, f, want)
		}
	}
}

// publishUntilReceived publishes payload to topic with mosquitto_pub until
// c receives a message, which must be that payload: after a reconnect the
// OK NOTICE comes as soon as the link is up, and the gateway resubscribes
// in the background, so the first publishes may reach no subscription.
func publishUntilReceived(t testing.TB, port int, c *gwclient.Client, topic, payload, who string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mosquittoPub(t, port, "-t", topic, "-m", payload)
		select {
		case f := <-c.Messages:
			if string(f.Publish.Payload) != payload {
				t.Fatalf("%s: unexpected %+v", who, f)
			}
			return
		case <-time.After(200 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatalf("%s receives nothing on %s", who, topic)
			}
		}
	}
}

// gatewayWithBroker starts a Caddy whose gateway at /mqtt/ points at a
// broker URL, and returns the WebSocket URL.
func gatewayWithBroker(t testing.TB, brokerURL string, extra string) (wsURL string, httpPort int) {
	t.Helper()
	httpPort = freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker main %s
		%s
	}
	respond "not the gateway" 404
}
`, httpPort, brokerURL, extra))
	return fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort), httpPort
}

// gatewayWithHook starts a hook service on loopback and a gateway whose
// hook (authenticate or authorize) is reverse_proxy to it, with extra
// options, and returns the gateway's WebSocket URL.
func gatewayWithHook(t testing.TB, brokerPort int, hook, extra string, service http.HandlerFunc) string {
	t.Helper()
	hooks := httptest.NewServer(service)
	t.Cleanup(hooks.Close)
	httpPort := freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d
		%s
		%s {
			reverse_proxy %s
		}
	}
}
`, httpPort, brokerPort, extra, hook, hooks.Listener.Addr()))
	return fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
}

// tcpProxy forwards loopback TCP connections to a target and can cut them
// all, as a network failure between two parts would.
type tcpProxy struct {
	ln      net.Listener
	target  string
	mu      sync.Mutex
	conns   []net.Conn
	holding atomic.Bool  // drop what clients send, as a black hole would
	dropped atomic.Int64 // bytes dropped so far
	delay   atomic.Int64 // holds what clients send this long (ns), as a distant target would
	back    atomic.Int64 // bytes the target sent clients so far
}

func startProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{ln: ln, target: target}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { p.forward(u, c); u.Close() }()
			go func() { io.Copy(countingWriter{c, &p.back}, u); c.Close() }()
		}
	}()
	t.Cleanup(func() { ln.Close(); p.cut() })
	return p
}

func (p *tcpProxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// countingWriter counts what it writes in n.
type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// forward copies what a client sends to the target, unless holding.
func (p *tcpProxy) forward(to, from net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 && p.holding.Load() {
			p.dropped.Add(int64(n))
		} else if n > 0 {
			time.Sleep(time.Duration(p.delay.Load()))
			if _, err := to.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cut closes every connection through the proxy; new ones are accepted.
func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// gatewayLog is the global option that writes the gateway's log lines, as
// JSON, to file.
func gatewayLog(file string) string {
	return fmt.Sprintf("log gateway {\n\toutput file %s\n\tformat json\n\tinclude http.handlers.mqtt_gateway\n}", file)
}
