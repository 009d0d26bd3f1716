package mqttgateway

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/caddy-mqtt/mqttgateway/session"
	"github.com/caddy-mqtt/mqttgateway/transport"
	"github.com/caddy-mqtt/mqttgateway/transport/gwclient"
)

// mqttPublisher connects a Go MQTT client to the broker, for publishing at
// rates mosquitto_pub cannot reach.
func mqttPublisher(t testing.TB, port int) *autopaho.ConnectionManager {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	u, _ := url.Parse(fmt.Sprintf("mqtt://127.0.0.1:%d", port))
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{ServerUrls: []*url.URL{u}, KeepAlive: 30,
		ClientConfig: paho.ClientConfig{ClientID: fmt.Sprintf("test-pub-%d", time.Now().UnixNano())}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cm.Disconnect(context.Background()); cancel() })
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := cm.AwaitConnection(wctx); err != nil {
		t.Fatal(err)
	}
	return cm
}

// publishAt publishes n messages round-robin over topics at rate per
// second; each payload is numbered(i, size).
func publishAt(t testing.TB, cm *autopaho.ConnectionManager, topics []string, n int, rate float64, size int, qos byte) {
	t.Helper()
	publishRange(t, cm, topics, 0, n, rate, size, qos)
}

// publishRange publishes messages from to to-1 like publishAt. It may run
// on a goroutine of its own: a failure is reported with Errorf, not Fatal.
func publishRange(t testing.TB, cm *autopaho.ConnectionManager, topics []string, from, to int, rate float64, size int, qos byte) {
	t.Helper()
	tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer tick.Stop()
	for i := from; i < to; i++ {
		<-tick.C
		if _, err := cm.Publish(context.Background(), &paho.Publish{Topic: topics[i%len(topics)], QoS: qos, Payload: numbered(i, size)}); err != nil {
			t.Errorf("publish %d: %v", i, err)
			return
		}
	}
}

// numbered is a test payload: the number i, then zeros up to size bytes
// (at least 8).
func numbered(i, size int) []byte {
	p := make([]byte, max(size, 8))
	binary.BigEndian.PutUint64(p, uint64(i))
	return p
}

// seqOf is the number numbered wrote into p.
func seqOf(p []byte) int { return int(binary.BigEndian.Uint64(p)) }

type arrival struct {
	at    time.Time
	topic string
	seq   uint64
}

func collect(c *gwclient.Client, until time.Time) []arrival {
	stop := make(chan struct{})
	time.AfterFunc(time.Until(until), func() { close(stop) })
	return collectUntil(c, stop)
}

// collecting collects c's messages on a goroutine of its own until the
// function it returns is called: that one waits after more (for values a
// limit still holds) and returns them. A publisher runs late on a loaded
// machine, and collectors with a deadline set before it started stopped
// before its last messages came.
func collecting(c *gwclient.Client) (stop func(after time.Duration) []arrival) {
	done, out := make(chan struct{}), make(chan []arrival, 1)
	go func() { out <- collectUntil(c, done) }()
	return func(after time.Duration) []arrival {
		time.Sleep(after)
		close(done)
		return <-out
	}
}

func collectUntil(c *gwclient.Client, stop <-chan struct{}) []arrival {
	var got []arrival
	for {
		select {
		case f, ok := <-c.Messages:
			if !ok {
				return got
			}
			if f.Type == transport.TypeMessage {
				got = append(got, arrival{time.Now(), f.Publish.Topic, binary.BigEndian.Uint64(f.Publish.Payload)})
			}
		case <-stop:
			return got
		}
	}
}

