// Package cache keeps whole DNS answers, packed, in a sharded LRU: positive answers, negative
// answers (RFC 2308), the stale window after expiry (RFC 8767) and the prefetch decision. It has
// no sockets and no clock of its own: callers pass the time, so tests are exact.
package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"time"

	"github.com/fleetdns/fleetdns/field"
	"github.com/miekg/dns"
)

// Config sets the cache's size and TTL rules. Zero values mean "off" or "no clamp".
type Config struct {
	Size           int           // answers kept, across all shards
	MaxBytes       int64         // bytes kept, across all shards, as counted by Entry.Size (0: DefaultMaxBytes)
	MinTTL         time.Duration // positive TTLs are raised to at least this
	MaxTTL         time.Duration // and lowered to at most this (0: 24h)
	MaxNegativeTTL time.Duration // cap on NXDOMAIN/NODATA lifetime (0: 60s)
	Prefetch       bool          // refresh popular answers in the last 10% of their TTL (at least 1 s)
	ServeStale     bool          // keep expired answers for StaleTTL (RFC 8767)
	StaleTTL       time.Duration // how long after expiry an answer may still be served
}

// The defaults: what New puts where a Config leaves a bound at zero, and what DefaultConfig
// (the embedded client config) starts from.
const (
	DefaultMaxTTL         = 24 * time.Hour
	DefaultMaxNegativeTTL = 60 * time.Second
	DefaultSize           = 100000
	DefaultStaleTTL       = 24 * time.Hour
)

// DefaultConfig is the cache of the embedded client config: prefetch and serve-stale on.
func DefaultConfig() Config {
	return Config{Size: DefaultSize, MaxTTL: DefaultMaxTTL, MaxNegativeTTL: DefaultMaxNegativeTTL,
		Prefetch: true, ServeStale: true, StaleTTL: DefaultStaleTTL}
}

// Validate reports a config the cache cannot work with.
// Its errors name the config keys (field.Error).
func (c Config) Validate() error {
	var errs []error
	if c.Size <= 0 {
		errs = append(errs, field.Errorf("size", "%d is not a whole number of at least 1", c.Size))
	}
	if c.MaxBytes < 0 {
		errs = append(errs, field.Errorf("max_bytes", "must not be negative"))
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"min_ttl", c.MinTTL}, {"max_ttl", c.MaxTTL}, {"max_negative_ttl", c.MaxNegativeTTL}, {"stale_ttl", c.StaleTTL}} {
		if d.v < 0 {
			errs = append(errs, field.Errorf(d.key, "%s must not be negative", d.v))
		}
	}
	if c.MaxTTL > 0 && c.MinTTL > c.MaxTTL {
		errs = append(errs, field.Errorf("min_ttl", "%s is above max_ttl %s", c.MinTTL, c.MaxTTL))
	}
	return errors.Join(errs...)
}

// State is what a lookup found.
type State int

const (
	Miss     State = iota // nothing usable
	Fresh                 // answer it
	Prefetch              // answer it, and this caller should refresh it in the background
	Stale                 // expired but inside the stale window: serve only if upstreams fail
)

func (s State) String() string {
	return [...]string{"miss", "fresh", "prefetch", "stale"}[s]
}

// Question is a cache key: the lowercased wire-format name, type, class and the DO and CD bits,
// which change what an upstream returns.
type Question struct {
	Name   []byte // wire format, lowercased
	Type   uint16
	Class  uint16
	DO, CD bool
}

func (q *Question) flagByte() byte {
	var f byte
	if q.DO {
		f |= 1
	}
	if q.CD {
		f |= 2
	}
	return f
}

// NewQuestion makes a Question from a presentation-format name, for slow paths and tests.
func NewQuestion(name string, qtype, qclass uint16, do, cd bool) (Question, error) {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(strings.ToLower(name)), buf, 0, nil, false)
	if err != nil {
		return Question{}, fmt.Errorf("name %q: %w", name, err)
	}
	return Question{Name: buf[:n], Type: qtype, Class: qclass, DO: do, CD: cd}, nil
}

const shardCount = 32

// DefaultMaxBytes bounds the cache when Config.MaxBytes is 0. The entry bound is the one that
// binds for ordinary traffic: 100 000 answers (the default size) at up to about 2.4 KB each,
// overhead included, fit, and typical answers are under 512 bytes. Only a workload of large
// answers (big TXT, DNSKEY, ANY) reaches it, where 100 000 answers of 60 KB would otherwise
// hold 6 GB of live heap. The bound is on live heap; the resident size can reach about
// twice it under the Go garbage collector's default GOGC=100.
const DefaultMaxBytes = 256 << 20

// minShardBytes is the least byte bound a shard gets: room for two of the largest answers,
// so that a small max_bytes makes one shard rather than shards that cannot hold one answer.
const minShardBytes = 2 * (0xffff + 255 + 5 + EntryOverhead)

