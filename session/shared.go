package session

import (
	"errors"
	"slices"

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

// checkShared refuses a shared subscription a client may not hold: to a
// share group the config does not open; on the gateway's shared
// connection; with No Local, a protocol error on a shared subscription
// [MQTT-3.8.3-4], for which the broker would close the client's
// connection; or with a frequency limit, which conflates values where a
// share group's messages are work to share out.
func checkShared(cfg *Config, filter string, dedicated bool, opts SubscribeOptions, maxFrequency float64) *Error {
	name, _, ok := topic.SplitShared(filter)
	switch {
	case !ok:
		return nil
	case !slices.Contains(cfg.SharedSubscriptions, name) && !slices.Contains(cfg.SharedSubscriptions, "*"):
		return Errorf(CodeInvalidFilter, "shared subscription %q: the share group %q is not open to the gateway's clients (shared_subscriptions)", TrimText(filter), TrimText(name))
	case !dedicated:
		return Errorf(CodeInvalidFilter, "shared subscription %q: only a client with a broker connection of its own (connected with a client ID) may join a share group, not one on the gateway's shared connection", TrimText(filter))
	case opts.NoLocal:
		return Errorf(CodeInvalidFilter, "shared subscription %q: No Local is not allowed on a shared subscription", TrimText(filter))
	case maxFrequency > 0:
		return Errorf(CodeInvalidFilter, "shared subscription %q: a frequency limit does not apply to a shared subscription, whose messages are shared out, not conflated", TrimText(filter))
	}
	return nil
}
