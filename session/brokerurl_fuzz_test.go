package session

import (
	"strconv"
	"testing"
)

// ParseBrokerURL takes what a Caddyfile or an environment variable gives:
// it never panics, and a URL it accepts is one a dial can use (a known
// scheme, a host, a port in range, no credentials), which it accepts again
// as it is.
func FuzzParseBrokerURL(f *testing.F) {
	for _, s := range []string{"mqtt://127.0.0.1:1883", "mqtts://broker.example.com", "ws://[::1]:9001/mqtt", "wss://h/p?q=1",
		"mqtt://127.0.0.1:", "mqtt://h:99999", "mqtt://u:p@h", "MQTT://H:1", "tcp://h:1883", "mqtt://h:1883/x", "mqtt://[::1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseBrokerURL(s)
		if err != nil {
			return
		}
		switch u.Scheme {
		case "mqtt", "mqtts", "ws", "wss":
		default:
			t.Fatalf("%q: accepted with scheme %q", s, u.Scheme)
		}
		if n, err := strconv.Atoi(u.Port()); err != nil || n < 1 || n > 65535 {
			t.Fatalf("%q: accepted with port %q", s, u.Port())
		}
		if u.Hostname() == "" || u.User != nil {
			t.Fatalf("%q: accepted with host %q, user %v", s, u.Hostname(), u.User)
		}
		again, err := ParseBrokerURL(u.String())
		if err != nil || again.Host != u.Host {
			t.Fatalf("%q: accepted as %q, which gives %v, %v", s, u, again, err)
		}
	})
}
