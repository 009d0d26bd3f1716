package mqttgateway

import (
	"crypto/rand"
	"encoding/hex"
	"time"
)

// instanceID names this Caddy process in every hook request
// (hookapi.Facts.Instance): random, made when the process starts, so the
// same across reloads, which keep the sessions, and another after a
// restart, which ends them.
var instanceID = func() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// aliveIdle is how often a gateway without alive_interval looks again,
// in case a reload set one.
const aliveIdle = 10 * time.Second

// sendAlive tells the authorize hook of the gateway's current config that
// the instance runs, every alive_interval, until stop closes. It starts
// once the gateway's first config runs (markRan): `caddy validate` and a
// refused reload send nothing.
func (g *gateway) sendAlive(stop <-chan struct{}) {
	for {
		p, _ := g.Config().Policy.(*hookPolicy)
		wait := aliveIdle
		if p != nil && p.aliveEvery > 0 {
			p.alive()
			wait = p.aliveEvery
		}
		select {
		case <-stop:
			return
		case <-time.After(wait):
		}
	}
}
