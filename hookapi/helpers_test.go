package hookapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	_ "github.com/caddyserver/caddy/v2/modules/standard" // the handlers a Caddyfile may use
)

// Test fixtures: a stand-in for the mqtt_gateway directive, so that hook
// chains are parsed by the real Caddyfile adapter with a real Helper, and
// a handler that misbehaves on purpose.

func init() {
	caddy.RegisterModule(new(testGateway))
	caddy.RegisterModule(misbehave{})
	httpcaddyfile.RegisterHandlerDirective("test_gateway", parseTestGateway)
	httpcaddyfile.RegisterDirectiveOrder("test_gateway", httpcaddyfile.Before, "respond")
	httpcaddyfile.RegisterHandlerDirective("test_misbehave", parseMisbehave)
}

// testGateway holds the chains of its Caddyfile block, as mqtt_gateway
// will: `test_gateway { authenticate { … } authorize { … } }`. Provisioned
// by a real Caddy, it publishes itself in loaded; it answers web requests
// with 204 and keeps their snapshot.
type testGateway struct {
	Authenticate *Chain `json:"authenticate,omitempty"`
	Authorize    *Chain `json:"authorize,omitempty"`

	origin atomic.Pointer[Origin]
}

var loaded atomic.Pointer[testGateway]

func (*testGateway) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.test_gateway", New: func() caddy.Module { return new(testGateway) }}
}

func (g *testGateway) Provision(ctx caddy.Context) error {
	for _, c := range []*Chain{g.Authenticate, g.Authorize} {
		if c != nil {
			if err := c.Provision(ctx); err != nil {
				return err
			}
		}
	}
	loaded.Store(g)
	return nil
}

func (g *testGateway) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	g.origin.Store(Snapshot(r))
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func parseTestGateway(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(testGateway)
	h.Next()
	for h.NextBlock(0) {
		var err error
		switch h.Val() {
		case "authenticate":
			g.Authenticate, err = ParseChain(h)
		case "authorize":
			g.Authorize, err = ParseChain(h)
		default: // the gateway's other options
			h.NextSegment()
		}
		if err != nil {
			return nil, err
		}
	}
	return g, nil
}

// misbehave is `test_misbehave sleep <duration>` (ignoring the context)
// or `test_misbehave panic`.
type misbehave struct {
	Mode  string         `json:"mode"`
	Sleep caddy.Duration `json:"sleep,omitempty"`
}

func (misbehave) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.test_misbehave", New: func() caddy.Module { return new(misbehave) }}
}

func (m misbehave) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if m.Mode == "panic" {
		panic("test_misbehave")
	}
	time.Sleep(time.Duration(m.Sleep))
	w.WriteHeader(http.StatusOK)
	return nil
}

func parseMisbehave(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(misbehave)
	h.Next()
	if !h.NextArg() {
		return nil, h.ArgErr()
	}
	m.Mode = h.Val()
	if m.Mode == "sleep" {
		if !h.NextArg() {
			return nil, h.ArgErr()
		}
		d, err := caddy.ParseDuration(h.Val())
		if err != nil {
			return nil, err
		}
		m.Sleep = caddy.Duration(d)
	}
	return m, nil
}

// adapt runs the Caddyfile adapter on text and returns the JSON config.
func adapt(t testing.TB, text string) []byte {
	t.Helper()
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), nil)
	if err != nil {
		t.Fatalf("adapting Caddyfile: %v\n%s", err, text)
	}
	for _, w := range warnings {
		t.Logf("adapter warning: %s", w)
	}
	return out
}

// findHandler returns the first JSON object of config whose "handler" is
// name.
func findHandler(t testing.TB, config []byte, name string) json.RawMessage {
	t.Helper()
	var tree any
	if err := json.Unmarshal(config, &tree); err != nil {
		t.Fatal(err)
	}
	var found any
	var walk func(any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if v["handler"] == name && found == nil {
				found = v
				return
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(tree)
	if found == nil {
		t.Fatalf("no %s handler in %s", name, config)
	}
	out, _ := json.Marshal(found)
	return out
}

// startGateway runs a real Caddy (admin off, nothing persisted, logs
// discarded) with one loopback site whose test_gateway block holds block,
// and returns the provisioned gateway and the site's address. Caddy is
// stopped when the test ends. Tests that use it must not run in parallel:
// Caddy's running config is global.
func startGateway(t testing.TB, block string) (*testGateway, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	text := `{
	admin off
	persist_config off
	auto_https off
	default_bind 127.0.0.1
	log {
		output discard
	}
	servers {
		trusted_proxies static 127.0.0.1/32
	}
}
http://` + addr + ` {
	test_gateway {
` + block + `
	}
}
`
	// Formatted first: block comes indented as each test wrote it, and the
	// adapter would warn about that layout on every start.
	out := adapt(t, string(caddyfile.Format([]byte(text))))
	loaded.Store(nil)
	if err := caddy.Load(out, true); err != nil {
		t.Fatalf("loading config: %v\n%s", err, out)
	}
	t.Cleanup(func() { _ = caddy.Stop() })
	g := loaded.Load()
	if g == nil {
		t.Fatal("test_gateway was not provisioned")
	}
	return g, addr
}

// authorizeRunner starts a gateway with `authorize { <block> }` and
// returns a Runner over it.
func authorizeRunner(t testing.TB, block string) *Runner {
	t.Helper()
	g, _ := startGateway(t, "authorize {\n"+block+"\n}")
	return &Runner{Chain: g.Authorize, Timeout: 2 * time.Second}
}

func newCaddyContext(t testing.TB) caddy.Context {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	return ctx
}

// parseHook adapts a site whose test_gateway block holds the hook block
// text (`authorize { … }` or `authenticate { … }`) and returns the
// chain, unprovisioned, or the adapter's error.
func parseHook(t testing.TB, text string) (*Chain, error) {
	t.Helper()
	site := ":8080 {\ntest_gateway {\n" + text + "}\n}\n"
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(site), nil)
	if err != nil {
		return nil, err
	}
	var g testGateway
	if err := json.Unmarshal(findHandler(t, out, "test_gateway"), &g); err != nil {
		t.Fatal(err)
	}
	if g.Authorize != nil {
		return g.Authorize, nil
	}
	return g.Authenticate, nil
}
