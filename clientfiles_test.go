package mqttgateway

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"testing"
)

// The client's files go compressed to a browser that takes gzip (about
// 62 KB instead of 218 KB, seconds on a phone's slow link), whole to one
// that does not, and revalidate with the ETag of what was sent.
func TestClientFilesGoCompressed(t *testing.T) {
	mq := startMosquitto(t)
	_, httpPort := gatewayWithBroker(t, fmt.Sprintf("mqtt://127.0.0.1:%d", mq.port), "")
	url := fmt.Sprintf("http://127.0.0.1:%d/mqtt/session.js", httpPort)
	// A transport of its own, which does not ask for gzip by itself.
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	get := func(header map[string]string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, body
	}
	plainResp, plain := get(nil)
	if plainResp.StatusCode != 200 || plainResp.Header.Get("Content-Encoding") != "" || !bytes.Contains(plain, []byte("export")) {
		t.Fatalf("without Accept-Encoding: %d, encoding %q, %d bytes", plainResp.StatusCode, plainResp.Header.Get("Content-Encoding"), len(plain))
	}
	gzResp, gz := get(map[string]string{"Accept-Encoding": "gzip, deflate, br"})
	if gzResp.StatusCode != 200 || gzResp.Header.Get("Content-Encoding") != "gzip" || gzResp.Header.Get("Vary") != "Accept-Encoding" {
		t.Fatalf("with gzip accepted: %d, encoding %q, vary %q", gzResp.StatusCode, gzResp.Header.Get("Content-Encoding"), gzResp.Header.Get("Vary"))
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(unzipped, plain) {
		t.Fatalf("the compressed file does not read back as the file (%v)", err)
	}
	if len(gz) > len(plain)/2 {
		t.Errorf("compressed %d bytes of %d", len(gz), len(plain))
	}
	if gzResp.Header.Get("ETag") == plainResp.Header.Get("ETag") {
		t.Errorf("one ETag %s for both encodings", gzResp.Header.Get("ETag"))
	}
	if resp, _ := get(map[string]string{"Accept-Encoding": "gzip", "If-None-Match": gzResp.Header.Get("ETag")}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("revalidation with the compressed file's ETag: %d", resp.StatusCode)
	}
	if resp, _ := get(map[string]string{"Accept-Encoding": "gzip;q=0, identity"}); resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip refused with q=0, and sent compressed")
	}
}
