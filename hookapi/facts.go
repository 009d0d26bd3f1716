package hookapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// Action names what a web client is doing. It is the path of the synthetic
// request ("/" + action), the X-Mqtt-Action header, the "action" field of
// the JSON body and the {http.mqtt_gateway.action} placeholder.
type Action string

// The actions. Open is the authenticate hook; the others go to authorize.
// Unsubscribe, disconnect and close are notifications: the chain runs, so a
// hook service can keep track, but its answer is ignored.
const (
	ActionOpen        Action = "open"        // open a gateway session (authenticate)
	ActionConnect     Action = "connect"     // create a client on a named broker
	ActionSubscribe   Action = "subscribe"   // subscribe to a topic filter
	ActionPublish     Action = "publish"     // publish to a topic name
	ActionUnsubscribe Action = "unsubscribe" // notification
	ActionDisconnect  Action = "disconnect"  // notification
	ActionClose       Action = "close"       // notification: the session ended
	// ActionAlive is a notification of the instance's, with no session:
	// it is running (every alive_interval). A service that keeps track of
	// sessions (presence) forgets those of an instance it stops hearing
	// from: a Caddy killed or cut off sends no close.
	ActionAlive Action = "alive"
)

// Valid reports whether a is one of the actions above.
func (a Action) Valid() bool {
	switch a {
	case ActionOpen, ActionConnect, ActionSubscribe, ActionPublish,
		ActionUnsubscribe, ActionDisconnect, ActionClose, ActionAlive:
		return true
	}
	return false
}

// IsNotification reports whether the answer to a is ignored.
func (a Action) IsNotification() bool {
	return a == ActionUnsubscribe || a == ActionDisconnect || a == ActionClose || a == ActionAlive
}

// Facts are what an action is about. Strings are as the client or the
// gateway gave them; the gateway validates topics and filters before it
// asks.
type Facts struct {
	Action Action // what is asked
	// Instance is the Caddy process the session lives in: made at random
	// when it starts, the same across reloads. Sessions end with their
	// instance; one that stops sending alive notifications (ActionAlive)
	// has ended, whether or not its closes came.
	Instance  string
	User      string // the session's user, as authenticate decided (empty on open)
	SessionID string // the gateway session
	Broker    string // broker name from the Caddyfile (connect and later)
	ClientID  string // MQTT client id; empty for the shared connection
	Topic     string // topic name for publish, topic filter for (un)subscribe
	QoS       byte   // QoS of a publish or subscribe
	Retain    bool   // retain flag of a publish
	Size      int    // payload bytes of a publish
	// ResponseTopic is a publish's MQTT 5 response topic, where whoever
	// answers it publishes, on the sender's behalf: a policy that keeps
	// users to their own topics checks it too (empty: none).
	ResponseTopic string
	// Will marks a publish that is a CONNECT's will (decided when the
	// client connects; the broker may publish it later, or never).
	Will bool
	// CleanStart and SessionExpiry are a connect's: whether it starts a
	// new broker session, and how long (seconds; 4294967295: for ever)
	// the broker keeps the session after the connection ends, holding
	// the client's subscriptions and queueing its messages. A policy
	// that must bound what users leave on the broker checks it.
	CleanStart    bool
	SessionExpiry uint32

	// Credentials the web client gave: for open, the user and password of
	// openSession; for connect, the MQTT username and password. They are
	// sent in the JSON body (and as the Authorization header, see README),
	// never in X-Mqtt-* headers, and never logged.
	Username string
	Password []byte
}

// The request headers that carry the facts. Their values are the facts'
// string forms; a value that an HTTP header cannot carry unchanged
// (control characters, leading or trailing blanks) is left out, and the
// JSON body, which always has every fact, is the reference.
const (
	HeaderAction   = "X-Mqtt-Action"
	HeaderInstance = "X-Mqtt-Instance"
	HeaderUser     = "X-Mqtt-User"
	HeaderSession  = "X-Mqtt-Session"
	HeaderBroker   = "X-Mqtt-Broker"
	HeaderClientID = "X-Mqtt-Client-Id"
	HeaderTopic    = "X-Mqtt-Topic"
	HeaderQoS      = "X-Mqtt-Qos"
	HeaderRetain   = "X-Mqtt-Retain"
	HeaderSize     = "X-Mqtt-Size"
	HeaderUsername = "X-Mqtt-Username"
	// Only on a publish: its response topic, if it has one, and whether it
	// is a will.
	HeaderResponseTopic = "X-Mqtt-Response-Topic"
	HeaderWill          = "X-Mqtt-Will"
	// Only on a connect.
	HeaderCleanStart    = "X-Mqtt-Clean-Start"
	HeaderSessionExpiry = "X-Mqtt-Session-Expiry"
)

// The response headers a hook answers with. HeaderUser is shared with the
// request: on an allowing answer to open it names the session's user.
const (
	HeaderErrorCode    = "X-Mqtt-Error-Code"
	HeaderErrorMessage = "X-Mqtt-Error-Message"
	HeaderLimitPrefix  = "X-Mqtt-Limit-"
)

