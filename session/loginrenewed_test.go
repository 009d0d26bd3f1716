package session

import "testing"

// Which reloads of a broker keep its connections up (loginRenewed): a
// change of the login alone. Anything else reconnects, and an unchanged
// broker, its TLS files' contents included, is no change at all.
func TestLoginRenewed(t *testing.T) {
	base := func() *BrokerConfig {
		return &BrokerConfig{Name: "main", URL: "mqtts://broker:8883", Username: "gw", Password: "one",
			TLS: &BrokerTLS{CA: "/etc/ca.pem", Cert: "/etc/gw.pem", Key: "/etc/gw.key", ServerName: "broker"}}
	}
	for _, c := range []struct {
		name          string
		change        func(b *BrokerConfig)
		same, renewed bool
	}{
		{"nothing", func(b *BrokerConfig) {}, true, false},
		{"password", func(b *BrokerConfig) { b.Password = "two" }, false, true},
		{"certificate renewed in place", func(b *BrokerConfig) { b.tlsFiles[0] = 1 }, false, true},
		{"certificate in other files", func(b *BrokerConfig) { b.TLS.Cert, b.TLS.Key = "/etc/gw2.pem", "/etc/gw2.key" }, false, true},
		{"another CA file", func(b *BrokerConfig) { b.TLS.CA = "/etc/ca2.pem" }, false, true},
		{"user name", func(b *BrokerConfig) { b.Username = "gw2" }, false, false},
		{"user name and password", func(b *BrokerConfig) { b.Username, b.Password = "gw2", "two" }, false, false},
		{"URL", func(b *BrokerConfig) { b.URL = "mqtts://other:8883" }, false, false},
		{"server name", func(b *BrokerConfig) { b.TLS.ServerName = "other" }, false, false},
		{"verification", func(b *BrokerConfig) { b.TLS.InsecureSkipVerify = true }, false, false},
		{"client ID prefix", func(b *BrokerConfig) { b.ClientIDPrefix = "web-" }, false, false},
		{"MQTT version", func(b *BrokerConfig) { b.MQTTVersion = MQTT311 }, false, false},
	} {
		old, next := base(), base()
		c.change(next)
		if got := sameBroker(old, next); got != c.same {
			t.Errorf("%s: sameBroker %v, want %v", c.name, got, c.same)
		}
		if got := !sameBroker(old, next) && loginRenewed(old, next); got != c.renewed {
			t.Errorf("%s: loginRenewed %v, want %v", c.name, got, c.renewed)
		}
		if old.TLS.Cert != "/etc/gw.pem" || next.Password == "" {
			t.Fatalf("%s: loginRenewed changed the configurations it compared", c.name)
		}
	}
	embedded := &BrokerConfig{Name: "main", Embedded: &EmbeddedConfig{}}
	if loginRenewed(embedded, &BrokerConfig{Name: "main", Embedded: &EmbeddedConfig{Listen: "127.0.0.1:1884"}}) {
		t.Error("an embedded broker has no login to renew")
	}
}
