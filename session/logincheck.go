package session

import (
	"context"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
	"go.uber.org/zap"
)

// checkLogin tries a broker's renewed login (loginRenewed) once, on a
// connection of its own that ends at once. The connections up keep their
// login until they reconnect, so without it a password the broker refuses
// would show at the broker's next restart, maybe months later, when every
// client of the gateway loses its broker; the operator hears of it at the
// reload instead.
func (m *Manager) checkLogin(br *brokerRuntime) {
	timeout := time.Duration(br.cfg.ConnectTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	fields := []zap.Field{zap.String("broker", br.cfg.Name), zap.String("url", br.cfg.URL)}
	if err := tryLogin(ctx, br, timeout); err != nil {
		e, _, _ := connectFailure(br.cfg.Name, err)
		m.log.Warn("broker refused the reloaded login", append(fields, zap.String("error", e.Message),
			zap.String("consequence", "the connections up keep the login they have; they will use the reloaded one when they reconnect"))...)
		return
	}
	m.log.Info("broker accepted the reloaded login", fields...)
}

// tryLogin connects to br with its configured login and a client ID of
// its own (its prefix's, as shared connections have), with a clean start
// and no session left behind, and disconnects.
func tryLogin(ctx context.Context, br *brokerRuntime, timeout time.Duration) error {
	conn, err := dialBroker(ctx, br.url, br.cfg.tlsConfig, timeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	var v311 *mqtt311
	if br.cfg.speaks311() {
		v311 = &mqtt311{shared: true}
	}
	client := paho.NewClient(paho.ClientConfig{Conn: newBrokerConn(conn, nil, nil, v311)})
	connect := &paho.Connect{ClientID: newClientID(br.cfg.ClientIDPrefix), CleanStart: true,
		KeepAlive: uint16(time.Duration(br.cfg.KeepAlive) / time.Second)}
	br.cfg.loginInto(connect)
	connect, _ = withProblemInfo(connect, br.url)
	ack, err := client.Connect(ctx, connect)
	if err != nil {
		if ack != nil && ack.ReasonCode >= 0x80 {
			return autopaho.NewConnackError(err, ack) // described as the connection's refusals are
		}
		return err
	}
	client.Disconnect(&paho.Disconnect{ReasonCode: 0}) // the broker took the login: that is the answer
	return nil
}
