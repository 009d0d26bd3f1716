package mqttgateway

import (
	"fmt"
	"io"
	"net/http"
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
