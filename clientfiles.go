package mqttgateway

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// The JavaScript client ships inside the module, so a page can import it
// from the gateway itself with no build step and no version skew.
//
//go:embed client/src
var clientFS embed.FS

type clientFile struct {
	body  []byte
	etag  string
	ctype string
	// gzipped: body compressed, for the browsers that take it (all do),
	// and its ETag: the client is about 218 KB in 20 modules, 62 KB
	// compressed, which on a phone's slow link is seconds before a page
	// can open its session.
	gzipped []byte
	gzipTag string
}

// clientFiles reads and compresses the files once, when first asked for:
// every binary with the module need not pay for it at start.
var clientFiles = sync.OnceValue(loadClientFiles)

func loadClientFiles() map[string]clientFile {
	out := map[string]clientFile{}
	entries, _ := fs.ReadDir(clientFS, "client/src")
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".js") && !strings.HasSuffix(e.Name(), ".d.ts") {
			continue
		}
		body, err := clientFS.ReadFile("client/src/" + e.Name())
		if err != nil {
			continue
		}
		hash := sha256.Sum256(body)
		sum := hex.EncodeToString(hash[:8])
		ctype := "text/javascript; charset=utf-8"
		if strings.HasSuffix(e.Name(), ".d.ts") {
			ctype = "application/typescript; charset=utf-8"
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		out[e.Name()] = clientFile{body: body, etag: `"` + sum + `"`, ctype: ctype, gzipped: gz.Bytes(), gzipTag: `"` + sum + `-gzip"`}
	}
	return out
}

// serveClientFile answers a request for one of the client's files.
func serveClientFile(w http.ResponseWriter, r *http.Request, name string) bool {
	f, ok := clientFiles()[name]
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return false
	}
	body, etag := f.body, f.etag
	w.Header().Set("Vary", "Accept-Encoding")
	if acceptsGzip(r.Header.Values("Accept-Encoding")) {
		body, etag = f.gzipped, f.gzipTag
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.Header().Set("Content-Type", f.ctype)
	w.Header().Set("ETag", etag)
	// Module scripts are fetched with CORS: a page of another origin
	// (allowed in allow_origins, or hosting its own copy) imports the
	// client from the gateway only with this. The files are public code;
	// using a session is what allow_origins guards.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	// Revalidate every time: the files change with the gateway's version
	// and the ETag makes revalidation nearly free.
	w.Header().Set("Cache-Control", "no-cache")
	if inm := r.Header.Get("If-None-Match"); inm == f.etag || inm == f.gzipTag {
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
	return true
}

// acceptsGzip reports whether Accept-Encoding values take gzip: listed,
// and not with q=0 (RFC 9110, 12.5.3).
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for _, item := range strings.Split(v, ",") {
			coding, params, _ := strings.Cut(item, ";")
			if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
				continue
			}
			q := 1.0
			if k, v, ok := strings.Cut(params, "="); ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
			return q > 0
		}
	}
	return false
}
