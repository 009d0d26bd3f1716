package session

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/eclipse/paho.golang/paho"
)

// BrokerConfig names an MQTT broker web clients may use.
type BrokerConfig struct {
	// Name that web clients use to pick this broker:
	// `session.createClient("<name>")`. Required and unique per gateway.
	Name string `json:"name"`

	// URL of the broker: mqtt://host:port (TCP, default port 1883),
	// mqtts://host:port (TLS, default port 8883), ws://host:port/path or
	// wss://host:port/path (MQTT over WebSocket). Leave empty for an
	// embedded broker.
	URL string `json:"url,omitempty"`

	// Username the gateway presents to the broker for web clients that
	// give no credentials of their own at connect, on shared and
	// dedicated connections alike, so the broker's password never has to
	// reach a page. Clients that give their own credentials use those (and
	// get a shared connection of their own). External brokers only.
	Username string `json:"username,omitempty"`

	// Password that goes with username (or alone: MQTT 5 allows a password
	// without a username). A reload that changes only the password, or
	// the TLS files, keeps the broker connections up: they log in with
	// it when they next connect, and the gateway tries it at once on a
	// connection of its own and logs what the broker answered.
	Password string `json:"password,omitempty"`

	// Prefix of the MQTT client IDs of the gateway's shared connections (a
	// random suffix follows). Default: "mqttgw-". Dedicated connections
	// use the client ID the web client gives, which may not begin with
	// this prefix (4003): it would take over a shared connection.
	ClientIDPrefix string `json:"client_id_prefix,omitempty"`

	// MQTT keepalive of the gateway's connections. Default: 30s.
	KeepAlive caddy.Duration `json:"keepalive,omitempty"`

	// How long to wait for the broker when connecting. Default: 10s.
	ConnectTimeout caddy.Duration `json:"connect_timeout,omitempty"`

	// TLS settings for mqtts:// and wss:// URLs. Certificates are verified
	// against the system roots unless a CA is given.
	TLS *BrokerTLS `json:"tls,omitempty"`

	// MQTT version the gateway speaks to the broker: "5" (the default) or
	// "3.1.1", for brokers that speak only that (RabbitMQ before 3.13,
	// ActiveMQ Classic, Azure IoT Hub). On 3.1.1, what it cannot carry is
	// refused with 4043: message and will properties, and No Local,
	// Retain As Published and Retain Handling on dedicated connections.
	// External brokers only.
	MQTTVersion string `json:"mqtt_version,omitempty"`

	// Run an MQTT broker inside the gateway instead of connecting to an
	// external one (mochi-mqtt). Useful for demos, tests and small
	// deployments.
	Embedded *EmbeddedConfig `json:"embedded,omitempty"`

	serverURL *url.URL
	tlsConfig *tls.Config
	// tlsFiles is a digest of what the TLS files held when Prepare read
	// them: the paths are the same when a certificate is renewed in place,
	// and only the contents tell a reload that something changed.
	tlsFiles [sha256.Size]byte
}

