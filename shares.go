package mqttgateway

import (
	"fmt"

	"github.com/caddy-mqtt/mqttgateway/session/topic"
)

// checkShareNames checks shared_subscriptions: share names as MQTT 5 has
// them (section 4.8.2: at least one character, no '/', '+' or '#', and a
// string brokers take), or "*" alone for every one.
func checkShareNames(names []string) error {
	for _, n := range names {
		if n == "*" && len(names) > 1 {
			return fmt.Errorf("shared_subscriptions: * opens every share group: give it alone")
		}
		if topic.ValidateShareName(n) != nil {
			return fmt.Errorf("shared_subscriptions: %q is not a share name (the level after $share/, without /, + or #) nor *", n)
		}
	}
	return nil
}
