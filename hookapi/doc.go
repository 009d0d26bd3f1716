// Package hookapi is the gateway's authenticate/authorize contract: every
// action of a web client (open a session, connect to a broker, subscribe,
// publish; unsubscribe, disconnect and close as notifications) becomes a
// synthetic HTTP request that runs through a Caddy handler chain configured
// in the Caddyfile (`authenticate { … }`, `authorize { … }`), so that any
// Caddy handler can decide: reverse_proxy to an auth service, basic_auth,
// respond with matchers, a JWT plugin.
//
// The pieces:
//
//   - Facts, Origin and Decision: what is asked, by whom (a snapshot of the
//     web request), and the answer.
//   - Chain: the configured routes, parsed exactly like a `route` block
//     (ParseChain) and provisioned like any Caddy routes.
//   - Runner: builds the synthetic request, runs the chain with a timeout
//     and turns the response into a Decision, failing closed.
//   - Cache: decisions the hook allowed to be cached (Cache-Control max-age).
//   - MatchTopic: the http.matchers.mqtt_topic request matcher, which tests
//     MQTT filter containment.
//   - ParseRequest, Allow and Deny: helpers for hook services written in Go.
//
// The contract, with examples, is in README.md next to this file. The
// package knows Caddy, not MQTT sessions: it imports only the topic
// package of the gateway.
package hookapi
