package session

import (
	"bytes"
	"net"
	"testing"

	"github.com/eclipse/paho.golang/packets"
)

// BenchmarkBrokerConnRead is paho reading the broker's PUBLISH packets
// (100-byte payloads) through a brokerConn over loopback TCP: what a
// dedicated connection's reader costs per message.
func BenchmarkBrokerConnRead(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var one bytes.Buffer
	(&packets.Publish{Topic: "sensors/a/temperature", Payload: make([]byte, 100), Properties: &packets.Properties{}}).ToControlPacket().WriteTo(&one)
	batch := bytes.Repeat(one.Bytes(), 256)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		for sent := 0; sent < b.N; sent += 256 {
			if _, err := c.Write(batch); err != nil {
				return
			}
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	conn := newBrokerConn(raw, nil, nil, nil)
	defer conn.Close()
	b.SetBytes(int64(one.Len()))
	b.ResetTimer()
	for range b.N {
		if _, err := packets.ReadPacket(conn); err != nil {
			b.Fatal(err)
		}
	}
}
