package upstream

import (
	"math/rand/v2"
	"net/netip"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Retransmission rules. The estimate of an upstream's path (srtt, rttvar, RFC 6298) is made from
// answers only, each matched to the one send it answers, so a sample is never ambiguous (Karn)
// and a loss never inflates the estimate that every other query uses. Loss is handled by the
// query's own timer instead: it starts at the upstream's RTO and backs off per retransmission
// of that query alone. An upstream is marked down only when it has been silent for a while
// despite being asked, so loss on a busy path never takes it out.
const (
	minRTO       = 20 * time.Millisecond
	minExpected  = 2 * time.Millisecond   // a floor under expected: timers and scheduling jitter
	maxRTO       = 4 * time.Second        // an upstream measured slower than this is waited for this long
	unknownRTO   = 376 * time.Millisecond // never answered yet: unbound's UNKNOWN_SERVER_NICENESS
	downAfter    = 3                      // consecutive unanswered sends...
	downQuiet    = time.Second            // ...and no answer for this long: down
	firstProbe   = 500 * time.Millisecond // a down upstream is probed after this, then less often
	maxProbe     = time.Second
	exploreOneIn = 20 // on average one query in 20 goes first to a live upstream other than the fastest
)

// Upstream is one server in a forward zone's pool.
type Upstream struct {
	Addr netip.AddrPort
	TCP  bool // protocol: tcp

	results [NumResults]atomic.Uint64
	rtt     [13]atomic.Uint64 // answers by RTT bucket (RTTBuckets, then above the last)
	rttSum  atomic.Int64      // nanoseconds

	mu          sync.Mutex
	srtt        time.Duration
	rttvar      time.Duration
	samples     int
	fails       int       // sends unanswered since the last answer
	silentSince time.Time // when the first of those was sent
	lastAnswer  time.Time
	down        bool
	probeAt     time.Time     // while down: when the next probe may go
	probeEvery  time.Duration // while down: the interval after that
}

// UpstreamStatus is a snapshot of an upstream's health, for ctl and metrics.
type UpstreamStatus struct {
	Addr    netip.AddrPort
	SRTT    time.Duration
	Healthy bool
	Fails   int
}

// Status returns a snapshot.
func (u *Upstream) Status() UpstreamStatus {
	u.mu.Lock()
	defer u.mu.Unlock()
	return UpstreamStatus{Addr: u.Addr, SRTT: u.srtt, Healthy: !u.down, Fails: u.fails}
}

// rto is how long a first send to this upstream waits before the query retransmits.
func (u *Upstream) rto() time.Duration {
	rto, _ := u.timers()
	return rto
}

// timers returns the RTO and how long an answer from this upstream normally takes: both are
// srtt + 4·rttvar, the RTO with its floor, expected with only a floor for timer jitter (a
// client holding a stale answer waits no longer than that for a refresh).
func (u *Upstream) timers() (rto, expected time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.samples == 0 {
		return unknownRTO, unknownRTO
	}
	est := u.srtt + 4*u.rttvar
	return min(maxRTO, max(minRTO, est)), min(maxRTO, max(minExpected, est))
}

// answered records an answer to one send and that send's round-trip time (RFC 6298 smoothing).
func (u *Upstream) answered(now time.Time, rtt time.Duration) {
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
	u.lastAnswer = now
	u.down = false
	u.probeEvery = 0
}

// unanswered records a packet sent at sentAt that got no answer while its query waited. It
// leaves the RTT estimate alone; it marks the upstream down when it has stayed silent for
// downQuiet since the first packet it left unanswered.
func (u *Upstream) unanswered(now, sentAt time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.fails == 0 || sentAt.Before(u.silentSince) {
		u.silentSince = sentAt
	}
	u.fails++
	quietSince := u.silentSince
	if u.lastAnswer.After(quietSince) {
		quietSince = u.lastAnswer // an answer to a later packet broke the silence
	}
	if !u.down && u.fails >= downAfter && now.Sub(quietSince) >= downQuiet {
		u.down = true
		u.probeEvery = firstProbe
		u.probeAt = now.Add(firstProbe)
	}
}

func (u *Upstream) isDown() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.down
}

