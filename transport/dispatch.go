package transport

import (
	"fmt"
	"strconv"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// dispatch hands a decoded client frame to its session. Frames are
// decoded from a buffer that is not reused, so the byte slices they carry
// may be kept by the session.
func dispatch(s *session.Session, f *Frame) error {
	if (f.Type >= TypeConnect && f.Type <= TypeDisconnect) || f.Type == TypeFrequency || f.Type == TypeBandwidth {
		s.CountRequest()
	}
	switch f.Type {
	case TypeConnect:
		s.Connect(f.Req, f.Handle, f.Connect)
	case TypeSubscribe:
		s.Subscribe(f.Req, f.Handle, f.Filter, f.QoS, perSecond(f.MaxFrequency))
	case TypeFrequency:
		s.SetFrequency(f.Req, f.Handle, f.Filter, perSecond(f.MaxFrequency))
	case TypeBandwidth:
		s.Bandwidth(f.Req, f.Value)
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

// perSecond converts the wire's messages per 1000 s.
func perSecond(milli uint64) float64 { return float64(milli) / 1000 }

// applyOpenOptions applies the OPEN frame's known options.
func applyOpenOptions(s *session.Session, opts []KV) {
	for _, kv := range opts {
		if kv.Key == "max_bandwidth" {
			if v, err := strconv.ParseUint(kv.Value, 10, 64); err == nil {
				s.SetMaxBandwidth(v)
			}
		}
	}
}
