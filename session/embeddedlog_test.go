package session

import (
	"net"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// An embedded broker logs through the gateway's logger: a client that
// drops its connection is a debug line saying so, a client that sends
// garbage a warning saying the connection failed. Before, both were
// plain-text warnings with no message on stderr, outside Caddy's log.
func TestEmbeddedBrokerLogsThroughTheGatewayLogger(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	e, err := acquireEmbedded("", false, embeddedLog(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.release()

	dropped, err := net.Dial("tcp", e.URL().Host)
	if err != nil {
		t.Fatal(err)
	}
	dropped.Close()
	garbage, err := net.Dial("tcp", e.URL().Host)
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	garbage.Write([]byte{0xF0, 0x00}) // a reserved packet type

	find := func(msg string) (observer.LoggedEntry, bool) {
		for _, l := range logs.All() {
			if l.Message == msg {
				return l, true
			}
		}
		return observer.LoggedEntry{}, false
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		ended, ok1 := find("client connection ended")
		failed, ok2 := find("client connection failed")
		if ok1 && ok2 {
			if ended.Level != zapcore.DebugLevel || ended.LoggerName != "embedded_broker" {
				t.Errorf("a dropped connection: %v %q, want a debug line of embedded_broker", ended.Level, ended.LoggerName)
			}
			if failed.Level != zapcore.WarnLevel || failed.ContextMap()["error"] == nil {
				t.Errorf("a connection sending garbage: %v %v, want a warning with the error", failed.Level, failed.ContextMap())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("log after 5 s: %+v", logs.All())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, l := range logs.All() {
		if l.Message == "" {
			t.Errorf("a line without a message: %+v", l)
		}
	}
}

// A client that leaves with DISCONNECT reason 0x04, "disconnect with will
// message", asks the broker to publish its will: the gateway does so for
// every dedicated client of a session that expires. That is an ordinary
// end, a debug line, not the two warnings mochi writes for it (one with
// the whole packet), which a soak saw for every expired session's
// dedicated client.
func TestEmbeddedBrokerDisconnectWithWillIsNoWarning(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	e, err := acquireEmbedded("", false, embeddedLog(zap.New(core)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.release()

	c, err := net.Dial("tcp", e.URL().Host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// MQTT 5 CONNECT, client id "w", with a will on topic "w" ("bye").
	connect := []byte{0x10, 24, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x06, 0, 60, 0, 0, 1, 'w', 0, 0, 1, 'w', 0, 3, 'b', 'y', 'e'}
	connect[1] = byte(len(connect) - 2)
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	connack := make([]byte, 64)
	if n, err := c.Read(connack); err != nil || n < 4 || connack[0] != 0x20 || connack[3] != 0 {
		t.Fatalf("CONNACK: % x, %v", connack[:n], err)
	}
	c.Write([]byte{0xE0, 2, 0x04, 0}) // DISCONNECT, disconnect with will message, as paho writes it
	if _, err := c.Read(connack); err == nil {
		t.Fatal("the broker kept the connection")
	}

	deadline := time.Now().Add(5 * time.Second)
	for {
		ended := false
		for _, l := range logs.All() {
			if l.Level >= zapcore.WarnLevel {
				t.Fatalf("a warning for a client that left with its will: %q %v", l.Message, l.ContextMap())
			}
			ended = ended || l.Message == "client connection ended"
		}
		if ended {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no debug line for the end after 5 s: %+v", logs.All())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
