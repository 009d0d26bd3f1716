// Package mqttgateway is a Caddy module that brings MQTT brokers to web
// browsers and Node.js: the http.handlers.mqtt_gateway handler serves the
// gateway's session protocol (transport/PROTOCOL.md) and its JavaScript
// client, and bridges web sessions to MQTT brokers with fan-out.
package mqttgateway

import (
	"fmt"
	"path"
	"strings"
	"time"
	"unicode"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyevents"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/session/topic"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the mqtt_gateway HTTP handler. Under its base path it serves:
//
//   - `<base>/ws`: the WebSocket endpoint of the session protocol;
//   - `<base>/stream`, `<base>/poll`, `<base>/send`: its HTTP transports;
//   - `<base>/client.js` and the other files of the JavaScript client,
//     with `client.d.ts` for TypeScript users;
//
// and passes every other request to the next handler.
type Handler struct {
	// Path under which the gateway serves its endpoints and the client
	// library, such as "/mqtt" (pages then call openSession("/mqtt")).
	// Requests for other paths pass to the next handler, even when they
	// end in ws, send or client.js. The Caddyfile sets it from the
	// directive's path matcher (mqtt_gateway /mqtt/* gives /mqtt). Empty:
	// the endpoints are known by their last path element, under whatever
	// paths the handler's route lets through.
	BasePath string `json:"base_path,omitempty"`

	// Name of this gateway. A gateway keeps its sessions and broker
	// connections across config reloads as long as its name stays the
	// same; handlers with the same name share them. Default: derived from
	// the broker names. {env.*} placeholders work.
	Name string `json:"name,omitempty"`

	// Brokers that web clients may use, each under a unique name.
	Brokers []*session.BrokerConfig `json:"brokers,omitempty"`

	// The hook that decides whether a page may open a session, and who its
	// user is: a Caddy handler chain run on a synthetic request (see
	// hookapi/README.md). Without it sessions are anonymous.
	Authenticate *hookapi.Chain `json:"authenticate,omitempty"`

	// The hook that decides connect, subscribe and publish, and hears
	// unsubscribe, disconnect and close. Without it every action is
	// allowed.
	Authorize *hookapi.Chain `json:"authorize,omitempty"`

	// How long a hook may take before the action is denied with code 4022
	// (fail closed). Default: 1s.
	HookTimeout caddy.Duration `json:"hook_timeout,omitempty"`

	// How often the authorize hook hears that this Caddy instance is
	// running: an "alive" notification naming the instance, which every
	// hook request names too (X-Mqtt-Instance). A service that keeps track
	// of sessions (presence) forgets those of an instance it has not heard
	// from for a few intervals: a Caddy killed, or cut off, sends no close
	// notifications. Needs authorize. Default: 0, none.
	AliveInterval caddy.Duration `json:"alive_interval,omitempty"`

	// Most live sessions of this gateway; more are refused with code 4013,
	// before the authenticate hook runs. Default: no limit.
	MaxSessions int `json:"max_sessions,omitempty"`

	// Most live sessions per client IP (as Caddy's trusted_proxies
	// resolves it; an IPv6 address counts by its /64); more are refused
	// with code 4013, before the authenticate hook runs. Default: no limit.
	MaxSessionsPerIP int `json:"max_sessions_per_ip,omitempty"`

	// Fire dedicated clients' will messages when the gateway shuts down
	// (or is removed from the config). By default a shutdown disconnects
	// cleanly and wills do not fire, since the clients did nothing wrong.
	WillsOnShutdown bool `json:"wills_on_shutdown,omitempty"`

	// Most publishes per second one session may make; more are answered
	// with code 4051. Default: no limit.
	MaxPublishRate float64 `json:"max_publish_rate,omitempty"`

	// Share names (the level after $share/) of the MQTT 5 shared
	// subscriptions that clients with a broker connection of their own (a
	// client ID) may join: "$share/workers/jobs/+" needs "workers"; "*"
	// opens every share group. A member takes its share of the group's
	// messages from the other members, a backend's workers connected
	// straight to the broker included, so no group is open by default:
	// shared subscriptions are refused with code 4031.
	SharedSubscriptions []string `json:"shared_subscriptions,omitempty"`

	// Origins (scheme://host[:port], as browsers send them) whose pages
	// may open sessions; https://*.example.com admits every subdomain of
	// example.com. Pages of the gateway's own origin always may; "*"
	// allows every origin.
	// Requests without an Origin header (Node.js, native apps) are not
	// browsers and are not checked. {env.*} placeholders work; one may
	// give several origins, separated by commas or spaces.
	AllowOrigins []string `json:"allow_origins,omitempty"`

	// Largest message payload, in bytes, in either direction. Default:
	// 1 MiB. At most 128 MiB.
	MaxMessageSize int64 `json:"max_message_size,omitempty"`

	// How long a session survives without a connection, so a client can
	// resume it without loss. Default: 30s.
	SessionTimeout caddy.Duration `json:"session_timeout,omitempty"`

	// Interval of heartbeats on idle connections, which keeps proxies from
	// cutting them and finds dead peers. Default: 20s (below the 30 s idle
	// timeout common in proxies). At least 100ms.
	Heartbeat caddy.Duration `json:"heartbeat,omitempty"`

	// Most broker clients one session may create. Default: 16.
	MaxClientsPerSession int `json:"max_clients_per_session,omitempty"`

	// Most subscriptions one broker client may hold. Default: 256.
	MaxSubscriptionsPerClient int `json:"max_subscriptions_per_client,omitempty"`

	// Longest topic name or filter, in bytes, that a web client may
	// publish to, subscribe to, or give as a will's or response topic;
	// longer ones get 4030 (a topic) or 4031 (a filter). The gateway holds
	// every subscription's filter in memory, more than once, so MQTT's own
	// limit of 65,535 bytes would let one session hold hundreds of MB.
	// Default: 1024. At most 65535.
	MaxTopicLength int `json:"max_topic_length,omitempty"`

	// Most frames queued for a client that reads slowly; past it, overflow
	// decides (code 4050). Also the most requests of a session that may
	// wait to be handled (for the broker, a hook, or the requests before
	// them); more are answered at once with code 4051 (UNSUBSCRIBE and
	// DISCONNECT, which let go, may take twice the room). Default: 10000.
	MaxQueuedFrames int `json:"max_queued_frames,omitempty"`

	// Most bytes queued for a slow client, and most bytes (payloads, with
	// a small overhead per request) of a session's requests waiting to be
	// handled; more get 4051, as for max_queued_frames. Default: 16 MiB.
	MaxQueuedBytes int64 `json:"max_queued_bytes,omitempty"`

	// Frames already written that a session keeps so a client that lost
	// its connection can resume without loss. Default: 256.
	ReplayFrames int `json:"replay_frames,omitempty"`

	// Bytes of written frames kept for resumption. Default: 4 MiB.
	ReplayBytes int64 `json:"replay_bytes,omitempty"`

	// Highest frequency, in messages per second per topic, a subscription
	// may ask for; QoS 0 values beyond it are conflated (the latest value
	// of each topic is always delivered). Every QoS 0 subscription gets it,
	// those asking for no limit included; QoS 1 and 2 are not touched, so
	// messages that must all arrive (chat) go at QoS 1. At least 0.001 (a
	// message per 1000 s). Default: no cap.
	MaxFrequency float64 `json:"max_frequency,omitempty"`

	// Highest bandwidth, in bytes per second, a session may receive;
	// waiting QoS 0 values are conflated per topic to respect it. Default:
	// no cap.
	MaxBandwidth int64 `json:"max_bandwidth,omitempty"`

	// How long a broker message may wait before it is written, so that
	// messages arriving meanwhile share its write: a client then gets k
	// messages in one write instead of k writes, which divides the
	// gateway's CPU per message (mostly the kernel's cost of each write)
	// by about k, at the price of up to this much latency. Worth it for a
	// high fan-out of frequent messages (dashboards of many sensors).
	// Results, notices and the session's end are never delayed. Messages
	// waiting for the delay count towards max_queued_frames and
	// max_queued_bytes (not towards conflate_after), which must hold what a
	// session receives within it. Default: 0, every message is written at
	// once. Must be shorter than heartbeat.
	WriteDelay caddy.Duration `json:"write_delay,omitempty"`

	// Frames waiting for a client past which QoS 0 messages replace the
	// waiting value of their topic instead of queuing (adaptive
	// throttling of slow clients), once they have waited 20 ms without
	// the connection taking any: a burst that a client keeps up with is
	// not conflated. Default: 64.
	ConflateAfter int `json:"conflate_after,omitempty"`

	// What happens when a slow client's queue is full and a QoS 1/2
	// message arrives: "notify" (default) drops it and tells the client
	// with an overflow notice (code 4050) counting the dropped messages;
	// "close" ends the session with code 4050.
	Overflow string `json:"overflow,omitempty"`

	base    string // BasePath, cleaned
	manager *session.Manager
	gw      *gateway
	events  *caddyevents.App // its config's: tells configs apart
	poolKey string           // set once Provision holds a reference in gateways
	server  *transport.Server
	origins *originSet
	refused *refusedOrigins
	logger  *zap.Logger
}

// Defaults of the handler's settings.
const (
	DefaultMaxMessageSize            = 1 << 20
	MaxMaxMessageSize                = 128 << 20
	DefaultSessionTimeout            = 30 * time.Second
	DefaultHeartbeat                 = 20 * time.Second
	MinHeartbeat                     = 100 * time.Millisecond
	DefaultMaxClientsPerSession      = 16
	DefaultMaxSubscriptionsPerClient = 256
	DefaultMaxTopicLength            = 1024
	DefaultMaxQueuedFrames           = 10000
	DefaultMaxQueuedBytes            = 16 << 20
	DefaultReplayFrames              = 256
	DefaultReplayBytes               = 4 << 20
)

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mqtt_gateway",
		New: func() caddy.Module { return new(Handler) },
	}
}

