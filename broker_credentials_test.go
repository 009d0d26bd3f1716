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
	"github.com/caddy-mqtt/mqttgateway/transport"
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

// A CONNECT that claims a client ID in use takes the connection over only
// once the broker accepted it, as the broker itself does: a newcomer with
// a wrong password is refused (4042) and the client holding the ID goes on
// receiving; one the broker accepts takes over, and the holder gets LOST
// 4045.
func TestClientIDTakenOverOnlyByAcceptedConnection(t *testing.T) {
	mq := startMosquittoWith(t, func(dir string) string {
		pw := filepath.Join(dir, "passwords")
		for i, user := range []string{"alice", "bob"} {
			args := []string{"-b", pw, user, user + "-pw"}
			if i == 0 {
				args = append([]string{"-c"}, args...)
			}
			if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
				t.Fatalf("mosquitto_passwd: %v: %s", err, out)
			}
		}
		os.Chmod(pw, 0o644)
		return "allow_anonymous false\npassword_file " + pw + "\n"
	})
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	connect := func(c *gwclient.Client, user, password string) (uint64, error) {
		h, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: "phone", CleanStart: true,
			Username: user, Password: []byte(password)})
		return h, err
	}
	holder := dial(t, url)
	h, err := connect(holder, "alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := holder.Subscribe(ctx10(t), h, "t/#", 0); err != nil {
		t.Fatal(err)
	}

	refused := dial(t, url)
	_, err = connect(refused, "bob", "wrong")
	var e *gwclient.Error
	if !errors.As(err, &e) || e.Code != session.CodeBrokerRefused {
		t.Fatalf("a newcomer with a wrong password: %v, want %d", err, session.CodeBrokerRefused)
	}
	mosquittoPub(t, mq.port, "-u", "alice", "-P", "alice-pw", "-t", "t/a", "-m", "still yours")
	if f := nextMessage(t, holder); f.Type != transport.TypeMessage || string(f.Publish.Payload) != "still yours" {
		t.Fatalf("after a refused newcomer the holder got %+v, want its message", f)
	}

	accepted := dial(t, url)
	if _, err := connect(accepted, "bob", "bob-pw"); err != nil {
		t.Fatalf("a newcomer the broker accepts: %v", err)
	}
	if f := nextMessage(t, holder); f.Type != transport.TypeLost || f.Code != session.CodeClientConnected {
		t.Fatalf("after an accepted newcomer the holder got %+v, want LOST %d", f, session.CodeClientConnected)
	}
}
