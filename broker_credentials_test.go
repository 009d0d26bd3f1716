package mqttgateway

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	mq, _ := mosquittoWithLogins(t, [2]string{"gw", "s3cret"})

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
	mq, _ := mosquittoWithLogins(t, [2]string{"alice", "alice-pw"}, [2]string{"bob", "bob-pw"})
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

// A connection the gateway does not know of (another gateway instance, a
// device, the same broker under another name) that takes a dedicated
// client's ID away is a takeover for the web client, as a newer web client
// of this gateway is: LOST 4045, which a client does not retry. (It was
// told 4041, broker lost, and a client that reconnects took the ID back,
// the two for ever.)
//
// The broker must say so (MQTT 5's DISCONNECT reason 0x8E): the embedded
// broker does, Mosquitto 2.0 closes the connection without a word, which
// a gateway cannot tell from a network failure.
func TestClientIDTakenOverFromOutsideTheGateway(t *testing.T) {
	port := freePort(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("embedded {\n\t\tlisten 127.0.0.1:%d\n\t}", port), "")
	waitPort(t, port)
	holder := dial(t, url)
	if _, _, err := holder.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: "tablet", CleanStart: true}); err != nil {
		t.Fatal(err)
	}
	// Another MQTT 5 connection with the same ID, straight to the broker.
	mosquittoPub(t, port, "-V", "mqttv5", "-i", "tablet", "-t", "elsewhere", "-m", "hello")
	f := nextMessage(t, holder)
	if f.Type != transport.TypeLost || f.Code != session.CodeClientConnected {
		t.Fatalf("after another connection took its client id the holder got %+v, want LOST %d", f, session.CodeClientConnected)
	}
	if !strings.Contains(f.Message, "taken over") {
		t.Errorf("LOST says %q, want it to say the id was taken over", f.Message)
	}
}

// A reload that rotates the broker's configured password reaches the
// shared connection of the clients connected before it: it logs in with
// the new password from then on, and the clients that connect after the
// reload join it. (It kept the old login, and the newcomers got a second
// shared connection; once the broker revoked the old password, the first
// clients were refused for good at its next restart.)
func TestReloadRotatingTheBrokerPassword(t *testing.T) {
	mq, passwords := mosquittoWithLogins(t, [2]string{"gw", "old-secret"}, [2]string{"gw2", "new-secret"})
	httpPort := freePort(t)
	user, pass := "gw", "old-secret"
	reload := adminCaddy(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n broker main mqtt://127.0.0.1:%d {\n username %s\n password %s\n }\n }\n}\n",
			httpPort, mq.port, user, pass)
	})
	url := fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort)
	before := dial(t, url)
	connectSubscribe(t, before, "rot/#", 0)

	// The old login is revoked (the broker reads the file at its restart below).
	mosquittoPasswd(t, "-D", passwords, "gw")
	user, pass = "gw2", "new-secret"
	reload()
	expectOutageNotices(t, before, "client connected before the reload")
	after := dial(t, url)
	connectSubscribe(t, after, "rot/#", 0)

	logged, _ := os.ReadFile(mq.log)
	mq.stop()
	mq.start(t)
	for name, c := range map[string]*gwclient.Client{"before": before, "after": after} {
		expectOutageNotices(t, c, "client connected "+name+" the reload, at the broker's restart")
	}
	mosquittoPub(t, mq.port, "-u", "gw2", "-P", "new-secret", "-t", "rot/a", "-m", "rotated")
	for name, c := range map[string]*gwclient.Client{"before": before, "after": after} {
		if f := nextMessage(t, c); f.Publish.Topic != "rot/a" || string(f.Publish.Payload) != "rotated" {
			t.Fatalf("client connected %s the reload got %+v", name, f)
		}
	}
	all, _ := os.ReadFile(mq.log)
	if n := strings.Count(string(all[len(logged):]), "u'gw2')"); n != 2 { // the connection, and mosquitto_pub's
		t.Fatalf("%d logins as gw2 after the broker's restart, want 2: one shared connection for both clients, and the publisher\n%s", n, all[len(logged):])
	}
}

// mosquittoWithLogins starts a Mosquitto that lets in only the given user
// and password pairs, and returns its password file, which
// mosquittoPasswd may change (the broker reads it when it starts).
func mosquittoWithLogins(t *testing.T, logins ...[2]string) (*mosquitto, string) {
	var file string
	mq := startMosquittoWith(t, func(dir string) string {
		file = filepath.Join(dir, "passwords")
		for i, login := range logins {
			args := []string{"-b", file, login[0], login[1]}
			if i == 0 {
				args = append([]string{"-c"}, args...)
			}
			mosquittoPasswd(t, args...)
		}
		os.Chmod(file, 0o644)
		return "allow_anonymous false\npassword_file " + file + "\n"
	})
	return mq, file
}

func mosquittoPasswd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("mosquitto_passwd", args...).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd %v: %v: %s", args, err, out)
	}
}

