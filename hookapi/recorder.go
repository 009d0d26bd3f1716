package hookapi

import "net/http"

// maxBody is how much of a hook's response body is kept: enough for a
// message, and a misbehaving upstream cannot make the gateway buffer more.
const maxBody = 4 << 10

// recorder is the http.ResponseWriter of a synthetic request. It keeps
// the status, the headers and the first maxBody bytes of the body, and
// accepts (and drops) the rest so that handlers do not fail on a long
// answer.
type recorder struct {
	header http.Header
	status int
	body   []byte
}

func newRecorder() *recorder { return &recorder{header: make(http.Header)} }

// Header implements http.ResponseWriter.
func (w *recorder) Header() http.Header { return w.header }

// WriteHeader implements http.ResponseWriter. Informational statuses
// (1xx, which reverse_proxy forwards) are not the answer and are skipped;
// 101 is a final status, though not one a hook should send.
func (w *recorder) WriteHeader(code int) {
	if w.status != 0 || (code >= 100 && code < 200 && code != http.StatusSwitchingProtocols) {
		return
	}
	w.status = code
}

// Write implements http.ResponseWriter.
func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if room := maxBody - len(w.body); room > 0 {
		w.body = append(w.body, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// Flush implements http.Flusher, for handlers that stream: there is
// nothing to flush to.
func (w *recorder) Flush() {}

// Interface guards.
var (
	_ http.ResponseWriter = (*recorder)(nil)
	_ http.Flusher        = (*recorder)(nil)
)
