package hookapi

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestCacheExpiry(t *testing.T) {
	c := NewCache(10)
	now := time.Now()
	f := publish("alice", "a/b")
	c.put(&f, Decision{Allow: true, MaxAge: time.Minute}, now)
	if d, ok := c.get(&f, now.Add(59*time.Second)); !ok || !d.Allow || d.MaxAge != time.Second {
		t.Errorf("get before expiry = %+v, %v; want allow with 1s left", d, ok)
	}
	if _, ok := c.get(&f, now.Add(time.Minute)); ok {
		t.Error("get at expiry hit")
	}
	if c.Len() != 0 {
		t.Errorf("expired entry kept: Len = %d", c.Len())
	}
	c.put(&f, Decision{Allow: true}, now) // no max-age: not kept
	if c.Len() != 0 {
		t.Errorf("decision without max-age kept")
	}
}

func TestCacheKey(t *testing.T) {
	c := NewCache(100)
	now := time.Now()
	base := Facts{Action: ActionConnect, User: "alice", SessionID: "s1", Broker: "b", ClientID: "c",
		Username: "u", Password: []byte("p")}
	c.put(&base, Decision{Allow: true, MaxAge: time.Minute}, now)
	for name, change := range map[string]func(*Facts){
		"action":   func(f *Facts) { f.Action = ActionSubscribe },
		"user":     func(f *Facts) { f.User = "bob" },
		"session":  func(f *Facts) { f.SessionID = "s2" },
		"broker":   func(f *Facts) { f.Broker = "b2" },
		"clientID": func(f *Facts) { f.ClientID = "c2" },
		"topic":    func(f *Facts) { f.Topic = "t" },
		"qos":      func(f *Facts) { f.QoS = 1 },
		"retain":   func(f *Facts) { f.Retain = true },
		"response": func(f *Facts) { f.ResponseTopic = "other/replies" },
		"will":     func(f *Facts) { f.Will = true },
		"clean":    func(f *Facts) { f.CleanStart = true },
		"expiry":   func(f *Facts) { f.SessionExpiry = 60 },
		"username": func(f *Facts) { f.Username = "u2" },
		"password": func(f *Facts) { f.Password = []byte("q") },
		"no pass":  func(f *Facts) { f.Password = nil },
	} {
		f := base
		change(&f)
		if _, ok := c.get(&f, now); ok {
			t.Errorf("a different %s hit the cached decision", name)
		}
	}
	f := base
	f.Size = 99
	f.Password = []byte("p") // equal, not the same slice
	if _, ok := c.get(&f, now); !ok {
		t.Error("same facts missed")
	}
}

func TestCacheBoundAndForget(t *testing.T) {
	c := NewCache(50)
	now := time.Now()
	for i := range 200 {
		f := publish("alice", fmt.Sprintf("t/%d", i))
		f.SessionID = fmt.Sprintf("s%d", i%4)
		c.put(&f, Decision{Allow: true, MaxAge: time.Hour}, now)
		if c.Len() > 50 {
			t.Fatalf("Len = %d after %d puts, bound is 50", c.Len(), i+1)
		}
	}
	// The newest stay, the oldest went.
	newest, oldest := publish("alice", "t/199"), publish("alice", "t/0")
	newest.SessionID, oldest.SessionID = "s3", "s0"
	if _, ok := c.get(&newest, now); !ok {
		t.Error("newest entry evicted")
	}
	if _, ok := c.get(&oldest, now); ok {
		t.Error("oldest entry kept")
	}
	c.Forget("s1")
	c.Forget("nobody")
	// Entries 150-199 are left; 12 of them (153, 157, … 197) are s1's.
	if c.Len() != 50-12 {
		t.Errorf("Len after Forget(s1) = %d, want %d", c.Len(), 50-12)
	}
	for _, s := range []string{"s0", "s2", "s3"} {
		c.Forget(s)
	}
	if c.Len() != 0 || len(c.sessions) != 0 || c.oldest != nil || c.newest != nil {
		t.Errorf("cache not empty after forgetting every session: %d entries, %d sessions", c.Len(), len(c.sessions))
	}
}

func TestCacheZeroValue(t *testing.T) {
	var c Cache
	f := publish("alice", "a")
	if _, ok := c.get(&f, time.Now()); ok {
		t.Fatal("empty cache hit")
	}
	c.put(&f, Decision{Allow: true, MaxAge: time.Minute}, time.Now())
	if _, ok := c.get(&f, time.Now()); !ok || c.size != DefaultCacheSize {
		t.Error("zero Cache does not work")
	}
}

// TestCacheConcurrent is for the race detector.
func TestCacheConcurrent(t *testing.T) {
	c := NewCache(64)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			now := time.Now()
			for i := range 500 {
				f := publish("alice", fmt.Sprintf("t/%d", i%100))
				f.SessionID = fmt.Sprintf("s%d", (g+i)%8)
				if _, ok := c.get(&f, now); !ok {
					c.put(&f, Decision{Allow: true, MaxAge: time.Duration(1+i%3) * time.Millisecond}, now)
				}
				if i%97 == 0 {
					c.Forget(f.SessionID)
				}
				now = now.Add(time.Millisecond)
			}
		})
	}
	wg.Wait()
	if c.Len() > 64 {
		t.Errorf("Len = %d over the bound", c.Len())
	}
}