// A topic published at 100 msg/s to a subscription limited to 2/s: at most
// 2 deliveries in any one-second window for 10 s, and the last value
// delivered is the last published. With a wildcard over 5 topics, every
// topic's last value arrives.
func TestMaxFrequencyAccuracy(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	one, five := dial(t, url), dial(t, url)
	ctx := ctx10(t)
	h1 := connectMain(t, one)
	if _, err := one.SubscribeLimited(ctx, h1, "freq/single", 0, 2); err != nil {
		t.Fatal(err)
	}
	h5 := connectMain(t, five)
	if _, err := five.SubscribeLimited(ctx, h5, "freq/many/+", 0, 2); err != nil {
		t.Fatal(err)
	}
	pub := mqttPublisher(t, mq.port)
	manyTopics := []string{"freq/many/0", "freq/many/1", "freq/many/2", "freq/many/3", "freq/many/4"}
	// Arrival times are taken as frames arrive, by collectors running
	// through the whole publication and 2 s more for the last held values.
	singleStop, manyStop := collecting(one), collecting(five)
	done := make(chan struct{})
	go func() {
		defer close(done)
		publishAt(t, pub, manyTopics, 500, 50, 8, 0) // 10 msg/s per topic
	}()
	started := time.Now()
	publishAt(t, pub, []string{"freq/single"}, 1000, 100, 8, 0) // 10 s
	// On a loaded machine the publisher takes longer than 10 s, and the
	// limit lets more through over the longer time.
	publishing := time.Since(started)
	<-done
	single, many := singleStop(2*time.Second), manyStop(0)

	if most := 2*int(publishing.Seconds()+1) + 2; len(single) < 15 || len(single) > most {
		t.Fatalf("%d deliveries in %s at 2/s, want 15 to %d", len(single), publishing.Round(time.Millisecond), most)
	}
	for i := range single {
		n := 0
		for j := i; j < len(single) && single[j].at.Sub(single[i].at) < time.Second; j++ {
			n++
		}
		if n > 2 {
			t.Fatalf("%d deliveries within one second starting at delivery %d", n, i)
		}
	}
	if last := single[len(single)-1].seq; last != 999 {
		t.Fatalf("last delivered value %d, want 999 (the last published)", last)
	}
	lastOf := map[string]uint64{}
	for _, a := range many {
		lastOf[a.topic] = a.seq
	}
	for i, topic := range manyTopics {
		if want := uint64(495 + i); lastOf[topic] != want {
			t.Errorf("%s: last value %d, want %d", topic, lastOf[topic], want)
		}
	}
	t.Logf("single topic: %d deliveries; wildcard over 5 topics: %d deliveries", len(single), len(many))
}

// A sensor that publishes at QoS 1, to a dashboard whose subscription is
// QoS 0 and limited to 2/s: the dashboard gets the messages at QoS 0, so
// the limit applies, and it ends on the latest value. A QoS 1 subscription
// with the same limit gets every message, never conflated. (Messages
// published at QoS 1 passed every limit: 200 of 200 at a limit of 1/s.)
func TestFrequencyLimitAppliesToQoS1MessagesReceivedAtQoS0(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	ctx := ctx10(t)
	dashboard, alarms := dial(t, url), dial(t, url)
	for c, qos := range map[*gwclient.Client]byte{dashboard: 0, alarms: 1} {
		h := connectMain(t, c)
		if _, err := c.SubscribeLimited(ctx, h, "q1/+", qos, 2); err != nil {
			t.Fatal(err)
		}
	}
	const n = 100
	dashStop, alarmStop := collecting(dashboard), collecting(alarms)
	publishAt(t, mqttPublisher(t, mq.port), []string{"q1/t"}, n, 100, 8, 1) // 1 s
	dash, alarm := dashStop(3*time.Second), alarmStop(0)                    // and the held values

	if len(dash) > 6 || len(dash) == 0 || dash[len(dash)-1].seq != n-1 {
		t.Errorf("the QoS 0 subscription limited to 2/s got %d of %d messages published at QoS 1, the last %v; want at most 6, ending on %d",
			len(dash), n, dash[max(len(dash)-1, 0):], n-1)
	}
	if len(alarm) != n {
		t.Errorf("the QoS 1 subscription got %d of %d messages published at QoS 1, want every one", len(alarm), n)
	}
	for i, a := range alarm {
		if a.seq != uint64(i) {
			t.Fatalf("the QoS 1 subscription's message %d is %d", i, a.seq)
		}
	}
}

