package mqttgateway

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/caddy-mqtt/mqttgateway/session"
)

func parse(t *testing.T, input string) (*Handler, error) {
	t.Helper()
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return &h, err
}

func TestCaddyfileFullBlock(t *testing.T) {
	h, err := parse(t, `mqtt_gateway {
		broker sensors mqtts://broker.internal {
			username gw
			password s3cret
			client_id_prefix web-
			keepalive 15s
			connect_timeout 3s
			tls {
				ca /etc/ca.pem
				server_name mqtt.internal
			}
		}
		broker local embedded {
			listen 127.0.0.1:1884
		}
		allow_origins https://app.example.com https://admin.example.com
		max_message_size 64KiB
		session_timeout 1m
		heartbeat 10s
		max_clients_per_session 4
		max_subscriptions_per_client 32
		max_topic_length 256
		write_delay 50ms
		shared_subscriptions workers reports
	}`)
	if err != nil {
		t.Fatal(err)
	}
	// Bandwidths as networks write them: b is a bit, B a byte.
	for v, want := range map[string]int64{"64KiB": 65536, "100kB/s": 100000, "1MBps": 1000000, "2000": 2000,
		"512kbit": 64000, "512kbps": 64000, "1Mb/s": 125000, "1Gbps": 125000000, "8kbit/s": 1000} {
		h, err := parse(t, "mqtt_gateway {\n broker a mqtt://h\n max_bandwidth "+v+"\n}")
		if err != nil || h.MaxBandwidth != want {
			t.Errorf("max_bandwidth %s: %d bytes/s (%v), want %d", v, h.MaxBandwidth, err, want)
		}
	}
	// Placeholders in a broker URL are replaced (and the URL checked) when
	// the config loads.
	if h, err := parse(t, "mqtt_gateway {\n broker a {env.MQTT_URL}\n}"); err != nil || h.Brokers[0].URL != "{env.MQTT_URL}" {
		t.Errorf("broker URL from the environment: %v", err)
	}
	// 0 is a valid write delay: none.
	if h, err := parse(t, "mqtt_gateway {\n broker a mqtt://h\n write_delay 0\n}"); err != nil || h.WriteDelay != 0 {
		t.Fatalf("write_delay 0: %v %v", err, h.WriteDelay)
	}
	if len(h.Brokers) != 2 {
		t.Fatalf("brokers: %+v", h.Brokers)
	}
	s := h.Brokers[0]
	if s.Name != "sensors" || s.URL != "mqtts://broker.internal" || s.Username != "gw" || s.Password != "s3cret" ||
		s.ClientIDPrefix != "web-" || s.TLS == nil || s.TLS.CA != "/etc/ca.pem" || s.TLS.ServerName != "mqtt.internal" {
		t.Fatalf("sensors broker: %+v tls %+v", s, s.TLS)
	}
	if l := h.Brokers[1]; l.Embedded == nil || l.Embedded.Listen != "127.0.0.1:1884" {
		t.Fatalf("embedded broker: %+v", l)
	}
	if h.MaxMessageSize != 64*1024 || len(h.AllowOrigins) != 2 || h.MaxClientsPerSession != 4 || h.MaxSubscriptionsPerClient != 32 ||
		h.MaxTopicLength != 256 || time.Duration(h.WriteDelay) != 50*time.Millisecond ||
		!slices.Equal(h.SharedSubscriptions, []string{"workers", "reports"}) {
		t.Fatalf("options: %+v", h)
	}
}

