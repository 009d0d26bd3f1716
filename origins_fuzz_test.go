package mqttgateway

import "testing"

// parseOrigins takes allow_origins as written: it never panics, and an
// exact origin it accepts is let in, in the form browsers send it, which
// it accepts again as it is.
func FuzzParseOrigins(f *testing.F) {
	for _, s := range []string{"https://app.example.com", "https://*.example.com", "*", "http://h:80", "https://h:443/",
		"app.example.com", "https://h/path", "https://h:0", "https://u@h", "HTTPS://H", "https://a.*.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		set, err := parseOrigins([]string{s})
		if err != nil || set.any || len(set.wild) > 0 {
			return
		}
		for o := range set.exact {
			if !set.allows(o) {
				t.Fatalf("%q: accepted as %q, which it does not let in", s, o)
			}
			if again, err := normalizeOrigin(o); err != nil || again != o {
				t.Fatalf("%q: accepted as %q, which normalizes to %q, %v", s, o, again, err)
			}
		}
	})
}
