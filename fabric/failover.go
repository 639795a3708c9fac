package fabric

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// FailoverConfig is the datacenter failover of the root zone: the canary resolved through each
// local and each remote recursor decides whether "." uses the local recursors only or the
// remote ones too.
type FailoverConfig struct {
	Interval time.Duration
	Timeout  time.Duration // for one canary query (default: interval/2, at most 2s)
	Name     string        // the canary name, e.g. canary.example.net.
	Type     uint16
	// Expect is the rdata one record of Type in the answer must have: an address for A and
	// AAAA (compared as addresses), the record's text after the header for other types
	// (compared as rdata: domain names in it case-insensitively, as DNS does). Records of
	// other types, such as the CNAMEs leading to the answer, never match. "" accepts any
	// answer.
	Expect string
	Local  []netip.AddrPort
	Remote []netip.AddrPort
	Fall   int // consecutive failed rounds before failing over (default 2)
	Rise   int // consecutive good rounds before failing back (default 2)
}

// Validate reports a config NewFailover would reject.
func (c FailoverConfig) Validate() error {
	switch {
	case c.Interval <= 0:
		return errors.New("failover: interval must be positive")
	case c.Name == "" || c.Type == 0:
		return errors.New("failover: the canary needs a name and a type")
	case len(c.Local) == 0 || len(c.Remote) == 0:
		return errors.New("failover: local and remote recursors are needed")
	case c.Fall < 0 || c.Rise < 0:
		return errors.New("failover: rise and fall must not be negative")
	}
	if c.Expect != "" {
		if _, err := newExpectation(c.Type, c.Expect); err != nil {
			return fmt.Errorf("failover: %w", err)
		}
	}
	return nil
}

// expectation is FailoverConfig.Expect parsed as rdata of the canary's type.
type expectation struct {
	qtype uint16
	addr  netip.Addr // A, AAAA
	rr    dns.RR     // other types: owner ".", class IN; never modified (rounds share it)
}

func newExpectation(qtype uint16, expect string) (expectation, error) {
	e := expectation{qtype: qtype}
	switch qtype {
	case dns.TypeA, dns.TypeAAAA:
		a, err := netip.ParseAddr(expect)
		if err != nil || a.Zone() != "" || (qtype == dns.TypeA) != a.Unmap().Is4() {
			return e, fmt.Errorf("expect %q is not an %s address", expect, dns.TypeToString[qtype])
		}
		e.addr = a.Unmap()
		return e, nil
	}
	rr, err := dns.NewRR(". 0 IN " + dns.TypeToString[qtype] + " " + expect)
	if err != nil || rr == nil || rr.Header().Rrtype != qtype {
		return e, fmt.Errorf("expect %q is not %s rdata", expect, dns.TypeToString[qtype])
	}
	e.rr = rr
	return e, nil
}

// matches reports whether one record of the answer, each in presentation form, is of the
// expected type with the expected rdata. Records of other types (the CNAMEs leading to the
// answer) and records that do not parse never match.
func (e expectation) matches(answers []string) bool {
	for _, text := range answers {
		rr, err := dns.NewRR(text)
		if err != nil || rr == nil || rr.Header().Rrtype != e.qtype {
			continue
		}
		switch r := rr.(type) {
		case *dns.A:
			if a, ok := netip.AddrFromSlice(r.A); ok && a.Unmap() == e.addr {
				return true
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(r.AAAA); ok && a.Unmap() == e.addr {
				return true
			}
		default:
			// Same rdata: with owner and class set as in e.rr, IsDuplicate compares just that
			// (names case-insensitively, other fields exactly; TTLs are ignored).
			rr.Header().Name, rr.Header().Class = ".", dns.ClassINET
			if dns.IsDuplicate(rr, e.rr) {
				return true
			}
		}
	}
	return false
}

// Prober asks one recursor directly, bypassing the cache, and returns the answer's records as
// text.
type Prober interface {
	Probe(ctx context.Context, upstream netip.AddrPort, name string, qtype uint16) ([]string, error)
}

// UpstreamSetter replaces the upstreams of a forward zone; note says why, for ctl forwards.
type UpstreamSetter interface {
	SetUpstreams(zone string, upstreams []netip.AddrPort, note string) error
}

// FailoverState is where the root zone's traffic goes.
type FailoverState int

const (
	LocalOnly  FailoverState = iota // local recursors healthy: "." uses them only
	FailedOver                      // local failing, remote healthy: remote added, local kept
	BothFailed                      // both failing: everything kept, serve-stale carries clients
)

func (s FailoverState) String() string {
	return [...]string{"local", "failed-over", "both-failing"}[s]
}

// FailoverStatus is a snapshot for ctl and metrics.
type FailoverStatus struct {
	State       FailoverState
	Since       time.Time
	Transitions uint64
	Evidence    string // the last round's canary results
}

// Failover runs the canary checks and moves the root zone between the states, with hysteresis:
// Fall bad rounds of the local recursors fail over, Rise good rounds fail back.
type Failover struct {
	cfg    FailoverConfig
	expect *expectation // nil: any answer passes
	prober Prober
	setter UpstreamSetter
	log    *slog.Logger

	mu     sync.Mutex
	status FailoverStatus
	local  hysteresis // the local recursors, up at the start
}

// NewFailover builds the controller; Run applies the initial (local) state.
func NewFailover(cfg FailoverConfig, p Prober, s UpstreamSetter, log *slog.Logger) (*Failover, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Fall == 0 {
		cfg.Fall = 2
	}
	if cfg.Rise == 0 {
		cfg.Rise = 2
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = min(cfg.Interval/2, 2*time.Second)
	}
	f := &Failover{cfg: cfg, prober: p, setter: s, log: log,
		local: hysteresis{rise: cfg.Rise, fall: cfg.Fall, up: true}}
	if cfg.Expect != "" {
		e, _ := newExpectation(cfg.Type, cfg.Expect) // Validate parsed it
		f.expect = &e
	}
	return f, nil
}

// Register adds the failover's metrics to reg.
func (f *Failover) Register(reg prometheus.Registerer) error {
	state := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fleetdns_failover_state",
		Help: "Where the root zone's queries go: 0 local recursors, 1 failed over (remote added), 2 both failing.",
	}, func() float64 { return float64(f.Status().State) })
	transitions := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "fleetdns_failover_transitions_total", Help: "Changes of the failover state.",
	}, func() float64 { return float64(f.Status().Transitions) })
	for _, c := range []prometheus.Collector{state, transitions} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register failover metrics: %w", err)
		}
	}
	return nil
}