func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Provision applies defaults, starts embedded brokers and prepares the
// session manager.
func (h *Handler) Provision(ctx caddy.Context) error {
	h.logger = ctx.Logger()
	registerConnContext(ctx)
	orDefault(&h.MaxMessageSize, DefaultMaxMessageSize)
	orDefault(&h.SessionTimeout, caddy.Duration(DefaultSessionTimeout))
	orDefault(&h.Heartbeat, caddy.Duration(DefaultHeartbeat))
	orDefault(&h.MaxClientsPerSession, DefaultMaxClientsPerSession)
	orDefault(&h.MaxSubscriptionsPerClient, DefaultMaxSubscriptionsPerClient)
	orDefault(&h.MaxTopicLength, DefaultMaxTopicLength)
	orDefault(&h.MaxQueuedFrames, DefaultMaxQueuedFrames)
	orDefault(&h.MaxQueuedBytes, DefaultMaxQueuedBytes)
	orDefault(&h.ReplayFrames, DefaultReplayFrames)
	orDefault(&h.ReplayBytes, DefaultReplayBytes)
	// Placeholders first, so that validate sees the origins they give.
	repl := caddy.NewReplacer()
	if err := h.expandOrigins(repl); err != nil {
		return err
	}
	if err := h.validate(); err != nil {
		return err
	}
	if h.BasePath != "" {
		h.base = path.Clean(h.BasePath)
	} else {
		h.logger.Warn("mqtt_gateway has no base path: it answers every request whose path ends in ws, stream, poll, send or a client file name " +
			"(client.js, session.js…) that its route lets through; give it a path matcher (mqtt_gateway /mqtt/*) or base_path")
	}
	// Secrets usually come from the environment: {env.MQTT_PASS}.
	for _, b := range h.Brokers {
		written := b.URL
		for _, field := range []*string{&b.URL, &b.Username, &b.Password, &b.ClientIDPrefix} {
			*field = repl.ReplaceKnown(*field, "")
		}
		if b.URL != written && b.Embedded == nil {
			// Name the placeholders, not what they gave: an unset variable
			// is the likely cause, and the value may hold a secret.
			if _, err := session.ParseBrokerURL(b.URL); err != nil {
				return fmt.Errorf("mqtt_gateway: broker %q: url %s: %v (are its environment variables set?)", b.Name, written, err)
			}
		}
	}
	origins, err := parseOrigins(h.AllowOrigins)
	if err != nil {
		return fmt.Errorf("mqtt_gateway: %v", err)
	}
	h.origins, h.refused = origins, &refusedOrigins{}
	if strings.Contains(h.Name, "{") { // {env.GATEWAY_NAME}
		written := h.Name
		if h.Name = strings.TrimSpace(repl.ReplaceKnown(h.Name, "")); h.Name == "" || strings.Contains(h.Name, "{") {
			return fmt.Errorf("mqtt_gateway: name %s gives no name (is its environment variable set?)", written)
		}
	}
	key := h.gatewayKey()
	// Before the hooks load: loading a module clears its raw JSON.
	settings, err := h.gatewaySettings()
	if err != nil {
		return fmt.Errorf("mqtt_gateway: %v", err)
	}
	cfg := session.Config{
		Name:                      strings.TrimPrefix(key, "mqtt_gateway:"),
		Brokers:                   h.Brokers,
		SessionTimeout:            time.Duration(h.SessionTimeout),
		Heartbeat:                 time.Duration(h.Heartbeat),
		MaxMessageSize:            int(h.MaxMessageSize),
		MaxClientsPerSession:      h.MaxClientsPerSession,
		MaxSubscriptionsPerClient: h.MaxSubscriptionsPerClient,
		MaxTopicLength:            h.MaxTopicLength,
		MaxPendingFrames:          h.MaxQueuedFrames,
		MaxPendingBytes:           int(h.MaxQueuedBytes),
		ReplayFrames:              h.ReplayFrames,
		ReplayBytes:               int(h.ReplayBytes),
		ConflateAfter:             h.ConflateAfter,
		OverflowClose:             h.Overflow == "close",
		MaxFrequency:              h.MaxFrequency,
		MaxBandwidth:              h.MaxBandwidth,
		MaxPublishRate:            h.MaxPublishRate,
		SharedSubscriptions:       h.SharedSubscriptions,
		MaxSessions:               h.MaxSessions,
		MaxSessionsPerIP:          h.MaxSessionsPerIP,
		WillsOnShutdown:           h.WillsOnShutdown,
		WriteDelay:                time.Duration(h.WriteDelay),
		HookTimeout:               time.Duration(h.HookTimeout),
		Logger:                    h.logger,
		DeferEmbedded:             true, // brokersApp starts them
	}
	eventsApp, err := ctx.App("events")
	if err != nil {
		return fmt.Errorf("mqtt_gateway: events: %v", err)
	}
	events := eventsApp.(*caddyevents.App)
	cfg.Emit = func(event string, data map[string]any) {
		// Several gateways may run in one Caddy: say which.
		data["gateway"] = cfg.Name
		// Handlers may be slow; sessions and brokers must not wait.
		go events.Emit(ctx, event, data)
	}
	policy, err := h.provisionHooks(ctx)
	if err != nil {
		return err
	}
	if policy.authz != nil {
		cfg.Policy = policy
	}
	// One manager per gateway name, kept across reloads: Caddy provisions
	// the new config before it cleans up the old one, so an unchanged
	// gateway's use count never drops to zero and its sessions live on.
	// If Provision fails, Caddy calls Cleanup, which gives the pool's
	// reference back: only once LoadOrNew has taken one (poolKey set).
	// Before, that reference would be the running config's own, and a
	// reload that failed early (a hook that does not provision) ended the
	// running gateway.
	val, loaded, err := gateways.LoadOrNew(key, func() (caddy.Destructor, error) {
		m, err := session.NewManager(cfg)
		if err != nil {
			return nil, err
		}
		return &gateway{Manager: m, load: events, settings: string(settings), aliveStop: make(chan struct{})}, nil
	})
	if err != nil {
		return err
	}
	h.poolKey = key
	g := val.(*gateway)
	switch {
	case !loaded:
	case g.load == events:
		// Two blocks of one config are one gateway (several sites may share
		// its sessions), but only with the same settings: otherwise the
		// last would silently configure both, brokers included.
		if err := sameGateway(g.settings, string(settings), cfg.Name); err != nil {
			return err
		}
	case g.pending != nil && g.pending.load == events:
		// Another block of the reloading config: the same rule.
		if err := sameGateway(g.pending.settings, string(settings), cfg.Name); err != nil {
			return err
		}
	default:
		// A reload. The new settings apply once Caddy runs the new config
		// (commitReload): a reload that fails later on (another module, a
		// port taken at start) must leave the running gateway untouched,
		// its broker connections included. They are checked now, so that
		// a bad one fails the reload.
		if err := session.CheckConfig(cfg); err != nil {
			return fmt.Errorf("mqtt_gateway: %v", err)
		}
		g.pending = &applied{cfg: cfg, load: events, settings: string(settings)}
		if err := events.On("started", commitReload{g: g, load: events, log: h.logger, name: cfg.Name}); err != nil {
			return fmt.Errorf("mqtt_gateway: %v", err)
		}
	}
	if err := events.On("started", markRan{g}); err != nil {
		return fmt.Errorf("mqtt_gateway: %v", err)
	}
	m := g.Manager
	h.manager, h.gw, h.events = m, g, events
	brokers, err := ctx.App("mqtt_gateway_brokers")
	if err != nil {
		return fmt.Errorf("mqtt_gateway: %v", err)
	}
	if err := brokers.(*brokersApp).add(g, events, cfg); err != nil {
		return fmt.Errorf("mqtt_gateway: %v", err)
	}
	if reg := ctx.GetMetricsRegistry(); reg != nil {
		if err := m.Metrics().Register(reg); err != nil {
			return fmt.Errorf("mqtt_gateway: metrics: %v", err)
		}
	}
	policy.metrics = m.Metrics()
	h.server = &transport.Server{Manager: m, Log: h.logger, CheckOrigin: h.originAllowed, Origin: origin, ResponseLimit: serverWriteTimeout}
	if policy.authn != nil {
		h.server.Authenticate = policy.authenticate
	}
	return nil
}