func TestCaddyfileErrorsNameTheLine(t *testing.T) {
	cases := map[string]struct{ input, want string }{
		"unknown option":        {"mqtt_gateway {\n broker a mqtt://h\n frobnicate 1\n}", "unknown mqtt_gateway option \"frobnicate\""},
		"unknown broker option": {"mqtt_gateway {\n broker a mqtt://h {\n  colour blue\n }\n}", "unknown broker option \"colour\""},
		"duplicate broker":      {"mqtt_gateway {\n broker a mqtt://h\n broker a mqtt://g\n}", "duplicate broker name \"a\""},
		"bad scheme":            {"mqtt_gateway {\n broker a http://h\n}", "scheme must be mqtt, mqtts, ws or wss"},
		"credentials in url":    {"mqtt_gateway {\n broker a mqtt://u:p@h\n}", "put credentials in username and password"},
		"missing url":           {"mqtt_gateway {\n broker a\n}", "broker needs a name and a url"},
		"bad size":              {"mqtt_gateway {\n broker a mqtt://h\n max_message_size lots\n}", "invalid size"},
		"bad duration":          {"mqtt_gateway {\n broker a mqtt://h\n session_timeout soon\n}", "invalid duration"},
		"zero duration":         {"mqtt_gateway {\n broker a mqtt://h\n session_timeout 0\n}", "session_timeout: invalid duration \"0\""},
		"negative write delay":  {"mqtt_gateway {\n broker a mqtt://h\n write_delay -1s\n}", "write_delay: invalid duration \"-1s\""},
		"listen on external":    {"mqtt_gateway {\n broker a mqtt://h {\n  listen :1883\n }\n}", "listen applies to embedded brokers only"},
		"unknown tls option":    {"mqtt_gateway {\n broker a mqtts://h {\n  tls {\n   pinning yes\n  }\n }\n}", "unknown tls option"},
		"argument on directive": {"mqtt_gateway extra {\n broker a mqtt://h\n}", "wrong argument count"},
		"option given twice":    {"mqtt_gateway {\n broker a mqtt://h\n name x\n name y\n}", "name given twice"},
		"broker option twice":   {"mqtt_gateway {\n broker a mqtt://h {\n  keepalive 10s\n  keepalive 20s\n }\n}", "broker \"a\": keepalive given twice"},
		"bandwidth under 1 B/s": {"mqtt_gateway {\n broker a mqtt://h\n max_bandwidth 4bit\n}", "less than a byte per second"},
		// 64kb is 64,000 bytes in max_message_size: here, where a b is a
		// bit, the bare form is refused rather than read as 8,000.
		"bandwidth in kb": {"mqtt_gateway {\n broker a mqtt://h\n max_bandwidth 64kb\n}", `bandwidth "64kb" is ambiguous: write 64kbit (or 64kbps) for bits, 64KB for bytes per second`},
		// Settings checked as they are read, so that the error names the
		// line instead of coming when the config loads, without one.
		"origin without scheme":     {"mqtt_gateway {\n broker a mqtt://h\n allow_origins https://ok.example.com app.example.com\n}", `"app.example.com" has no http:// or https:// scheme`},
		"message size past 128 MiB": {"mqtt_gateway {\n broker a mqtt://h\n max_message_size 1GB\n}", "max_message_size must be between 1 and 134217728 bytes"},
		"heartbeat under 100ms":     {"mqtt_gateway {\n broker a mqtt://h\n heartbeat 1ms\n}", "heartbeat 1ms is below 100ms"},
		"topic length past MQTT's":  {"mqtt_gateway {\n broker a mqtt://h\n max_topic_length 70000\n}", "max_topic_length must be between 1 and 65535 bytes"},
		// Found when the config loaded, without a line, before.
		"no broker":                  {"mqtt_gateway {\n session_timeout 1m\n}", "mqtt_gateway needs at least one broker"},
		"tls on a plain url":         {"mqtt_gateway {\n broker a mqtt://h {\n  tls {\n   server_name h\n  }\n }\n}", `broker "a": tls settings need an mqtts:// or wss:// url, not mqtt://h`},
		"broker option at the top":   {"mqtt_gateway {\n broker a mqtt://h\n keepalive 10s\n}", "keepalive is a broker option: put it in a broker's block"},
		"write delay past heartbeat": {"mqtt_gateway {\n broker a mqtt://h\n write_delay 30s\n}", "write_delay (30s) must be shorter than heartbeat (20s), at Testfile:3"},
		"write delay past a later heartbeat": {"mqtt_gateway {\n broker a mqtt://h\n write_delay 2s\n heartbeat 1s\n}",
			"write_delay (2s) must be shorter than heartbeat (1s), at Testfile:3"},
		"keepalive in fractions":   {"mqtt_gateway {\n broker a mqtt://h {\n  keepalive 1500ms\n }\n}", "keepalive 1.5s must be whole seconds"},
		"keepalive under a second": {"mqtt_gateway {\n broker a mqtt://h {\n  keepalive 500ms\n }\n}", "keepalive 500ms must be between 1s"},
		"mqtt url with a path":     {"mqtt_gateway {\n broker a mqtt://h:1883/sensors\n}", "an mqtt:// url is a host and a port, with no path or query"},
		"embedded with username":   {"mqtt_gateway {\n broker a embedded {\n  username gw\n }\n}", "username and password apply to external brokers only"},
		// NaN was taken as no limit, and so, overflowing the spacing
		// between messages, was a frequency far below one per 1000 s.
		"frequency not a number":    {"mqtt_gateway {\n broker a mqtt://h\n max_frequency NaN\n}", `max_frequency: "NaN" is not a number of messages per second of at least 0.001`},
		"frequency far too low":     {"mqtt_gateway {\n broker a mqtt://h\n max_frequency 1e-10\n}", `max_frequency: "1e-10" is not a number of messages per second of at least 0.001`},
		"publish rate not a number": {"mqtt_gateway {\n broker a mqtt://h\n max_publish_rate NaN\n}", `max_publish_rate: "NaN" is not a positive number of publishes per second, at Testfile:3`},
		"publish rate infinite":     {"mqtt_gateway {\n broker a mqtt://h\n max_publish_rate Inf\n}", `max_publish_rate: "Inf" is not a positive number`},
		"listen without port":       {"mqtt_gateway {\n broker a embedded {\n  listen 127.0.0.1\n }\n}", `listen "127.0.0.1" needs a host and a port`},
		"mqtt version unknown":      {"mqtt_gateway {\n broker a mqtt://h {\n  mqtt_version 4\n }\n}", `mqtt_version "4" is not 5 or 3.1.1`},
		"mqtt version embedded":     {"mqtt_gateway {\n broker a embedded {\n  mqtt_version 3.1.1\n }\n}", "mqtt_version applies to external brokers only"},
		"share name with a level":   {"mqtt_gateway {\n broker a mqtt://h\n shared_subscriptions workers/jobs\n}", `shared_subscriptions: "workers/jobs" is not a share name`},
		"share name a wildcard":     {"mqtt_gateway {\n broker a mqtt://h\n shared_subscriptions +\n}", `shared_subscriptions: "+" is not a share name`},
		"no share name":             {"mqtt_gateway {\n broker a mqtt://h\n shared_subscriptions\n}", "wrong argument count"},
		"every share name and one":  {"mqtt_gateway {\n broker a mqtt://h\n shared_subscriptions * workers\n}", "* opens every share group: give it alone"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := parse(t, tc.input)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want it to contain %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "Testfile:") {
				t.Fatalf("error %v does not name the line", err)
			}
		})
	}
}

