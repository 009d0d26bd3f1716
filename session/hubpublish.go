package session

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	pahosession "github.com/eclipse/paho.golang/paho/session"
)

// notSent reports whether a publish failed before paho stored or wrote the
// message, so sending it again cannot duplicate it.
func notSent(err error) bool {
	return errors.Is(err, autopaho.ConnectionDownError) || errors.Is(err, pahosession.ErrNoConnection)
}

// publish sends a message to the broker and waits for the QoS flow to
// complete.
//
// While the connection is down it waits for it (up to the connect timeout)
// rather than failing at once: a short outage costs a client latency, not a
// failed publish. A QoS 1/2 publish interrupted by a cut is completed by
// paho's session state after the reconnect, and this call waits for that.
func (h *Hub) publish(ctx context.Context, arrived time.Time, p *paho.Publish) *Error {
	if err := h.awaitUp(ctx, arrived); err != nil {
		return err
	}
	if err := h.tooLarge("publish", func() int { return packetSize(p.Packet().Buffers()) }); err != nil {
		return err
	}
	timeout := time.Duration(h.br().cfg.ConnectTimeout)
	for attempt := 0; ; attempt++ {
		c := h.call(ctx, timeout)
		discards := c.sess.discards.Load()
		resp, err := c.cm.Publish(c.ctx, p)
		c.stop()
		if e := c.abandoned(); e != nil && err != nil {
			return Errorf(e.Code, "publish not confirmed: %s; it may not have been delivered", e.Message)
		}
		// The broker came back without the gateway's session (restarted
		// without persistence, or it expired), and paho dropped the
		// unacknowledged publish: at least once means sending it again;
		// exactly once cannot be kept.
		dropped := err != nil && c.sess.discards.Load() != discards && strings.Contains(err.Error(), "not fully acknowledged")
		if resp != nil && resp.ReasonCode >= 0x80 {
			text := ""
			if resp.Properties != nil {
				text = resp.Properties.ReasonString
			}
			return Errorf(CodeBrokerRejected, "broker rejected the publish: %s", reason(resp.ReasonCode, text))
		}
		if err == nil {
			return nil
		}
		if refused := refusedByBroker("publish", err); refused != nil {
			return refused
		}
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return Errorf(CodeBrokerTimeout, "broker did not acknowledge the publish in time; it may still be delivered")
		case dropped && p.QoS == 2:
			return Errorf(CodeBrokerUnavailable, "broker %q lost the gateway's session before confirming the publish: it may or may not have been delivered, and is not sent again", h.br().cfg.Name)
		case attempt < 10 && (notSent(err) || p.QoS == 0 || dropped):
			// The connection went down before the message was stored or
			// written (a QoS 0 message has no session state either), or its
			// session went: send it again once the connection is back. The
			// pause lets the hub see the connection go down before awaitUp
			// looks.
			select {
			case <-ctx.Done():
				return Errorf(CodeBrokerUnavailable, "publish cancelled")
			case <-time.After(50 * time.Millisecond):
			}
			if e := h.awaitUp(ctx, time.Now()); e != nil {
				return e
			}
			continue
		}
		return Errorf(CodeBrokerUnavailable, "publish failed: %v", err)
	}
}