// state tells how a query may use u now: live, or down; a down upstream whose probe is due is
// claimed for this query (probe=true), so that one query probes it and the rest do not wait.
// rank orders live upstreams: the measured RTT; never asked ranks first, so that it gets
// measured; asked but never answered ranks as unbound ranks an unknown server.
func (u *Upstream) state(now time.Time) (down, probe bool, rank time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	rank = u.srtt
	if u.samples == 0 && u.fails > 0 {
		rank = unknownRTO
	}
	if !u.down {
		return false, false, rank
	}
	if now.Before(u.probeAt) {
		return true, false, rank
	}
	u.probeAt = now.Add(u.probeEvery)
	u.probeEvery = min(2*u.probeEvery, maxProbe)
	return true, true, rank
}

// The probe schedule of a down upstream and the packets one query may send, for status and for
// tests that bound what goes to a dead upstream.
const (
	FirstProbe = firstProbe // a down upstream is first probed after this
	MaxProbe   = maxProbe   // and then at least this often
	MaxSends   = maxSends   // packets one UDP query sends at most, probes included
)

// RTO is how long a first send to u waits before its query retransmits.
func (u *Upstream) RTO() time.Duration { return u.rto() }

// Pool is a forward zone's upstreams.
type Pool struct {
	Zone      string
	Upstreams []*Upstream
	Note      string // who set these upstreams, if not the config (the failover controller)

	tcp    bool   // protocol: tcp
	budget budget // retransmissions, earned by answers
}

// plan returns the upstreams a query may use, in the order to use them: the live ones fastest
// first (now and then another live one first, so a recovered or faster upstream is noticed),
// and the down ones whose probe this query carries (all of them with all set: a health check).
// With neither, the query fails at once.
func (p *Pool) plan(now time.Time, all bool) (live, probes []*Upstream) {
	type ranked struct {
		u    *Upstream
		srtt time.Duration
	}
	rs := make([]ranked, 0, len(p.Upstreams))
	for _, u := range p.Upstreams {
		down, probe, srtt := u.state(now)
		switch {
		case !down:
			rs = append(rs, ranked{u, srtt})
		case probe || all:
			probes = append(probes, u)
		}
	}
	slices.SortStableFunc(rs, func(a, b ranked) int { return int(a.srtt - b.srtt) })
	live = make([]*Upstream, len(rs))
	for i, r := range rs {
		live[i] = r.u
	}
	if len(live) > 1 && rand.IntN(exploreOneIn) == 0 {
		i := 1 + rand.IntN(len(live)-1)
		live[0], live[i] = live[i], live[0]
	}
	return live, probes
}

// budget bounds retransmissions for a pool: each costs a token, each answer earns two, up to a
// cap. Loss on a working path earns its own retransmissions; a dead or very slow pool gets only
// the cap's worth, so retries never multiply the load on an upstream that is already failing.
type budget struct{ tokens atomic.Int64 }

const (
	budgetCap       = 200
	budgetPerAnswer = 2
)

func (b *budget) init() { b.tokens.Store(budgetCap) }

func (b *budget) earn() {
	if b.tokens.Add(budgetPerAnswer) > budgetCap {
		b.tokens.Store(budgetCap) // a race here only loses or keeps a token or two
	}
}

func (b *budget) spend() bool {
	for {
		t := b.tokens.Load()
		if t <= 0 {
			return false
		}
		if b.tokens.CompareAndSwap(t, t-1) {
			return true
		}
	}
}

// record counts one try's result and, when it was answered, its RTT.
func (u *Upstream) record(r Result, rtt time.Duration) {
	u.results[r].Add(1)
	if r == ResultTimeout || r == ResultError {
		return
	}
	i := 0
	for i < len(RTTBuckets) && rtt > RTTBuckets[i] {
		i++
	}
	u.rtt[i].Add(1)
	u.rttSum.Add(int64(rtt))
}

// Adopt carries the measured state of upstreams that f shares with old (same zone, same
// address) over, and returns the zones whose upstream list is new or changed.
func (f *Forwarder) Adopt(old *Forwarder) []string {
	// Counters go on from where they were: a metric must not go back on a reload.
	f.mismatched.Store(old.mismatched.Load())
	f.retransmits.Store(old.retransmits.Load())
	f.budgetDenied.Store(old.budgetDenied.Load())
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
