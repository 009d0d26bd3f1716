package mqttgateway

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/dustin/go-humanize"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/throttle"
)

func init() {
	httpcaddyfile.RegisterDirective("mqtt_gateway", parseDirective)
	// After the auth handlers (basic_auth, forward_auth) so a site's own
	// protection applies to the gateway too, before proxies and files
	// because the gateway passes what it does not serve to them; before respond
	// so a catch-all respond does not shadow it.
	httpcaddyfile.RegisterDirectiveOrder("mqtt_gateway", httpcaddyfile.Before, "respond")
}

// parseDirective is what RegisterHandlerDirective would do, and it takes
// the gateway's base path from the directive's matcher: mqtt_gateway
// /mqtt/* serves /mqtt/ws, /mqtt/client.js… and nothing else.
func parseDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	var m Handler
	if err := m.unmarshal(h.Dispenser, &h); err != nil {
		return nil, err
	}
	if m.BasePath == "" {
		m.BasePath = basePathOf(matcherSet)
	}
	return h.NewRoute(matcherSet, &m), nil
}

// basePathOf is "/mqtt" for a matcher of the one path /mqtt/* (or "/"
// for /*), else "" (a named matcher, several paths, other patterns: the
// base_path option says it then).
func basePathOf(matcherSet caddy.ModuleMap) string {
	var paths []string
	if len(matcherSet) != 1 || json.Unmarshal(matcherSet["path"], &paths) != nil || len(paths) != 1 {
		return ""
	}
	prefix, ok := strings.CutSuffix(paths[0], "/*")
	if !ok || strings.ContainsAny(prefix, "*?[%{") {
		return ""
	}
	if prefix == "" {
		return "/"
	}
	return prefix
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens:
//
//	mqtt_gateway [<matcher>] {
//		name <gateway name>
//		base_path <path>             # default: from a /path/* matcher
//		authenticate {
//			<handler directives, as in a route block>
//		}
//		authorize {
//			<handler directives, as in a route block>
//		}
//		hook_timeout <duration>
//		alive_interval <duration>
//		wills_on_shutdown
//		max_sessions <n>
//		max_sessions_per_ip <n>
//		max_publish_rate <publishes per second>
//		shared_subscriptions <share name...>|*
//		broker <name> <url>|embedded {
//			username <user>
//			password <password>
//			client_id_prefix <prefix>
//			keepalive <duration>
//			connect_timeout <duration>
//			mqtt_version 5|3.1.1        # external brokers only
//			listen <address>            # embedded brokers only
//			tls {
//				ca <pem file>
//				cert <pem file>
//				key <pem file>
//				server_name <name>
//				insecure_skip_verify
//			}
//		}
//		allow_origins <origin...>
//		max_message_size <size>
//		session_timeout <duration>
//		heartbeat <duration>
//		max_clients_per_session <n>
//		max_subscriptions_per_client <n>
//		max_topic_length <bytes>
//		max_queued_frames <n>
//		max_queued_bytes <size>
//		replay_frames <n>
//		replay_bytes <size>
//		max_frequency <messages per second>
//		max_bandwidth <size per second, e.g. 64KiB or 512kbit>
//		conflate_after <n>
//		overflow notify|close
//		write_delay <duration>
//	}
//
// Unknown options are errors.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error { return h.unmarshal(d, nil) }

// unmarshal parses the directive; the adapter's helper is needed for the
// hook blocks, which hold handler directives.
func (h *Handler) unmarshal(d *caddyfile.Dispenser, helper *httpcaddyfile.Helper) error {
	d.Next() // directive name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	writeDelayAt := "" // file:line of write_delay
	for d.NextBlock(0) {
		// Strict: an option given twice is a mistake (which one was
		// meant?), except the lists.
		if opt := d.Val(); opt != "broker" && opt != "allow_origins" {
			if seen[opt] {
				return d.Errf("%s given twice", opt)
			}
			seen[opt] = true
		}
		switch d.Val() {
		case "broker":
			b, err := parseBroker(d)
			if err != nil {
				return err
			}
			for _, other := range h.Brokers {
				if other.Name == b.Name {
					return d.Errf("duplicate broker name %q", b.Name)
				}
			}
			h.Brokers = append(h.Brokers, b)
		case "name":
			if err := parseString(d, &h.Name); err != nil {
				return err
			}
		case "base_path":
			if err := parseString(d, &h.BasePath); err != nil {
				return err
			}
			if !strings.HasPrefix(h.BasePath, "/") {
				return d.Errf("base_path %q must begin with /", h.BasePath)
			}
		case "authenticate", "authorize":
			opt := d.Val()
			if helper == nil {
				return d.Errf("%s needs the Caddyfile adapter", opt)
			}
			dst := &h.Authenticate
			if opt == "authorize" {
				dst = &h.Authorize
			}
			if *dst != nil {
				return d.Errf("%s given twice", opt)
			}
			c, err := hookapi.ParseChain(helper.WithDispenser(d))
			if err != nil {
				return err
			}
			*dst = c
		case "wills_on_shutdown":
			if d.NextArg() {
				return d.ArgErr()
			}
			h.WillsOnShutdown = true
		case "hook_timeout":
			if err := parseDuration(d, &h.HookTimeout); err != nil {
				return err
			}
		case "alive_interval":
			if err := parseDuration(d, &h.AliveInterval); err != nil {
				return err
			}
		case "max_sessions":
			if err := parseInt(d, &h.MaxSessions); err != nil {
				return err
			}
		case "max_sessions_per_ip":
			if err := parseInt(d, &h.MaxSessionsPerIP); err != nil {
				return err
			}
		case "max_publish_rate":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			f, err := strconv.ParseFloat(v, 64)
			// (NaN and Inf, which ParseFloat takes, would make a config
			// that JSON cannot hold.)
			if err != nil || !(f > 0) || math.IsInf(f, 1) {
				return d.Errf("max_publish_rate: %q is not a positive number of publishes per second", v)
			}
			h.MaxPublishRate = f
		case "shared_subscriptions":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			if err := checkShareNames(args); err != nil {
				return d.WrapErr(err)
			}
			h.SharedSubscriptions = args
		case "allow_origins":
			args := d.RemainingArgs()
			if len(args) == 0 {
				return d.ArgErr()
			}
			// Those with placeholders are checked when the config loads.
			plain := slices.DeleteFunc(slices.Clone(args), func(a string) bool { return strings.Contains(a, "{") })
			if _, err := parseOrigins(plain); err != nil {
				return d.WrapErr(err)
			}
			h.AllowOrigins = append(h.AllowOrigins, args...)
		case "max_message_size":
			if err := parseSize(d, &h.MaxMessageSize); err != nil {
				return err
			}
			if err := wrapOption(d, checkMaxMessageSize(h.MaxMessageSize)); err != nil {
				return err
			}
		case "max_queued_bytes":
			if err := parseSize(d, &h.MaxQueuedBytes); err != nil {
				return err
			}
		case "replay_bytes":
			if err := parseSize(d, &h.ReplayBytes); err != nil {
				return err
			}
		case "session_timeout":
			if err := parseDuration(d, &h.SessionTimeout); err != nil {
				return err
			}
		case "heartbeat":
			if err := parseDuration(d, &h.Heartbeat); err != nil {
				return err
			}
			if err := wrapOption(d, checkHeartbeat(h.Heartbeat)); err != nil {
				return err
			}
		case "write_delay":
			if err := parseDelay(d, &h.WriteDelay); err != nil {
				return err
			}
			writeDelayAt = d.File() + ":" + strconv.Itoa(d.Line())
		case "max_clients_per_session":
			if err := parseInt(d, &h.MaxClientsPerSession); err != nil {
				return err
			}
		case "max_subscriptions_per_client":
			if err := parseInt(d, &h.MaxSubscriptionsPerClient); err != nil {
				return err
			}
		case "max_topic_length":
			if err := parseInt(d, &h.MaxTopicLength); err != nil {
				return err
			}
			if err := wrapOption(d, checkMaxTopicLength(h.MaxTopicLength)); err != nil {
				return err
			}
		case "max_queued_frames":
			if err := parseInt(d, &h.MaxQueuedFrames); err != nil {
				return err
			}
		case "replay_frames":
			if err := parseInt(d, &h.ReplayFrames); err != nil {
				return err
			}
		case "conflate_after":
			if err := parseInt(d, &h.ConflateAfter); err != nil {
				return err
			}
		case "max_frequency":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			f, err := strconv.ParseFloat(v, 64)
			if err == nil {
				err = session.CheckFrequency(f)
			}
			if err != nil {
				return d.Errf("max_frequency: %q is not a number of messages per second of at least %v", v, session.MinFrequency)
			}
			h.MaxFrequency = f
		case "max_bandwidth":
			if err := parseBandwidth(d, &h.MaxBandwidth); err != nil {
				return err
			}
		case "overflow":
			v, err := oneArg(d)
			if err != nil {
				return err
			}
			if v != "notify" && v != "close" {
				return d.Errf("overflow: %q is not notify or close", v)
			}
			h.Overflow = v
		case "username", "password", "client_id_prefix", "keepalive", "connect_timeout", "mqtt_version", "listen", "tls":
			return d.Errf("%s is a broker option: put it in a broker's block (broker <name> <url> { %s … })", d.Val(), d.Val())
		default:
			return d.Errf("unknown mqtt_gateway option %q", d.Val())
		}
	}
	if len(h.Brokers) == 0 {
		return d.Err("mqtt_gateway needs at least one broker (broker <name> <url>)")
	}
	// Checked once both are known: heartbeat may come after write_delay.
	if err := checkWriteDelay(h.WriteDelay, h.Heartbeat); err != nil {
		return fmt.Errorf("%w, at %s", err, writeDelayAt)
	}
	return nil
}

func parseBroker(d *caddyfile.Dispenser) (*session.BrokerConfig, error) {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return nil, d.Errf("broker needs a name and a url (or 'embedded'), got %d arguments (an empty {$VAR} gives none)", len(args))
	}
	b := &session.BrokerConfig{Name: args[0]}
	if args[1] == "embedded" {
		b.Embedded = &session.EmbeddedConfig{}
	} else {
		// A URL with placeholders ({env.MQTT_URL}) is checked once they are
		// replaced, when the config loads.
		if !strings.Contains(args[1], "{") {
			if _, err := session.ParseBrokerURL(args[1]); err != nil {
				return nil, d.Errf("broker %q: %v", b.Name, err)
			}
		}
		b.URL = args[1]
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		opt := d.Val()
		if seen[opt] {
			return nil, d.Errf("broker %q: %s given twice", b.Name, opt)
		}
		seen[opt] = true
		var err error
		switch opt {
		case "username", "password":
			if b.Embedded != nil {
				return nil, d.Errf("broker %q: %v", b.Name, session.ErrEmbeddedCredentials)
			}
			dst := &b.Username
			if opt == "password" {
				dst = &b.Password
			}
			err = parseString(d, dst)
		case "client_id_prefix":
			err = parseString(d, &b.ClientIDPrefix)
		case "keepalive":
			if err = parseDuration(d, &b.KeepAlive); err == nil {
				err = wrapOption(d, session.CheckKeepAlive(b.KeepAlive))
			}
		case "connect_timeout":
			err = parseDuration(d, &b.ConnectTimeout)
		case "mqtt_version":
			if b.Embedded != nil {
				return nil, d.Errf("mqtt_version applies to external brokers only (the embedded broker speaks MQTT 5)")
			}
			if err = parseString(d, &b.MQTTVersion); err == nil {
				err = wrapOption(d, session.CheckMQTTVersion(b.MQTTVersion))
			}
		case "listen":
			if b.Embedded == nil {
				return nil, d.Errf("listen applies to embedded brokers only")
			}
			if err = parseString(d, &b.Embedded.Listen); err == nil {
				err = wrapOption(d, session.CheckListen(b.Embedded.Listen))
			}
		case "tls":
			if b.Embedded != nil {
				return nil, d.Errf("tls applies to external brokers only")
			}
			b.TLS, err = parseBrokerTLS(d)
		default:
			return nil, d.Errf("unknown broker option %q", opt)
		}
		if err != nil {
			return nil, err
		}
	}
	// A URL with placeholders is checked when the config loads.
	if b.TLS != nil && !strings.Contains(b.URL, "{") {
		if u, err := session.ParseBrokerURL(b.URL); err == nil && u.Scheme != "mqtts" && u.Scheme != "wss" {
			return nil, d.Errf("broker %q: tls settings need an mqtts:// or wss:// url, not %s", b.Name, b.URL)
		}
	}
	return b, nil
}

