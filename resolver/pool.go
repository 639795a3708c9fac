package resolver

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// RTT rules, after unbound's infra cache: an upstream never asked is tried as if fast, so every
// upstream gets measured; timeouts back off; a few consecutive failures mark it down for a while,
// and down upstreams are still tried, last.
const (
	minRTO         = 50 * time.Millisecond
	maxRTO         = 1500 * time.Millisecond
	unknownRTO     = 376 * time.Millisecond // unbound's UNKNOWN_SERVER_NICENESS
	downAfter      = 3                      // consecutive failures
	downFor        = 2 * time.Second        // first down period; doubles per further failure
	maxDownFor     = 60 * time.Second
	exploreOneIn   = 20 // on average one query in 20 goes to an upstream other than the fastest
	srttNeverTried = time.Duration(0)
)

// Upstream is one server in a forward zone's pool.
type Upstream struct {
	Addr netip.AddrPort
	TCP  bool // protocol: tcp

	results [numResults]atomic.Uint64
	rtt     [13]atomic.Uint64 // answers by RTT bucket (rttBuckets, then above the last)
	rttSum  atomic.Int64      // nanoseconds

	mu        sync.Mutex
	srtt      time.Duration
	rttvar    time.Duration
	samples   int
	fails     int
	downUntil time.Time
}

// UpstreamStatus is a snapshot of an upstream's health, for ctl and metrics.
type UpstreamStatus struct {
	Addr    netip.AddrPort
	SRTT    time.Duration
	Healthy bool
	Fails   int
}

// Status returns a snapshot.
func (u *Upstream) Status(now time.Time) UpstreamStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	return UpstreamStatus{Addr: u.Addr, SRTT: u.srtt, Healthy: !now.Before(u.downUntil), Fails: u.fails}
}

// rto is how long to wait for this upstream before trying the next.
func (u *Upstream) rto() time.Duration {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.samples == 0 {
		return unknownRTO
	}
	return min(maxRTO, max(minRTO, u.srtt+4*u.rttvar))
}

// answered records a response and its round-trip time (RFC 6298 smoothing).
func (u *Upstream) answered(rtt time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.samples == 0 {
		u.srtt, u.rttvar = rtt, rtt/2
	} else {
		d := u.srtt - rtt
		if d < 0 {
			d = -d
		}
		u.rttvar = (3*u.rttvar + d) / 4
		u.srtt = (7*u.srtt + rtt) / 8
	}
	u.samples++
	u.fails = 0
	u.downUntil = time.Time{}
}

// failed records a timeout or a broken exchange.
func (u *Upstream) failed(now time.Time, waited time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.srtt = min(maxRTO, max(u.srtt*2, waited))
	u.samples = max(u.samples, 1)
	u.fails++
	if u.fails >= downAfter {
		d := downFor << min(u.fails-downAfter, 5)
		u.downUntil = now.Add(min(d, maxDownFor))
	}
}

func (u *Upstream) rank(now time.Time) (down bool, srtt time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.samples == 0 {
		return false, srttNeverTried
	}
	return now.Before(u.downUntil), u.srtt
}

// Pool is a forward zone's upstreams.
type Pool struct {
	Zone      string
	Upstreams []*Upstream
	Note      string // who set these upstreams, if not the config (the failover controller)
}

// order returns the upstreams in the order to try them: healthy before down, fastest first, and
// now and then another one first so that a recovered or faster upstream is noticed.
func (p *Pool) order(now time.Time) []*Upstream {
	type ranked struct {
		u    *Upstream
		down bool
		srtt time.Duration
	}
	rs := make([]ranked, len(p.Upstreams))
	for i, u := range p.Upstreams {
		down, srtt := u.rank(now)
		rs[i] = ranked{u, down, srtt}
	}
	slices.SortStableFunc(rs, func(a, b ranked) int {
		if a.down != b.down {
			if a.down {
				return 1
			}
			return -1
		}
		return int(a.srtt - b.srtt)
	})
	out := make([]*Upstream, len(rs))
	for i, r := range rs {
		out[i] = r.u
	}
	if len(out) > 1 && rand.IntN(exploreOneIn) == 0 {
		i := 1 + rand.IntN(len(out)-1)
		out[0], out[i] = out[i], out[0]
	}
	return out
}

// record counts one try's result and, when it was answered, its RTT.
func (u *Upstream) record(r result, rtt time.Duration) {
	u.results[r].Add(1)
	if r == resultTimeout || r == resultError {
		return
	}
	i := 0
	for i < len(rttBuckets) && rtt > rttBuckets[i] {
		i++
	}
	u.rtt[i].Add(1)
	u.rttSum.Add(int64(rtt))
}

// adopt carries the measured state of upstreams that f shares with old (same zone, same
// address) over, and returns the zones whose upstream list is new or changed.
func (f *Forwarder) adopt(old *Forwarder) []string {
	var changed []string
	for zone, p := range f.pools {
		op, ok := old.pools[zone]
		same := ok && len(op.Upstreams) == len(p.Upstreams)
		for i, u := range p.Upstreams {
			if ok {
				for _, ou := range op.Upstreams {
					if ou.Addr == u.Addr && ou.TCP == u.TCP {
						p.Upstreams[i] = ou
					}
				}
			}
			if same && (op.Upstreams[i].Addr != u.Addr || op.Upstreams[i].TCP != u.TCP) {
				same = false
			}
		}
		if !same {
			changed = append(changed, zone)
		}
	}
	for zone := range old.pools {
		if _, ok := f.pools[zone]; !ok {
			changed = append(changed, zone)
		}
	}
	sort.Strings(changed)
	return changed
}
