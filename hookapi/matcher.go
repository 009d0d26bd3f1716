package hookapi

import (
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types/ref"
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-mqtt/mqttgateway/session/topic"
)

func init() {
	caddy.RegisterModule(MatchTopic{})
}

// MatchTopic matches the synthetic requests of hook chains whose topic (a
// publish's topic name, an (un)subscribe's topic filter) is contained in
// one of its patterns, with MQTT's rules: a pattern admits a filter only
// if it admits every topic that filter can match. So `a/+` admits `a/b`
// and `a/+` but not `a/#`, `#` admits nothing under `$SYS`, and `$SYS/#`
// admits `$SYS`. Any other request, and an invalid topic, never matches.
// A dedicated client's shared subscription, `$share/<share name>/<filter>`,
// is admitted by a pattern that admits its filter, or by a `$share`
// pattern whose share name level is `+` or that name and whose rest admits
// the filter (`$share/+/jobs/#`); `$share/#` admits every one on what `#`
// admits.
//
// Patterns may hold placeholders, expanded per request:
// `users/{http.mqtt_gateway.user}/#`. A placeholder must stand for text
// within one level: if its value is empty, unknown, holds '/', '+', '#'
// or NUL, or starts with '$', the pattern does not match, so that a user
// named `bob/#` or `+` cannot widen a rule.
//
// In a Caddyfile, quote a pattern that starts with '#', which would
// otherwise begin a comment: `mqtt_topic "#"`.
//
// In CEL expressions: `mqtt_topic('public/#', 'news/+')`. Caddy's CEL
// rewrites placeholders even inside string literals, so patterns with
// placeholders are for the matcher form above.
type MatchTopic []string

// CaddyModule returns the Caddy module information.
func (MatchTopic) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.matchers.mqtt_topic",
		New: func() caddy.Module { return new(MatchTopic) },
	}
}

// errPlaceholder refuses a placeholder value; it never leaves the package.
var errPlaceholder = errors.New("placeholder value would change the pattern's levels")

// Provision checks the patterns: each must be a valid topic filter once
// its placeholders stand for a plain level.
func (m MatchTopic) Provision(caddy.Context) error {
	if len(m) == 0 {
		return fmt.Errorf("mqtt_topic: at least one pattern is required")
	}
	sample := caddy.NewEmptyReplacer()
	for _, p := range m {
		probe, err := sample.ReplaceFunc(p, func(string, any) (any, error) { return "x", nil })
		if err != nil {
			return fmt.Errorf("mqtt_topic: pattern %q: %v", p, err)
		}
		err = topic.ValidateFilter(probe)
		if errors.Is(err, topic.ErrSharedSubscription) {
			err = checkSharePattern(probe)
		}
		if err != nil {
			return fmt.Errorf("mqtt_topic: pattern %q: %v", p, err)
		}
	}
	return nil
}

// MatchWithError implements caddyhttp.RequestMatcherWithError.
func (m MatchTopic) MatchWithError(r *http.Request) (bool, error) {
	f, ok := r.Context().Value(factsKey{}).(*Facts)
	if !ok || !validTopic(f) {
		return false, nil
	}
	var repl *caddy.Replacer
	for _, p := range m {
		if strings.IndexByte(p, '{') < 0 {
			if admits(p, f) {
				return true, nil
			}
			continue
		}
		if repl == nil {
			repl, ok = r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
			if !ok {
				return false, nil
			}
		}
		expanded, err := repl.ReplaceFunc(p, guardLevel)
		if err == nil && admits(expanded, f) {
			return true, nil
		}
	}
	return false, nil
}