// header is one fact as a request header and a placeholder.
type header struct {
	name        string // canonical header name
	placeholder string
	value       func(*Facts) string
}

// factHeaders lists the facts that travel as headers and placeholders, in
// the order of the README.
var factHeaders = []header{
	{HeaderAction, "http.mqtt_gateway.action", func(f *Facts) string { return string(f.Action) }},
	{HeaderInstance, "http.mqtt_gateway.instance", func(f *Facts) string { return f.Instance }},
	{HeaderUser, "http.mqtt_gateway.user", func(f *Facts) string { return f.User }},
	{HeaderSession, "http.mqtt_gateway.session", func(f *Facts) string { return f.SessionID }},
	{HeaderBroker, "http.mqtt_gateway.broker", func(f *Facts) string { return f.Broker }},
	{HeaderClientID, "http.mqtt_gateway.client_id", func(f *Facts) string { return f.ClientID }},
	{HeaderTopic, "http.mqtt_gateway.topic", func(f *Facts) string { return f.Topic }},
	{HeaderQoS, "http.mqtt_gateway.qos", func(f *Facts) string { return strconv.Itoa(int(f.QoS)) }},
	{HeaderRetain, "http.mqtt_gateway.retain", func(f *Facts) string { return strconv.FormatBool(f.Retain) }},
	{HeaderSize, "http.mqtt_gateway.size", func(f *Facts) string { return strconv.Itoa(f.Size) }},
	{HeaderUsername, "http.mqtt_gateway.username", func(f *Facts) string { return f.Username }},
	{HeaderResponseTopic, "http.mqtt_gateway.response_topic", func(f *Facts) string { return f.ResponseTopic }},
	{HeaderWill, "http.mqtt_gateway.will", func(f *Facts) string {
		if f.Action != ActionPublish {
			return ""
		}
		return strconv.FormatBool(f.Will)
	}},
	{HeaderCleanStart, "http.mqtt_gateway.clean_start", func(f *Facts) string {
		if f.Action != ActionConnect {
			return ""
		}
		return strconv.FormatBool(f.CleanStart)
	}},
	{HeaderSessionExpiry, "http.mqtt_gateway.session_expiry", func(f *Facts) string {
		if f.Action != ActionConnect {
			return ""
		}
		return strconv.FormatUint(uint64(f.SessionExpiry), 10)
	}},
}

// headerSafe reports whether v survives as an HTTP header value unchanged:
// no control characters (HTAB aside) and no blanks at either end, which
// HTTP parsers trim.
func headerSafe(v string) bool {
	if v == "" {
		return true
	}
	if v[0] == ' ' || v[0] == '\t' || v[len(v)-1] == ' ' || v[len(v)-1] == '\t' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < 0x20 && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// body is the JSON body of the synthetic request. Every field is always
// present, so hook services need no defaults; password_base64 replaces
// password when the password is not valid UTF-8 (JSON strings cannot carry
// arbitrary bytes).
type body struct {
	Action         Action `json:"action"`
	Instance       string `json:"instance"`
	User           string `json:"user"`
	Session        string `json:"session"`
	Broker         string `json:"broker"`
	ClientID       string `json:"client_id"`
	Topic          string `json:"topic"`
	QoS            int    `json:"qos"`
	Retain         bool   `json:"retain"`
	Size           int    `json:"size"`
	ResponseTopic  string `json:"response_topic"`
	Will           bool   `json:"will"`
	CleanStart     bool   `json:"clean_start"`
	SessionExpiry  uint32 `json:"session_expiry"`
	Username       string `json:"username"`
	Password       string `json:"password"`
	PasswordBase64 string `json:"password_base64,omitempty"`
}

func (f *Facts) marshalBody() []byte {
	b := body{
		Action:        f.Action,
		Instance:      f.Instance,
		User:          f.User,
		Session:       f.SessionID,
		Broker:        f.Broker,
		ClientID:      f.ClientID,
		Topic:         f.Topic,
		QoS:           int(f.QoS),
		Retain:        f.Retain,
		Size:          f.Size,
		ResponseTopic: f.ResponseTopic,
		Will:          f.Will,
		CleanStart:    f.CleanStart,
		SessionExpiry: f.SessionExpiry,
		Username:      f.Username,
	}
	if utf8.Valid(f.Password) {
		b.Password = string(f.Password)
	} else {
		b.PasswordBase64 = base64.StdEncoding.EncodeToString(f.Password)
	}
	out, err := json.Marshal(&b)
	if err != nil {
		// Only strings, numbers and bools: Marshal cannot fail.
		panic("hookapi: encoding facts: " + err.Error())
	}
	return out
}

// factsKey is the context key of the facts of a synthetic request; it is
// unexported so that nothing but the Runner can set it, and a web client
// cannot forge what MatchTopic reads.
type factsKey struct{}

// FactsFromContext returns the facts of the synthetic request whose context
// is ctx, for handlers and matchers written in Go that run inside a hook
// chain. It reports false for any other request.
func FactsFromContext(ctx context.Context) (Facts, bool) {
	f, ok := ctx.Value(factsKey{}).(*Facts)
	if !ok {
		return Facts{}, false
	}
	return *f, true
}