func TestValidateRejectsBadConfig(t *testing.T) {
	for name, h := range map[string]*Handler{
		"no broker":  {},
		"bad origin": {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, AllowOrigins: []string{"app.example.com"}},
		// Browsers never send a path, nor a star inside a host.
		"origin with a path":       {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, AllowOrigins: []string{"https://app.example.com/app"}},
		"star inside an origin":    {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, AllowOrigins: []string{"https://app.*.com"}},
		"origin port too large":    {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, AllowOrigins: []string{"https://app.example.com:99999"}},
		"too large":                {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, MaxMessageSize: 1 << 30},
		"topic length past MQTT's": {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, MaxTopicLength: 65536},
		"negative topic length":    {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, MaxTopicLength: -1},
		"duplicate name":           {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}, {Name: "a", URL: "mqtt://g"}}},
		"negative write delay":     {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, WriteDelay: -1},
		// A delay as long as the heartbeat (default 20s) would hold
		// messages until a silent connection counts as dead.
		"write delay past heartbeat": {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, WriteDelay: caddy.Duration(20 * time.Second)},
		"write delay past set heartbeat": {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, Heartbeat: caddy.Duration(time.Second),
			WriteDelay: caddy.Duration(time.Second)},
		"heartbeat under 100ms": {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, Heartbeat: caddy.Duration(time.Millisecond)},
		"frequency far too low": {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, MaxFrequency: 1e-10},
		"empty share name":      {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, SharedSubscriptions: []string{""}},
		"share name with a #":   {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, SharedSubscriptions: []string{"jobs#"}},
		"share name with a NUL": {Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, SharedSubscriptions: []string{"jobs\x00"}},
	} {
		if err := h.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	h := &Handler{Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}, WriteDelay: caddy.Duration(30 * time.Second)}
	if err := h.Validate(); err == nil || !strings.Contains(err.Error(), "write_delay (30s) must be shorter than heartbeat (20s)") {
		t.Errorf("write delay past the default heartbeat: %v", err)
	}
	// A JSON config skips the Caddyfile's parser: its numbers are checked
	// here, each by its name.
	for name, h := range map[string]*Handler{
		"max_clients_per_session":      {MaxClientsPerSession: -5},
		"max_subscriptions_per_client": {MaxSubscriptionsPerClient: -1},
		"max_queued_frames":            {MaxQueuedFrames: -1},
		"replay_bytes":                 {ReplayBytes: -1},
		"heartbeat":                    {Heartbeat: -1},
	} {
		h.Brokers = []*session.BrokerConfig{{Name: "a", URL: "mqtt://h"}}
		if err := h.Validate(); err == nil || err.Error() != "mqtt_gateway: "+name+" must not be negative" {
			t.Errorf("%s negative: %v", name, err)
		}
	}
}

