package session

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// What a web client is told about a broker's failures. The broker stays
// private: a browser learns which broker failed and why in a few words (a
// refused login, a certificate problem, no answer), never its address,
// which dial errors carry ("dial tcp 10.0.0.5:1883: connect: connection
// refused"). The gateway's log has the whole error.

// reasonNames are MQTT 5's failure reason codes (spec 2.4), in words.
var reasonNames = map[byte]string{
	0x80: "unspecified error",
	0x81: "malformed packet",
	0x82: "protocol error",
	0x83: "implementation specific error",
	0x84: "unsupported protocol version",
	0x85: "client identifier not valid",
	0x86: "bad user name or password",
	0x87: "not authorized",
	0x88: "server unavailable",
	0x89: "server busy",
	0x8a: "banned",
	0x8b: "server shutting down",
	0x8c: "bad authentication method",
	0x8d: "keep alive timeout",
	0x8e: "session taken over",
	0x8f: "topic filter invalid",
	0x90: "topic name invalid",
	0x91: "packet identifier in use",
	0x92: "packet identifier not found",
	0x93: "receive maximum exceeded",
	0x94: "topic alias invalid",
	0x95: "packet too large",
	0x96: "message rate too high",
	0x97: "quota exceeded",
	0x98: "administrative action",
	0x99: "payload format invalid",
	0x9a: "retain not supported",
	0x9b: "QoS not supported",
	0x9c: "use another server",
	0x9d: "server moved",
	0x9e: "shared subscriptions not supported",
	0x9f: "connection rate exceeded",
	0xa1: "subscription identifiers not supported",
	0xa2: "wildcard subscriptions not supported",
}

// reason is an MQTT reason code with its name, and the broker's reason
// string when it sent one: "0x87 not authorized".
func reason(code byte, text string) string {
	s := fmt.Sprintf("0x%02x", code)
	if name := reasonNames[code]; name != "" {
		s += " " + name
	}
	if text != "" {
		s += ": " + TrimText(text)
	}
	return s
}

// tlsAlert is the alert a TLS peer sent, as crypto/tls reports it over
// TCP: a net.OpError "remote error" around an unexported alert type
// (tls.AlertError is only QUIC's), so its text is all there is.
func tlsAlert(err error) string {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" && op.Err != nil {
		return op.Err.Error() // "tls: certificate required"
	}
	return ""
}

// dialCause says in a few words, without addresses, why a connection to a
// broker failed.
func dialCause(err error) string {
	var dnsErr *net.DNSError
	var unknownCA x509.UnknownAuthorityError
	var wrongHost x509.HostnameError
	var invalid x509.CertificateInvalidError
	var notTLS tls.RecordHeaderError
	var alert tls.AlertError
	var netErr net.Error
	var silent *unanswered
	switch {
	case errors.As(err, &silent):
		return silent.says
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "host unreachable"
	case errors.As(err, &dnsErr):
		return "host name not found"
	case errors.As(err, &unknownCA):
		return "TLS: certificate signed by an unknown authority"
	case errors.As(err, &wrongHost):
		return "TLS: certificate not valid for the broker's name"
	case errors.As(err, &invalid):
		return "TLS: certificate invalid (expired, not yet valid or not for a server)"
	case errors.As(err, &notTLS):
		return "TLS: the broker did not answer in TLS"
	case errors.As(err, &alert):
		return "TLS: the broker refused the handshake (" + alert.Error() + ")"
	case tlsAlert(err) != "":
		return "TLS: the broker refused the handshake (" + tlsAlert(err) + ")"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "no answer in time"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		// The gateway's own limit, not the broker's: the operator raises
		// the process's open-file limit (LimitNOFILE, ulimit -n).
		return "the gateway has too many open files (raise its open-file limit)"
	}
	return "connection failed"
}

// maxEchoed bounds what an error message repeats of a client's input (a
// topic, a filter) or of a broker's text: an error about a 70,000-byte
// topic need not carry it back.
const maxEchoed = 200

// TrimText cuts s to maxEchoed bytes (at a character boundary) and marks
// the cut.
func TrimText(s string) string {
	if len(s) <= maxEchoed {
		return s
	}
	cut := maxEchoed
	for cut > 0 && s[cut]&0xc0 == 0x80 { // inside a UTF-8 sequence
		cut--
	}
	return s[:cut] + "…"
}

// lastingTLS reports whether err is a TLS failure that the next attempt
// will meet again until someone changes a certificate or the config: the
// broker's certificate not trusted or not for its name, an answer that is
// not TLS, the broker refusing the handshake (a client certificate it
// wants). Waiting clients are told at once, as of a refused CONNECT.
// (Refused or timed-out connections, and unknown host names, wait for
// connect_timeout: a restarting broker, or one whose DNS record comes and
// goes with it, answers within it. So does an "internal error" alert, the
// one a TLS terminator sends while its backend restarts.)
func lastingTLS(err error) bool {
	if tlsAlert(err) == "tls: internal error" {
		return false
	}
	var unknownCA x509.UnknownAuthorityError
	var wrongHost x509.HostnameError
	var invalid x509.CertificateInvalidError
	var notTLS tls.RecordHeaderError
	var alert tls.AlertError
	return errors.As(err, &unknownCA) || errors.As(err, &wrongHost) || errors.As(err, &invalid) ||
		errors.As(err, &notTLS) || errors.As(err, &alert) || tlsAlert(err) != ""
}