// Cache is a sharded LRU of packed answers; each shard has its own lock and its share of both
// bounds.
type Cache struct {
	cfg    Config
	seed   maphash.Seed
	shards []*shard
}

// New makes an empty cache.
func New(cfg Config) (*Cache, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.MaxNegativeTTL == 0 {
		cfg.MaxNegativeTTL = DefaultMaxNegativeTTL
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	n := shardCount
	if cfg.Size < 4*n || cfg.MaxBytes < int64(n)*minShardBytes {
		n = 1
	}
	c := &Cache{cfg: cfg, seed: maphash.MakeSeed(), shards: make([]*shard, n)}
	for i := range c.shards {
		s, err := newShard(cfg.Size/n, cfg.MaxBytes/int64(n))
		if err != nil {
			return nil, err
		}
		c.shards[i] = s
	}
	return c, nil
}

// Config returns the config the cache runs with, defaults filled in.
func (c *Cache) Config() Config { return c.cfg }

func (c *Cache) hash(q *Question) uint64 {
	h := maphash.Bytes(c.seed, q.Name)
	h ^= uint64(q.Type)<<24 | uint64(q.Class)<<8 | uint64(q.flagByte())
	h *= 0x9e3779b97f4a7c15
	return h ^ h>>29
}

func (c *Cache) shard(h uint64) *shard {
	return c.shards[h%uint64(len(c.shards))]
}

// Get looks q up. Prefetch is returned to exactly one caller per entry; later hits in the
// prefetch window see Fresh.
func (c *Cache) Get(q *Question, now time.Time) (*Entry, State) {
	h := c.hash(q)
	s := c.shard(h)
	e, ok := s.get(h)
	if !ok || !e.matches(q) {
		return nil, Miss
	}
	age := time.Duration(since(now) - e.stored)
	ttl := time.Duration(e.ttl) * time.Second
	switch {
	case age < ttl:
		if c.cfg.Prefetch && ttl-age < prefetchWindow(ttl) && e.prefetching.CompareAndSwap(false, true) {
			return e, Prefetch
		}
		return e, Fresh
	case c.cfg.ServeStale && age < ttl+c.cfg.StaleTTL:
		return e, Stale
	default:
		s.remove(h, e)
		return nil, Miss
	}
}

// prefetchWindow is how long before expiry a hit starts a refresh: the last 10% of the TTL, as
// unbound does, but at least a second (half the TTL at most). A refresh under packet loss takes
// a few retransmission timers, and a short-TTL name asked every half second would otherwise
// often expire before any hit fell into a 0.4 s window, making its next client wait.
func prefetchWindow(ttl time.Duration) time.Duration {
	if w := ttl / 10; w >= time.Second {
		return w
	}
	return min(time.Second, ttl/2)
}

// Put stores e if it may be cached (a TTL above zero); it replaces any answer to the same
// question. Least recently used answers make room, by count and by bytes (Entry.Size); an
// answer larger than a shard's share of MaxBytes is not kept.
func (c *Cache) Put(e *Entry) {
	if e.ttl == 0 {
		return
	}
	q := e.question()
	h := c.hash(&q)
	c.shard(h).add(h, e)
}

// Remove drops the answer to q.
func (c *Cache) Remove(q *Question) {
	h := c.hash(q)
	s := c.shard(h)
	if e, ok := s.peek(h); ok && e.matches(q) {
		s.remove(h, e)
	}
}

// Totals sums the shards: stored answers, their size as the MaxBytes bound counts it
// (Entry.Size), and evictions (answers pushed out by newer ones, for either bound; expiry and
// flushes are not evictions). One pass, for callers that want all three.
func (c *Cache) Totals() (entries int, bytes int64, evictions uint64) {
	for _, s := range c.shards {
		n, b, ev := s.stats()
		entries, bytes, evictions = entries+n, bytes+b, evictions+ev
	}
	return entries, bytes, evictions
}

// Len is the number of stored answers.
func (c *Cache) Len() int { n, _, _ := c.Totals(); return n }

// Bytes is the size of the stored answers as the MaxBytes bound counts it.
func (c *Cache) Bytes() int64 { _, b, _ := c.Totals(); return b }

// Evictions counts answers pushed out by newer ones.
func (c *Cache) Evictions() uint64 { _, _, ev := c.Totals(); return ev }

// Build turns a response to q into an Entry, applying the TTL rules: positive TTLs clamped to
// [MinTTL, MaxTTL]; negative answers live min(SOA TTL, SOA MINIMUM, MaxNegativeTTL) (RFC 2308
// section 5) and are not cached without an SOA; other rcodes are answerable but not cached.
// m is not modified.
func (c *Cache) Build(q *Question, m *dns.Msg, now time.Time) (*Entry, error) {
	return c.build(q, m, now, true)
}

// Pack turns a locally made answer into an Entry with its TTLs as they are, so that it is
// written to clients the same way as a cached one. Such an entry is never cached.
func Pack(q *Question, m *dns.Msg, now time.Time) (*Entry, error) {
	var c Cache
	return c.build(q, m, now, false)
}

func (c *Cache) build(q *Question, m *dns.Msg, now time.Time, rules bool) (*Entry, error) {
	if len(m.Question) != 1 {
		return nil, errors.New("response must have one question")
	}
	m = m.Copy()
	m.Id = 0
	m.Response = true
	m.Truncated = false
	m.RecursionDesired = false
	m.RecursionAvailable = false
	m.CheckingDisabled = false
	m.Question[0].Name = strings.ToLower(m.Question[0].Name)
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra

	var ttl uint32
	if rules {
		ttl = c.applyTTLs(m)
		m.Authoritative = false // an answer from a cache is not authoritative
	}
	m.Compress = true
	packed, err := m.Pack()
	if err != nil {
		return nil, fmt.Errorf("pack answer: %w", err)
	}
	if rules {
		// miekg/dns unpacks some malformed records into values that pack as rdata nobody can
		// parse (an SOA without rdata becomes five numbers and no names): stored, such an
		// answer would reach every client that asks as a packet it cannot read. A miss can
		// afford the check; local answers (Pack) are made here and need none.
		if err := new(dns.Msg).Unpack(packed); err != nil {
			return nil, fmt.Errorf("answer does not unpack once packed: %w", err)
		}
	}
	key := make([]byte, 0, len(q.Name)+5)
	key = append(key, q.Name...)
	key = binary.BigEndian.AppendUint16(key, q.Type)
	key = binary.BigEndian.AppendUint16(key, q.Class)
	key = append(key, q.flagByte())
	e, err := newEntry(key, packed, now, ttl)
	if err != nil {
		return nil, fmt.Errorf("index answer: %w", err)
	}
	return e, nil
}

// applyTTLs rewrites the TTLs of m by the cache's rules and returns the entry's lifetime in
// seconds (0: do not cache).
func (c *Cache) applyTTLs(m *dns.Msg) uint32 {
	negative := m.Rcode == dns.RcodeNameError || (m.Rcode == dns.RcodeSuccess && len(m.Answer) == 0)
	if m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
		return 0
	}
	if negative {
		var soa *dns.SOA
		for _, rr := range m.Ns {
			if s, ok := rr.(*dns.SOA); ok {
				soa = s
			}
		}
		if soa == nil {
			return 0 // RFC 2308 section 5: no SOA, no negative caching
		}
		ttl := min(soa.Hdr.Ttl, soa.Minttl, seconds(c.cfg.MaxNegativeTTL))
		for _, rr := range append(m.Ns, m.Extra...) {
			rr.Header().Ttl = min(rr.Header().Ttl, ttl)
		}
		return ttl
	}
	lo, hi := seconds(c.cfg.MinTTL), seconds(c.cfg.MaxTTL)
	life := hi
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			h.Ttl = max(lo, min(h.Ttl, hi))
			life = min(life, h.Ttl)
		}
	}
	return life
}