// Broker settings Caddy's JSON may carry that MQTT cannot: a keepalive of
// a fraction of a second (MQTT counts whole seconds, 0 is none), a
// negative timeout. And a URL with a password is refused without the
// password in the error, which is logged.
func TestBrokerSettingsChecked(t *testing.T) {
	for name, tc := range map[string]struct {
		b    session.BrokerConfig
		want string
	}{
		"keepalive under a second": {session.BrokerConfig{Name: "a", URL: "mqtt://h", KeepAlive: caddy.Duration(900 * time.Millisecond)}, "keepalive 900ms must be between 1s"},
		"negative keepalive":       {session.BrokerConfig{Name: "a", URL: "mqtt://h", KeepAlive: -1}, "keepalive -1ns must be between 1s"},
		"negative connect timeout": {session.BrokerConfig{Name: "a", URL: "mqtt://h", ConnectTimeout: -1}, "connect_timeout -1ns must be positive"},
		"password in the url":      {session.BrokerConfig{Name: "a", URL: "mqtt://gw:TopSecret99@h"}, "put credentials in username and password"},
		"keepalive in fractions":   {session.BrokerConfig{Name: "a", URL: "mqtt://h", KeepAlive: caddy.Duration(1500 * time.Millisecond)}, "keepalive 1.5s must be whole seconds"},
		"mqtts url with a query":   {session.BrokerConfig{Name: "a", URL: "mqtts://h?x=1"}, "an mqtts:// url is a host and a port"},
		"embedded with a password": {session.BrokerConfig{Name: "a", Password: "p", Embedded: &session.EmbeddedConfig{}}, "username and password apply to external brokers only"},
		"embedded listen, no port": {session.BrokerConfig{Name: "a", Embedded: &session.EmbeddedConfig{Listen: "localhost"}}, `listen "localhost" needs a host and a port`},
		"mqtt version unknown":     {session.BrokerConfig{Name: "a", URL: "mqtt://h", MQTTVersion: "3"}, `mqtt_version "3" is not 5 or 3.1.1`},
		"embedded on 3.1.1":        {session.BrokerConfig{Name: "a", MQTTVersion: "3.1.1", Embedded: &session.EmbeddedConfig{}}, "applies to external brokers only"},
	} {
		err := tc.b.Prepare()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "TopSecret99") {
			t.Errorf("%s: the error shows the password: %v", name, err)
		}
	}
}

