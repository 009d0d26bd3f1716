package transport

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-mqtt/mqttgateway/session"
)

// dispatch hands a decoded client frame to its session. Frames are
// decoded from a buffer that is not reused, so the byte slices they carry
// may be kept by the session.
func dispatch(s *session.Session, f *Frame) error {
	if isRequest(f.Type) {
		s.CountRequest()
	}
	switch f.Type {
	case TypeConnect:
		s.Connect(f.Req, f.Handle, f.Connect)
	case TypeSubscribe:
		s.Subscribe(f.Req, f.Handle, f.Filter, f.QoS, f.SubOptions, perSecond(f.MaxFrequency))
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
		if f.Answer {
			s.AnswerPing()
		}
	case TypeClose:
		if f.Left {
			s.Leave()
		} else {
			s.Close(&session.Error{Code: session.CodeOK, Message: "closed by the client"})
		}
	default:
		return fmt.Errorf("%w: frame type 0x%02x not expected from a client", ErrMalformed, f.Type)
	}
	return nil
}

// openedInfo is OPENED's info: what a client may ask of this server that
// an older one would take for malformed (PROTOCOL.md, OPENED).
var openedInfo = []KV{
	{Key: "ping_answer", Value: "1"}, // a PING with flag bit 0 is answered at once
}

// isRequest reports whether frames of type t are requests: numbered by the
// client in the order it sends them, and counted by the session (BOUND's
// requests).
func isRequest(t byte) bool {
	return (t >= TypeConnect && t <= TypeDisconnect) || t == TypeFrequency || t == TypeBandwidth
}

// dispatchUnit hands a unit of client frames to the session, unless the
// connection has lost the session to a newer one (stale).
func dispatchUnit(sess *session.Session, unit []byte, stale func() bool) *session.Error {
	err := sess.Dispatch(stale, func() error { return dispatchFrames(sess, unit, nil) })
	if err != nil {
		return session.Errorf(session.CodeMalformed, "%v", err)
	}
	return nil
}

// dispatchFrames decodes the frames of unit and hands them to the session
// in order, except those skip (when set) passes over. It runs inside
// Session.Dispatch.
func dispatchFrames(sess *session.Session, unit []byte, skip func(*Frame) bool) error {
	var f Frame
	return SplitUnit(unit, func(b []byte) error {
		if err := Decode(ownFrame(unit, b), &f); err != nil {
			return err
		}
		if skip != nil && skip(&f) {
			return nil
		}
		return dispatch(sess, &f)
	})
}

// ownFrame is what to decode frame b of unit from. A request that waits
// keeps what it carries (a payload, a password) as slices of the frame,
// and the session counts only those bytes against its bound (session/
// backlog.go); a slice pins the whole unit. So a PUBLISH or CONNECT that is
// less than half of its unit is decoded from a copy of its own: otherwise a
// tiny waiting publish would pin the unit's other frames, such as a 1 MiB
// publish refused at once (units of those two, again and again, grew a
// gateway by 800 MB within the bound). A larger frame pins at most as much
// again as it counts, and is not copied.
func ownFrame(unit, b []byte) []byte {
	if len(b) > 0 && (b[0] == TypePublish || b[0] == TypeConnect) && 2*len(b) < len(unit) {
		return bytes.Clone(b)
	}
	return b
}

// sendRefusal says why a /send's requests were not run (dispatchSend).
type sendRefusal int

const (
	sendRun   sendRefusal = iota // run (those the session did not have)
	sendGap                      // they follow requests the session has not received
	sendStale                    // the session has moved to a WebSocket
)

// dispatchSend hands the unit of a /send to the session. With counted, the
// client says how many requests it sent before the unit's first (in the
// body's SEND frame): requests the session already has are skipped (the unit
// is a resend of requests that arrived after all, or a late copy of a
// /send whose requests were resent), so none runs twice; a unit that
// follows requests the session has not received (an earlier /send still on
// its way) runs none of its requests (sendGap). A session bound to a
// WebSocket takes its client's requests from there: a /send can only be a
// late copy, and runs none of them either (sendStale). Frames that are not
// requests (ACK above all: the client does not send those again) are
// processed in every case.
func dispatchSend(sess *session.Session, unit []byte, before uint64, counted bool) (sendRefusal, *session.Error) {
	refusal := sendRun
	err := sess.Dispatch(func() bool { return false }, func() error {
		received := sess.Requests()
		skip := uint64(0)
		switch {
		case isWebSocket(sess.Bound()):
			refusal = sendStale
		case counted && before > received:
			refusal = sendGap
		case counted:
			skip = received - before
		}
		return dispatchFrames(sess, unit, func(f *Frame) bool {
			if !isRequest(f.Type) || (refusal == sendRun && skip == 0) {
				return false
			}
			if skip > 0 {
				skip--
			}
			return true
		})
	})
	if err != nil {
		return refusal, session.Errorf(session.CodeMalformed, "%v", err)
	}
	return refusal, nil
}

func isWebSocket(t session.Transport) bool {
	_, ok := t.(*wsConn)
	return ok
}