// A page may give MQTT credentials of its own at CONNECT, and the broker
// answers at once: without a brake, a thousand password guesses a second
// (a trial's). Past three refused ones from an address, the next waits a
// second after the last refusal, then two...: a try too soon is refused
// with 4051 without reaching the broker. Clients without credentials of
// their own are not held back, and the right password still works once
// the wait is over.
func TestGuessingBrokerPasswordsIsSlowedDown(t *testing.T) {
	mq, _ := mosquittoWithLogins(t, [2]string{"gw", "s3cret"}, [2]string{"dev", "right"})
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d {\n username gw\n password s3cret\n }", mq.port), "")
	c := dial(t, url)
	guess := func(password string) session.Code {
		_, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: "guesser", Username: "dev", Password: []byte(password)})
		if err == nil {
			return session.CodeOK
		}
		return errCode(err)
	}
	for i := range 3 {
		if code := guess(fmt.Sprint("guess", i)); code != session.CodeBrokerRefused {
			t.Fatalf("guess %d: code %d, want the broker's refusal (4042)", i, code)
		}
	}
	if code := guess("guess3"); code != session.CodeRateLimited {
		t.Fatalf("a fourth guess at once: code %d, want 4051", code)
	}
	// Others are not held back.
	connectSubscribe(t, dial(t, url), "free/#", 0)
	time.Sleep(1100 * time.Millisecond)
	if code := guess("guess4"); code != session.CodeBrokerRefused {
		t.Fatalf("a guess a second later: code %d, want it to reach the broker (4042)", code)
	}
	if code := guess("right"); code != session.CodeRateLimited {
		t.Fatalf("the next guess at once: code %d, want 4051", code)
	}
	time.Sleep(2100 * time.Millisecond)
	if code := guess("right"); code != session.CodeOK {
		t.Fatalf("the right password once the wait is over: code %d", code)
	}
}

// Broker credentials from a file ({file.*}, read when the config loads, so
// a reload applies a new one), and a refusal in the operator's words: the
// log said "server denied connect (reason: 135): failed to connect to
// server: ", now the reason by name and the user name tried, with a hint
// when there is none, as an unset {env.VAR} gives.
func TestBrokerCredentialsFromAFileAndRefusalsInTheLog(t *testing.T) {
	mq, _ := mosquittoWithLogins(t, [2]string{"gw", "s3cret"})
	dir := t.TempDir()
	secret, logFile := filepath.Join(dir, "mqtt_pass"), filepath.Join(dir, "gateway.log")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpPort := freePort(t)
	adminCaddyTryWith(t, func() string {
		return gatewayLog(logFile)
	}, func() string {
		return fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /file/* {
		name file
		broker main mqtt://127.0.0.1:%d {
			username gw
			password {file.%s}
		}
	}
	mqtt_gateway /unset/* {
		name unset
		broker main mqtt://127.0.0.1:%d {
			username {env.MQTTGW_TEST_UNSET_USER}
			password {env.MQTTGW_TEST_UNSET_PASS}
		}
	}
}
`, httpPort, mq.port, secret, mq.port)
	})
	connectSubscribe(t, dial(t, fmt.Sprintf("ws://127.0.0.1:%d/file/ws", httpPort)), "cred/#", 0)

	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/unset/ws", httpPort))
	if _, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main"}); errCode(err) != session.CodeBrokerRefused {
		t.Fatalf("connect with unset credentials: %v, want 4042", err)
	}
	awaitLogLines(t, logFile, `"msg":"broker connect failed"`, 1)
	data, _ := os.ReadFile(logFile)
	for _, want := range []string{`refused the connection: 0x8`, `"username":""`, `"hint":"no user name was given`} {
		if !strings.Contains(string(data), want) {
			t.Errorf("the log lacks %s:\n%s", want, data)
		}
	}
	if strings.Contains(string(data), "failed to connect to server: \"") {
		t.Errorf("the log has paho's words, not the reason:\n%s", data)
	}

	// A web client's own credentials refused are its own mistake: an info
	// line names its session, and the warning operators alert on, "broker
	// connect failed", is not written again.
	own := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/file/ws", httpPort))
	if _, _, err := own.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: "kim", Username: "kim", Password: []byte("wrong")}); errCode(err) != session.CodeBrokerRefused {
		t.Fatalf("connect with a client's wrong credentials: %v, want 4042", err)
	}
	awaitLogLines(t, logFile, `"msg":"broker refused a client's credentials","session":"`+sessionID(own), 1)
	if n := logLines(logFile, `"msg":"broker connect failed"`); n != 1 {
		t.Errorf("%d broker connect failed lines, want only the gateway's own login's:\n%s", n, data)
	}
}

// A broker refusal nobody was waiting for must not be the answer to a later
// request: while the broker refused the shared connection (its user was
// removed, then added back), nobody waited for it; once it was up again, a
// publish in a later outage got that old "refused" (4042) at once instead of
// waiting the connect timeout for the broker (4041). Found by a
// contributor's review.
func TestAnOldBrokerRefusalIsNotALaterAnswer(t *testing.T) {
	mq, passwords := mosquittoWithLogins(t, [2]string{"gw", "s3cret"})
	httpPort := freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d {
			username gw
			password s3cret
			connect_timeout 1s
		}
	}
}
`, httpPort, mq.port))
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	ctx := ctx10(t)
	h := connectMain(t, c)
	restartWhen := func(log string) {
		t.Helper()
		mq.stop()
		os.Remove(mq.log) // the broker's log from this start only
		mq.start(t)
		awaitLog(t, mq.log, log, 1)
	}
	mosquittoPasswd(t, "-D", passwords, "gw")
	restartWhen("not authorised") // refused, with the client connected and no request waiting
	mosquittoPasswd(t, "-b", passwords, "gw", "s3cret")
	restartWhen("u'gw')") // only an accepted login is logged with its user
	expectOutageNotices(t, c, "the client, through the refusals")
	mq.stop()
	if f := nextMessage(t, c); f.Type != transport.TypeNotice || f.Code != session.CodeBrokerUnavailable {
		t.Fatalf("at the outage: %+v, want a NOTICE 4041", f)
	}
	start := time.Now()
	err := c.Publish(ctx, h, session.PublishParams{Topic: "a", Payload: []byte("x")})
	if errCode(err) != session.CodeBrokerUnavailable {
		t.Fatalf("publish during an outage: %v after %s, want 4041 after the connect timeout", err, time.Since(start).Round(time.Millisecond))
	}
}
