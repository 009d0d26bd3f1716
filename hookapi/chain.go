package hookapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// Chain is a hook: Caddy routes that every synthetic request of an action
// runs through, in order, as in a `route` block. The chain must answer:
// 2xx allows, 4xx denies, anything else (a 5xx, a handler error, no
// response at all) denies with code 4022.
type Chain struct {
	// The routes to run, as in a subroute or a `route` block: each has
	// optional matchers and handlers, and a route that answers ends the
	// chain. Matchers see the synthetic request: its path is "/" plus the
	// action ("/open", "/subscribe"…), its headers those of the web
	// request plus X-Mqtt-*, and the mqtt_topic matcher tests its topic.
	Routes caddyhttp.RouteList `json:"routes,omitempty"`

	handler caddyhttp.Handler
}

// Provision loads the routes' matchers and handlers and compiles the chain
// once; what follows the last route writes nothing, so a chain that falls
// through denies.
func (c *Chain) Provision(ctx caddy.Context) error {
	if err := c.Routes.Provision(ctx); err != nil {
		return fmt.Errorf("setting up hook routes: %v", err)
	}
	c.handler = c.Routes.Compile(fallThrough)
	return nil
}

// fallThrough ends every chain. It writes nothing, which the Runner turns
// into a 4022 denial: a chain without an answer is a configuration
// mistake, and the gateway fails closed.
var fallThrough = caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })

// ParseChain parses the block of the current directive (`authenticate
// { … }` or `authorize { … }`, inside mqtt_gateway) exactly as the
// contents of a `route` block: handler directives with matchers, named
// matcher definitions, and the order as written, not Caddy's directive
// order. The dispenser is left on the block's closing brace, as
// Dispenser.NextSegment leaves it, so the caller's NextBlock loop goes on
// with the next option.
//
// h must be the Helper that the Caddyfile adapter gave the enclosing
// directive (with h.Dispenser on the hook's name): the adapter's state in
// it (named matchers of the site, the route group counter) is needed.
func ParseChain(h httpcaddyfile.Helper) (c *Chain, err error) {
	defer func() {
		// A zero Helper makes the adapter dereference nil state.
		if p := recover(); p != nil {
			c, err = nil, fmt.Errorf("hookapi: ParseChain needs the Caddyfile adapter's Helper: %v", p)
		}
	}()
	seg := h.NextSegment()
	d := caddyfile.NewDispenser(seg)
	d.Next()
	name := d.Val()
	if len(seg) < 2 {
		return nil, d.Errf("%s needs a block of handlers, as in a route block", name)
	}
	if d.NextArg() {
		return nil, d.Errf("%s takes no arguments, only a block of handlers", name)
	}
	// The route directive's own parser is not exported. So wrap the
	// segment in a block and let ParseSegmentAsSubroute parse it as a
	// `route` directive: `x { route { <block> } }`. The tokens keep their
	// files and lines (errors point at the user's Caddyfile); the wrapper's
	// brace is put one line up, and its closing brace one line down, so
	// that the dispenser sees the usual line structure.
	open, closing := seg[1], seg[len(seg)-1]
	outerName, outerOpen, outerClose := seg[0], open, closing
	outerName.Line--
	outerOpen.Line--
	outerClose.Line = closing.Line + closing.NumLineBreaks() + 1
	route := seg[0]
	route.Text = "route"
	tokens := make([]caddyfile.Token, 0, len(seg)+3)
	tokens = append(tokens, outerName, outerOpen, route)
	tokens = append(tokens, seg[1:]...)
	tokens = append(tokens, outerClose)

	mh, perr := httpcaddyfile.ParseSegmentAsSubroute(h.WithDispenser(caddyfile.NewDispenser(tokens)))
	if perr != nil {
		// The wrapper is ours, not the user's: keep it out of the message,
		// which then reads as Caddy's for a route block.
		wd := caddyfile.NewDispenser([]caddyfile.Token{outerClose})
		wd.Next()
		msg := strings.TrimPrefix(perr.Error(), "parsing caddyfile tokens for 'route': ")
		msg = strings.TrimSuffix(msg, wd.WrapErr(errors.New("")).Error())
		return nil, fmt.Errorf("%s: %s", name, msg)
	}
	// The result is a subroute with one route whose one handler is the
	// `route` block's subroute: unwrap it.
	outer, ok := mh.(*caddyhttp.Subroute)
	if !ok || len(outer.Routes) != 1 || len(outer.Routes[0].MatcherSetsRaw) != 0 || len(outer.Routes[0].HandlersRaw) != 1 {
		return nil, d.Errf("%s: unexpected result of parsing the block", name)
	}
	var inner struct {
		Handler string              `json:"handler"`
		Routes  caddyhttp.RouteList `json:"routes"`
	}
	if err := json.Unmarshal(outer.Routes[0].HandlersRaw[0], &inner); err != nil || inner.Handler != "subroute" {
		return nil, d.Errf("%s: unexpected result of parsing the block", name)
	}
	if len(inner.Routes) == 0 {
		return nil, d.Errf("%s block has no handlers, so it could only deny", name)
	}
	return &Chain{Routes: inner.Routes}, nil
}

// Interface guards.
var _ caddy.Provisioner = (*Chain)(nil)