// dialCapped opens a session that asks for a bandwidth cap of
// bytesPerSecond (the OPEN option max_bandwidth).
func dialCapped(t *testing.T, url string, bytesPerSecond int) *gwclient.Client {
	t.Helper()
	c, err := gwclient.DialWith(ctx10(t), &websocket.Dialer{}, url, nil, []transport.KV{{Key: "max_bandwidth", Value: strconv.Itoa(bytesPerSecond)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A session capped at 10 kbit/s receiving a 100 kbit/s stream stays under
// the cap (10% for framing) and near it over 10 s, and ends on the latest
// values.
func TestMaxBandwidthCap(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	c := dialCapped(t, url, 1250)
	connectSubscribe(t, c, "bw/+", 0)
	topics := []string{"bw/0", "bw/1", "bw/2", "bw/3", "bw/4"}
	pub := mqttPublisher(t, mq.port)
	start := c.BytesIn.Load()
	t0 := time.Now()
	publishAt(t, pub, topics, 1250, 125, 100, 0) // 125 msg/s × 100 B = 100 kbit/s, 10 s
	elapsed := time.Since(t0)
	got := c.BytesIn.Load() - start
	rate := float64(got) / elapsed.Seconds()
	t.Logf("received %d bytes in %s: %.0f B/s against a cap of 1250 B/s", got, elapsed.Round(time.Millisecond), rate)
	// The cap's promise is the upper bound. The lower one catches a cap
	// that throttles well below itself; it leaves room for a loaded
	// machine (the whole suite with -race on 2 cores), whose late timers
	// cost a capped session some of its budget.
	if rate < 1250*0.8 || rate > 1250*1.1 {
		t.Fatalf("rate %.0f B/s is not within -20%%/+10%% of 1250 B/s", rate)
	}
	last := map[string]uint64{}
	for _, a := range collect(c, time.Now().Add(2*time.Second)) {
		last[a.topic] = a.seq
	}
	for i, topic := range topics {
		if want := uint64(1245 + i); last[topic] != want {
			t.Errorf("%s ended on %d, want the latest value %d", topic, last[topic], want)
		}
	}
}

// A sensor publishing at QoS 1, to a session capped at 2 KB/s whose
// subscription to it is QoS 0: its clients get the messages at QoS 0, so
// the cap conflates them per topic as it does QoS 0 ones, and every topic's
// latest value arrives soon after the burst. (They queued in full, the
// cap never conflated them: 500 messages took some 30 s to drain, and
// past the queue's bounds the newest would have been dropped.) Also when
// the session holds a QoS 1 subscription besides, for alarms, whose
// messages are never conflated: the sensor values were then kept whole
// (the last ones came 24-28 s after the burst).
func TestBandwidthCapConflatesQoS1MessagesReceivedAtQoS0(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	for _, alarms := range []bool{false, true} {
		t.Run(map[bool]string{false: "QoS 0 subscriptions only", true: "beside a QoS 1 subscription"}[alarms], func(t *testing.T) {
			c := dialCapped(t, url, 2000)
			h := connectSubscribe(t, c, "bwq/+", 0)
			alarmTopics := []string{"bwq-alarm/fire"}
			if alarms {
				if _, err := c.Subscribe(ctx10(t), h, "bwq-alarm/#", 1); err != nil {
					t.Fatal(err)
				}
			}
			topics := []string{"bwq/0", "bwq/1", "bwq/2", "bwq/3", "bwq/4"}
			const n, fires = 500, 5
			pub := mqttPublisher(t, mq.port)
			stop := collecting(c)
			done := make(chan struct{})
			go func() { // alarms during the burst, each one to arrive
				defer close(done)
				if alarms {
					publishRange(t, pub, alarmTopics, 0, fires, 5, 100, 1)
				}
			}()
			publishAt(t, pub, topics, n, 500, 100, 1) // 1 s
			<-done
			arrivals := stop(4 * time.Second)
			last := map[string]uint64{}
			got := 0
			for _, a := range arrivals {
				if a.topic == alarmTopics[0] {
					if a.seq != uint64(got) {
						t.Errorf("alarm %d arrived as the %dth", a.seq, got)
					}
					got++
					continue
				}
				last[a.topic] = a.seq
			}
			for i, topic := range topics {
				if want := uint64(n - len(topics) + i); last[topic] != want {
					t.Errorf("%s ended on %d within 4 s of the burst, want the latest value %d", topic, last[topic], want)
				}
			}
			if alarms && got != fires {
				t.Errorf("%d of %d alarms arrived", got, fires)
			}
			t.Logf("%d of %d messages delivered under the cap", len(arrivals), n+got)
		})
	}
}

// The server's max_bandwidth caps every session, asked or not; and a
// capped session's own RESULTs do not wait behind its backlog of messages.
func TestServerBandwidthCapAndResultsFirst(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "max_bandwidth 4KiB")
	c := dial(t, url) // asks for no cap of its own
	h := connectSubscribe(t, c, "cap/+", 0)
	pub := mqttPublisher(t, mq.port)
	topics := make([]string, 8) // one message per topic: nothing to conflate
	for i := range topics {
		topics[i] = fmt.Sprint("cap/", i)
	}
	publishAt(t, pub, topics, len(topics), 1000, 1000, 0) // 8 KB at once, 2 s at 4 KiB/s
	first := nextMessage(t, c)
	t0 := time.Now()
	if err := c.Publish(ctx10(t), h, session.PublishParams{Topic: "elsewhere", QoS: 1, Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	confirmed := time.Since(t0)
	for range len(topics) - 1 {
		nextMessage(t, c)
	}
	drained := time.Since(t0)
	t.Logf("first message %s; publish confirmed after %s; the other %d messages after %s", first.Publish.Topic,
		confirmed.Round(time.Millisecond), len(topics)-1, drained.Round(time.Millisecond))
	// About 7 KB at 4 KiB/s after the quarter-second burst: 1.7 s. Without
	// the cap they all arrive within milliseconds.
	if drained < time.Second {
		t.Fatalf("the backlog drained in %s: the server's max_bandwidth did not hold", drained)
	}
	if confirmed > drained/2 {
		t.Fatalf("the publish was confirmed after %s, behind the backlog (drained after %s)", confirmed, drained)
	}
}

// A client that stops reading while 1,000 msg/s flow: the gateway's heap
// stays bounded, another session keeps receiving everything, and when the
// slow client reads again it finds conflated QoS 0 values (the latest of
// each topic) and an overflow notice counting the QoS 1 messages dropped.
func TestSlowClientBoundedAndNotified(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port),
		"max_queued_frames 200\n\t\tmax_queued_bytes 512KiB")
	ctx := ctx10(t)

	// The slow client: a tiny receive buffer, so its socket fills at once.
	slow := rawSession(t, ctx, tinyReceiveBuffer(), url)
	fast := dial(t, url)
	connectSubscribe(t, fast, "slow/#", 1)

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	pub := mqttPublisher(t, mq.port)
	qos0 := []string{"slow/a", "slow/b", "slow/c", "slow/d"}
	const n = 4000 // 4 s at 1,000 msg/s, 1 KiB each
	done := make(chan struct{})
	go func() { defer close(done); publishAt(t, pub, qos0, n, 1000, 1024, 0) }()
	fastGot := 0
	for fastGot < n {
		select {
		case f := <-fast.Messages:
			if f.Type == transport.TypeMessage {
				fastGot++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("the fast session stalled at %d of %d messages", fastGot, n)
		}
	}
	<-done
	publishAt(t, pub, []string{"slow/q1"}, 300, 1000, 1024, 1)
	for i := 0; i < 300; i++ {
		<-fast.Messages
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("heap growth during the flood: %d KiB (%d MiB of messages offered)", growth>>10, (n+300)>>10)
	if growth > 32<<20 {
		t.Fatalf("heap grew by %d MiB with a slow client", growth>>20)
	}

	// Now the slow client reads what was kept for it.
	last := map[string]uint64{}
	var notice *transport.Frame
	messages := 0
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) && (notice == nil || len(last) < 4) {
		f, ok := slow.next(time.Until(deadline))
		if !ok {
			break
		}
		switch f.Type {
		case transport.TypeMessage:
			messages++
			last[f.Publish.Topic] = binary.BigEndian.Uint64(f.Publish.Payload)
		case transport.TypeNotice:
			notice = &f
		}
	}
	if notice == nil || notice.Code != session.CodeOverflow || notice.Value == 0 {
		t.Fatalf("no overflow notice for the QoS 1 messages dropped: %+v", notice)
	}
	for i, topic := range qos0 {
		if want := uint64(n - 4 + i); last[topic] != want {
			t.Errorf("%s: slow client's latest value %d, want %d", topic, last[topic], want)
		}
	}
	t.Logf("slow client: %d messages read of %d offered, notice counts %d dropped", messages, n+300, notice.Value)
}

// tinyReceiveBuffer dials with a 4 KiB socket receive buffer, so the
// gateway's writes to a client that does not read stop at once.
func tinyReceiveBuffer() *websocket.Dialer {
	return &websocket.Dialer{NetDialContext: tinyReceiveDialer().DialContext}
}

// tinyReceiveDialer dials sockets whose receive buffer is 4 KiB.
func tinyReceiveDialer() *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
}

// rawSession is a client that reads only when asked.
type rawConn struct {
	ws      *websocket.Conn
	opened  transport.Frame // the session's OPENED
	pending []transport.Frame
	err     error // why next failed
}

func rawSession(t *testing.T, ctx context.Context, d *websocket.Dialer, url string) *rawConn {
	t.Helper()
	return rawSessionAt(t, ctx, d, url, 1)
}

// rawSessionAt is rawSession with its subscription to slow/# at qos.
func rawSessionAt(t *testing.T, ctx context.Context, d *websocket.Dialer, url string, qos byte) *rawConn {
	t.Helper()
	d.Subprotocols = []string{transport.Subprotocol}
	ws, _, err := d.DialContext(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &rawConn{ws: ws}
	ws.WriteMessage(websocket.BinaryMessage, transport.AppendOpen(nil, "", nil, nil))
	if c.opened, _ = c.next(5 * time.Second); c.opened.Type != transport.TypeOpened {
		t.Fatalf("no OPENED: %+v", c.opened)
	}
	unit := transport.AppendConnect(nil, 1, 1, &session.ConnectParams{Broker: "main"})
	unit = transport.AppendSubscribe(unit, 2, 1, "slow/#", qos, 0)
	ws.WriteMessage(websocket.BinaryMessage, unit)
	for req := uint64(1); req <= 2; req++ {
		if f, _ := c.next(5 * time.Second); f.Type != transport.TypeResult || f.Code != 0 {
			t.Fatalf("request %d: %+v", req, f)
		}
	}
	return c
}

func (c *rawConn) next(timeout time.Duration) (transport.Frame, bool) {
	for len(c.pending) == 0 {
		c.ws.SetReadDeadline(time.Now().Add(timeout))
		_, unit, err := c.ws.ReadMessage()
		if err != nil {
			c.err = err
			return transport.Frame{}, false
		}
		transport.SplitUnit(unit, func(b []byte) error {
			var f transport.Frame
			if transport.Decode(b, &f) == nil && f.Type != transport.TypePing {
				c.pending = append(c.pending, f)
			}
			return nil
		})
	}
	f := c.pending[0]
	c.pending = c.pending[1:]
	return f, true
}

// Throttling holds QoS 0 values back, but never so that an older value
// arrives after a newer one: a client must end on its topic's latest
// value. The ways an older value could overtake: a QoS 1 message, never
// held, going past a held QoS 0 one; a limit lifted while a value is held;
// and, under a bandwidth cap, a newer QoS 0 value taking the queue place
// of an older one that waits ahead of a QoS 1 message.
func TestThrottledValuesNeverArriveOutOfOrder(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	pub := mqttPublisher(t, mq.port)
	publish := func(topic string, seq int, qos byte, size int) {
		t.Helper()
		if _, err := pub.Publish(context.Background(), &paho.Publish{Topic: topic, QoS: qos, Payload: numbered(seq, size)}); err != nil {
			t.Fatal(err)
		}
	}
	seqs := func(as []arrival, topic string) (out []uint64) {
		for _, a := range as {
			if a.topic == topic {
				out = append(out, a.seq)
			}
		}
		return out
	}
	ordered := func(got []uint64) bool {
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] {
				return false
			}
		}
		return true
	}

	// limited is a session whose client subscribes to filter at most
	// perSecond times a second.
	limited := func(t *testing.T, filter string, qos byte, perSecond float64) (*gwclient.Client, uint64) {
		c := dial(t, url)
		h, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.SubscribeLimited(ctx10(t), h, filter, qos, perSecond); err != nil {
			t.Fatal(err)
		}
		return c, h
	}

	t.Run("a QoS 1 message past a held QoS 0 value", func(t *testing.T) {
		c, _ := limited(t, "mix/a", 1, 0.5)
		publish("mix/a", 1, 0, 8) // delivered
		publish("mix/a", 2, 0, 8) // held for 2 s
		publish("mix/a", 3, 1, 8) // never held
		got := seqs(collect(c, time.Now().Add(3*time.Second)), "mix/a")
		if !ordered(got) || len(got) == 0 || got[len(got)-1] != 3 {
			t.Fatalf("received %v: the latest value, 3, must come last", got)
		}
	})

	t.Run("a limit lifted while a value is held", func(t *testing.T) {
		c, h := limited(t, "lift/a", 0, 0.2)
		publish("lift/a", 1, 0, 8) // delivered
		publish("lift/a", 2, 0, 8) // held for 5 s
		time.Sleep(200 * time.Millisecond)
		if err := c.SetFrequency(ctx10(t), h, "lift/a", 0); err != nil {
			t.Fatal(err)
		}
		publish("lift/a", 3, 0, 8)
		publish("lift/a", 4, 0, 8)
		// Well before the 5 s the old limit would hold 2.
		got := seqs(collect(c, time.Now().Add(2*time.Second)), "lift/a")
		if fmt.Sprint(got) != "[1 2 3 4]" {
			t.Fatalf("received %v, want [1 2 3 4]: the held value goes when the limit is lifted, before the newer ones", got)
		}
	})

	t.Run("a bandwidth cap's conflation past a QoS 1 message", func(t *testing.T) {
		c := dial(t, url)
		h, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Subscribe(ctx10(t), h, "bw/#", 1); err != nil {
			t.Fatal(err)
		}
		if _, err := c.SetBandwidth(ctx10(t), 300); err != nil {
			t.Fatal(err)
		}
		publish("bw/filler", 100, 0, 250) // the backlog the cap makes
		publish("bw/filler", 101, 0, 250)
		publish("bw/a", 1, 0, 8)
		publish("bw/a", 2, 1, 8)
		publish("bw/a", 3, 0, 8)
		got := seqs(collect(c, time.Now().Add(5*time.Second)), "bw/a")
		if !ordered(got) || len(got) == 0 || got[len(got)-1] != 3 {
			t.Fatalf("received %v: the latest value, 3, must come last", got)
		}
	})
}

// A session that ends while messages arrive for its frequency-limited
// subscription must not take the gateway down: finish dropped the gate but
// left the count of throttled subscriptions, and the hub, which delivers
// until the session's clients have detached, offered the next message to a
// nil gate. A dashboard closing its tab during a burst was enough.
func TestSessionEndingWhileThrottledMessagesArrive(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	pub := mqttPublisher(t, mq.port)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // as fast as the broker takes them, until stop
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			pub.Publish(context.Background(), &paho.Publish{Topic: fmt.Sprintf("burst/%d", i%8), Payload: []byte("x")})
		}
	}()
	defer func() { close(stop); <-done }()
	watcher := dial(t, url)
	connectSubscribe(t, watcher, "burst/0", 0)
	for i := range 40 {
		c := dial(t, url)
		h, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.SubscribeLimited(ctx10(t), h, "burst/#", 0, 1); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			c.Close() // CLOSE
		} else {
			c.Drop() // vanished: the session ends later, by expiry
		}
	}
	// Still serving: a panic would have ended the test binary.
	nextMessage(t, watcher)
}

