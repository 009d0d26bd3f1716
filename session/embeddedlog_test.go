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
