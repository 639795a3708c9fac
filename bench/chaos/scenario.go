package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fleetdns/fleetdns/bench"
	"github.com/miekg/dns"
)

// The load of every scenario, per system: both kinds at once, both systems at once.
const (
	UncachedRate  = 200             // queries/s, each for a name never asked before
	CachedRate    = 500             // queries/s, cycling over the CachedNames names
	ClientTimeout = 5 * time.Second // a query unanswered this long counts as lost
)

// SystemResult is what one system did in one scenario (or one phase of it).
type SystemResult struct {
	Name             string
	Cached, Uncached Stats
}

// Result is one loss scenario.
type Result struct {
	Name     string // e.g. "10% loss"
	Fault    Fault
	Duration time.Duration // of the load
	Systems  []SystemResult
	Counters Counters // nftables' counters over the load
	Metrics  string   // fleetdns's own counters over the load (upstream tries, answer sources)
}

// System returns the result of the system called name.
func (r *Result) System(name string) *SystemResult {
	for i := range r.Systems {
		if r.Systems[i].Name == name {
			return &r.Systems[i]
		}
	}
	return nil
}

func pack(name string) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	m.Id = 0
	m.SetEdns0(1232, false)
	b, err := m.Pack()
	if err != nil {
		panic(fmt.Sprintf("chaos: pack %s: %v", name, err)) // names are made here, always valid
	}
	return b
}

func cachedQueries() [][]byte { return cachedQueriesIn(zoneName) }

// cachedQueriesIn are the cached load's names n0..n199.c. under zone.
func cachedQueriesIn(zone string) [][]byte {
	qs := make([][]byte, CachedNames)
	for i := range qs {
		qs[i] = pack(fmt.Sprintf("n%d.c.%s", i, zone))
	}
	return qs
}

// uncachedQueries are enough names for d at UncachedRate, each new to every cache: the prefix
// is unique per scenario and system.
func uncachedQueries(prefix string, d time.Duration) [][]byte {
	return uncachedQueriesIn(prefix, zoneName, d)
}

// uncachedQueriesIn are uncachedQueries under zone (answered by a wildcard there).
func uncachedQueriesIn(prefix, zone string, d time.Duration) [][]byte {
	n := int(d.Seconds()*UncachedRate) + UncachedRate // a second to spare: the load never runs out
	qs := make([][]byte, n)
	for i := range qs {
		qs[i] = pack(fmt.Sprintf("%s%d.u.%s", prefix, i, zone))
	}
	return qs
}

// stream is one load against one system.
type stream struct {
	sys    *system
	cached bool
	load   bench.Load
	res    bench.LoadResult
}

// loads makes the cached and the uncached load of d for each system.
func (l *Lab) loads(d time.Duration) []*stream {
	l.runs++
	var ss []*stream
	for _, sys := range l.systems {
		ss = append(ss,
			&stream{sys: sys, cached: true, load: bench.Load{Target: sys.addr, Queries: cachedQueries(), Cycle: true,
				Duration: d, Rate: CachedRate, Timeout: ClientTimeout, Record: true}},
			&stream{sys: sys, load: bench.Load{Target: sys.addr, Queries: uncachedQueries(fmt.Sprintf("r%d-%s-", l.runs, sys.name[:1]), d),
				Duration: d, Rate: UncachedRate, Timeout: ClientTimeout, Record: true}})
	}
	return ss
}

// runStreams runs the loads at the same time, each from a thread in the stub namespace, and
// returns when all are over (each waits up to ClientTimeout for its last answers).
func runStreams(ctx context.Context, ss []*stream) error {
	var wg sync.WaitGroup
	errs := make([]error, len(ss))
	for i, s := range ss {
		wg.Go(func() {
			errs[i] = bench.InNetns(s.sys.netns(), func() error {
				var err error
				s.res, err = bench.RunLoad(ctx, s.load)
				return err
			})
		})
	}
	wg.Wait()
	// RunLoad ends early, without an error, when ctx does: its numbers are not a scenario's.
	return errors.Join(append(errs, ctx.Err())...)
}

// startStreams runs ss in the background. wait sleeps d, or returns early with an error when
// ctx ends or the load does; done yields the load's result once it ends.
func startStreams(ctx context.Context, ss []*stream) (wait func(d time.Duration) error, done <-chan error) {
	ch := make(chan error, 1)
	go func() { ch <- runStreams(ctx, ss) }()
	wait = func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-ch:
			return fmt.Errorf("load ended early: %v", err)
		case <-time.After(d):
			return nil
		}
	}
	return wait, ch
}

// warm asks each system for every cached name once, with no fault, so the cached load starts
// from a full cache; every answer must be NOERROR.
func (l *Lab) warm(ctx context.Context) error {
	if err := l.SetFault(ctx, Fault{}); err != nil {
		return err
	}
	return warmSystems(ctx, l.systems, zoneName)
}

// RunLoss measures both systems for d with pct% of UDP packets dropped each way.
func (l *Lab) RunLoss(ctx context.Context, pct int, d time.Duration) (*Result, error) {
	f := Fault{LossPercent: pct}
	r := &Result{Name: fmt.Sprintf("%d%% loss", pct), Fault: f, Duration: d}
	l.logf("%s for %s", f, d)
	if err := l.warm(ctx); err != nil {
		return nil, err
	}
	before, err := l.fleetdnsMetrics(ctx)
	if err != nil {
		return nil, err
	}
	if err := l.SetFault(ctx, f); err != nil {
		return nil, err
	}
	ss := l.loads(d)
	if err := runStreams(ctx, ss); err != nil {
		return nil, err
	}
	if r.Counters, err = l.Counters(ctx); err != nil {
		return nil, err
	}
	if err := l.SetFault(ctx, Fault{}); err != nil {
		return nil, err
	}
	after, err := l.fleetdnsMetrics(ctx)
	if err != nil {
		return nil, err
	}
	r.Metrics = metricsSummary(before, after)
	r.Systems = collect(ss)
	return r, l.checkAlive()
}

// collect turns the streams into one SystemResult per system, over all queries.
func collect(ss []*stream) []SystemResult {
	var out []SystemResult
	for _, s := range ss {
		out = addStats(out, s, statsOf(s.res.Fates, 0, 0))
	}
	return out
}

// checkAlive fails if a system has exited during a scenario: its numbers would mean nothing.
func (l *Lab) checkAlive() error {
	for _, s := range l.systems {
		if s.proc.Exited() {
			return fmt.Errorf("%s (pid %d) exited during the scenario; log %s", s.name, s.proc.PID(), s.proc.Log())
		}
	}
	return nil
}