// A QoS 1 message that overflow drops for a slow client with a dedicated
// connection is counted in the NOTICE and acknowledged to the broker. It
// stalled the stream for good before: paho acknowledges in order, so no
// acknowledgment reached the broker after the first drop, its in-flight
// window (Mosquitto: 20) filled, and the client, reading and acknowledging
// everything again, never got another QoS 1/2 message.
func TestOverflowOnADedicatedStreamDoesNotStallIt(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "max_queued_frames 2")
	ctx := ctx10(t)
	c := dial(t, url)
	h, _, err := c.Connect(ctx, session.ConnectParams{Broker: "main", ClientID: fmt.Sprintf("stall-%d", time.Now().UnixNano()), CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, h, "stall/#", 1); err != nil {
		t.Fatal(err)
	}
	pub := mqttPublisher(t, mq.port)

	// Slow: frames wait behind a bandwidth cap of 256 bytes/s (a few
	// messages a second, and a NOTICE within one), two at most.
	if _, err := c.SetBandwidth(ctx, 256); err != nil {
		t.Fatal(err)
	}
	publishAt(t, pub, []string{"stall/slow"}, 40, 1000, 16, 1)
	// Each of the 40 either arrives (and is acknowledged) or is counted
	// dropped in a NOTICE; the cap goes once the first NOTICE came.
	arrived, dropped := 0, uint64(0)
	for arrived+int(dropped) < 40 {
		select {
		case f := <-c.Messages:
			switch {
			case f.Type == transport.TypeMessage:
				c.Ack(f.Stream, f.PacketID)
				arrived++
			case f.Type == transport.TypeNotice && f.Code == session.CodeOverflow:
				if dropped == 0 {
					if _, err := c.SetBandwidth(ctx, 0); err != nil {
						t.Fatal(err)
					}
				}
				dropped += f.Value
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("of 40 messages to a queue of 2, %d arrived and %d were counted dropped", arrived, dropped)
		}
	}
	if dropped == 0 {
		t.Fatal("no message was dropped: the test did not overflow the queue")
	}

	// Fast again, acknowledging everything: every later message arrives.
	// One at a time, so that none overflows the queue of 2.
	for i := 0; i < 30; i++ {
		publishAt(t, pub, []string{"stall/fast"}, 1, 1000, 16, 1)
		for arrived := false; !arrived; {
			select {
			case f := <-c.Messages:
				if f.Type != transport.TypeMessage {
					continue
				}
				if err := c.Ack(f.Stream, f.PacketID); err != nil {
					t.Fatal(err)
				}
				arrived = f.Publish.Topic == "stall/fast"
			case <-time.After(10 * time.Second):
				t.Fatalf("the stream stalled: %d of 30 messages published after the overflow arrived", i)
			}
		}
	}
}

// The values a session's frequency limits hold (each topic's latest, until
// its time comes) are bounded as its queue is, by max_queued_frames and
// max_queued_bytes: past them a value is dropped and counted in an
// overflow NOTICE. Unbounded, a subscription to a wildcard limited to one
// message per 1,000 s held a 1 MiB value of each of 500 topics for that
// long: 1 GB.
func TestValuesHeldByFrequencyLimitsAreBounded(t *testing.T) {
	mq := startMosquitto(t)
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "max_queued_bytes 128KiB")
	ctx := ctx10(t)
	c := dial(t, url)
	h := connectMain(t, c)
	if _, err := c.SubscribeLimited(ctx, h, "held/#", 0, 0.001); err != nil {
		t.Fatal(err)
	}
	pub := mqttPublisher(t, mq.port)
	topics := make([]string, 10)
	for i := range topics {
		topics[i] = fmt.Sprintf("held/%d", i)
	}
	next := func(what string) transport.Frame {
		t.Helper()
		select {
		case f := <-c.Messages:
			return f
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s for 10 s", what)
		}
		return transport.Frame{}
	}
	// Each topic's first value goes at once; its next waits 1,000 s.
	const size = 20 << 10 // six fit in 128 KiB, not seven
	publishAt(t, pub, topics, len(topics), 100, size, 0)
	for i := range topics {
		if f := next("first value"); f.Type != transport.TypeMessage || seqOf(f.Publish.Payload) != i {
			t.Fatalf("first value %d: %+v", i, f)
		}
	}
	// The next values: six are held, four dropped and counted.
	publishRange(t, pub, topics, len(topics), 2*len(topics), 100, size, 0)
	for dropped := uint64(0); dropped < 4; {
		f := next("overflow notice")
		if f.Type != transport.TypeNotice || f.Code != session.CodeOverflow {
			t.Fatalf("%+v while values wait 1,000 s", f)
		}
		dropped += f.Value
		if dropped > 4 {
			t.Fatalf("%d values dropped of 10 held within 128 KiB", dropped)
		}
	}
	// Lifting the limit releases what was held: the first six topics'.
	if err := c.SetFrequency(ctx, h, "held/#", 0); err != nil {
		t.Fatal(err)
	}
	got := map[int]bool{}
	for len(got) < 6 {
		f := next("held value")
		if f.Type != transport.TypeMessage {
			t.Fatalf("%+v, want a held value", f)
		}
		got[seqOf(f.Publish.Payload)] = true
	}
	for i := len(topics); i < len(topics)+6; i++ {
		if !got[i] {
			t.Fatalf("released %v, want the values %d to %d", got, len(topics), len(topics)+5)
		}
	}
}

