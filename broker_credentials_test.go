package mqttgateway

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// A broker that requires a login: the gateway's configured credentials
// (here, like its URL, from the environment)
// serve every web client that brings none (the JavaScript client sends an
// empty password then, as gwclient does), on the shared connection and on
// a dedicated one; a client that brings wrong ones of its own is refused
// with 4042, and the others are unaffected.
func TestConfiguredBrokerCredentials(t *testing.T) {
	mq := startMosquittoWith(t, func(dir string) string {
		pw := filepath.Join(dir, "passwords")
		if out, err := exec.Command("mosquitto_passwd", "-b", "-c", pw, "gw", "s3cret").CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_passwd: %v: %s", err, out)
		}
		os.Chmod(pw, 0o644)
		return "allow_anonymous false\npassword_file " + pw + "\n"
	})

	// The URL and the password from the environment, as the README shows.
	t.Setenv("MQTTGW_TEST_BROKER", fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port))
	t.Setenv("MQTTGW_TEST_PASS", "s3cret")
	httpPort := freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker main {env.MQTTGW_TEST_BROKER} {
			username gw
			password {env.MQTTGW_TEST_PASS}
		}
	}
}
`, httpPort))
	url := fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)

	shared := dial(t, url)
	connectSubscribe(t, shared, "cred/#", 0)
	dedicated := dial(t, url)
	h, _, err := dedicated.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: "cred-dedicated", CleanStart: true})
	if err != nil {
		t.Fatalf("dedicated connect with the configured credentials: %v", err)
	}
	if _, err := dedicated.Subscribe(ctx10(t), h, "cred/#", 0); err != nil {
		t.Fatal(err)
	}

	wrong := dial(t, url)
	_, _, err = wrong.Connect(ctx10(t), session.ConnectParams{Broker: "main", Username: "gw", Password: []byte("wrong")})
	var e *gwclient.Error
	if !errors.As(err, &e) || e.Code != session.CodeBrokerRefused || !strings.Contains(e.Message, "not authorized") {
		t.Fatalf("connect with wrong credentials of its own: %v, want %d with the reason in words", err, session.CodeBrokerRefused)
	}

	mosquittoPub(t, mq.port, "-u", "gw", "-P", "s3cret", "-t", "cred/a", "-m", "hello")
	for name, c := range map[string]*gwclient.Client{"shared": shared, "dedicated": dedicated} {
		if f := nextMessage(t, c); f.Publish.Topic != "cred/a" || string(f.Publish.Payload) != "hello" {
			t.Fatalf("%s client got %+v", name, f.Publish)
		}
	}
}