func parseBrokerTLS(d *caddyfile.Dispenser) (*session.BrokerTLS, error) {
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	t := &session.BrokerTLS{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "ca":
			err = parseString(d, &t.CA)
		case "cert":
			err = parseString(d, &t.Cert)
		case "key":
			err = parseString(d, &t.Key)
		case "server_name":
			err = parseString(d, &t.ServerName)
		case "insecure_skip_verify":
			if d.NextArg() {
				return nil, d.ArgErr()
			}
			t.InsecureSkipVerify = true
		default:
			return nil, d.Errf("unknown tls option %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

// wrapOption gives a check's error the Caddyfile line of the option just
// read; nil stays nil.
func wrapOption(d *caddyfile.Dispenser, err error) error {
	if err == nil {
		return nil
	}
	return d.WrapErr(err)
}

// oneArg reads the single argument of the current option.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	opt := d.Val()
	if !d.NextArg() {
		return "", d.Errf("%s needs a value", opt)
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.Errf("%s takes one value", opt)
	}
	return v, nil
}

func parseString(d *caddyfile.Dispenser, dst *string) error {
	v, err := oneArg(d)
	*dst = v
	return err
}

// parseDuration parses a positive duration.
func parseDuration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	opt := d.Val()
	if err := parseDelay(d, dst); err != nil {
		return err
	}
	if *dst == 0 {
		return d.Errf("%s: invalid duration %q: it must be more than 0 (leave the option out for its default)", opt, d.Val())
	}
	return nil
}

// parseDelay parses a duration that may be 0 (none).
func parseDelay(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	opt := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur < 0 {
		return d.Errf("%s: invalid duration %q", opt, v)
	}
	*dst = caddy.Duration(dur)
	return nil
}

func parseInt(d *caddyfile.Dispenser, dst *int) error {
	opt := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return err
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return d.Errf("%s: %q is not a positive integer", opt, v)
	}
	*dst = n
	return nil
}

// parseSize accepts byte counts like 1048576, 64KiB or 1MB.
func parseSize(d *caddyfile.Dispenser, dst *int64) error {
	opt := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return err
	}
	n, err := humanize.ParseBytes(v)
	if err != nil || n == 0 || n > 1<<40 {
		return d.Errf("%s: invalid size %q", opt, v)
	}
	*dst = int64(n)
	return nil
}

// Interface guards.
var _ caddyfile.Unmarshaler = (*Handler)(nil)

// parseBandwidth accepts bytes per second as a size (64KiB, 1MB) or bits per
// second (512kbit, 512kbps): throttle.ParseBandwidth.
func parseBandwidth(d *caddyfile.Dispenser, dst *int64) error {
	opt := d.Val()
	v, err := oneArg(d)
	if err != nil {
		return err
	}
	n, err := throttle.ParseBandwidth(v)
	if err != nil {
		return d.Errf("%s: %v", opt, err)
	}
	*dst = int64(n)
	return nil
}
