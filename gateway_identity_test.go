package mqttgateway

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// Two mqtt_gateway blocks named alike (here after their brokers, both
// "main") but set up differently are refused at load: otherwise one block's
// broker would silently serve the other's clients. Named apart, each
// serves its own broker; alike in everything, they share one gateway.
func TestGatewayBlocksNamedAlike(t *testing.T) {
	a, b := startMosquitto(t), startMosquitto(t)
	siteA, siteB := freePort(t), freePort(t)
	config := func(nameA, nameB string, portB int) string {
		block := func(site int, name string, broker int) string {
			if name != "" {
				name = "name " + name
			}
			return fmt.Sprintf("http://127.0.0.1:%d {\n\tmqtt_gateway /mqtt/* {\n\t\t%s\n\t\tbroker main mqtt://127.0.0.1:%d\n\t}\n}\n", site, name, broker)
		}
		return testGlobals + block(siteA, nameA, a.port) + block(siteB, nameB, portB)
	}

	err := caddy.Load(adaptCaddyfile(t, config("", "", b.port)), true)
	if err == nil {
		caddy.Stop()
		t.Fatal("two blocks with different brokers, both gateway \"brokers=main\", were accepted")
	}
	if !strings.Contains(err.Error(), "differ in brokers") || !strings.Contains(err.Error(), "give each its own name") {
		t.Fatalf("the error does not say what differs and what to do: %v", err)
	}

	loadCaddy(t, adaptCaddyfile(t, config("a", "b", b.port)))
	for _, tc := range []struct {
		site int
		mq   *mosquitto
	}{{siteA, a}, {siteB, b}} {
		c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", tc.site))
		connectSubscribe(t, c, "which", 0)
		mosquittoPub(t, tc.mq.port, "-t", "which", "-m", fmt.Sprint(tc.mq.port))
		if got := string(nextMessage(t, c).Publish.Payload); got != fmt.Sprint(tc.mq.port) {
			t.Fatalf("site %d got a message from the broker on port %s, want %d", tc.site, got, tc.mq.port)
		}
	}
	caddy.Stop()

	// Alike in everything: one gateway, whichever site a client uses.
	loadCaddy(t, adaptCaddyfile(t, config("", "", a.port)))
	viaB := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", siteB))
	connectSubscribe(t, viaB, "shared", 0)
	mosquittoPub(t, a.port, "-t", "shared", "-m", "x")
	if got := nextMessage(t, viaB).Publish.Topic; got != "shared" {
		t.Fatalf("got %q", got)
	}
}

// Two sites may serve one gateway under other paths and let other origins
// in: each handler applies its own. (They had to be alike to the letter.)
func TestGatewayBlocksDifferInPathAndOrigins(t *testing.T) {
	mq := startMosquitto(t)
	siteA, siteB := freePort(t), freePort(t)
	loadCaddy(t, adaptCaddyfile(t, testGlobals+fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d
		allow_origins https://a.example.test
	}
}
http://127.0.0.1:%d {
	mqtt_gateway /gw/* {
		broker main mqtt://127.0.0.1:%d
		allow_origins https://b.example.test
	}
}
`, siteA, mq.port, siteB, mq.port)))
	for _, tc := range []struct{ url, allowed, refused string }{
		{fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", siteA), "https://a.example.test", "https://b.example.test"},
		{fmt.Sprintf("ws://127.0.0.1:%d/gw/ws", siteB), "https://b.example.test", "https://a.example.test"},
	} {
		c, err := gwclient.Dial(ctx10(t), tc.url, http.Header{"Origin": {tc.allowed}})
		if err != nil {
			t.Fatalf("%s from %s: %v", tc.url, tc.allowed, err)
		}
		connectSubscribe(t, c, "both", 0)
		if _, err := gwclient.Dial(ctx10(t), tc.url, http.Header{"Origin": {tc.refused}}); err == nil {
			t.Fatalf("%s let a page of %s in", tc.url, tc.refused)
		}
	}
}

// An embedded broker listens once Caddy starts the config, not when the
// config is provisioned: `caddy validate` of a config whose broker address
// is taken (by the running gateway itself, typically) passes, and loading
// it fails, naming the broker.
func TestEmbeddedBrokerListensFromStart(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	js := adaptCaddyfile(t, testGlobals+fmt.Sprintf("http://127.0.0.1:%d {\n\tmqtt_gateway /mqtt/* {\n\t\tbroker local embedded {\n\t\t\tlisten %s\n\t\t}\n\t}\n}\n",
		freePort(t), taken.Addr()))
	var cfg caddy.Config
	if err := json.Unmarshal(js, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := caddy.Validate(&cfg); err != nil {
		t.Fatalf("validating took the broker's address: %v", err)
	}
	err = caddy.Load(js, true)
	if err == nil {
		caddy.Stop()
		t.Fatal("loaded a config whose embedded broker cannot listen")
	}
	if !strings.Contains(err.Error(), `broker "local"`) || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("the error does not say which broker and why: %v", err)
	}
}

// Two embedded brokers at one address, in one gateway or in two of a
// config, are refused at load, naming both: the process would have one
// broker there, and both names would silently lead to it.
func TestEmbeddedBrokersAtOneAddress(t *testing.T) {
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	for name, tc := range map[string]struct{ sites, want string }{
		"one gateway": {fmt.Sprintf("http://127.0.0.1:%d {\n\tmqtt_gateway /mqtt/* {\n\t\tbroker x embedded {\n\t\t\tlisten %s\n\t\t}\n\t\tbroker y embedded {\n\t\t\tlisten %[2]s\n\t\t}\n\t}\n}\n", freePort(t), listen),
			`embedded brokers "x" and "y" both listen on ` + listen},
		"two gateways": {fmt.Sprintf("http://127.0.0.1:%d {\n\tmqtt_gateway /mqtt/* {\n\t\tbroker x embedded {\n\t\t\tlisten %s\n\t\t}\n\t}\n}\nhttp://127.0.0.1:%d {\n\tmqtt_gateway /mqtt/* {\n\t\tbroker y embedded {\n\t\t\tlisten %[2]s\n\t\t}\n\t}\n}\n", freePort(t), listen, freePort(t)),
			`gateway "brokers=` /* either order */},
	} {
		err := caddy.Load(adaptCaddyfile(t, testGlobals+tc.sites), true)
		if err == nil {
			caddy.Stop()
			t.Fatalf("%s: two embedded brokers on %s were accepted", name, listen)
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "both listen on "+listen) {
			t.Fatalf("%s: %v, want it to name both brokers and the address", name, err)
		}
	}
}
