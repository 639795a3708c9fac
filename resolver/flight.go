package resolver

import (
	"sync"
	"time"

	"github.com/fleetdns/fleetdns/cache"
	lru "github.com/hashicorp/golang-lru/v2"
)

// flights makes concurrent identical misses share one upstream resolution.
type flights struct {
	mu sync.Mutex
	m  map[string]*flight
}

// flight is one resolution in progress; done closes when entry or err is set, slow when its
// first packet went unanswered for the upstream's RTO (lost, most likely, or the upstream is
// slow today): a client that holds a stale answer gets it then rather than wait on.
type flight struct {
	done     chan struct{}
	slow     chan struct{}
	slowOnce sync.Once
	entry    *cache.Entry
	err      error
}

func (f *flight) markSlow() { f.slowOnce.Do(func() { close(f.slow) }) }

// join returns the flight for key and whether the caller started it (and so must run it and
// call finish).
func (fs *flights) join(key string) (*flight, bool) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if f, ok := fs.m[key]; ok {
		return f, false
	}
	f := &flight{done: make(chan struct{}), slow: make(chan struct{})}
	fs.m[key] = f
	return f, true
}

// active returns the flight for key, if one runs.
func (fs *flights) active(key string) *flight {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.m[key]
}

func (fs *flights) finish(key string, f *flight, e *cache.Entry, err error) {
	fs.mu.Lock()
	delete(fs.m, key)
	fs.mu.Unlock()
	f.entry, f.err = e, err
	close(f.done)
}

// failures remembers questions whose resolution failed, so that a dead upstream is not asked
// again for every client retry (RFC 9520): the first failure is kept for a second, each further
// one twice as long, up to maxFailureBackoff.
type failures struct {
	cache *lru.Cache[string, failure]
}

type failure struct {
	until   time.Time
	backoff time.Duration
}

const (
	minFailureBackoff = time.Second
	maxFailureBackoff = 30 * time.Second
)

func newFailures(size int) *failures {
	c, _ := lru.New[string, failure](size) // size is positive
	return &failures{cache: c}
}

// failing reports whether key failed recently enough to answer SERVFAIL (or stale) right away.
func (f *failures) failing(key string, now time.Time) bool {
	v, ok := f.cache.Peek(key)
	return ok && now.Before(v.until)
}

func (f *failures) record(key string, now time.Time) {
	b := minFailureBackoff
	if v, ok := f.cache.Peek(key); ok && now.Sub(v.until) < v.backoff {
		b = min(v.backoff*2, maxFailureBackoff) // failing again soon after the last backoff
	}
	f.cache.Add(key, failure{until: now.Add(b), backoff: b})
}

func (f *failures) clear(key string) {
	f.cache.Remove(key)
}
