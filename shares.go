package mqttgateway

import (
	"fmt"
	"strings"
)

// checkShareNames checks shared_subscriptions: share names as MQTT 5 has
// them (section 4.8.2: at least one character, no '/', '+' or '#'), or
// "*" for every one.
func checkShareNames(names []string) error {
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, "/+#") {
			return fmt.Errorf("shared_subscriptions: %q is not a share name (the level after $share/, without /, + or #) nor *", n)
		}
	}
	return nil
}