func seconds(d time.Duration) uint32 {
	return uint32(d / time.Second)
}

func (e *Entry) matches(q *Question) bool {
	k := e.key()
	n := len(q.Name)
	return len(k) == n+5 && string(k[:n]) == string(q.Name) &&
		binary.BigEndian.Uint16(k[n:]) == q.Type &&
		binary.BigEndian.Uint16(k[n+2:]) == q.Class &&
		k[n+4] == q.flagByte()
}

func (e *Entry) question() Question {
	k := e.key()
	n := len(k) - 5
	f := k[n+4]
	return Question{
		Name:  k[:n],
		Type:  binary.BigEndian.Uint16(k[n:]),
		Class: binary.BigEndian.Uint16(k[n+2:]),
		DO:    f&1 != 0,
		CD:    f&2 != 0,
	}
}

// Range calls fn for each stored answer, shard by shard, until fn returns false. It holds no
// lock while fn runs, so fn may remove entries; answers stored meanwhile may or may not be seen.
func (c *Cache) Range(fn func(q Question, e *Entry) bool) {
	for _, s := range c.shards {
		for _, h := range s.keys() {
			e, ok := s.peek(h)
			if !ok {
				continue
			}
			if !fn(e.question(), e) {
				return
			}
		}
	}
}

// RemoveIf drops every answer whose question match accepts and returns how many it dropped.
func (c *Cache) RemoveIf(match func(q Question) bool) int {
	n := 0
	c.Range(func(q Question, e *Entry) bool {
		if match(q) {
			c.Remove(&q)
			n++
		}
		return true
	})
	return n
}

// Remaining is how long the answer stays fresh after now; negative once it is stale.
func (e *Entry) Remaining(now time.Time) time.Duration {
	return time.Duration(e.ttl)*time.Second - time.Duration(since(now)-e.stored)
}
