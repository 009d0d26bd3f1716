package mqttgateway

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
	"github.com/eclipse/paho.golang/autopaho"
	"github.com/gorilla/websocket"
)

// Clients with a broker connection of their own (a client ID) join a share
// group the gateway opens (shared_subscriptions workers): the broker shares
// the filter's messages out between them, each message to one member, as
// it does between direct MQTT clients: a pool of Node.js workers taking
// jobs. A group the gateway does not open may not be joined (a backend's
// workers would lose jobs to web clients), nor may a client on the
// gateway's shared connection join (the broker would share out between
// gateways, not between the clients that asked), nor a subscription with
// No Local (a protocol error, for which the broker closes the connection);
// each is refused with 4031 and says why, as is a malformed share name.
// (Every shared subscription was refused.)
func TestDedicatedClientsJoinAShareGroup(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "shared_subscriptions workers")
	ctx := ctx10(t)
	c := dial(t, url)
	const filter = "$share/workers/jobs/+"
	worker := map[uint64]string{} // by stream
	handle := map[string]uint64{}
	for _, id := range []string{"worker-1", "worker-2"} {
		h, stream, err := c.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: id, CleanStart: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe(ctx, h, filter, 1); err != nil {
			t.Fatalf("%s joining the share group: %v", id, err)
		}
		worker[stream] = id
		handle[id] = h
	}

	first := handle["worker-1"]
	refused := func(what string, err error, says string) {
		t.Helper()
		var e *gwclient.Error
		if !errors.As(err, &e) || e.Code != session.CodeInvalidFilter || !strings.Contains(e.Message, says) {
			t.Errorf("%s: %v, want 4031 saying %q", what, err, says)
		}
	}
	_, err := c.Subscribe(ctx, connectMain(t, c), filter, 1)
	refused("a client on the shared connection", err, "client ID")
	_, err = c.SubscribeWith(ctx, first, "$share/workers/other/+", 1, session.SubscribeOptions{NoLocal: true})
	refused("No Local", err, "No Local")
	_, err = c.Subscribe(ctx, first, "$share/+/jobs/+", 1)
	refused("a wildcard share name", err, "share name")
	_, err = c.Subscribe(ctx, first, "$share/backend/jobs/+", 1)
	refused("a share group the gateway does not open", err, "not open")

	pub := mqttPublisher(t, mq.port)
	per := share(t, c, pub, worker, 0, 100)
	if per["worker-1"] == 0 || per["worker-2"] == 0 {
		t.Errorf("jobs per member %v, want some to each", per)
	}
	t.Logf("jobs per member: %v", per)

	// A member that leaves the group gets no more of its jobs.
	if err := c.Unsubscribe(ctx, first, filter); err != nil {
		t.Fatal(err)
	}
	if per := share(t, c, pub, worker, 100, 120); per["worker-2"] != 20 {
		t.Errorf("after worker-1 left the group, jobs per member %v, want all 20 to worker-2", per)
	}
}

// share publishes jobs from to to-1 at QoS 1 and reads them as the share
// group's members receive them, acknowledging each: it fails unless each
// arrives once, and returns how many each member (by stream) got.
func share(t *testing.T, c *gwclient.Client, pub *autopaho.ConnectionManager, worker map[uint64]string, from, to int) map[string]int {
	t.Helper()
	publishRange(t, pub, []string{"jobs/a", "jobs/b"}, from, to, 500, 8, 1)
	times := map[int]int{}
	per := map[string]int{}
	deadline := time.After(10 * time.Second)
	for len(times) < to-from {
		select {
		case f := <-c.Messages:
			if f.Type != transport.TypeMessage {
				continue
			}
			if f.PacketID != 0 {
				if err := c.Ack(f.Stream, f.PacketID); err != nil {
					t.Fatal(err)
				}
			}
			times[seqOf(f.Publish.Payload)]++
			per[worker[f.Stream]]++
		case <-deadline:
			t.Fatalf("%d of %d jobs arrived within 10 s: %v", len(times), to-from, per)
		}
	}
	select { // any copy the broker sends a second member comes with the rest
	case f := <-c.Messages:
		if f.Type == transport.TypeMessage {
			times[seqOf(f.Publish.Payload)]++
		}
	case <-time.After(500 * time.Millisecond):
	}
	for seq, k := range times {
		if k != 1 || seq < from || seq >= to {
			t.Errorf("job %d arrived %d times, want jobs %d to %d once each", seq, k, from, to-1)
		}
	}
	return per
}