// BrokerTLS configures TLS towards a broker.
type BrokerTLS struct {
	// PEM file of the certificate authorities that sign the broker's
	// certificate, instead of the system roots.
	CA string `json:"ca,omitempty"`

	// PEM file of a client certificate, for brokers that authenticate
	// clients by certificate. Needs key.
	Cert string `json:"cert,omitempty"`

	// PEM file of the client certificate's private key. Needs cert.
	Key string `json:"key,omitempty"`

	// Server name to verify the broker's certificate against, when it
	// differs from the URL's host.
	ServerName string `json:"server_name,omitempty"`

	// Skip verification of the broker's certificate. Dangerous: only for
	// testing.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// EmbeddedConfig configures an embedded broker.
type EmbeddedConfig struct {
	// TCP address (host:port) the embedded broker listens on, for devices
	// and tools such as mosquitto_pub. Default: 127.0.0.1 on a free port, reachable
	// only by the gateway and this host. The embedded broker accepts every
	// client, with any credentials or none, and the gateway's hooks do not
	// see what reaches it there: keep it on loopback, or behind a firewall.
	Listen string `json:"listen,omitempty"`
}

// Default values of broker settings.
const (
	DefaultClientIDPrefix = "mqttgw-"
	DefaultKeepAlive      = 30 * time.Second
	DefaultConnectTimeout = 10 * time.Second
)

// Prepare checks the configuration and fills in defaults. It reads TLS
// files, so errors name the file and the cause.
func (b *BrokerConfig) Prepare() error {
	if b.Name == "" {
		return fmt.Errorf("broker without a name")
	}
	if b.ClientIDPrefix == "" {
		b.ClientIDPrefix = DefaultClientIDPrefix
	}
	if b.KeepAlive == 0 {
		b.KeepAlive = caddy.Duration(DefaultKeepAlive)
	}
	if b.ConnectTimeout == 0 {
		b.ConnectTimeout = caddy.Duration(DefaultConnectTimeout)
	}
	if err := CheckKeepAlive(b.KeepAlive); err != nil {
		return fmt.Errorf("broker %q: %v", b.Name, err)
	}
	if b.ConnectTimeout < 0 {
		return fmt.Errorf("broker %q: connect_timeout %v must be positive", b.Name, time.Duration(b.ConnectTimeout))
	}
	if err := CheckMQTTVersion(b.MQTTVersion); err != nil {
		return fmt.Errorf("broker %q: %v", b.Name, err)
	}
	if b.MQTTVersion == "" {
		b.MQTTVersion = "5" // as the other defaults: spelling it out is no change on reload
	}
	if b.Embedded != nil {
		if b.MQTTVersion == MQTT311 {
			return fmt.Errorf("broker %q: mqtt_version %s applies to external brokers only (the embedded broker speaks MQTT 5)", b.Name, MQTT311)
		}
		if b.URL != "" {
			return fmt.Errorf("broker %q: url and embedded are exclusive", b.Name)
		}
		if b.Username != "" || b.Password != "" {
			return fmt.Errorf("broker %q: %v", b.Name, ErrEmbeddedCredentials)
		}
		if err := CheckListen(b.Embedded.Listen); err != nil {
			return fmt.Errorf("broker %q: %v", b.Name, err)
		}
		return nil
	}
	u, err := ParseBrokerURL(b.URL)
	if err != nil {
		return fmt.Errorf("broker %q: %w", b.Name, err)
	}
	b.serverURL = u
	if u.Scheme == "mqtts" || u.Scheme == "wss" {
		b.tlsConfig, b.tlsFiles, err = b.TLS.build(u.Hostname())
		if err != nil {
			return fmt.Errorf("broker %q: %w", b.Name, err)
		}
	} else if b.TLS != nil {
		return fmt.Errorf("broker %q: tls settings need an mqtts:// or wss:// url", b.Name)
	}
	return nil
}

// MQTT311 is the mqtt_version of brokers that speak only MQTT 3.1.1.
const MQTT311 = "3.1.1"

// CheckMQTTVersion checks an mqtt_version: "5", "3.1.1" or "" (5).
func CheckMQTTVersion(v string) error {
	if v != "" && v != "5" && v != MQTT311 {
		return fmt.Errorf("mqtt_version %q is not 5 or %s", v, MQTT311)
	}
	return nil
}

// speaks311 reports whether the gateway speaks MQTT 3.1.1 to the broker.
func (b *BrokerConfig) speaks311() bool { return b.MQTTVersion == MQTT311 }

// ErrEmbeddedCredentials refuses credentials for an embedded broker, which
// lets the gateway in without any: written, they look like a protection
// they are not.
var ErrEmbeddedCredentials = errors.New("username and password apply to external brokers only (the embedded broker needs none; it is protected by its listen address)")

// CheckKeepAlive checks a keepalive as MQTT counts it: whole seconds, 0
// being none, at most 65535 (0 here is the default).
func CheckKeepAlive(d caddy.Duration) error {
	if d == 0 {
		return nil
	}
	if d < caddy.Duration(time.Second) || d > caddy.Duration(0xFFFF*time.Second) {
		return fmt.Errorf("keepalive %v must be between 1s and 18h12m15s", time.Duration(d))
	}
	if d%caddy.Duration(time.Second) != 0 {
		return fmt.Errorf("keepalive %v must be whole seconds (MQTT counts it in seconds)", time.Duration(d))
	}
	return nil
}

// FixedListen is the address an embedded broker listens on when it is one
// address ("" for an external broker, or one on a free port): the gateways
// of a process share the broker there (acquireEmbedded).
func (b *BrokerConfig) FixedListen() string {
	if b.Embedded == nil {
		return ""
	}
	if _, port, err := net.SplitHostPort(b.Embedded.Listen); err != nil || port == "0" {
		return ""
	}
	return b.Embedded.Listen
}

// CheckListen checks an embedded broker's listen address ("" is loopback
// on a free port): a host or IP and a port, as net.Listen takes.
func CheckListen(addr string) error {
	if addr == "" {
		return nil
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		return fmt.Errorf("listen %q needs a host and a port, such as 127.0.0.1:1883 (:1883 for every interface)", addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("listen %q: port %q is not a port number (0 to 65535) or a service name", addr, port)
	}
	return nil
}

// ParseBrokerURL parses and normalises a broker URL, adding default ports.
func ParseBrokerURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, fmt.Errorf("missing url")
	}
	u, err := url.Parse(s)
	if err != nil {
		// Not err itself: url.Error repeats the url, password and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("invalid url: %v", err)
	}
	// From here on errors name the url without its password: it may come
	// from the environment, and errors are logged.
	s = u.Redacted()
	u.Scheme = strings.ToLower(u.Scheme)
	defaultPort := map[string]string{"mqtt": "1883", "mqtts": "8883", "ws": "80", "wss": "443"}[u.Scheme]
	if defaultPort == "" {
		return nil, fmt.Errorf("url %q: scheme must be mqtt, mqtts, ws or wss", s)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("url %q: missing host", s)
	}
	if u.User != nil {
		return nil, fmt.Errorf("url %q: put credentials in username and password, not in the url", s)
	}
	if (u.Scheme == "mqtt" || u.Scheme == "mqtts") && (strings.Trim(u.Path, "/") != "" || u.RawQuery != "" || u.Fragment != "") {
		// Only WebSocket URLs have a path; one here would be ignored.
		return nil, fmt.Errorf("url %q: an %s:// url is a host and a port, with no path or query", s, u.Scheme)
	}
	switch port := u.Port(); {
	case strings.HasSuffix(u.Host, ":"):
		return nil, fmt.Errorf("url %q: the port after the colon is missing", s)
	case port == "":
		u.Host += ":" + defaultPort
	default:
		// url.Parse takes any digits; a dial would fail at every try.
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("url %q: port %s must be between 1 and 65535", s, port)
		}
	}
	return u, nil
}

