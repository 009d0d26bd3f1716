// Package throttle holds the gateway's rate controls as plain data
// structures, free of goroutines and locks (their owner, a session, holds
// the lock and the one timer):
//
//   - Gate limits how often each topic of a subscription is delivered and
//     keeps the latest undelivered value of each topic (conflation), so a
//     throttled client always ends on the current state;
//   - Bucket is a token bucket of bytes per second for a session's maximum
//     bandwidth;
//   - LogBudget bounds the log lines of refusals clients provoke, the
//     hooks' (hookapi, which uses nothing else of the gateway's) and the
//     gateway's own.
//
// Times are passed in, never read, so behaviour is exact under test.
package throttle
