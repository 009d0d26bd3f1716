// Command hooks is an example hook service for mqtt_gateway, built on the
// hookapi helpers. The gateway reaches it through reverse_proxy (see the
// Caddyfile next to this file):
//
//	go run ./examples/hooks -addr 127.0.0.1:9000
//
// Its policy, over a small user table:
//
//   - open: alice and bob, with their passwords, may open sessions;
//   - connect: any broker, with the gateway's credentials (none of the
//     page's own); a dedicated connection's client ID must begin
//     with "<user>/" (a client ID names a broker session, and whoever
//     connects with it takes over its subscriptions and kept messages);
//   - subscribe: under users/<user>/#, and public/# for everyone;
//   - publish: under users/<user>/# only;
//   - unsubscribe, disconnect, close: logged.
//
// And it keeps who is online (GET /presence), with the alive
// notifications for the sessions of a Caddy that was killed (presence.go).
//
// A real service would keep hashed passwords (or ask an identity
// provider) and keep this address private, or check a shared secret that
// the gateway sends with reverse_proxy's header_up.
package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"flag"
	"log"
	"net/http"
	"strings"
	"time"

	"github.com/caddy-mqtt/mqttgateway/hookapi"
	"github.com/caddy-mqtt/mqttgateway/session/topic"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9000", "address to listen on")
	lapse := flag.Duration("instance-lapse", 90*time.Second, "how long a Caddy instance may be silent before its sessions count as ended (a few of its alive_interval)")
	flag.Parse()
	srv := &http.Server{
		Addr:              *addr,
		Handler:           newHandler(defaultUsers, newPresence(*lapse)),
		ReadHeaderTimeout: 5 * time.Second,
	}
	log.Printf("hook service listening on %s", *addr)
	log.Fatal(srv.ListenAndServe())
}

// defaultUsers are the example's accounts: user name → password.
var defaultUsers = map[string]string{
	"alice": "alice-secret",
	"bob":   "bob-secret",
}

// service answers the gateway's hook requests.
type service struct {
	passwords map[string][sha256.Size]byte
	presence  *presence
}

func newHandler(users map[string]string, p *presence) http.Handler {
	s := &service{passwords: make(map[string][sha256.Size]byte, len(users)), presence: p}
	for u, p := range users {
		s.passwords[u] = sha256.Sum256([]byte(p))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /{action}", s.hook)
	mux.HandleFunc("GET /presence", p.serve)
	return mux
}

func (s *service) hook(w http.ResponseWriter, r *http.Request) {
	f, err := hookapi.ParseRequest(r)
	if err != nil {
		// Not from the gateway, or a mismatch: refuse, and say why.
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.presence.note(f)
	switch f.Action {
	case hookapi.ActionOpen:
		if !s.checkPassword(f.Username, f.Password) {
			log.Printf("open denied: user=%q", f.Username)
			hookapi.Deny(w, 0, "wrong user name or password")
			return
		}
		hookapi.Allow(w, hookapi.WithUser(f.Username), hookapi.WithLimit("max_bandwidth", "65536"))
	case hookapi.ActionConnect:
		// The gateway logs in to the broker with its configured
		// credentials. MQTT ones of the page's own would try the broker's
		// other accounts, which answers each guess at once.
		if f.Username != "" || len(f.Password) > 0 {
			hookapi.Deny(w, 0, "MQTT credentials of your own are not accepted here")
			return
		}
		if f.ClientID != "" && !ownClientID(f.User, f.ClientID) {
			hookapi.Deny(w, 0, "a client ID must begin with your user name and /")
			return
		}
		hookapi.Allow(w, hookapi.WithMaxAge(time.Minute))
	case hookapi.ActionSubscribe:
		if own(f.User, f.Topic) || topic.Contains("public/#", f.Topic) {
			hookapi.Allow(w, hookapi.WithMaxAge(time.Minute))
			return
		}
		hookapi.Deny(w, 0, "you may subscribe under users/"+f.User+"/# and public/#", hookapi.WithMaxAge(time.Minute))
	case hookapi.ActionPublish:
		// No max-age would be needed for a size limit; this policy has
		// none, so the answer can be reused. A response topic is where
		// whoever answers the request publishes, on this user's behalf:
		// it must be the user's too.
		if f.ResponseTopic != "" && !own(f.User, f.ResponseTopic) {
			hookapi.Deny(w, 0, "a response topic must be under users/"+f.User+"/", hookapi.WithMaxAge(time.Minute))
			return
		}
		if own(f.User, f.Topic) {
			hookapi.Allow(w, hookapi.WithMaxAge(time.Minute))
			return
		}
		hookapi.Deny(w, 0, "you may publish under users/"+f.User+"/# only", hookapi.WithMaxAge(time.Minute))
	case hookapi.ActionAlive: // every alive_interval: presence took it in
		hookapi.Allow(w)
	default: // notifications: the answer is ignored
		log.Printf("%s: user=%q session=%q topic=%q", f.Action, f.User, f.SessionID, f.Topic)
		hookapi.Allow(w)
	}
}

// checkPassword compares in constant time, and spends the same work on
// unknown users.
func (s *service) checkPassword(user string, password []byte) bool {
	want, known := s.passwords[user]
	got := sha256.Sum256(password)
	return subtle.ConstantTimeCompare(want[:], got[:]) == 1 && known
}

// own reports whether filter lies under users/<user>/. A user name that is
// not a plain topic level (empty, with '/', '+', '#', or starting with
// '$') owns nothing: it would change the rule.
// ownClientID reports whether a dedicated connection's client ID is the
// user's: it begins with "<user>/". A user name with "/" has none: "al"
// could otherwise take "al/ice"'s.
func ownClientID(user, clientID string) bool {
	return !strings.Contains(user, "/") && strings.HasPrefix(clientID, user+"/")
}

func own(user, filter string) bool {
	if user == "" || user[0] == '$' || strings.ContainsAny(user, "/+#\x00") {
		return false
	}
	return topic.Contains("users/"+user+"/#", filter)
}