// admits reports whether pattern admits the request's topic, a valid
// topic name or filter (see validTopic). A dedicated client's shared
// subscription (not a publish's topic name, which is a plain one),
// $share/<share name>/<filter>, delivers what its filter matches: a pattern
// without $share admits it when it admits that filter (`secret/#` admits
// `$share/x/secret/#`, so a rule that denies a topic denies joining a
// share group on it too), and a $share pattern when its share name level
// admits the share name (`+`, or the same name) and the rest admits the
// filter, by the same rules: `$share/+/jobs/#` admits
// `$share/workers/jobs/+`, and `$share/#` admits every shared subscription
// but those whose filter `#` does not admit (`$share/g/$SYS/#`).
func admits(pattern string, f *Facts) bool {
	name, inner, shared := topic.SplitShared(f.Topic)
	switch {
	case !shared || f.Action == ActionPublish:
		return topic.Contains(pattern, f.Topic)
	case !topic.IsShared(pattern):
		return topic.Contains(pattern, inner)
	case pattern == "$share/#":
		return topic.Contains("#", inner)
	}
	pName, pInner, ok := strings.Cut(strings.TrimPrefix(pattern, "$share/"), "/")
	return ok && (pName == "+" || pName == name) && topic.Contains(pInner, inner)
}

// checkSharePattern refuses a $share pattern that could match no shared
// subscription (`$share`, `$share/g`), which a deny rule would let by:
// `$share/#`, or `$share/`, a share name or `+`, `/` and a filter.
func checkSharePattern(p string) error {
	if p == "$share/#" {
		return nil
	}
	name, inner, _ := strings.Cut(strings.TrimPrefix(p, "$share/"), "/")
	if name == "+" {
		p = "$share/x/" + inner
	}
	return topic.ValidateShared(p)
}

// Match implements caddyhttp.RequestMatcher.
func (m MatchTopic) Match(r *http.Request) bool {
	ok, _ := m.MatchWithError(r)
	return ok
}

// validTopic reports whether the request's topic is one the action could
// carry: a topic name for a publish, a filter or a well-formed shared
// subscription otherwise (a dedicated client's: admits). The gateway checks
// this before asking; the matcher checks it again because it fails closed.
func validTopic(f *Facts) bool {
	if f.Topic == "" {
		return false
	}
	if f.Action == ActionPublish {
		return topic.ValidateName(f.Topic) == nil
	}
	return topic.ValidateFilter(f.Topic) == nil || topic.ValidateShared(f.Topic) == nil
}

// guardLevel refuses placeholder values that could change the structure
// of a pattern (the injection guard).
func guardLevel(_ string, val any) (any, error) {
	if val == nil {
		return nil, errPlaceholder // unknown placeholder
	}
	s := caddy.ToString(val)
	if s == "" || s[0] == '$' || strings.ContainsAny(s, "/+#\x00") {
		return nil, errPlaceholder
	}
	return s, nil
}

// UnmarshalCaddyfile sets up the matcher from Caddyfile tokens:
//
//	mqtt_topic <pattern...>
//
// Several mqtt_topic lines in one named matcher add patterns.
func (m *MatchTopic) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	for d.Next() {
		args := d.RemainingArgs()
		if len(args) == 0 {
			return d.ArgErr()
		}
		// Checked here too, so that a bad pattern names its line.
		if err := MatchTopic(args).Provision(caddy.Context{}); err != nil {
			return d.WrapErr(err)
		}
		*m = append(*m, args...)
		if d.NextBlock(0) {
			return d.Err("malformed mqtt_topic matcher: blocks are not supported")
		}
	}
	return nil
}

// CELLibrary makes the matcher available to CEL expressions as
// mqtt_topic('pattern', …).
func (MatchTopic) CELLibrary(ctx caddy.Context) (cel.Library, error) {
	return caddyhttp.CELMatcherImpl(
		"mqtt_topic",
		"mqtt_topic_match_request_list",
		[]*cel.Type{cel.ListType(cel.StringType)},
		func(data ref.Val) (caddyhttp.RequestMatcherWithError, error) {
			list, err := data.ConvertToNative(stringSlice)
			if err != nil {
				return nil, err
			}
			m := MatchTopic(list.([]string))
			return m, m.Provision(ctx)
		},
	)
}

var stringSlice = reflect.TypeFor[[]string]()

// Interface guards.
var (
	_ caddy.Provisioner                 = (*MatchTopic)(nil)
	_ caddyhttp.RequestMatcherWithError = (*MatchTopic)(nil)
	_ caddyfile.Unmarshaler             = (*MatchTopic)(nil)
	_ caddyhttp.CELLibraryProducer      = (*MatchTopic)(nil)
)
