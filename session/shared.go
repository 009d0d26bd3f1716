package session

import (
	"errors"
	"slices"

	"go.uber.org/zap"

	"github.com/caddy-mqtt/mqttgateway/session/topic"
)

// Shared subscriptions ($share/<share name>/<filter>, MQTT 5 section 4.8.2)
// balance a filter's messages between the members of a share group: a
// pool of workers each taking some of the jobs. Behind the gateway's
// shared connection one broker subscription serves every web client that
// holds the filter, so the broker would balance between gateway instances,
// not between the clients that asked (topic.ValidateFilter refuses them).
// A client with a broker connection of its own (a dedicated client, one
// with a client ID) is a member like any MQTT client, and may hold them,
// in the share groups the gateway's config opens (shared_subscriptions):
// a member takes its share of the group's messages from the others, a
// backend's workers connected straight to the broker included, so no
// group is open by default.

// validSubscriptionFilter is topic.ValidateFilter, with a well-formed
// shared subscription taken (checkShared says who may hold it).
func validSubscriptionFilter(filter string) error {
	err := topic.ValidateFilter(filter)
	if errors.Is(err, topic.ErrSharedSubscription) {
		return topic.ValidateShared(filter)
	}
	return err
}

// shareOpen reports whether the config opens the share group name.
func (c *Config) shareOpen(name string) bool {
	return slices.Contains(c.SharedSubscriptions, name) || slices.Contains(c.SharedSubscriptions, "*")
}

// endClosedShares ends, after a reload, the shared subscriptions to the
// share groups the new config no longer opens, as the admin API's
// unsubscribe would (the authorize hook is told, and a client that asked
// hears UNSUBSCRIBED 4021): the members would otherwise go on taking the
// group's messages. A member's broker session, if it outlives the client,
// keeps it in the group on the broker until it ends.
func (m *Manager) endClosedShares() {
	cfg := m.config()
	closed := func(filter string) bool {
		name, _, ok := topic.SplitShared(filter)
		return ok && !cfg.shareOpen(name)
	}
	reason := Errorf(CodeNotAuthorized, "share group closed by a config reload (shared_subscriptions)")
	if _, n := m.endSubscriptionsWhere(nil, closed, "", reason); n > 0 {
		m.log.Info("shared subscriptions ended: their share groups are no longer open", zap.Int("subscriptions", n))
	}
}

// checkShared refuses a shared subscription a client may not hold: to a
// share group the config does not open; on the gateway's shared
// connection; or with No Local, a protocol error on a shared subscription
// [MQTT-3.8.3-4], for which the broker would close the client's
// connection.
func checkShared(cfg *Config, filter string, dedicated bool, opts SubscribeOptions) *Error {
	name, _, ok := topic.SplitShared(filter)
	switch {
	case !ok:
		return nil
	case !cfg.shareOpen(name):
		return Errorf(CodeInvalidFilter, "shared subscription %q: the share group %q is not open to the gateway's clients (shared_subscriptions)", TrimText(filter), TrimText(name))
	case !dedicated:
		return Errorf(CodeInvalidFilter, "shared subscription %q: only a client with a broker connection of its own (connected with a client ID) may join a share group, not one on the gateway's shared connection", TrimText(filter))
	case opts.NoLocal:
		return Errorf(CodeInvalidFilter, "shared subscription %q: No Local is not allowed on a shared subscription", TrimText(filter))
	}
	return nil
}