// validate checks settings that do not depend on the environment.
func (h *Handler) validate() error {
	if len(h.Brokers) == 0 {
		return fmt.Errorf("mqtt_gateway: at least one broker is required")
	}
	if h.BasePath != "" && (!strings.HasPrefix(h.BasePath, "/") || strings.ContainsAny(h.BasePath, "*?[")) {
		return fmt.Errorf("mqtt_gateway: base_path %q must be a path such as /mqtt", h.BasePath)
	}
	seen := map[string]bool{}
	for _, b := range h.Brokers {
		if seen[b.Name] {
			return fmt.Errorf("mqtt_gateway: duplicate broker name %q", b.Name)
		}
		seen[b.Name] = true
	}
	if err := checkMaxTopicLength(h.MaxTopicLength); err != nil {
		return fmt.Errorf("mqtt_gateway: %v", err)
	}
	if err := checkMaxMessageSize(h.MaxMessageSize); err != nil {
		return fmt.Errorf("mqtt_gateway: %v", err)
	}
	if h.Overflow != "" && h.Overflow != "notify" && h.Overflow != "close" {
		return fmt.Errorf("mqtt_gateway: overflow must be notify or close, not %q", h.Overflow)
	}
	// JSON configs reach here unchecked by the Caddyfile parser: every
	// number is 0 for its default, or positive.
	for _, f := range []struct {
		name     string
		negative bool
	}{
		{"max_frequency", h.MaxFrequency < 0}, {"max_bandwidth", h.MaxBandwidth < 0},
		{"conflate_after", h.ConflateAfter < 0}, {"max_sessions", h.MaxSessions < 0},
		{"max_sessions_per_ip", h.MaxSessionsPerIP < 0}, {"max_publish_rate", h.MaxPublishRate < 0},
		{"max_clients_per_session", h.MaxClientsPerSession < 0},
		{"max_subscriptions_per_client", h.MaxSubscriptionsPerClient < 0},
		{"max_queued_frames", h.MaxQueuedFrames < 0}, {"max_queued_bytes", h.MaxQueuedBytes < 0},
		{"replay_frames", h.ReplayFrames < 0}, {"replay_bytes", h.ReplayBytes < 0},
		{"hook_timeout", h.HookTimeout < 0}, {"session_timeout", h.SessionTimeout < 0},
		{"heartbeat", h.Heartbeat < 0}, {"write_delay", h.WriteDelay < 0},
		{"alive_interval", h.AliveInterval < 0},
	} {
		if f.negative {
			return fmt.Errorf("mqtt_gateway: %s must not be negative", f.name)
		}
	}
	if h.MaxFrequency != 0 {
		if err := session.CheckFrequency(h.MaxFrequency); err != nil {
			return fmt.Errorf("mqtt_gateway: max_frequency: %v", err)
		}
	}
	if err := checkHeartbeat(h.Heartbeat); err != nil {
		return fmt.Errorf("mqtt_gateway: %v", err)
	}
	if err := checkWriteDelay(h.WriteDelay, h.Heartbeat); err != nil {
		return fmt.Errorf("mqtt_gateway: %v", err)
	}
	if _, err := parseOrigins(h.AllowOrigins); err != nil {
		return fmt.Errorf("mqtt_gateway: %v", err)
	}
	if err := checkShareNames(h.SharedSubscriptions); err != nil {
		return fmt.Errorf("mqtt_gateway: %v", err)
	}
	if h.AliveInterval > 0 && h.Authorize == nil {
		return fmt.Errorf("mqtt_gateway: alive_interval: the alive notifications go to the authorize hook, and there is none")
	}
	if h.AliveInterval > 0 && time.Duration(h.AliveInterval) < time.Second {
		return fmt.Errorf("mqtt_gateway: alive_interval %v is under a second", time.Duration(h.AliveInterval))
	}
	return nil
}

