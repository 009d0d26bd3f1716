package mqttgateway

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// A client certificate renewed in place (same files, new contents, as
// certificate tools renew them) and `caddy reload --force`: the broker
// connections stay up, their clients see nothing, and the next login is
// the new certificate's. (The reload found the config unchanged and kept
// the certificate it had read at start: once the old one expired, the
// gateway could not reconnect until Caddy restarted.)
func TestReloadRenewingTheClientCertificateKeepsConnections(t *testing.T) {
	dir := brokerDir(t, "mqttgw-renew-", 0o755)
	ca, cert, key, issue := testPKIIssuing(t, dir, "127.0.0.1")
	issue("first-cert")
	clientCert, clientKey := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	mq := startMosquittoWith(t, func(string) string {
		// The certificate's name is the login, so the broker's log tells
		// which certificate a connection presented.
		return fmt.Sprintf("allow_anonymous true\ncertfile %s\nkeyfile %s\ncafile %s\nrequire_certificate true\nuse_identity_as_username true\n", cert, key, ca)
	})
	logFile := filepath.Join(t.TempDir(), "gateway.log")
	httpPort := freePort(t)
	load := adminCaddyLoader(t, func() string { return gatewayLog(logFile) }, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n broker main mqtts://127.0.0.1:%d {\n tls {\n ca %s\n cert %s\n key %s\n }\n }\n }\n}\n",
			httpPort, mq.port, ca, clientCert, clientKey)
	})
	url := fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
	shared := dial(t, url)
	h := connectSubscribe(t, shared, "renew/#", 1)
	dedicated := dedicatedSubscribed(t, url, "renew-dedicated", "renew/#")

	issue("renewed-cert")
	if status, body := load(true); status != 200 {
		t.Fatalf("forced reload: %d %s", status, body)
	}
	awaitLogLines(t, logFile, `"msg":"broker accepted the reloaded login"`, 1)
	publishReachesAtOnce(t, shared, h, "renew/a", shared, dedicated)

	before, _ := os.ReadFile(mq.log)
	mq.stop()
	mq.start(t)
	expectOutageNotices(t, shared, "shared client at the broker's restart")
	publishReachesAtOnce(t, shared, h, "renew/b", shared)
	after, _ := os.ReadFile(mq.log)
	since := string(after[len(before):])
	if !strings.Contains(since, "u'renewed-cert'") || strings.Contains(since, "u'first-cert'") {
		t.Fatalf("after the broker's restart the gateway must log in with the renewed certificate only:\n%s", since)
	}
}

// A reload that changes only the broker's password keeps the broker
// connections, so no client loses a message to a routine rotation; they
// log in with the new password when they reconnect. The gateway tries the
// new password at the reload and warns if the broker refuses it: it would
// otherwise show only at the broker's next restart. A connection that is
// down (the broker took the new password first) reconnects at once.
// (Each such reload reconnected every client: outage notices, and the
// messages published meanwhile lost to the shared connection's clients.)
func TestReloadRotatingOnlyThePasswordKeepsConnections(t *testing.T) {
	mq, passwords := mosquittoWithLogins(t, [2]string{"gw", "first"})
	logFile := filepath.Join(t.TempDir(), "gateway.log")
	httpPort := freePort(t)
	password := "first"
	load := adminCaddyLoader(t, func() string { return gatewayLog(logFile) }, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n broker main mqtt://127.0.0.1:%d {\n username gw\n password %s\n }\n }\n}\n",
			httpPort, mq.port, password)
	})
	reload := func() {
		t.Helper()
		if status, body := load(false); status != 200 {
			t.Fatalf("reload: %d %s", status, body)
		}
	}
	url := fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
	shared := dial(t, url)
	h := connectSubscribe(t, shared, "rot/#", 1)
	dedicated := dedicatedSubscribed(t, url, "rot-dedicated", "rot/#")

	// The gateway first: the broker does not know the new password yet.
	password = "second"
	reload()
	awaitLogLines(t, logFile, `"msg":"broker refused the reloaded login"`, 1)
	if n := logLines(logFile, "refused the connection: 0x8"); n != 1 {
		data, _ := os.ReadFile(logFile)
		t.Fatalf("the warning must give the broker's reason:\n%s", data)
	}
	publishReachesAtOnce(t, shared, h, "rot/a", shared, dedicated)

	// Then the broker; its restart makes the gateway log in again.
	mosquittoPasswd(t, "-b", passwords, "gw", "second")
	mq.stop()
	mq.start(t)
	expectOutageNotices(t, shared, "shared client at the broker's restart")
	publishReachesAtOnce(t, shared, h, "rot/b", shared)

	// The broker first: the gateway's connection is refused until the
	// reload, which reconnects it at once.
	mosquittoPasswd(t, "-b", passwords, "gw", "third")
	mq.stop()
	mq.start(t)
	if f := nextMessage(t, shared); f.Type != transport.TypeNotice || f.Code != session.CodeBrokerUnavailable {
		t.Fatalf("at the broker's restart with a new password: %+v, want NOTICE 4041", f)
	}
	password = "third"
	reload()
	awaitLogLines(t, logFile, `"msg":"broker login renewed"`, 2)
	for {
		// (The reconnection's own 4041, "reconfigured", may come first.)
		f := nextMessage(t, shared)
		if f.Type == transport.TypeNotice && f.Code == session.CodeOK {
			break
		}
		if f.Type != transport.TypeNotice || f.Code != session.CodeBrokerUnavailable {
			t.Fatalf("after the reload: %+v, want NOTICE 0", f)
		}
	}
	publishReachesAtOnce(t, shared, h, "rot/c", shared)
}

// dedicatedSubscribed is a client with a connection of its own (client ID
// id) that logs in with the broker's configured credentials and is
// subscribed to filter at QoS 1.
func dedicatedSubscribed(t *testing.T, url, id, filter string) *gwclient.Client {
	t.Helper()
	c := dial(t, url)
	h, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: id, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx10(t), h, filter, 1); err != nil {
		t.Fatal(err)
	}
	return c
}

// publishReachesAtOnce publishes to topic at QoS 1 from publisher's
// connection h, and each client's next frame must be that message: no
// notice of an outage came before it.
func publishReachesAtOnce(t *testing.T, publisher *gwclient.Client, h uint64, topic string, clients ...*gwclient.Client) {
	t.Helper()
	if err := publisher.Publish(ctx10(t), h, session.PublishParams{Topic: topic, QoS: 1, Payload: []byte(topic)}); err != nil {
		t.Fatal(err)
	}
	for i, c := range clients {
		if f := nextMessage(t, c); f.Type != transport.TypeMessage || f.Publish.Topic != topic {
			t.Fatalf("client %d: %+v, want the message to %s", i, f, topic)
		}
	}
}
