package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
)

// publisher is one paho MQTT 5 client over TCP to Mosquitto, publishing
// QoS 0 messages on the benchmark topic. It also follows Mosquitto's
// $SYS/broker/publish/messages/dropped counter, which is the only place
// Mosquitto reports the QoS 0 messages it drops.
type publisher struct {
	c       *paho.Client
	topic   string
	payload []byte
	dropped atomic.Int64 // last $SYS value seen; -1 until one arrives
}

func dialPublisher(ctx context.Context, port int, topic string, size int) (*publisher, error) {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
	if err != nil {
		return nil, err
	}
	p := &publisher{topic: topic, payload: make([]byte, max(size, payloadHeader))}
	p.dropped.Store(-1)
	p.c = paho.NewClient(paho.ClientConfig{
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			if v, err := strconv.ParseInt(string(pr.Packet.Payload), 10, 64); err == nil {
				p.dropped.Store(v)
			}
			return true, nil
		}},
	})
	ca, err := p.c.Connect(ctx, &paho.Connect{ClientID: "bench-publisher", KeepAlive: 60, CleanStart: true})
	if err != nil {
		conn.Close()
		return nil, err
	}
	if ca.ReasonCode != 0 {
		conn.Close()
		return nil, fmt.Errorf("publisher connack: reason 0x%02x", ca.ReasonCode)
	}
	_, err = p.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "$SYS/broker/publish/messages/dropped", QoS: 0}}})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return p, nil
}

// publish sends one message; the send time is taken just before the call.
func (p *publisher) publish(ctx context.Context, seq uint64, kind byte) error {
	fillPayload(p.payload, time.Now().UnixNano(), seq, kind)
	_, err := p.c.Publish(ctx, &paho.Publish{Topic: p.topic, QoS: 0, Payload: p.payload})
	return err
}

func (p *publisher) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	p.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	select {
	case <-p.c.Done():
	case <-ctx.Done():
	}
}

// runRate publishes rate messages per second for d. A late tick is made up
// at once, so the average rate is exact even when a sleep overshoots.
func (p *publisher) runRate(ctx context.Context, rate float64, d time.Duration) (uint64, error) {
	total := floorMessages(rate, d) // setup F sends the same count
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := uint64(1); i <= total; i++ {
		if wait := time.Until(start.Add(time.Duration(i-1) * interval)); wait > 0 {
			time.Sleep(wait)
		}
		if err := p.publish(ctx, i, kindMeasured); err != nil {
			return i - 1, err
		}
	}
	return total, nil
}

// runSaturate publishes as fast as the subscribers take the messages: at
// most window messages ahead of the average subscriber (deliveries / n),
// for d. Bounding the lag keeps queues (and so memory) bounded in both
// setups while the servers stay busy.
func (p *publisher) runSaturate(ctx context.Context, d time.Duration, window int, n int, delivered *atomic.Int64) (uint64, error) {
	end := time.Now().Add(d)
	var seq uint64
	for time.Now().Before(end) {
		if int64(seq)-delivered.Load()/int64(n) >= int64(window) {
			time.Sleep(100 * time.Microsecond)
			continue
		}
		seq++
		if err := p.publish(ctx, seq, kindMeasured); err != nil {
			return seq - 1, err
		}
	}
	return seq, nil
}
