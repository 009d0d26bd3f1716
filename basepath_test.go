package mqttgateway

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The gateway answers only under its base path, which the Caddyfile takes
// from the directive's path matcher or from base_path: a path deeper under
// the prefix, or elsewhere on the site, that merely ends in ws, send or a
// client file's name belongs to the site.
func TestGatewayServesOnlyUnderItsBasePath(t *testing.T) {
	mq := startMosquitto(t)
	httpPort := freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%[1]d {
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%[2]d
	}
	@other path /other/*
	mqtt_gateway @other {
		name other
		base_path /other/gw
		broker main mqtt://127.0.0.1:%[2]d
	}
	respond "the site's {path}" 200
}
`, httpPort, mq.port))
	get := func(method, p string) (int, string) {
		req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, p), nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for _, p := range []string{"/mqtt/client.js", "/other/gw/client.js"} {
		if code, body := get("GET", p); code != 200 || !strings.Contains(body, "openSession") {
			t.Errorf("GET %s: %d %.80q, want the client library", p, code, body)
		}
	}
	for _, p := range []string{"/mqtt/deeper/client.js", "/mqtt/deeper/session.js", "/other/client.js", "/other/gw/x/ws"} {
		if code, body := get("GET", p); code != 200 || body != "the site's "+p {
			t.Errorf("GET %s: %d %.80q, want the site's answer", p, code, body)
		}
	}
	if code, body := get("POST", "/mqtt/api/send"); code != 200 || body != "the site's /mqtt/api/send" {
		t.Errorf("POST /mqtt/api/send: %d %.80q, want the site's answer", code, body)
	}
	dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	dial(t, fmt.Sprintf("ws://127.0.0.1:%d/other/gw/ws", httpPort))
}

// The README's layout for a single-page app: the gateway in a handle of its
// own, the app's try_files and file_server in a catch-all handle. The
// gateway serves its paths, and every other path gets the app's page.
func TestGatewayBesideASinglePageApp(t *testing.T) {
	mq := startMosquitto(t)
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("the app"), 0o644); err != nil {
		t.Fatal(err)
	}
	httpPort := freePort(t)
	startCaddy(t, fmt.Sprintf(`http://127.0.0.1:%d {
	handle /mqtt/* {
		mqtt_gateway /mqtt/* {
			broker main mqtt://127.0.0.1:%d
		}
	}
	handle {
		root * %s
		try_files {path} /index.html
		file_server
	}
}
`, httpPort, mq.port, www))
	for p, want := range map[string]string{"/mqtt/client.js": "openSession", "/a/route/of/the/app": "the app", "/": "the app"} {
		res, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", httpPort, p))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %.80q, want %q", p, res.StatusCode, body, want)
		}
	}
	c := dial(t, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort))
	connectSubscribe(t, c, "spa/#", 0)
	mosquittoPub(t, mq.port, "-t", "spa/x", "-m", "through the gateway")
	if f := nextMessage(t, c); string(f.Publish.Payload) != "through the gateway" {
		t.Fatalf("%+v", f.Publish)
	}
}