// start handles the unit that begins a connection of any transport: one
// OPEN, which opens a session, or one BIND, which resumes one. It binds
// conn to the session and returns the frame to answer with: OPENED (opened
// is true) or BOUND, which must go out before anything the session queues.
// Rebinds are counted in the recovery metric when countRebind is set.
func (s *Server) start(r *http.Request, unit []byte, conn session.Transport, transport string, countRebind bool) (sess *session.Session, first []byte, opened bool, _ *session.Error) {
	var f Frame
	frames := 0
	if err := SplitUnit(unit, func(b []byte) error { frames++; return Decode(b, &f) }); err != nil || frames != 1 {
		return nil, nil, false, session.Errorf(session.CodeMalformed, "the first unit must be one OPEN or BIND frame")
	}
	switch f.Type {
	case TypeOpen:
		if f.Version != Version {
			return nil, nil, false, session.Errorf(session.CodeUnsupportedVersion, "this gateway speaks protocol version 1")
		}
		sess, e := s.open(r, &f, transport)
		if e != nil {
			return nil, nil, false, e
		}
		cfg := s.Manager.Config()
		id, secret := sess.ID(), sess.Secret()
		first = AppendOpened(nil, id, secret, uint64(cfg.Heartbeat/time.Millisecond),
			uint64(cfg.SessionTimeout/time.Millisecond), uint64(s.maxFrame()), openedInfo)
		applyOpenOptions(sess, f.Options)
		sess.Attach(conn, false, 0)
		return sess, first, true, nil
	case TypeBind:
		sess, e := s.Manager.Lookup(f.Session, f.Secret)
		var requests uint64
		if e == nil {
			requests, e = sess.Rebind(conn, f.Received)
		}
		if countRebind {
			recovered(s.Manager, e)
		}
		if e != nil {
			return nil, nil, false, e
		}
		sess.Rebound(r.RemoteAddr, s.refreshOrigin(sess, r), transport)
		// The pair of "connection lost; the session waits for a rebind".
		if ce := s.logger().Check(zap.DebugLevel, "session rebound"); ce != nil {
			ce.Write(zap.String("session", sess.IDString()), zap.String("user", sess.Info().User),
				zap.String("transport", transport), zap.String("remote", r.RemoteAddr), zap.Uint64("replay_from", f.Received+1))
		}
		return sess, AppendBound(nil, f.Received+1, requests), false, nil
	}
	return nil, nil, false, session.Errorf(session.CodeBadRequest, "the first frame must be OPEN or BIND")
}

// recovered counts a rebind by its result.
func recovered(m *session.Manager, err *session.Error) {
	result := "ok"
	if err != nil {
		result = strconv.Itoa(int(err.Code))
	}
	m.Metrics().Recoveries.WithLabelValues(result).Inc()
}

// perSecond converts the wire's messages per 1000 s.
func perSecond(milli uint64) float64 { return float64(milli) / 1000 }

// applyOpenOptions applies the OPEN frame's known options.
func applyOpenOptions(s *session.Session, opts []KV) {
	for _, kv := range opts {
		switch kv.Key {
		case "max_bandwidth":
			if v, err := strconv.ParseUint(kv.Value, 10, 64); err == nil {
				s.SetMaxBandwidth(v)
			}
		case "addressed_retained":
			if kv.Value == "1" {
				s.AddressRetained()
			}
		case "session_present":
			if kv.Value == "1" {
				s.ReportSessionPresent()
			}
		case "unsubscribed":
			if kv.Value == "1" {
				s.ReportUnsubscribed()
			}
		}
	}
}

// OpenResult is what the authenticate hook decided for an OPEN.
type OpenResult struct {
	User   string         // the session's user; empty: anonymous
	Limits session.Limits // per-session caps
}

// open authenticates an OPEN and creates its session.
func (s *Server) open(r *http.Request, f *Frame, transport string) (*session.Session, *session.Error) {
	info := session.OpenInfo{RemoteAddr: r.RemoteAddr, Transport: transport}
	var origin any
	if s.Origin != nil {
		origin, info.ClientIP = s.Origin(r)
	}
	// The session limits first: an OPEN that would be refused anyway must
	// not cost a hook call (a basic_auth check of an unknown user takes a
	// second of CPU), and one whose hook runs holds its place meanwhile.
	admission, err := s.Manager.Admit(info)
	if err != nil {
		return nil, err
	}
	var res OpenResult
	if s.Authenticate != nil {
		// A refused open's place is given back once the hook is done
		// (Admission.Refuse); an allowed one's goes to Open.
		res, err = s.Authenticate(r, f.User, f.Password, admission.SessionID(), admission.HookDone)
		if err != nil {
			admission.Refuse()
			return nil, err
		}
	}
	info.User = res.User
	sess, err := s.Manager.Open(info, admission)
	if err != nil {
		return nil, err
	}
	sess.SetOrigin(origin)
	sess.ApplyLimits(res.Limits)
	return sess, nil
}

// refreshOrigin keeps the policy's view of the client current after a
// rebind (a new address, new cookies), and returns the client's IP as
// Caddy's trusted_proxies resolved it ("" without an Origin).
func (s *Server) refreshOrigin(sess *session.Session, r *http.Request) (clientIP string) {
	if s.Origin != nil {
		var o any
		o, clientIP = s.Origin(r)
		sess.SetOrigin(o)
	}
	return clientIP
}

// logger is the server's logger, or none.
func (s *Server) logger() *zap.Logger {
	if s.Log == nil {
		return zap.NewNop()
	}
	return s.Log
}
