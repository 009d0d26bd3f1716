package session

import (
	"errors"
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

// checkConnectText refuses a client ID or user name the broker would take
// for a malformed CONNECT.
func checkConnectText(p ConnectParams) error {
	if err := textError("client ID", topic.ValidateText(p.ClientID)); err != nil {
		return err
	}
	return textError("user name", topic.ValidateText(p.Username))
}
