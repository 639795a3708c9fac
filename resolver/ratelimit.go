package resolver

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/fleetdns/fleetdns/cache"
)

// Response rate limiting (RRL), as BIND, NSD and Knot do it: UDP answers to one client prefix
// beyond a rate are dropped, but every Slip-th of them goes out truncated, empty, so that a
// real client behind a spoofed flood still gets through over TCP, the transport that cannot be
// spoofed and so is never limited. It bounds what a forged source can make us reflect at its
// victim, and what one client's flood takes of the read loops.

// RateLimit configures response rate limiting of UDP answers per client prefix. The zero value
// is off.
type RateLimit struct {
	// ResponsesPerSecond is the rate each client prefix gets, with a burst of one second's
	// worth; 0 is off.
	ResponsesPerSecond int
	// Slip: of the answers over the rate, every Slip-th is sent truncated (TC=1, question
	// only) and the others dropped. 1 truncates them all, -1 drops them all; 0 takes the
	// default, 2 (BIND's and NSD's).
	Slip int
	// IPv4Prefix and IPv6Prefix are the bits of the client address that make one prefix
	// (defaults 24 and 56: a site or a customer, whose hosts a flood with forged sources
	// would otherwise spread over).
	IPv4Prefix, IPv6Prefix int
	// Prefixes is how many prefixes are tracked at once (default 16384, about 0.5 MiB). When
	// more are active, those whose buckets are fullest are forgotten, and start afresh.
	Prefixes int
}

const (
	defaultRRLSlip     = 2
	defaultRRLIPv4     = 24
	defaultRRLIPv6     = 56
	defaultRRLPrefixes = 16384
	rrlWays            = 4 // entries per set: a prefix may sit in any of its set's ways
)

func (r RateLimit) validate() error {
	switch {
	case r.ResponsesPerSecond < 0 || r.ResponsesPerSecond > int(time.Second):
		return errors.New("responses per second must be 0 (off) to 1e9")
	case r.Slip < -1:
		return errors.New("slip must be -1 (never), 0 (default 2) or more")
	case r.IPv4Prefix < 0 || r.IPv4Prefix > 32:
		return errors.New("IPv4 prefix must be 0 (default 24) to 32 bits")
	case r.IPv6Prefix < 0 || r.IPv6Prefix > 128:
		return errors.New("IPv6 prefix must be 0 (default 56) to 128 bits")
	case r.Prefixes < 0:
		return errors.New("prefixes must not be negative")
	}
	return nil
}

func (r RateLimit) withDefaults() RateLimit {
	if r.Slip == 0 {
		r.Slip = defaultRRLSlip
	}
	if r.IPv4Prefix == 0 {
		r.IPv4Prefix = defaultRRLIPv4
	}
	if r.IPv6Prefix == 0 {
		r.IPv6Prefix = defaultRRLIPv6
	}
	if r.Prefixes == 0 {
		r.Prefixes = defaultRRLPrefixes
	}
	return r
}

// verdict is what the limiter says about one answer.
type verdict int

const (
	rrlSend verdict = iota
	rrlSlip
	rrlDrop
)

// rateLimiter is a token bucket per prefix, kept as GCRA: each entry holds the time its bucket
// is full again (tat), so one integer is the whole state. The table is fixed: sets of rrlWays
// entries, each set under its own lock; a new prefix takes its set's way whose bucket refills
// first, an empty or full one if there is any, so that only a set of rrlWays prefixes all
// being limited at once loses state. Nothing is allocated after newRateLimiter.
type rateLimiter struct {
	interval int64 // nanoseconds per answer
	burst    int64 // how far ahead of now tat may run: one second's answers, less one
	slip     uint32
	v4, v6   int
	epoch    time.Time // times are kept as monotonic nanoseconds since epoch, never 0
	sets     []rrlSet
	mask     uint64
}

type rrlSet struct {
	mu   sync.Mutex
	ways [rrlWays]rrlEntry
}

type rrlEntry struct {
	key     rrlKey
	tat     int64  // 0: empty
	limited uint32 // answers over the rate so far, for slip
}

type rrlKey struct {
	hi, lo uint64
	v6     bool
}

func newRateLimiter(cfg RateLimit) *rateLimiter {
	cfg = cfg.withDefaults()
	sets := 1
	for sets*rrlWays < cfg.Prefixes {
		sets <<= 1
	}
	interval := max(int64(time.Second)/int64(cfg.ResponsesPerSecond), 1)
	l := &rateLimiter{
		interval: interval,
		burst:    interval * int64(cfg.ResponsesPerSecond-1),
		v4:       cfg.IPv4Prefix,
		v6:       cfg.IPv6Prefix,
		epoch:    time.Now().Add(-time.Second),
		sets:     make([]rrlSet, sets),
		mask:     uint64(sets - 1),
	}
	if cfg.Slip > 0 {
		l.slip = uint32(cfg.Slip)
	}
	return l
}

// key is a's prefix.
func (l *rateLimiter) key(a netip.Addr) rrlKey {
	a = a.Unmap()
	if a.Is4() {
		b := a.As4()
		v := uint64(binary.BigEndian.Uint32(b[:]))
		return rrlKey{hi: v &^ (1<<(32-l.v4) - 1)}
	}
	b := a.As16()
	hi, lo := binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	switch {
	case l.v6 <= 64:
		hi &^= 1<<(64-l.v6) - 1
		lo = 0
	default:
		lo &^= 1<<(128-l.v6) - 1
	}
	return rrlKey{hi: hi, lo: lo, v6: true}
}

func (k rrlKey) hash() uint64 {
	h := k.hi*0x9e3779b97f4a7c15 ^ k.lo
	if k.v6 {
		h ^= 0x5bd1e995
	}
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	return h ^ h>>32
}

// decide takes one answer for a's prefix at now.
func (l *rateLimiter) decide(a netip.Addr, now time.Time) verdict {
	k := l.key(a)
	t := int64(now.Sub(l.epoch))
	set := &l.sets[k.hash()&l.mask]
	set.mu.Lock()
	var e *rrlEntry
	victim := &set.ways[0]
	for i := range set.ways {
		w := &set.ways[i]
		if w.tat != 0 && w.key == k {
			e = w
			break
		}
		if w.tat < victim.tat {
			victim = w
		}
	}
	if e == nil {
		e = victim
		*e = rrlEntry{key: k, tat: t}
	}
	tat := max(e.tat, t)
	if tat-t > l.burst {
		e.limited++
		n := e.limited
		set.mu.Unlock()
		if l.slip > 0 && n%l.slip == 0 {
			return rrlSlip
		}
		return rrlDrop
	}
	e.tat = tat + l.interval
	set.mu.Unlock()
	return rrlSend
}

// appendSlip appends the truncated answer a rate-limited client gets: header and question,
// TC set, no records but an OPT when the query had one, so the client retries over TCP.
func appendSlip(dst []byte, pkt []byte, q *query) []byte {
	end := 12 + len(q.name) + 4
	var ar byte
	if q.edns {
		ar = 1
	}
	dst = append(dst, pkt[0], pkt[1], 0x80|0x02|pkt[2]&0x79, 0x80|pkt[3]&0x10, 0, 1, 0, 0, 0, 0, 0, ar)
	dst = append(dst, pkt[12:end]...)
	if q.edns {
		var do byte
		if q.do {
			do = 0x80
		}
		dst = append(dst, 0, 0, 41, byte(cache.EDNSBufferSize>>8), byte(cache.EDNSBufferSize&0xff), 0, 0, do, 0, 0, 0)
	}
	return dst
}
