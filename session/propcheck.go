package session

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/caddy-mqtt/mqttgateway/session/topic"
)

// check refuses properties a broker would take for a malformed packet,
// before they reach it: a broker drops the connection that carries one,
// and on the shared connection the gateway would send a QoS 1/2 message
// again after every reconnect, taking the connection down for everyone,
// for as long as the message was unacknowledged. MQTT 5 strings are UTF-8
// without U+0000, and Mosquitto refuses control characters and
// non-characters in them too (section 1.5.4: a MAY), the response topic is a topic name
// (3.3.2.3.5), and a payload said to be UTF-8 must be (3.3.2.3.2).
//
// MQTT gives strings and binary data a 2-byte length: paho cuts a longer
// one to 65,535 bytes without a word, so a message would reach the broker
// other than sent. And a message may carry at most MaxUserProperties.
func (p *Props) check(payload []byte) error {
	if p == nil {
		return nil
	}
	str := func(name, v string) error {
		if len(v) > topic.MaxLength {
			return errors.New(name + " is longer than 65535 bytes")
		}
		return textError(name, topic.ValidateText(v))
	}
	if len(p.CorrelationData) > topic.MaxLength {
		return errors.New("correlation data is longer than 65535 bytes")
	}
	if len(p.User) > MaxUserProperties {
		return fmt.Errorf("more than the %d user properties allowed", MaxUserProperties)
	}
	if err := str("content type", p.ContentType); err != nil {
		return err
	}
	if p.ResponseTopic != "" {
		if err := topic.ValidateName(p.ResponseTopic); err != nil {
			return errors.New("response topic: " + strings.TrimPrefix(err.Error(), "topic: "))
		}
	}
	for _, u := range p.User {
		if err := str("user property name", u.Key); err != nil {
			return err
		}
		if err := str("user property value", u.Value); err != nil {
			return err
		}
	}
	if p.HasPayloadFormat && p.PayloadFormat > 1 {
		return errors.New("payload format indicator must be 0 or 1")
	}
	if p.HasPayloadFormat && p.PayloadFormat == 1 && !utf8.Valid(payload) {
		return errors.New("the payload format indicator says UTF-8, and the payload is not")
	}
	return nil
}

// textError names the string an error of topic.ValidateText is about.
func textError(name string, err error) error {
	if err == nil {
		return nil
	}
	return errors.New(name + ": " + strings.TrimPrefix(err.Error(), "topic: "))
}

// MaxUserProperties bounds the user properties of a message a web client
// publishes. MQTT sets no limit, but each costs the gateway and the broker
// far more than its 3 bytes on the wire: 390,000 empty ones in a 1 MB
// frame kept a core of the gateway busy.
const MaxUserProperties = 1024

// checkConnectText refuses a client ID, user name or password the broker
// would take for a malformed CONNECT, or that paho would cut to 65,535
// bytes (MQTT's 2-byte lengths).
func checkConnectText(p ConnectParams) error {
	for _, f := range []struct {
		name string
		n    int
	}{{"client ID", len(p.ClientID)}, {"user name", len(p.Username)}, {"password", len(p.Password)}} {
		if f.n > topic.MaxLength {
			return errors.New(f.name + " is longer than 65535 bytes")
		}
	}
	if err := textError("client ID", topic.ValidateText(p.ClientID)); err != nil {
		return err
	}
	return textError("user name", topic.ValidateText(p.Username))
}

// checkWillSize refuses a will payload MQTT cannot carry: a will's payload
// has a 2-byte length, unlike a PUBLISH's, and paho would cut it.
func checkWillSize(w *PublishParams) *Error {
	if len(w.Payload) > topic.MaxLength {
		return Errorf(CodeMessageTooLarge, "a will's payload may be at most 65535 bytes (MQTT), not %d", len(w.Payload))
	}
	return nil
}
