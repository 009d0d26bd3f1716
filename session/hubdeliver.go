package session

import (
	"time"

	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/zap"
)

// ackFlush is how long paho may hold an acknowledgment before it sends the
// PUBACK: it sends manual acknowledgments on a tick (SendAcksInterval,
// 50 ms by default), with margin.
const ackFlush = 80 * time.Millisecond

type pendingAck struct {
	cli *paho.Client
	p   *paho.Publish
}

// onPublish runs on the broker connection's receive goroutine for every
// message. It encodes nothing and copies nothing per session: each matching
// session gets the same *Message once.
func (h *Hub) onPublish(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	if h.dups.duplicate(p, h.subEpoch.Load()) {
		if br := h.br(); !br.copiesPerSub.Load() {
			br.copiesPerSub.Store(true)
		}
		// A dedicated connection is one MQTT client's own: it gets every
		// copy the broker sends, each at its own subscription's QoS, as a
		// direct client does. (Keeping the first copy, and acknowledging the
		// others unseen, delivered a QoS 2 message at the QoS 0 of an
		// overlapping subscription.)
		if !h.dedicated {
			return true, nil
		}
	}
	h.messagesIn.Inc()
	// The broker's DUP flag reaches the client: it may have had the
	// message before (a QoS 1/2 delivery resent after a reconnect).
	m := &Message{Stream: h.stream, Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, Dup: p.Duplicate(), Props: propsFromPaho(p.Properties),
		Arrived: time.Now().UnixNano()}
	if h.dedicated && p.QoS > 0 {
		m.PacketID = p.PacketID
		h.ackMu.Lock()
		h.pendingAcks[p.PacketID] = pendingAck{pr.Client, p}
		h.ackMu.Unlock()
	}
	if h.dedicated {
		h.mu.Lock()
		if h.owner == nil {
			h.early = append(h.early, m)
		} else {
			h.owner.deliver(m)
		}
		h.mu.Unlock()
		return true, nil
	}
	// A web client's own publish, which its No Local subscriptions keep
	// from it (echo.go); nil for any other message.
	echoSess, echoClient := h.echoes.echoOf(p.Topic, p.Payload)
	if p.Retain {
		h.onRetained(m, subID(p), echoSess, echoClient)
		return true, nil
	}
	h.mu.RLock()
	h.seq++
	seq := h.seq
	delivered := 0
	h.index.Match(p.Topic, func(_ string, mb *member) {
		if mb.mark != seq {
			mb.mark = seq
			if mb.sess == echoSess {
				mb.sess.deliver(m.except(echoClient))
			} else {
				mb.sess.deliver(m)
			}
			delivered++
		}
	})
	h.mu.RUnlock()
	h.metrics.MessagesOut.Add(float64(delivered))
	return true, nil
}

// ack forwards the web client's acknowledgement of a QoS 1/2 message to the
// broker (dedicated hubs only).
func (h *Hub) ack(packetID uint16) {
	h.ackMu.Lock()
	pa, ok := h.pendingAcks[packetID]
	delete(h.pendingAcks, packetID)
	h.ackMu.Unlock()
	if !ok {
		return
	}
	if err := pa.cli.Ack(pa.p); err != nil {
		h.log.Debug("ack to broker failed", zap.Error(err))
	}
	h.lastAck.Store(time.Now().UnixNano())
}

// ready starts deliveries of a dedicated hub to sess, once the client's
// CONNECT result is queued (so the client knows the stream).
func (h *Hub) ready(sess *Session) {
	if !h.dedicated {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.owner = sess
	for _, m := range h.early {
		sess.deliver(m)
	}
	h.early = nil
}
