package mqttgateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
)

// A page that publishes and closes its session at once (its last words as
// it goes) has its messages published, as an MQTT client's PUBLISH before
// DISCONNECT is: the CLOSE does not cancel the requests sent before it,
// here still waiting for a slow authorize hook, on shared and dedicated
// connections alike.
func TestCloseCarriesOutRequestsSentBeforeIt(t *testing.T) {
	mq := startMosquitto(t)
	url := gatewayWithHook(t, mq.port, "authorize", "", func(w http.ResponseWriter, r *http.Request) {
		f, err := hookapi.ParseRequest(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if f.Action == hookapi.ActionPublish {
			time.Sleep(500 * time.Millisecond)
		}
		hookapi.Allow(w)
	})
	c := dial(t, url)
	ctx := ctx10(t)
	shared := connectMain(t, c)
	dedicated, _, err := c.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: "last-words", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	wait := mosquittoSub(t, mq.port, "-t", "last/#", "-q", "1", "-C", "2", "-W", "8", "-v")
	time.Sleep(300 * time.Millisecond) // mosquitto_sub subscribed

	unit := transport.AppendPublish(nil, 1000, shared, &session.PublishParams{Topic: "last/shared", Payload: []byte("bye")})
	unit = transport.AppendPublish(unit, 1001, dedicated, &session.PublishParams{Topic: "last/dedicated", QoS: 1, Payload: []byte("bye")})
	unit = transport.AppendClose(unit)
	if err := c.WriteRaw(unit); err != nil {
		t.Fatal(err)
	}
	expectEnd(t, c, session.CodeOK, 5*time.Second, "CLOSE")
	got := strings.Fields(string(wait()))
	if len(got) != 4 || !strings.Contains(strings.Join(got, " "), "last/shared bye") || !strings.Contains(strings.Join(got, " "), "last/dedicated bye") {
		t.Fatalf("the broker got %q, want both last messages", got)
	}
}