var updateGolden = flag.Bool("update", false, "rewrite the JSON of testdata/adapt/*.txt from their Caddyfiles")

// Golden tests: each testdata/adapt/*.txt holds a Caddyfile, a line of
// dashes, and the JSON Caddy must produce from it.
func TestCaddyfileAdaptGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/adapt/*.txt")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.SplitN(string(b), "\n----------\n", 2)
		if len(parts) != 2 {
			t.Fatalf("%s: no separator", f)
		}
		if *updateGolden {
			js, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(parts[0]), map[string]any{"filename": "Caddyfile"})
			if err != nil {
				t.Fatal(err)
			}
			var pretty bytes.Buffer
			json.Indent(&pretty, js, "", "\t")
			os.WriteFile(f, []byte(parts[0]+"\n----------\n"+pretty.String()+"\n"), 0o644)
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			caddytest.AssertAdapt(t, parts[0]+"\n", "caddyfile", strings.TrimRight(parts[1], "\n"))
		})
	}
}

// The production example in examples/ adapts cleanly, with its commented
// options uncommented too: what the README points people to must work.
func TestExampleCaddyfileAdapts(t *testing.T) {
	b, err := os.ReadFile("examples/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	uncommented := regexp.MustCompile(`(?m)^(\t+)# ([a-z]+_[a-z_]+ \S+)$`).ReplaceAllString(string(b), "$1$2")
	for name, src := range map[string]string{"as shipped": string(b), "options uncommented": uncommented} {
		js, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
		if err != nil || len(warnings) > 0 {
			t.Fatalf("%s: %v %v", name, err, warnings)
		}
		if name == "options uncommented" && !bytes.Contains(js, []byte(`"write_delay":50000000`)) {
			t.Fatalf("%s: write_delay not in the JSON: %s", name, js)
		}
	}
}

// The cluster example's Caddyfiles adapt as its comments run them, each
// instance with its own admin address (the admin API acts on one instance).
func TestClusterExampleAdapts(t *testing.T) {
	t.Setenv("GATEWAY_PORT", "8082")
	t.Setenv("ADMIN_PORT", "2022")
	t.Setenv("MQTT_URL", "mqtt://127.0.0.1:1883")
	for _, f := range []string{"examples/cluster/gateway.Caddyfile", "examples/cluster/balancer.Caddyfile"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		js, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(b, map[string]any{"filename": f})
		if err != nil || len(warnings) > 0 {
			t.Fatalf("%s: %v %v", f, err, warnings)
		}
		if strings.Contains(f, "gateway") && !bytes.Contains(js, []byte(`"admin":{"listen":"127.0.0.1:2022"}`)) {
			t.Fatalf("%s: no admin endpoint of its own: %s", f, js)
		}
	}
}

// A broker URL from an unset environment variable says which placeholder
// it was, not just what remained of it.
func TestBrokerURLFromAnUnsetVariable(t *testing.T) {
	h := &Handler{Brokers: []*session.BrokerConfig{{Name: "a", URL: "mqtt://{env.MQTTGW_TEST_UNSET_HOST}:1883"}}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := h.Provision(ctx)
	if err == nil || !strings.Contains(err.Error(), "{env.MQTTGW_TEST_UNSET_HOST}") || !strings.Contains(err.Error(), "environment variables") {
		t.Fatalf("provision: %v, want the placeholder named", err)
	}
}