func (t *BrokerTLS) build(host string) (*tls.Config, [sha256.Size]byte, error) {
	var none [sha256.Size]byte
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	if t == nil {
		return cfg, none, nil
	}
	if t.ServerName != "" {
		cfg.ServerName = t.ServerName
	}
	cfg.InsecureSkipVerify = t.InsecureSkipVerify
	files := sha256.New()
	if t.CA != "" {
		pem, err := os.ReadFile(t.CA)
		if err != nil {
			return nil, none, fmt.Errorf("reading tls ca: %v", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, none, fmt.Errorf("tls ca %s: no PEM certificate found", t.CA)
		}
		cfg.RootCAs = pool
		files.Write(pem)
	}
	if (t.Cert == "") != (t.Key == "") {
		return nil, none, fmt.Errorf("tls cert and key go together")
	}
	if t.Cert != "" {
		cert, err := os.ReadFile(t.Cert)
		if err != nil {
			return nil, none, fmt.Errorf("loading tls client certificate: %v", err)
		}
		key, err := os.ReadFile(t.Key)
		if err != nil {
			return nil, none, fmt.Errorf("loading tls client certificate: %v", err)
		}
		pair, err := tls.X509KeyPair(cert, key)
		if err != nil {
			return nil, none, fmt.Errorf("loading tls client certificate: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
		files.Write(cert)
		files.Write(key)
	}
	var sum [sha256.Size]byte
	files.Sum(sum[:0])
	return cfg, sum, nil
}

// loginInto puts the configured login (credentials) in a CONNECT.
func (b *BrokerConfig) loginInto(c *paho.Connect) {
	user, password := b.credentials()
	c.Username, c.UsernameFlag = user, user != ""
	c.Password, c.PasswordFlag = password, password != nil
}

// credentials are what the gateway logs in with for clients that give none
// (a nil password when none is configured).
func (b *BrokerConfig) credentials() (username string, password []byte) {
	if b.Password != "" {
		password = []byte(b.Password)
	}
	return b.Username, password
}
