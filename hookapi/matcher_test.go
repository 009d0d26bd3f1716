package hookapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

// hookRequest is the synthetic request for f, as the Runner builds it.
func hookRequest(f Facts) *http.Request {
	return newSubrequest(context.Background(), &Origin{}, &f).req
}

func matches(t *testing.T, m MatchTopic, f Facts) bool {
	t.Helper()
	if err := m.Provision(newCaddyContext(t)); err != nil {
		t.Fatalf("Provision(%q): %v", m, err)
	}
	ok, err := m.MatchWithError(hookRequest(f))
	if err != nil {
		t.Fatalf("MatchWithError: %v", err)
	}
	if ok != m.Match(hookRequest(f)) {
		t.Fatalf("Match and MatchWithError disagree")
	}
	return ok
}

// TestMatchTopicContainment uses the design brief's cases and Mosquitto's
// ACL vectors (mosquitto_sub_matches_acl), as (rule, subscription).
func TestMatchTopicContainment(t *testing.T) {
	for _, tt := range []struct {
		pattern, filter string
		want            bool
	}{
		{"a/+", "a/b", true},
		{"a/+", "a/#", false},
		{"foo/+/bar", "foo/#", false},
		{"#", "$SYS/uptime", false},
		{"#", "$SYS/#", false},
		{"$SYS/#", "$SYS", true},
		{"$SYS/#", "$SYS/uptime", true},
		{"+", "#", false},
		{"+", "+", true},
		{"a/b/c/d/+", "a/b/c/d/", true},
		{"a/b/c/d/", "a/b/c/d/+", false},
		{"a/b/c/d/+", "a/b/c/d/e", true},
		{"a/b/c/d/e", "a/b/c/d/+", false},
		{"foo/+/ba\u211e/#", "foo/baz/ba\u211e/+", true},
		{"foo/+/ba\u211e/#", "foo/baz/+/#", false},
		{"/+//#", "/foo///#", true},
		{"$SYS/+/#", "$SYS/broker/uptime", true},
		{"/#", "+", false},
		{"/#", "/+", true},
		{"+/+", "topic/topic/", false},
		{"$SYS/+", "$SYS/#", false},
		{"$SYS/broker/uptime", "$SYS/broker/#", false},
		{"#", "$SYS/broker/#", false},
		{"users/alice/#", "users/+/#", false},
		// A dedicated client's shared subscription delivers what its
		// filter matches: a deny rule on a topic holds for it too. A
		// $share pattern also says which share names; a malformed shared
		// subscription never matches.
		{"#", "$share/g/a", true},
		{"secret/#", "$share/x/secret/#", true},
		{"secret/#", "$share/x/#", false},
		{"#", "$share/g/$SYS/#", false},
		{"$share/#", "$share/g/a", true},
		{"$share/#", "$share/g/$SYS/#", false},
		{"$share/+/#", "$share/g/$SYS/#", false},
		{"$share/+/jobs/#", "$share/workers/jobs/+", true},
		{"$share/workers/jobs/#", "$share/workers/jobs/+", true},
		{"$share/other/jobs/#", "$share/workers/jobs/+", false},
		{"$share/+/jobs/#", "$share/workers/other", false},
		{"$share/+/jobs/+", "$share/workers/jobs/#", false},
		{"$share/#", "$share/+/a", false},
		{"$share/#", "$share/g", false},
		{"#", "a/#/b", false}, // invalid filters never match
		{"#", "a\x00b", false},
		{"a/#", "", false},
	} {
		got := matches(t, MatchTopic{tt.pattern}, subscribe("alice", tt.filter))
		if got != tt.want {
			t.Errorf("mqtt_topic %q on subscribe %q = %v, want %v", tt.pattern, tt.filter, got, tt.want)
		}
	}
}

func TestMatchTopicPublish(t *testing.T) {
	for _, tt := range []struct {
		pattern, topic string
		want           bool
	}{
		{"a/+", "a/b", true},
		{"a/#", "a", true},
		{"#", "$SYS/uptime", false},
		{"$SYS/#", "$SYS/uptime", true},
		{"a/#", "a/+", false}, // not a topic name
		{"a/#", "a/#", false},
		{"#", "\xff", false},
		// A topic name under $share is a plain $ topic, not a shared
		// subscription: # does not admit it.
		{"#", "$share/g/jobs/x", false},
		{"jobs/#", "$share/g/jobs/x", false},
		{"$share/#", "$share/g/jobs/x", true},
	} {
		if got := matches(t, MatchTopic{tt.pattern}, publish("alice", tt.topic)); got != tt.want {
			t.Errorf("mqtt_topic %q on publish %q = %v, want %v", tt.pattern, tt.topic, got, tt.want)
		}
	}
}

func TestMatchTopicSeveralPatterns(t *testing.T) {
	m := MatchTopic{"a/#", "users/{http.mqtt_gateway.user}/#", "b/+"}
	for topic, want := range map[string]bool{"a/x": true, "b/x": true, "users/alice/x": true, "users/bob/x": false, "c": false} {
		if got := matches(t, m, publish("alice", topic)); got != want {
			t.Errorf("%q: %v, want %v", topic, got, want)
		}
	}
}

