package hookapi

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestSnapshotInCaddy takes the snapshot of a real request served by a
// real Caddy (behind a trusted proxy, per the server's trusted_proxies)
// and decides with it after the request is over.
func TestSnapshotInCaddy(t *testing.T) {
	g, addr := startGateway(t, `authorize {
		@inside client_ip 203.0.113.0/24
		respond @inside "{http.request.header.User-Agent}|{http.request.header.X-Mqtt-User}|{http.request.host}|{http.request.local.port}|{http.shutting_down}" 403
		respond 200
	}`)
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr+"/ws", nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	req.Header.Set("User-Agent", "snap-test")
	req.Header.Set("X-Mqtt-User", "admin")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	o := g.origin.Load()
	if o == nil {
		t.Fatal("no snapshot")
	}
	if o.ClientIP != "203.0.113.9" || !o.TrustedProxy || o.server == nil || o.localAddr == nil ||
		o.Host != addr || !strings.HasPrefix(o.RemoteAddr, "127.0.0.1:") || o.Proto != "HTTP/1.1" {
		t.Errorf("snapshot = %+v", o)
	}
	// The forged X-Mqtt-User gave way to the gateway's.
	host, port, _ := strings.Cut(addr, ":")
	d := (&Runner{Chain: g.Authorize}).Decide(context.Background(), o, publish("alice", "a/b"))
	wantDeny(t, d, CodeNotAuthorized, "snap-test|alice|"+host+"|"+port+"|false")
}
