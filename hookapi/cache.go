package hookapi

import (
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"
)

// DefaultCacheSize is the number of decisions NewCache(0) keeps.
const DefaultCacheSize = 10000

// Cache keeps decisions whose answer carried Cache-Control: max-age=N, for
// N seconds, so that a session repeating an action (a publish loop, a
// resubscription after a reconnect) does not ask the hook each time. It
// is safe for concurrent use.
//
// A decision is reused only for the same session and the same facts:
// action, user, broker, client id, topic, response topic, QoS, retain,
// will, clean start, session expiry, username and password (kept as a
// salted hash). The payload size is not part of the
// key, so a hook whose publish answer depends on the size must not send a
// max-age for it. When the cache is full the oldest entry goes first.
type Cache struct {
	mu       sync.Mutex
	size     int
	salt     [16]byte
	entries  map[cacheKey]*cacheEntry
	sessions map[string]*cacheEntry // newest entry of each session
	oldest   *cacheEntry            // insertion order, oldest first
	newest   *cacheEntry
}

type cacheKey struct {
	action                                                       Action
	session, user, broker, clientID, topic, responseTopic, uname string
	qos                                                          byte
	retain, will, cleanStart                                     bool
	sessionExpiry                                                uint32
	password                                                     [sha256.Size]byte
}

type cacheEntry struct {
	key        cacheKey
	d          Decision
	expires    time.Time
	prev, next *cacheEntry // all entries, by insertion
	sprev      *cacheEntry // older entry of the same session
	snext      *cacheEntry // newer entry of the same session
}

// NewCache returns a cache of at most size decisions (DefaultCacheSize if
// size <= 0).
// A zero Cache works too, with DefaultCacheSize.
func NewCache(size int) *Cache {
	c := &Cache{size: size}
	c.init() // applies the default, as for a zero Cache
	return c
}

// init readies c. c.mu is held, or c is new.
func (c *Cache) init() {
	if c.entries != nil {
		return
	}
	if c.size <= 0 {
		c.size = DefaultCacheSize
	}
	c.entries = make(map[cacheKey]*cacheEntry)
	c.sessions = make(map[string]*cacheEntry)
	_, _ = rand.Read(c.salt[:]) // never fails (crypto/rand panics instead)
}

// key sets *k to f's cache key (in place: see lookup). c.mu is held (the
// salt is set under it).
func (c *Cache) key(f *Facts, k *cacheKey) {
	*k = cacheKey{
		action: f.Action, session: f.SessionID, user: f.User, broker: f.Broker,
		clientID: f.ClientID, topic: f.Topic, responseTopic: f.ResponseTopic, uname: f.Username,
		qos: f.QoS, retain: f.Retain, will: f.Will, cleanStart: f.CleanStart, sessionExpiry: f.SessionExpiry,
	}
	if len(f.Password) > 0 {
		h := sha256.New()
		h.Write(c.salt[:])
		h.Write(f.Password)
		h.Sum(k.password[:0])
	}
}

// get returns the live decision for f, if any.
func (c *Cache) get(f *Facts, now time.Time) (Decision, bool) {
	var k cacheKey
	return c.lookup(f, now, &k)
}

// lookup is get that also sets *k to f's key, so that a miss can be
// filled by putKey without hashing the facts (and password) again. The
// key goes out through k rather than as a result so that a hit, the path
// the cache is for, does not pay for copying it.
func (c *Cache) lookup(f *Facts, now time.Time, k *cacheKey) (Decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	c.key(f, k)
	e, ok := c.entries[*k]
	if !ok {
		return Decision{}, false
	}
	if !now.Before(e.expires) {
		c.remove(e)
		return Decision{}, false
	}
	d := e.d
	d.MaxAge = e.expires.Sub(now) // what is left of it
	return d, true
}

// put keeps d for f until d.MaxAge has passed.
func (c *Cache) put(f *Facts, d Decision, now time.Time) {
	if d.MaxAge <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.init()
	var k cacheKey
	c.key(f, &k)
	c.store(k, d, now)
}

// putKey is put with the key lookup set for the same facts. That key is
// still valid: the salt it was hashed with is set once, by the first init,
// which lookup ran.
func (c *Cache) putKey(k cacheKey, d Decision, now time.Time) {
	if d.MaxAge <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.store(k, d, now)
}

// store keeps d under k. c.mu is held and c is initialized.
func (c *Cache) store(k cacheKey, d Decision, now time.Time) {
	if e, ok := c.entries[k]; ok {
		c.remove(e)
	}
	for len(c.entries) >= c.size && c.oldest != nil {
		c.remove(c.oldest)
	}
	e := &cacheEntry{key: k, d: d, expires: now.Add(d.MaxAge)}
	c.entries[k] = e
	e.prev = c.newest
	if c.newest != nil {
		c.newest.next = e
	} else {
		c.oldest = e
	}
	c.newest = e
	if last := c.sessions[k.session]; last != nil {
		last.snext = e
		e.sprev = last
	}
	c.sessions[k.session] = e
}

// remove unlinks e. c.mu is held.
func (c *Cache) remove(e *cacheEntry) {
	delete(c.entries, e.key)
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		c.oldest = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	} else {
		c.newest = e.prev
	}
	if e.sprev != nil {
		e.sprev.snext = e.snext
	}
	if e.snext != nil {
		e.snext.sprev = e.sprev
	} else if e.sprev != nil {
		c.sessions[e.key.session] = e.sprev
	} else {
		delete(c.sessions, e.key.session)
	}
	e.prev, e.next, e.sprev, e.snext = nil, nil, nil, nil
}

// Forget drops the decisions of a session; call it when the session ends.
func (c *Cache) Forget(sessionID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for e := c.sessions[sessionID]; e != nil; e = c.sessions[sessionID] {
		c.remove(e)
	}
}

// Len returns the number of decisions kept, live or expired.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
