package mqttgateway

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// A page with several clients on their own broker credentials, or
// colleagues behind one NAT address, connect at the same time: the brake on
// password guessing holds none of them back while none was refused.
func TestConnectsWithOwnCredentialsAtOnceAreNotHeldBack(t *testing.T) {
	mq, _ := mosquittoWithLogins(t, [2]string{"dev", "right"})
	distant := startProxy(t, fmt.Sprintf("127.0.0.1:%d", mq.port))
	distant.delay.Store(int64(200 * time.Millisecond)) // the connects overlap
	url, _ := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", distant.port()), "")
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		c := dial(t, url)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := c.Connect(ctx10(t), session.ConnectParams{Broker: "main", ClientID: fmt.Sprint("device-", i), Username: "dev", Password: []byte("right")})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a connect with the right credentials: %v", err)
		}
	}
}