// A client on a slow link: it reads all the time, but slower than messages
// come. The backlog must wait where the gateway can conflate it, not in
// the kernel: once the publisher stops, the client gets every topic's
// latest value after reading little more than what its socket holds. (The
// kernel grew the send buffer to megabytes and took everything, nothing
// was ever conflated, and the latest values came only after the client
// had read through the whole backlog: tens of seconds on a link of a few
// KB/s.)
//
// Also where Caddy wraps the response writer, and so the hijacked
// connection, to count bytes: with metrics on, or access logs. (There the
// gateway found no TCP connection under the wrapper, and set no limit.)
func TestSlowReaderGetsTheLatestValuesSoon(t *testing.T) {
	for name, setup := range map[string]struct {
		globals, site string
		anyHost       bool
	}{
		"plain":       {},
		"metrics":     {globals: "metrics"},
		"access logs": {site: "log {\n\t\toutput discard\n\t}"},
		// Each wraps the connection: with both (or metrics on a site
		// for any host with a handler before the gateway's, root or
		// header), it came wrapped twice, and the gateway, unwrapping
		// once, set no limit: a phone on a slow link got values 18-28 s
		// old, growing, and nothing was conflated.
		"metrics and access logs": {globals: "metrics", site: "log {\n\t\toutput discard\n\t}"},
		"metrics, root before":    {globals: "metrics", site: "root * /nonexistent", anyHost: true},
		// Compression, as many sites have it: it wraps the response
		// writer the WebSocket is taken from.
		"encode": {site: "encode zstd gzip"},
	} {
		t.Run(name, func(t *testing.T) {
			mq := startMosquitto(t)
			port := freePort(t)
			host := "127.0.0.1" // testGlobals' default_bind keeps any host on loopback
			if setup.anyHost {
				host = ""
			}
			loadCaddy(t, adaptCaddyfile(t, strings.Replace(testGlobals, "}", setup.globals+"\n}", 1)+fmt.Sprintf(`http://%s:%d {
	%s
	mqtt_gateway /mqtt/* {
		broker main mqtt://127.0.0.1:%d
	}
}
`, host, port, setup.site, mq.port)))
			slowReaderGetsTheLatestValuesSoon(t, mq, fmt.Sprintf("ws://127.0.0.1:%d/mqtt/ws", port))
		})
	}
}

