package hookapi

import (
	"encoding/json"
	"strings"
	"testing"
)

// parityBlock exercises what a route block can hold: named matchers, one
// defined in a snippet, handlers in an order that Caddy's directive order
// would change (respond before header), nested handle blocks (which the
// adapter groups), reverse_proxy with a sub-block, and an imported
// snippet.
const parityBlock = `
		@own mqtt_topic users/{http.mqtt_gateway.user}/#
		@pub {
			path /subscribe
			mqtt_topic public/# "news/+"
		}
		import matchers
		respond @pub 200
		header @own X-Mqtt-Limit-Max-Frequency 5
		handle /connect {
			respond 204
		}
		handle /publish {
			reverse_proxy @own 127.0.0.1:9 {
				header_up X-Hook-Secret {env.HOOK_SECRET}
			}
		}
		respond @local 200
		import deny
`

const paritySnippets = `
(deny) {
	respond "denied: {http.mqtt_gateway.topic}" 403
}
(matchers) {
	@local client_ip 10.0.0.0/8
}
`

// TestParseChainParity checks that a hook block becomes exactly the routes
// that the same contents in a `route` block become.
func TestParseChainParity(t *testing.T) {
	viaRoute := adapt(t, paritySnippets+":8080 {\n\troute {"+parityBlock+"\t}\n}\n")
	viaHook := adapt(t, paritySnippets+":8080 {\n\ttest_gateway {\n\t\tbroker x mqtt://127.0.0.1:1 {\n\t\t\tusername u\n\t\t}\n\t\tauthorize {"+parityBlock+"\t\t}\n\t}\n}\n")

	var route struct {
		Routes json.RawMessage `json:"routes"`
	}
	if err := json.Unmarshal(findHandler(t, viaRoute, "subroute"), &route); err != nil {
		t.Fatal(err)
	}
	var g struct {
		Authorize struct {
			Routes json.RawMessage `json:"routes"`
		} `json:"authorize"`
	}
	if err := json.Unmarshal(findHandler(t, viaHook, "test_gateway"), &g); err != nil {
		t.Fatal(err)
	}
	if string(route.Routes) != string(g.Authorize.Routes) {
		t.Errorf("authorize block differs from the route block:\nroute:     %s\nauthorize: %s", route.Routes, g.Authorize.Routes)
	}
	// The order is as written: the first route is the @pub respond.
	if !strings.Contains(string(g.Authorize.Routes[:200]), "public/#") {
		t.Errorf("first route is not the first directive: %s", g.Authorize.Routes)
	}
}

func TestParseChainErrors(t *testing.T) {
	for _, tt := range []struct{ name, block, want string }{
		{"no block", "authorize\n", "needs a block"},
		{"empty block", "authorize {\n}\n", "needs a block"},
		{"arguments", "authorize foo {\n\trespond 200\n}\n", "takes no arguments"},
		{"unknown directive", "authorize {\n\trespond 200\n\tfrobnicate\n}\n", "unrecognized directive: frobnicate"},
		{"bad handler", "authorize {\n\trespond 200 300 400\n}\n", "respond"},
		{"matchers only", "authorize {\n\t@x path /a\n}\n", "no handlers"},
		{"bad matcher", "authorize {\n\t@x mqtt_topic\n\trespond @x 200\n}\n", "wrong argument count"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseHook(t, tt.block)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "'route'") {
				t.Errorf("error mentions the internal route wrapper: %v", err)
			}
		})
	}
}

// TestParseChainLineNumbers checks that errors point into the user's file.
func TestParseChainLineNumbers(t *testing.T) {
	_, err := parseHook(t, "authorize {\n\trespond 200\n\n\tfrobnicate\n}\n")
	// As for a route block, the adapter reports the block's closing brace.
	if err == nil || !strings.HasSuffix(err.Error(), "authorize: unrecognized directive: frobnicate - are you sure your Caddyfile structure (nesting and braces) is correct?, at Caddyfile:7") {
		t.Fatalf("error = %v, want it at line 7", err)
	}
}

// TestParseChainLeavesDispenser checks that the caller's block loop goes on
// with the next option after a hook block.
func TestParseChainLeavesDispenser(t *testing.T) {
	authz, err := parseHook(t, `authenticate {
	respond 200
}
authorize {
	respond 403
}
`)
	if err != nil || authz == nil || len(authz.Routes) != 1 {
		t.Fatalf("authorize not parsed after authenticate: %+v, %v", authz, err)
	}
}

func TestChainJSON(t *testing.T) {
	c, err := parseHook(t, "authorize {\n\t@own mqtt_topic a/+\n\trespond @own 200\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(c)
	want := `{"routes":[{"match":[{"mqtt_topic":["a/+"]}],"handle":[{"handler":"static_response","status_code":200}]}]}`
	if string(out) != want {
		t.Errorf("JSON = %s\nwant   %s", out, want)
	}
	var back Chain
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Provision(newCaddyContext(t)); err != nil {
		t.Fatal(err)
	}
}
