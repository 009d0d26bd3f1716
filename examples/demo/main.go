// Command demo runs the gateway with everything it needs in one process: an
// in-process Caddy serving mqtt_gateway and a page, an embedded MQTT broker
// (no broker to install), and a simulated sensor publishing into it.
//
//	go run ./examples/demo
//
// then open the printed URL. By default it listens on loopback only, since
// anyone who reaches it can publish into its broker; -listen :8080 (or
// 0.0.0.0:8080) serves every interface.
package main

import (
	"context"
	"embed"
	"flag"
	"fmt"
	"io/fs"
	"log"
	"math"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-mqtt/mqttgateway"
)

//go:embed www
var www embed.FS

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address of the demo web server: it listens on that host only, on every interface for :8080 or 0.0.0.0:8080")
	mqttListen := flag.String("mqtt", "127.0.0.1:1883", "address of the embedded MQTT broker (for devices and mosquitto_pub); port 0 picks a free one")
	rate := flag.Float64("rate", 20, "sensor messages per second, per sensor")
	flag.Parse()

	brokerAddr, err := resolve(*mqttListen)
	if err != nil {
		log.Fatalf("demo: mqtt address: %v", err)
	}
	site, bind, open, err := siteOf(*listen)
	if err != nil {
		log.Fatalf("demo: listen address: %v", err)
	}
	root, err := extractPages()
	if err != nil {
		log.Fatalf("demo: %v", err)
	}
	defer os.RemoveAll(root)

	cfg := fmt.Sprintf(`{
	admin off
	persist_config off
	auto_https off
}

%s {%s
	mqtt_gateway /mqtt/* {
		broker demo embedded {
			listen %s
		}
	}
	root * %s
	file_server
}
`, site, bind, brokerAddr, root)
	if err := load(cfg); err != nil {
		log.Fatalf("demo: starting caddy: %v", err)
	}
	defer caddy.Stop()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go simulate(ctx, brokerAddr, *rate)

	fmt.Printf("\nmqtt_gateway demo\n\n  open  %s/\n  MQTT  mqtt://%s  (try: mosquitto_pub -h %s -p %s -t demo/chat -m hello)\n\nCtrl-C to stop.\n\n",
		open, brokerAddr, host(brokerAddr), port(brokerAddr))
	<-ctx.Done()
}

// siteOf turns -listen into the site address, its bind line and the URL to
// open. Caddy listens on every interface unless told otherwise, whatever
// the site address says, so a host gets a bind of its own; no host (or
// 0.0.0.0, ::) means every interface, and then any Host header.
func siteOf(listen string) (site, bind, open string, err error) {
	h, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", "", "", err
	}
	if ip := net.ParseIP(h); h == "" || ip != nil && ip.IsUnspecified() {
		return "http://:" + p, "", "http://127.0.0.1:" + p, nil
	}
	site = "http://" + net.JoinHostPort(h, p)
	return site, "\n\tbind " + h, site, nil
}

// resolve picks the broker's address: the one asked for when it is free
// (a Mosquitto already on 1883 is common), else a free port, so the
// simulator knows where to connect.
func resolve(addr string) (string, error) {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		ln, err = net.Listen("tcp", net.JoinHostPort(h, "0"))
	}
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func host(addr string) string { h, _, _ := net.SplitHostPort(addr); return h }
func port(addr string) string { _, p, _ := net.SplitHostPort(addr); return p }

// extractPages writes the embedded page to a temporary folder for Caddy's
// file_server.
func extractPages() (string, error) {
	dir, err := os.MkdirTemp("", "mqttgw-demo-")
	if err != nil {
		return "", err
	}
	sub, _ := fs.Sub(www, "www")
	err = fs.WalkDir(sub, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(sub, p)
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, p)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		return os.WriteFile(dst, b, 0o644)
	})
	return dir, err
}

func load(cfg string) error {
	js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(caddyfile.Format([]byte(cfg)), nil)
	if err != nil {
		return err
	}
	return caddy.Load(js, true)
}

// simulate publishes three temperature sensors, each a smooth wave with
// noise, to demo/sensors/<name>/temperature.
func simulate(ctx context.Context, brokerAddr string, rate float64) {
	u := &url.URL{Scheme: "mqtt", Host: brokerAddr}
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, ClientConfig: paho.ClientConfig{ClientID: "demo-sensor"},
	})
	if err != nil {
		log.Printf("demo: sensor: %v", err)
		return
	}
	if err := cm.AwaitConnection(ctx); err != nil {
		return
	}
	sensors := []string{"kitchen", "garden", "server-room"}
	base := map[string]float64{"kitchen": 21, "garden": 12, "server-room": 27}
	// The fast signal feeds the page's throttling view: the same stream shown
	// raw and throttled side by side.
	go every(ctx, 20*time.Millisecond, func(t float64) {
		v := math.Sin(2*math.Pi*t/4) + 0.3*math.Sin(2*math.Pi*t*1.3) + rand.NormFloat64()*0.03
		cm.Publish(ctx, &paho.Publish{Topic: "demo/fast/signal", Payload: []byte(strconv.FormatFloat(v, 'f', 4, 64))})
	})
	every(ctx, time.Duration(float64(time.Second)/rate), func(t float64) {
		for i, s := range sensors {
			v := base[s] + 3*math.Sin(t/5+float64(i)) + rand.NormFloat64()*0.1
			cm.Publish(ctx, &paho.Publish{Topic: "demo/sensors/" + s + "/temperature",
				Payload: []byte(strconv.FormatFloat(v, 'f', 2, 64))})
		}
	})
}

// every calls fn with the seconds elapsed, once per interval, until ctx
// ends.
func every(ctx context.Context, interval time.Duration, fn func(t float64)) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			fn(now.Sub(start).Seconds())
		}
	}
}
