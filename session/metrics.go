package session

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are a gateway's Prometheus collectors. They belong to the
// Manager, so counts survive config reloads, and are registered in each new
// config's registry (Caddy's, served by its metrics handler and admin
// endpoint). Labels are few and bounded: transport, broker, mode, result,
// code; never topics or client IDs.
type Metrics struct {
	Sessions       prometheus.Gauge
	SessionsOpened *prometheus.CounterVec // transport
	SessionsClosed *prometheus.CounterVec // code
	Connections    *prometheus.GaugeVec   // transport
	BrokerClients  *prometheus.GaugeVec   // broker, mode
	BrokerUp       *prometheus.GaugeVec   // broker
	Subscriptions  *prometheus.GaugeVec   // broker: distinct filters held at brokers
	MessagesIn     *prometheus.CounterVec // broker: messages from brokers
	MessagesOut    prometheus.Counter     // deliveries queued to sessions
	Conflated      prometheus.Counter
	Dropped        prometheus.Counter
	BytesOut       *prometheus.CounterVec // transport
	Publishes      *prometheus.CounterVec // result: web client publishes to brokers
	Recoveries     *prometheus.CounterVec // result: ok, gap, unknown, ...
	SendsRefused   *prometheus.CounterVec // code: /send requests for a session not here
	HookCalls      *prometheus.CounterVec // action, result
	HookDuration   *prometheus.HistogramVec
	// DeliveryDelay, by transport, is how long the oldest live message of
	// each write to a client waited since it came from the broker: how far
	// behind clients are (a slow link, a stall, a frequency limit).
	DeliveryDelay *prometheus.HistogramVec
	// RequestsRefused counts, by action, requests answered 4051 because
	// their session's requests waiting for the broker or a hook had
	// reached max_queued_frames or max_queued_bytes (backlog.go).
	RequestsRefused *prometheus.CounterVec
	// Refusals counts, by action and code, the requests the gateway
	// refused itself (refusals.go).
	Refusals *prometheus.CounterVec
	// NotificationsDropped counts, by action, notifications the authorize
	// hook was not sent: their session had NotifyQueueLen waiting.
	NotificationsDropped *prometheus.CounterVec
	// Queued reports the sessions' unwritten frames when scraped.
	Queued *queueCollector
}

func newMetrics(gateway string) *Metrics {
	labels := prometheus.Labels{"gateway": gateway}
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "mqtt_gateway", Name: name, Help: help, ConstLabels: labels}
	}
	counter := func(name, help string, l ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts(opts(name, help)), l)
	}
	gauge := func(name, help string, l ...string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts(opts(name, help)), l)
	}
	return &Metrics{
		Sessions:       prometheus.NewGauge(prometheus.GaugeOpts(opts("sessions", "Live sessions, with or without a connection."))),
		SessionsOpened: counter("sessions_opened_total", "Sessions opened, by the transport that opened them.", "transport"),
		SessionsClosed: counter("sessions_closed_total", "Sessions ended, by close code (0: by the client).", "code"),
		Connections:    gauge("connections", "Transport connections bound to sessions.", "transport"),
		BrokerClients:  gauge("broker_clients", "Web clients attached to brokers.", "broker", "mode"),
		BrokerUp:       gauge("broker_connections_up", "Broker connections that are up.", "broker"),
		Subscriptions:  gauge("broker_subscriptions", "Distinct filters the gateway holds at brokers (shared connections).", "broker"),
		MessagesIn:     counter("messages_in_total", "Messages received from brokers.", "broker"),
		MessagesOut:    prometheus.NewCounter(prometheus.CounterOpts(opts("messages_out_total", "Message deliveries to sessions, before throttling and conflation."))),
		Conflated:      prometheus.NewCounter(prometheus.CounterOpts(opts("messages_conflated_total", "QoS 0 values replaced by newer ones before being sent."))),
		Dropped:        prometheus.NewCounter(prometheus.CounterOpts(opts("messages_dropped_total", "Messages dropped for slow clients (each one notified)."))),
		BytesOut:       counter("bytes_out_total", "Bytes written to clients.", "transport"),
		Publishes:      counter("publishes_total", "Publishes of web clients, by result: ok, error (the broker's), refused (the gateway's).", "result"),
		Recoveries:     counter("recoveries_total", "Session rebinds, by result.", "result"),
		SendsRefused:   counter("sends_refused_total", "/send requests refused, by code: 4010, a session this gateway does not hold (behind a load balancer, missing affinity), 4011, a wrong secret.", "code"),
		HookCalls:      counter("hook_calls_total", "Authentication and authorization decisions, by action and result.", "action", "result"),
		HookDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "mqtt_gateway", Name: "hook_duration_seconds",
			Help: "Time to a hook decision.", ConstLabels: labels, Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}},
			[]string{"action"}),
		DeliveryDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "mqtt_gateway", Name: "delivery_delay_seconds",
			Help: "Time from a broker message's arrival to the write that carries it to a client, for the oldest live message of each write.", ConstLabels: labels,
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"transport"}),
		RequestsRefused: counter("requests_refused_total",
			"Requests answered 4051 at once, by action: their session already had max_queued_frames or max_queued_bytes of requests waiting for the broker or a hook.", "action"),
		Refusals: counter("refusals_total",
			"Requests the gateway refused itself, by action (publish, subscribe) and code: 4030 invalid topic, 4031 invalid filter, 4032 too large, 4033 invalid QoS, 4051 max_publish_rate or too many requests waiting, 4053 too many subscriptions, 4043 what an MQTT 3.1.1 broker cannot carry, 4003 bad request (not connected, bad properties), 4022 waiting behind a request the authorize hook did not answer within hook_timeout; open 4021: a page's origin not in allow_origins. Hook denials are in hook_calls_total.", "action", "code"),
		NotificationsDropped: counter("hook_notifications_dropped_total",
			fmt.Sprintf("Notifications (unsubscribe, disconnect) not sent to the authorize hook, by action: their session had %d waiting for it.", NotifyQueueLen), "action"),
	}
}

// forgetBroker drops the series of a broker a reload removed: left at 0,
// broker_connections_up would keep an alert firing for a broker that is no
// longer configured. Its hubs are out of the gauges already (retireLocked),
// and its clients' departures leave them alone (brokerRuntime.removed).
func (m *Metrics) forgetBroker(name string) {
	m.BrokerUp.DeleteLabelValues(name)
	m.Subscriptions.DeleteLabelValues(name)
	m.MessagesIn.DeleteLabelValues(name)
	m.BrokerClients.DeletePartialMatch(prometheus.Labels{"broker": name})
}

// Register adds the collectors to a registry; collectors already there
// (the same config registering twice) are fine.
func (m *Metrics) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.Sessions, m.SessionsOpened, m.SessionsClosed, m.Connections,
		m.BrokerClients, m.BrokerUp, m.Subscriptions, m.MessagesIn, m.MessagesOut, m.Conflated, m.Dropped,
		m.BytesOut, m.Publishes, m.Recoveries, m.SendsRefused, m.HookCalls, m.HookDuration, m.DeliveryDelay, m.RequestsRefused, m.Refusals, m.NotificationsDropped,
		m.Queued} {
		if err := r.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return err
			}
		}
	}
	return nil
}
