package transport

import (
	"fmt"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// dispatch hands a decoded client frame to its session. Frames are
// decoded from a buffer that is not reused, so the byte slices they carry
// may be kept by the session.
func dispatch(s *session.Session, f *Frame) error {
	if f.Type >= TypeConnect && f.Type <= TypeDisconnect {
		s.CountRequest()
	}
	switch f.Type {
	case TypeConnect:
		s.Connect(f.Req, f.Handle, f.Connect)
	case TypeSubscribe:
		s.Subscribe(f.Req, f.Handle, f.Filter, f.QoS)
	case TypeUnsubscribe:
		s.Unsubscribe(f.Req, f.Handle, f.Filter)
	case TypePublish:
		s.Publish(f.Req, f.Handle, f.Publish)
	case TypeDisconnect:
		s.Disconnect(f.Req, f.Handle)
	case TypeAck:
		s.Ack(f.Stream, f.PacketID)
	case TypePing:
	case TypeClose:
		s.Close(&session.Error{Code: session.CodeOK, Message: "closed by the client"})
	default:
		return fmt.Errorf("%w: frame type 0x%02x not expected from a client", ErrMalformed, f.Type)
	}
	return nil
}
