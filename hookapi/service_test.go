package hookapi

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestParseRequestRoundTrip checks that ParseRequest reads back what the
// Runner sends.
func TestParseRequestRoundTrip(t *testing.T) {
	for _, f := range []Facts{
		{Action: ActionOpen, SessionID: "s1", Username: "alice", Password: []byte("pa55 wörd")},
		{Action: ActionConnect, User: "alice", SessionID: "s1", Broker: "b", ClientID: "c1", Username: "u", Password: []byte{0xff, 0, 1}},
		{Action: ActionConnect, User: "alice", SessionID: "s1", Broker: "b", ClientID: "alice/1", CleanStart: true, SessionExpiry: 4294967295},
		{Action: ActionPublish, User: "alice", SessionID: "s1", Broker: "b", Topic: "a/ b\n", QoS: 2, Retain: true, Size: 1 << 20},
		{Action: ActionPublish, User: "alice", SessionID: "s1", Broker: "b", ClientID: "c1", Topic: "dev/1/cmd", ResponseTopic: "users/alice/replies", Will: true},
		{Action: ActionSubscribe, User: "élise", SessionID: "s1", Broker: "b", Topic: "a/+/#", QoS: 1},
		{Action: ActionClose, Instance: "9c1e04b2d77a3f10", User: "alice", SessionID: "s1"},
		{Action: ActionAlive, Instance: "9c1e04b2d77a3f10"},
	} {
		got, err := ParseRequest(hookRequest(f))
		if err != nil {
			t.Errorf("ParseRequest(%+v): %v", f, err)
			continue
		}
		if !reflect.DeepEqual(got, f) {
			t.Errorf("ParseRequest = %+v, want %+v", got, f)
		}
	}
}

func TestParseRequestRejects(t *testing.T) {
	good := func() *http.Request { return hookRequest(publish("alice", "a/b")) }
	withBody := func(body string) *http.Request {
		r := good()
		r.Body = io.NopCloser(strings.NewReader(body))
		return r
	}
	for name, r := range map[string]*http.Request{
		"get": func() *http.Request { r := good(); r.Method = http.MethodGet; return r }(),
		"content type": func() *http.Request {
			r := good()
			r.Header.Set("Content-Type", "text/plain")
			return r
		}(),
		"no action header": func() *http.Request { r := good(); r.Header.Del(HeaderAction); return r }(),
		"forged user header": func() *http.Request {
			r := good()
			r.Header.Set(HeaderUser, "admin")
			return r
		}(),
		"forged instance header": func() *http.Request {
			r := good()
			r.Header.Set(HeaderInstance, "0000000000000000")
			return r
		}(),
		"two topic headers": func() *http.Request {
			r := good()
			r.Header.Add(HeaderTopic, "a/b")
			return r
		}(),
		"not json":        withBody("action=publish"),
		"trailing data":   withBody(`{"action":"publish"} {}`),
		"unknown action":  withBody(`{"action":"admin"}`),
		"qos":             withBody(`{"action":"publish","qos":3}`),
		"size":            withBody(`{"action":"publish","size":-1}`),
		"both passwords":  withBody(`{"action":"open","password":"a","password_base64":"YQ=="}`),
		"bad base64":      withBody(`{"action":"open","password_base64":"!"}`),
		"too large":       withBody(`{"action":"publish","topic":"` + strings.Repeat("a", maxRequestBody) + `"}`),
		"disagreeing qos": withBody(`{"action":"publish","user":"alice","session":"s1","broker":"sensors","topic":"a/b","qos":0,"size":5}`),
	} {
		if f, err := ParseRequest(r); err == nil {
			t.Errorf("%s: accepted, %+v", name, f)
		}
	}
}

// TestHelpersAnswer checks that Allow and Deny answers become the
// decisions they mean.
func TestHelpersAnswer(t *testing.T) {
	run := func(a Action, answer func(http.ResponseWriter)) Decision {
		s := newSubrequest(t.Context(), &Origin{}, &Facts{Action: a})
		answer(s.rec)
		d, _ := result(a, s, outcome{})
		return d
	}
	d := run(ActionOpen, func(w http.ResponseWriter) {
		Allow(w, WithUser("alice"), WithLimit("max_bandwidth", "65536"), WithMaxAge(90*time.Second+time.Millisecond))
	})
	if !d.Allow || d.User != "alice" || d.Limits["max_bandwidth"] != "65536" || d.MaxAge != 90*time.Second {
		t.Errorf("Allow → %+v", d)
	}
	d = run(ActionSubscribe, func(w http.ResponseWriter) { Deny(w, 4031, "line\nbreak", WithMaxAge(time.Minute)) })
	if d.Allow || d.Code != 4031 || d.Message != "line break" || d.MaxAge != time.Minute {
		t.Errorf("Deny → %+v", d)
	}
	d = run(ActionOpen, func(w http.ResponseWriter) { Deny(w, 0, "") })
	if d.Allow || d.Code != CodeNotAuthenticated || d.Message != "Forbidden" {
		t.Errorf("Deny(0, \"\") → %+v", d)
	}
}

func TestMaxAge(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"max-age=60":                   time.Minute,
		"private, max-age=5":           5 * time.Second,
		`max-age="7"`:                  7 * time.Second,
		"max-age=60, no-store":         0,
		"no-cache, max-age=60":         0,
		"max-age=-1":                   0,
		"max-age=abc":                  0,
		"max-age=99999999999999999999": 0,
		"max-age=999999999":            24 * time.Hour,
		"":                             0,
	} {
		if got := maxAge(http.Header{"Cache-Control": {v}}); got != want {
			t.Errorf("max-age of %q = %v, want %v", v, got, want)
		}
	}
}

// FuzzParseRequest feeds ParseRequest arbitrary bodies and a topic header:
// it must not panic, and what it accepts must survive a round trip
// through the Runner's encoding.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(`{"action":"publish","topic":"a/b","qos":1}`), "a/b")
	f.Add([]byte(`{"action":"open","username":"u","password_base64":"/wA="}`), "")
	f.Add([]byte(`{"action":"subscribe","topic":"a/\n","size":3}`), "x")
	f.Add([]byte(`{"action":"close"}`), "")
	f.Fuzz(func(t *testing.T, body []byte, topicHeader string) {
		r := httptest.NewRequest(http.MethodPost, "/x", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		// The action header is required: take it from the body.
		facts, err := parseFacts(body, http.Header{})
		if err != nil {
			return
		}
		r.Header.Set(HeaderAction, string(facts.Action))
		if topicHeader != "" {
			r.Header[HeaderTopic] = []string{topicHeader}
		}
		got, err := ParseRequest(r)
		if err != nil {
			if topicHeader == "" || topicHeader == facts.Topic {
				t.Fatalf("ParseRequest refused what parseFacts accepted: %v", err)
			}
			return
		}
		again, err := ParseRequest(hookRequest(got))
		if err != nil {
			t.Fatalf("round trip of %+v: %v", got, err)
		}
		if !reflect.DeepEqual(again, got) {
			t.Fatalf("round trip changed %+v into %+v", got, again)
		}
	})
}
