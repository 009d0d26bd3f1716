package mqttgateway

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strings"
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
}

var clientFiles = loadClientFiles()

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
		sum := sha256.Sum256(body)
		ctype := "text/javascript; charset=utf-8"
		if strings.HasSuffix(e.Name(), ".d.ts") {
			ctype = "application/typescript; charset=utf-8"
		}
		out[e.Name()] = clientFile{body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, ctype: ctype}
	}
	return out
}

// serveClientFile answers a request for one of the client's files.
func serveClientFile(w http.ResponseWriter, r *http.Request, name string) bool {
	f, ok := clientFiles[name]
	if !ok || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return false
	}
	w.Header().Set("Content-Type", f.ctype)
	w.Header().Set("ETag", f.etag)
	// Module scripts are fetched with CORS: a page of another origin
	// (allowed in allow_origins, or hosting its own copy) imports the
	// client from the gateway only with this. The files are public code;
	// using a session is what allow_origins guards.
	w.Header().Set("Access-Control-Allow-Origin", "*")
	// Revalidate every time: the files change with the gateway's version
	// and the ETag makes revalidation nearly free.
	w.Header().Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(f.body)
	}
	return true
}