// TestMatchTopicInjection gives users names that would widen
// users/{user}/# (or {user}/#) if they were pasted in.
func TestMatchTopicInjection(t *testing.T) {
	own := MatchTopic{"users/{http.mqtt_gateway.user}/#"}
	top := MatchTopic{"{http.mqtt_gateway.user}/#"}
	for _, tt := range []struct {
		m           MatchTopic
		user, topic string
	}{
		{own, "bob/#", "users/bob/#"},
		{own, "bob/#", "users/bob/x"},
		{own, "+", "users/+/x"},
		{own, "+", "users/alice/x"},
		{own, "#", "users/alice/x"},
		{own, "", "users//x"},
		{own, "", "users/x"},
		{own, "a\x00b", "users/a"},
		{own, "$SYS", "users/$SYS/x"},
		{top, "$SYS", "$SYS/uptime"},
		{top, "#", "anything"},
		{top, "+", "anything/x"},
		{MatchTopic{"{http.mqtt_gateway.user}"}, "#", "x"},
		{MatchTopic{"users/{http.mqtt_gateway.nope}/#"}, "alice", "users/alice/x"},
		{MatchTopic{"users/{http.mqtt_gateway.user}{http.mqtt_gateway.username}/#"}, "alice", "users/alice/x"}, // empty username
	} {
		f := subscribe(tt.user, tt.topic)
		if matches(t, tt.m, f) {
			t.Errorf("user %q: %q matched %q", tt.user, tt.m, tt.topic)
		}
		f.Action = ActionPublish
		if matches(t, tt.m, f) {
			t.Errorf("user %q: %q matched publish %q", tt.user, tt.m, tt.topic)
		}
	}
	// And the honest cases still match, placeholders mid-level included.
	for _, tt := range []struct {
		m           MatchTopic
		user, topic string
	}{
		{own, "alice", "users/alice/x"},
		{own, "bob.smith@example.com", "users/bob.smith@example.com/+"},
		{own, "émile", "users/émile"},
		{MatchTopic{"home/{http.mqtt_gateway.user}-{http.mqtt_gateway.broker}/#"}, "alice", "home/alice-sensors/t"},
		{MatchTopic{"a/{http.request.header.X-Tenant}/#"}, "alice", "a/t1/b"},
	} {
		f := subscribe(tt.user, tt.topic)
		req := hookRequest(f)
		req.Header.Set("X-Tenant", "t1")
		if ok, _ := tt.m.MatchWithError(req); !ok {
			t.Errorf("user %q: %q did not match %q", tt.user, tt.m, tt.topic)
		}
	}
}

// TestMatchTopicOtherRequests checks that requests that are not hook
// requests never match, even with a forged header.
func TestMatchTopicOtherRequests(t *testing.T) {
	m := MatchTopic{"#"}
	r := httptest.NewRequest(http.MethodPost, "/subscribe", nil)
	r.Header.Set(HeaderTopic, "a/b")
	r.Header.Set(HeaderAction, "subscribe")
	if m.Match(r) {
		t.Error("matched a plain request")
	}
	for _, a := range []Action{ActionOpen, ActionConnect, ActionClose} {
		if matches(t, m, Facts{Action: a, User: "alice"}) {
			t.Errorf("matched %s, which has no topic", a)
		}
	}
}

func TestMatchTopicProvision(t *testing.T) {
	ctx := newCaddyContext(t)
	// A $share pattern that could match no shared subscription would let
	// every one by a deny rule.
	for _, m := range []MatchTopic{{"a/#/b"}, {"a+"}, {""}, {"a/\x00"}, {}, {"users/{x}#"},
		{"$share"}, {"$share/+"}, {"$share/g"}, {"$share/+/"}, {"$share//a"}, {"$share/g#/a"}} {
		if err := m.Provision(ctx); err == nil {
			t.Errorf("Provision(%q) accepted an invalid pattern", m)
		}
	}
	for _, m := range []MatchTopic{{"#"}, {"$share/#"}, {"$share/+/jobs/#"}, {"$share/{http.mqtt_gateway.user}/#"},
		{"users/{http.mqtt_gateway.user}/#"}, {"{a}/{b}/+"}} {
		if err := m.Provision(ctx); err != nil {
			t.Errorf("Provision(%q): %v", m, err)
		}
	}
}

func TestMatchTopicCaddyfile(t *testing.T) {
	var m MatchTopic
	d := caddyfile.NewTestDispenser(`mqtt_topic a/+ "#" users/{http.mqtt_gateway.user}/#
	mqtt_topic b`)
	if err := m.UnmarshalCaddyfile(d); err != nil {
		t.Fatal(err)
	}
	if want := (MatchTopic{"a/+", "#", "users/{http.mqtt_gateway.user}/#", "b"}); !reflect.DeepEqual(m, want) {
		t.Errorf("parsed %q, want %q", m, want)
	}
	for _, bad := range []string{"mqtt_topic", "mqtt_topic a {\nb\n}"} {
		var m MatchTopic
		if err := m.UnmarshalCaddyfile(caddyfile.NewTestDispenser(bad)); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
	// An invalid filter is refused with its line, not later when the
	// config loads, deep in Caddy's chain of provisioning errors.
	var bad MatchTopic
	err := bad.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mqtt_topic a/+\nmqtt_topic ok a/#/b"))
	if err == nil || !strings.Contains(err.Error(), `pattern "a/#/b"`) || !strings.Contains(err.Error(), "Testfile:2") {
		t.Errorf("an invalid filter on line 2: %v", err)
	}
}

// TestMatchTopicCEL uses the matcher in a CEL expression inside a real
// chain.
func TestMatchTopicCEL(t *testing.T) {
	r := authorizeRunner(t, `
		@pub expression "mqtt_topic('public/#', 'news/+') && {http.mqtt_gateway.action} == 'subscribe'"
		respond @pub 200
		respond 403`)
	wantAllow(t, decide(r, subscribe("alice", "public/x/y")))
	wantAllow(t, decide(r, subscribe("alice", "news/today")))
	wantDeny(t, decide(r, subscribe("alice", "news/#")), CodeNotAuthorized, "")
	wantDeny(t, decide(r, publish("alice", "public/x")), CodeNotAuthorized, "")
}