func slowReaderGetsTheLatestValuesSoon(t *testing.T, mq *mosquitto, url string) {
	ctx := ctx10(t)
	slow := rawSession(t, ctx, tinyReceiveBuffer(), url)
	// The reader takes about 100 KiB/s.
	read, readAfter := latestValuesSoon(t, mq, func() []transport.Frame {
		return []transport.Frame{slow.nextSlowly(t, nil)}
	})
	t.Logf("the slow client read %d of 2000 messages, %d of them after the publisher stopped", read, readAfter)
}

// latestValuesSoon publishes 2,000 messages of 1 KiB at 1,000 msg/s over
// four slow/ topics (2 MiB, far more than a slow reader takes), which a
// slow client subscribed to slow/# reads with next (the frames it reads
// next, at its own pace). Once the publisher is done, the client must get
// every topic's latest value after reading few more messages: those a
// conflated queue holds (a couple of hundred at most; 170-240 on
// WebSocket, two writes of what waits and the socket), not the backlog
// (some 1,500). It returns the messages read, and those after the end.
func latestValuesSoon(t *testing.T, mq *mosquitto, next func() []transport.Frame) (read, readAfter int) {
	t.Helper()
	topics := []string{"slow/a", "slow/b", "slow/c", "slow/d"}
	const n = 2000
	published := make(chan struct{})
	go func() {
		defer close(published)
		publishAt(t, mqttPublisher(t, mq.port), topics, n, 1000, 1024, 0)
	}()
	last := map[string]int{}
	ended := false
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if !ended {
			select {
			case <-published:
				ended = true
			default:
			}
		}
		for _, f := range next() {
			if f.Type != transport.TypeMessage {
				continue
			}
			read++
			if ended {
				readAfter++
			}
			last[f.Publish.Topic] = seqOf(f.Publish.Payload)
		}
		latest := ended
		for i, topic := range topics {
			latest = latest && last[topic] == n-len(topics)+i
		}
		if latest {
			return read, readAfter
		}
		if readAfter > 600 {
			t.Fatalf("after the publisher stopped, the slow client read %d messages and still lacks a latest value: %v", readAfter, last)
		}
	}
	t.Fatalf("no latest value of every topic within 30 s: %v", last)
	return read, readAfter
}
