package hookapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// noServer stands in for Caddy's server when the origin was not served by
// one (tests, programs embedding the Runner): handlers such as
// reverse_proxy read the server from the request context unconditionally.
var noServer = new(caddyhttp.Server)

// dropped are the request headers of the web request that do not go to
// hooks: hop-by-hop headers (RFC 9110, section 7.6.1), those that describe
// the original body rather than ours, and the WebSocket handshake's own.
// Sec-WebSocket-Protocol stays: applications carry tokens in it.
var dropped = map[string]bool{
	"Connection":               true,
	"Proxy-Connection":         true,
	"Keep-Alive":               true,
	"Proxy-Authenticate":       true,
	"Proxy-Authorization":      true,
	"Te":                       true,
	"Trailer":                  true,
	"Transfer-Encoding":        true,
	"Upgrade":                  true,
	"Content-Length":           true,
	"Content-Type":             true,
	"Content-Encoding":         true,
	"Expect":                   true,
	"Sec-Websocket-Key":        true,
	"Sec-Websocket-Version":    true,
	"Sec-Websocket-Extensions": true,
}

// subrequest is a synthetic request with its response recorder and
// replacer. It belongs to the goroutine that runs the chain until that
// goroutine is done.
type subrequest struct {
	req  *http.Request
	rec  *recorder
	repl *caddy.Replacer
}

// newSubrequest builds the synthetic request for f on behalf of o, with
// the context Caddy's server would give it (replacer, vars with the
// client IP, server, original request) so that any handler works in the
// chain.
func newSubrequest(ctx context.Context, o *Origin, f *Facts) *subrequest {
	ctx = context.WithValue(ctx, factsKey{}, f)
	if o.localAddr != nil {
		ctx = context.WithValue(ctx, http.LocalAddrContextKey, o.localAddr)
	}
	path := "/" + string(f.Action)
	payload := f.marshalBody()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, path, bytes.NewReader(payload))
	if err != nil {
		// The method is valid and the path is "/" and a valid action.
		panic("hookapi: building the request: " + err.Error())
	}
	req.RequestURI = path
	req.Host = o.Host
	req.RemoteAddr = o.RemoteAddr
	req.TLS = o.TLS
	if major, minor, ok := http.ParseHTTPVersion(o.Proto); ok {
		req.Proto, req.ProtoMajor, req.ProtoMinor = o.Proto, major, minor
	}
	req.Header = hookHeader(o.Header, f)

	s := &subrequest{rec: newRecorder(), repl: caddy.NewReplacer()}
	srv := o.server
	if srv == nil {
		srv = noServer
	}
	req = caddyhttp.PrepareRequest(req, s.repl, s.rec, srv)
	// PrepareRequest resolved the client from the synthetic request; the
	// web request's resolution, from the snapshot, is the true one.
	caddyhttp.SetVar(req.Context(), caddyhttp.ClientIPVarKey, o.clientIP())
	caddyhttp.SetVar(req.Context(), caddyhttp.TrustedProxyVarKey, o.TrustedProxy)
	for _, h := range factHeaders {
		s.repl.Set(h.placeholder, h.value(f))
	}
	s.req = req
	return s
}

// hookHeader is the header of the synthetic request: the web request's,
// minus what dropped lists, the headers its Connection header names and
// every X-Mqtt-* header (which only the gateway may set), plus the facts.
func hookHeader(in http.Header, f *Facts) http.Header {
	var hop []string
	for _, v := range in.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			if name = strings.TrimSpace(name); name != "" {
				hop = append(hop, textproto.CanonicalMIMEHeaderKey(name))
			}
		}
	}
	h := make(http.Header, len(in)+len(factHeaders)+2)
	for k, v := range in {
		ck := textproto.CanonicalMIMEHeaderKey(k)
		if dropped[ck] || strings.HasPrefix(ck, "X-Mqtt-") || slices.Contains(hop, ck) {
			continue
		}
		// A copy: handlers in the chain may change the request's headers.
		h[ck] = append(h[ck], v...)
	}
	for _, fh := range factHeaders {
		if v := fh.value(f); v != "" && headerSafe(v) {
			h[fh.name] = []string{v}
		}
	}
	h["Content-Type"] = []string{"application/json"}
	// The credentials the client gave for this action, as HTTP Basic
	// credentials, so that basic_auth and upstreams that speak Basic check
	// them. They replace the web request's Authorization header, which
	// is about the page, not about this action. RFC 7617 forbids ':' in a
	// user-id: such credentials cannot be Basic ones, and the header is
	// dropped rather than left to vouch for them.
	if (f.Action == ActionOpen || f.Action == ActionConnect) && (f.Username != "" || len(f.Password) > 0) {
		delete(h, "Authorization")
		if !strings.Contains(f.Username, ":") {
			cred := make([]byte, 0, len(f.Username)+1+len(f.Password))
			cred = append(append(append(cred, f.Username...), ':'), f.Password...)
			h["Authorization"] = []string{"Basic " + base64.StdEncoding.EncodeToString(cred)}
		}
	}
	return h
}