// A member removed from a room loses its shared subscriptions to the room
// too: the admin API's unsubscribe ends each subscription that could
// deliver a topic under the filter, and a shared one delivers what the
// filter after its share name matches. A shared filter ends one group's
// subscriptions only.
func TestAdminEndsASharedSubscriptionUnderAFilter(t *testing.T) {
	mq := startMosquitto(t)
	adminPort, url := gatewayWithAdmin(t, "shared", mq.port, "shared_subscriptions g h")
	ctx := ctx10(t)
	c, err := gwclient.Dial(ctx, url, http.Header{"X-Test-User": {"carol"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h, _, err := c.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: "carol-worker", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"$share/g/room/42/#", "$share/g/room/43/#", "$share/h/room/43/#"} {
		if _, err := c.Subscribe(ctx, h, f, 0); err != nil {
			t.Fatalf("subscribe %s: %v", f, err)
		}
	}
	unsubscribe := func(filter string) {
		t.Helper()
		resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/mqtt_gateway/unsubscribe", adminPort), "application/json",
			strings.NewReader(fmt.Sprintf(`{"user":"carol","filter":%q}`, filter)))
		if err != nil {
			t.Fatal(err)
		}
		answer, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(answer), `"unsubscribed":1`) {
			t.Fatalf("unsubscribe %s: %d %s, want 200 and 1 subscription", filter, resp.StatusCode, answer)
		}
	}
	unsubscribe("room/42/#")
	unsubscribe("$share/h/room/#") // h's room/43, not g's
	for _, topic := range []string{"room/42/msg", "room/43/msg"} {
		mosquittoPub(t, mq.port, "-t", topic, "-m", topic)
	}
	if f := nextMessage(t, c); f.Type != transport.TypeMessage || f.Publish.Topic != "room/43/msg" {
		t.Fatalf("carol got %+v, want only room/43/msg", f)
	}
}

// The authorize hook's rules hold for a shared subscription by the filter
// after its share name: a rule that denies a filter denies joining a share
// group on it, or on any filter inside it (with every group open, a
// dedicated client read secret/plans through $share/x/secret/#, past a
// deny rule on secret/#). A hook's frequency cap holds for a shared
// subscription as for any: a plan's cap is not lifted by joining a group of
// one's own.
func TestAuthorizeRulesHoldForSharedSubscriptions(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), `shared_subscriptions *
		authorize {
			@secret {
				path /subscribe
				mqtt_topic secret/#
			}
			respond @secret 403
			@capped {
				path /subscribe
				mqtt_topic capped/#
			}
			header @capped X-Mqtt-Limit-Max-Frequency 1
			respond 204
		}`)
	ctx := ctx10(t)
	c := dial(t, url)
	h, _, err := c.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: "rules-worker", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	var e *gwclient.Error
	for filter, code := range map[string]session.Code{
		"$share/x/secret/#":   session.CodeNotAuthorized,
		"$share/x/#":          0, // allowed: what secret/# denies is not all it matches
		"$share/x/capped/+":   0,
		"$share/x/reports/+":  0,
		"secret/plans":        session.CodeNotAuthorized,
		"$share/x/secret/a/+": session.CodeNotAuthorized,
	} {
		_, err := c.Subscribe(ctx, h, filter, 0)
		if code == 0 && err != nil || code != 0 && (!errors.As(err, &e) || e.Code != code) {
			t.Errorf("subscribe %s: %v, want code %d", filter, err, code)
		}
	}
	if err := c.Unsubscribe(ctx, h, "$share/x/#"); err != nil { // the rest are under capped/ or elsewhere
		t.Fatal(err)
	}
	stop := collecting(c)
	publishRange(t, mqttPublisher(t, mq.port), []string{"capped/t"}, 0, 50, 100, 8, 0) // 0.5 s
	capped := stop(2 * time.Second)
	if len(capped) == 0 || len(capped) > 4 || capped[len(capped)-1].seq != 49 {
		t.Errorf("the shared subscription capped at 1/s got %d of 50 messages in 0.5 s; want at most 4, ending on 49", len(capped))
	}
}

// A reload that closes a share group ends its members' subscriptions: they
// would go on taking the group's messages. A client that asked is told
// (UNSUBSCRIBED 4021), and the jobs go to the members of the groups still
// open. (They stayed members.)
func TestAReloadThatClosesAShareGroupEndsItsSubscriptions(t *testing.T) {
	mq := startMosquitto(t)
	httpPort, groups := freePort(t), "workers reports"
	reload := adminCaddy(t, func() string {
		return fmt.Sprintf("http://127.0.0.1:%d {\n mqtt_gateway /mqtt/* {\n name shares\n broker main mqtt://127.0.0.1:%d\n shared_subscriptions %s\n }\n}\n",
			httpPort, mq.port, groups)
	})
	ctx := ctx10(t)
	c, err := gwclient.DialWith(ctx, &websocket.Dialer{}, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", httpPort), nil,
		[]transport.KV{{Key: "unsubscribed", Value: "1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	h, _, err := c.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: "closing-member", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"$share/workers/jobs/+", "$share/reports/reports/+"} {
		if _, err := c.Subscribe(ctx, h, f, 1); err != nil {
			t.Fatalf("subscribe %s: %v", f, err)
		}
	}
	groups = "reports"
	reload()
	f := nextMessage(t, c)
	if f.Type != transport.TypeUnsubscribed || f.Filter != "$share/workers/jobs/+" || f.Code != session.CodeNotAuthorized {
		t.Fatalf("after the reload: %+v, want UNSUBSCRIBED 4021 for $share/workers/jobs/+", f)
	}
	mosquittoPub(t, mq.port, "-t", "jobs/a", "-q", "1", "-m", "job")
	mosquittoPub(t, mq.port, "-t", "reports/a", "-q", "1", "-m", "report")
	f = nextMessage(t, c)
	if f.Type != transport.TypeMessage || f.Publish.Topic != "reports/a" {
		t.Fatalf("after the reload: %+v, want only reports/a", f)
	}
}