// expandOrigins replaces the placeholders of allow_origins ({env.ORIGINS}),
// each of which may give several origins, separated by commas or spaces, as
// an environment variable holds a list.
func (h *Handler) expandOrigins(repl *caddy.Replacer) error {
	var out []string
	for _, o := range h.AllowOrigins {
		if !strings.Contains(o, "{") {
			out = append(out, o)
			continue
		}
		list := strings.FieldsFunc(repl.ReplaceKnown(o, ""), func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
		if len(list) == 0 {
			return fmt.Errorf("mqtt_gateway: allow_origins: %s gives no origin (is its environment variable set?)", o)
		}
		for _, e := range list {
			if strings.Contains(e, "{") {
				return fmt.Errorf("mqtt_gateway: allow_origins: %s: %q is not an origin (only placeholders known when the config loads, such as {env.*}, work here)", o, e)
			}
		}
		out = append(out, list...)
	}
	h.AllowOrigins = out
	return nil
}

// The checks of single settings, shared by validate (JSON configs) and the
// Caddyfile parser (which gives their errors a line). 0 is the default.

func checkMaxMessageSize(n int64) error {
	if n < 0 || n > MaxMaxMessageSize {
		return fmt.Errorf("max_message_size must be between 1 and %d bytes (128 MiB)", MaxMaxMessageSize)
	}
	return nil
}

func checkMaxTopicLength(n int) error {
	if n < 0 || n > topic.MaxLength {
		return fmt.Errorf("max_topic_length must be between 1 and %d bytes (MQTT's limit)", topic.MaxLength)
	}
	return nil
}

func checkHeartbeat(d caddy.Duration) error {
	if d > 0 && d < caddy.Duration(MinHeartbeat) {
		// Every idle connection hears a PING that often.
		return fmt.Errorf("heartbeat %v is below %v", time.Duration(d), MinHeartbeat)
	}
	return nil
}

func checkWriteDelay(delay, heartbeat caddy.Duration) error {
	if delay > 0 && delay >= heartbeatOrDefault(heartbeat) {
		// A client hears something at least every heartbeat; a write
		// delay as long would hold messages past the time it takes a
		// silent connection for dead.
		return fmt.Errorf("write_delay (%v) must be shorter than heartbeat (%v)",
			time.Duration(delay), time.Duration(heartbeatOrDefault(heartbeat)))
	}
	return nil
}

func heartbeatOrDefault(d caddy.Duration) caddy.Duration {
	if d == 0 {
		return caddy.Duration(DefaultHeartbeat)
	}
	return d
}

// Validate implements caddy.Validator.
func (h *Handler) Validate() error { return h.validate() }

// Cleanup releases the gateway: when no config uses it any more (it was
// removed, or Caddy stops), its sessions end with code 4090 (clients
// reconnect by themselves) and its broker connections close cleanly.
func (h *Handler) Cleanup() error {
	if h.poolKey == "" {
		return nil
	}
	if g := h.gw; g != nil && g.pending != nil && g.pending.load == h.events {
		g.pending = nil // its config never ran: the reload failed
	}
	_, err := gateways.Delete(h.poolKey)
	return err
}

// Interface guards.
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