// Status returns a snapshot.
func (f *Failover) Status() FailoverStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

// Run checks every interval until ctx ends.
func (f *Failover) Run(ctx context.Context) error {
	f.mu.Lock()
	f.status = FailoverStatus{State: LocalOnly, Since: time.Now()}
	f.mu.Unlock()
	if err := f.apply(LocalOnly, "start"); err != nil {
		return err
	}
	t := time.NewTicker(f.cfg.Interval)
	defer t.Stop()
	for {
		f.round(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// round asks every recursor for the canary at once and decides.
func (f *Failover) round(ctx context.Context) {
	local, remote, evidence := f.canaries(ctx)
	if ctx.Err() != nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status.Evidence = evidence
	// While the local recursors count as up, the root zone stays local; once they count as
	// down, each round that finds no local one sends it where a remote one answers, if any.
	// A local pass short of rise leaves the state where it is.
	up, _ := f.local.observe(local)
	next := f.status.State
	switch {
	case up:
		next = LocalOnly
	case !local && remote:
		next = FailedOver
	case !local:
		next = BothFailed
	}
	if next == f.status.State {
		return
	}
	if err := f.apply(next, evidence); err != nil {
		f.log.Error("failover: cannot change the root zone's upstreams", "err", err)
		return
	}
	f.log.Warn("failover", "from", f.status.State.String(), "to", next.String(), "evidence", evidence)
	f.status.State, f.status.Since = next, time.Now()
	f.status.Transitions++
}

func (f *Failover) apply(s FailoverState, evidence string) error {
	ups := f.cfg.Local
	if s != LocalOnly {
		ups = append(slices.Clone(f.cfg.Local), f.cfg.Remote...)
	}
	return f.setter.SetUpstreams(".", ups, fmt.Sprintf("failover: %s (%s)", s, evidence))
}

// canaries reports whether any local and any remote recursor answered the canary correctly,
// and what each one did.
func (f *Failover) canaries(ctx context.Context) (local, remote bool, evidence string) {
	type result struct {
		addr   netip.AddrPort
		remote bool
		err    error
	}
	all := append(slices.Clone(f.cfg.Local), f.cfg.Remote...)
	results := make(chan result, len(all))
	for i, a := range all {
		go func() {
			cctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
			defer cancel()
			answers, err := f.prober.Probe(cctx, a, f.cfg.Name, f.cfg.Type)
			if err == nil && f.expect != nil && !f.expect.matches(answers) {
				err = fmt.Errorf("answer %v lacks %s (%s)", answers, f.cfg.Expect, dns.TypeToString[f.cfg.Type])
			}
			results <- result{a, i >= len(f.cfg.Local), err}
		}()
	}
	var parts []string
	for range all {
		r := <-results
		side := "local"
		if r.remote {
			side = "remote"
		}
		if r.err == nil {
			parts = append(parts, fmt.Sprintf("%s %s ok", side, r.addr))
			if r.remote {
				remote = true
			} else {
				local = true
			}
		} else {
			parts = append(parts, fmt.Sprintf("%s %s failed: %v", side, r.addr, r.err))
		}
	}
	slices.Sort(parts)
	return local, remote, strings.Join(parts, "; ")
}
