package resolver

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/faultdns"
	"github.com/fleetdns/fleetdns/resolver/upstream"
	"github.com/miekg/dns"
)

func TestFailover(t *testing.T) {
	for _, fault := range []struct {
		name  string
		fault faultdns.Fault
	}{{"timeout", faultdns.Drop}, {"servfail", faultdns.ServFail}, {"refused", faultdns.Refuse}} {
		t.Run(fault.name, func(t *testing.T) {
			bad := startFault(t, "192.0.2.1", 300)
			good := startFault(t, "192.0.2.2", 300)
			bad.Set(fault.fault, 0)
			s := startServer(t, Config{Forward: forwardTo(bad, good)}, testCacheConfig())
			for i := range 5 {
				r := ask(t, s, "udp", fmt.Sprintf("n%d.example.test", i), dns.TypeA)
				if r.Rcode != dns.RcodeSuccess || firstA(r) != "192.0.2.2" {
					t.Fatalf("query %d: rcode %s answer %q, want NOERROR from the good upstream 192.0.2.2",
						i, dns.RcodeToString[r.Rcode], firstA(r))
				}
			}
			if bad.Queries() == 0 {
				t.Errorf("the failing upstream was never tried; the test shows nothing")
			}
		})
	}
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	up := startFault(t, "192.0.2.3", 300)
	up.Set(faultdns.Truncate, 0)
	s := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
	r := ask(t, s, "udp", "tc.example.test", dns.TypeA)
	if firstA(r) != "192.0.2.3" || r.Truncated {
		t.Fatalf("answer %q TC %v, want 192.0.2.3 without TC", firstA(r), r.Truncated)
	}
	if up.TCPQueries() != 1 {
		t.Errorf("upstream TCP queries = %d, want 1 (the retry after TC)", up.TCPQueries())
	}
}

func TestProtocolTCP(t *testing.T) {
	up := startFault(t, "192.0.2.4", 300)
	fwd := forwardTo(up)
	fwd[0].Protocol = "tcp"
	s := startServer(t, Config{Forward: fwd}, testCacheConfig())
	for i := range 3 {
		ask(t, s, "udp", fmt.Sprintf("tcp%d.example.test", i), dns.TypeA)
	}
	if up.Queries() != 3 || up.TCPQueries() != 3 {
		t.Errorf("upstream queries %d, over TCP %d, want 3 and 3", up.Queries(), up.TCPQueries())
	}
}

func TestSpoofedResponsesIgnored(t *testing.T) {
	up := startFault(t, "192.0.2.5", 300)
	up.Set(faultdns.Spoof, 0)
	s := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
	r := ask(t, s, "udp", "spoof.example.test", dns.TypeA)
	if got := firstA(r); got != "192.0.2.5" {
		t.Fatalf("answer %q, want 192.0.2.5 (%s is the spoofed one)", got, faultdns.SpoofIP)
	}
	if n := s.Forwarder().Mismatched(); n != 2 {
		t.Errorf("mismatched responses = %d, want 2 (wrong ID, wrong question)", n)
	}
}

func TestCoalescing(t *testing.T) {
	up := startFault(t, "192.0.2.7", 300)
	up.Set(faultdns.Delay, 200*time.Millisecond)
	s := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			r, err := exchange(s, "udp", "same.example.test", dns.TypeA, nil)
			if err != nil {
				errs <- err
				return
			}
			if firstA(r) != "192.0.2.7" {
				errs <- fmt.Errorf("answer %q, want 192.0.2.7", firstA(r))
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := up.Queries(); n != 1 {
		t.Errorf("upstream queries for 20 concurrent identical misses = %d, want 1", n)
	}
}

func TestPrefersFastestUpstream(t *testing.T) {
	slow := startFault(t, "192.0.2.8", 300)
	fast := startFault(t, "192.0.2.9", 300)
	slow.Set(faultdns.Delay, 30*time.Millisecond)
	s := startServer(t, Config{Forward: forwardTo(slow, fast)}, testCacheConfig())
	for i := range 60 {
		ask(t, s, "udp", fmt.Sprintf("rtt%d.example.test", i), dns.TypeA)
	}
	// Both get measured, then the fast one takes nearly all: exploration sends about one in 20
	// elsewhere.
	if slow.Queries() == 0 || fast.Queries() < 45 {
		t.Errorf("queries slow=%d fast=%d, want the slow one probed and the fast one at least 45 of 60",
			slow.Queries(), fast.Queries())
	}
}

func TestFailureCachedBriefly(t *testing.T) {
	up := startFault(t, "192.0.2.10", 300)
	up.Set(faultdns.Drop, 0)
	s := startServer(t, Config{Forward: forwardTo(up), ResolveTimeout: 300 * time.Millisecond}, testCacheConfig())
	r := ask(t, s, "udp", "dead.example.test", dns.TypeA)
	if r.Rcode != dns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
	sent := up.Queries()
	start := time.Now()
	r = ask(t, s, "udp", "dead.example.test", dns.TypeA)
	if r.Rcode != dns.RcodeServerFailure || up.Queries() != sent {
		t.Errorf("retry within a second: rcode %s, %d new upstream queries, want SERVFAIL and none (RFC 9520)",
			dns.RcodeToString[r.Rcode], up.Queries()-sent)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("cached failure took %s, want an answer at once", d)
	}
}

func TestServeStale(t *testing.T) {
	up := startFault(t, "192.0.2.11", 1)
	clk := newClock()
	s := startServer(t, Config{Forward: forwardTo(up), StaleClientTimeout: 150 * time.Millisecond,
		ResolveTimeout: 500 * time.Millisecond, StaleRetry: 300 * time.Millisecond, Clock: clk.Now}, testCacheConfig())
	ask(t, s, "udp", "stale.example.test", dns.TypeA)
	up.Set(faultdns.Drop, 0)
	clk.Advance(1100 * time.Millisecond) // the one-second TTL runs out
	start := time.Now()
	r, err := exchange(s, "udp", "stale.example.test", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) })
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 400*time.Millisecond {
		t.Errorf("stale answer took %s, want it after the 150ms client timer", d)
	}
	if firstA(r) != "192.0.2.11" || r.Answer[0].Header().Ttl != 30 {
		t.Fatalf("answer %v, want the stale 192.0.2.11 with TTL 30", r.Answer)
	}
	opt := r.IsEdns0()
	if opt == nil || len(opt.Option) != 1 || opt.Option[0].(*dns.EDNS0_EDE).InfoCode != dns.ExtendedErrorCodeStaleAnswer {
		t.Errorf("OPT %v, want EDE 3 Stale Answer", opt)
	}

	// The upstream comes back: the next refresh (at most one per StaleRetry) replaces it.
	up.Set(faultdns.None, 0)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		r = ask(t, s, "udp", "stale.example.test", dns.TypeA)
		if r.Answer[0].Header().Ttl != 30 {
			return
		}
		time.Sleep(50 * time.Millisecond)
		clk.Advance(50 * time.Millisecond)
	}
	t.Errorf("still stale after the upstream recovered: %v", r.Answer)
}

func TestPrefetch(t *testing.T) {
	up := startFault(t, "192.0.2.12", 4)
	clk := newClock()
	s := startServer(t, Config{Forward: forwardTo(up), Clock: clk.Now}, testCacheConfig())
	ask(t, s, "udp", "pre.example.test", dns.TypeA)
	clk.Advance(3700 * time.Millisecond) // into the last 10% of the 4s TTL (3.6s to 4s)
	r := ask(t, s, "udp", "pre.example.test", dns.TypeA)
	if firstA(r) != "192.0.2.12" {
		t.Fatalf("answer %q, want the cached 192.0.2.12", firstA(r))
	}
	deadline := time.Now().Add(2 * time.Second)
	for up.Queries() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if up.Queries() != 2 || s.Stats.Prefetches.Load() != 1 {
		t.Fatalf("upstream queries %d, prefetches %d, want 2 and 1", up.Queries(), s.Stats.Prefetches.Load())
	}
	// The refreshed answer is fresh again: a full TTL and no upstream query for it.
	r = ask(t, s, "udp", "pre.example.test", dns.TypeA)
	if ttl := r.Answer[0].Header().Ttl; ttl < 1 {
		t.Errorf("TTL after prefetch = %d, want the refreshed one", ttl)
	}
	if up.Queries() != 2 {
		t.Errorf("upstream queries = %d after the refresh, want still 2", up.Queries())
	}
}

func TestLongestZoneWins(t *testing.T) {
	root := startFault(t, "192.0.2.20", 300)
	corp := startFault(t, "192.0.2.21", 300)
	prd := startFault(t, "192.0.2.22", 300)
	s := startServer(t, Config{Forward: []ZoneConfig{
		{Zone: ".", Upstreams: []netip.AddrPort{root.Addr}},
		{Zone: "corp.example", Upstreams: []netip.AddrPort{corp.Addr}},
		{Zone: "prd.corp.example.", Upstreams: []netip.AddrPort{prd.Addr}},
	}}, testCacheConfig())
	for _, tc := range []struct{ name, want string }{
		{"www.example.net", "192.0.2.20"},
		{"corp.example", "192.0.2.21"},
		{"a.corp.example", "192.0.2.21"},
		{"xprd.corp.example", "192.0.2.21"},
		{"DB1.PRD.corp.example", "192.0.2.22"},
	} {
		if got := firstA(ask(t, s, "udp", tc.name, dns.TypeA)); got != tc.want {
			t.Errorf("%s answered by %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestProbeBypassesCache(t *testing.T) {
	up := startFault(t, "192.0.2.60", 300)
	s := startServer(t, Config{Forward: forwardTo(up), ResolveTimeout: 300 * time.Millisecond}, testCacheConfig())
	ask(t, s, "udp", "health.fleetdns.test", dns.TypeA) // cached now
	if err := s.Probe(t.Context(), "health.fleetdns.test", dns.TypeA); err != nil {
		t.Fatalf("Probe with a live upstream = %v, want nil", err)
	}
	if up.Queries() != 2 {
		t.Errorf("upstream queries = %d, want 2: the probe must not be answered from the cache", up.Queries())
	}
	up.Set(faultdns.Drop, 0)
	if err := s.Probe(t.Context(), "health.fleetdns.test", dns.TypeA); err == nil {
		t.Errorf("Probe with a dead upstream = nil, want an error even though the cache has the name")
	}
	up.Set(faultdns.ServFail, 0)
	if err := s.Probe(t.Context(), "health.fleetdns.test", dns.TypeA); err == nil {
		t.Errorf("Probe with a SERVFAIL upstream = nil, want an error")
	}
}

// TestProbeDoesNotHoldUpstreamUp: a node's health probe, run every interval while its only
// upstream is dead, must not keep that upstream "up": it is marked down like any silent
// upstream, so that client queries for uncached names fail fast (SERVFAIL well under 100 ms)
// instead of each waiting out timeouts, and cached names keep being served stale.
func TestProbeDoesNotHoldUpstreamUp(t *testing.T) {
	up := startFault(t, "192.0.2.61", 1)
	s := startServer(t, Config{Forward: forwardTo(up), ResolveTimeout: 300 * time.Millisecond}, testCacheConfig())
	ask(t, s, "udp", "cached.fleetdns.test", dns.TypeA)
	up.Set(faultdns.Drop, 0)
	deadline := time.Now().Add(5 * time.Second)
	down := false
	for time.Now().Before(deadline) && !down {
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond) // the health timeout
		err := s.Probe(ctx, "health.fleetdns.test", dns.TypeA)
		cancel()
		if err == nil {
			t.Fatal("Probe passed with a dead upstream")
		}
		down = errors.Is(err, upstream.ErrUpstreamsDown)
		time.Sleep(100 * time.Millisecond)
	}
	if !down {
		t.Fatalf("after 5s of health probes the dead upstream is still not marked down")
	}
	start := time.Now()
	r := ask(t, s, "udp", "uncached.fleetdns.test", dns.TypeA)
	if d := time.Since(start); r.Rcode != dns.RcodeServerFailure || d > 100*time.Millisecond {
		t.Errorf("uncached name with the upstream down: %s after %s, want SERVFAIL in under 100ms", dns.RcodeToString[r.Rcode], d)
	}
	start = time.Now()
	r = ask(t, s, "udp", "cached.fleetdns.test", dns.TypeA)
	if d := time.Since(start); firstA(r) != "192.0.2.61" || d > 100*time.Millisecond {
		t.Errorf("cached (now stale) name with the upstream down: %v after %s, want the stale answer in under 100ms", r, d)
	}
}

// A prefetch that fails (its packets lost) does not leave the answer to expire: the next hit in
// the prefetch window starts another, and the name is still answered fresh after its TTL.
func TestFailedPrefetchRetried(t *testing.T) {
	up := startFault(t, "192.0.2.13", 4)
	clk := newClock()
	s := startServer(t, Config{Forward: forwardTo(up), Clock: clk.Now, ResolveTimeout: 300 * time.Millisecond}, testCacheConfig())
	ask(t, s, "udp", "again.example.test", dns.TypeA)
	up.Set(faultdns.Drop, 0)
	clk.Advance(3100 * time.Millisecond) // into the last second of the 4 s TTL
	ask(t, s, "udp", "again.example.test", dns.TypeA)
	inFlight := func() int {
		s.flights.mu.Lock()
		defer s.flights.mu.Unlock()
		return len(s.flights.m)
	}
	deadline := time.Now().Add(2 * time.Second)
	for s.Stats.Prefetches.Load() != 1 || inFlight() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("prefetches %d, flights %d: the first prefetch did not end", s.Stats.Prefetches.Load(), inFlight())
		}
		time.Sleep(10 * time.Millisecond)
	}
	up.Set(faultdns.None, 0)
	clk.Advance(200 * time.Millisecond)
	ask(t, s, "udp", "again.example.test", dns.TypeA) // still in the window: tries again
	for s.Stats.Prefetches.Load() != 2 || inFlight() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("prefetches %d after the first failed, want a second one started by the next hit", s.Stats.Prefetches.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	clk.Advance(time.Second) // past the first answer's expiry
	r, err := exchange(s, "udp", "again.example.test", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) })
	if err != nil {
		t.Fatal(err)
	}
	if firstA(r) != "192.0.2.13" || r.Answer[0].Header().Ttl == 30 || len(r.IsEdns0().Option) != 0 {
		t.Errorf("after the TTL: %v %v, want the refreshed answer, not a stale one", r.Answer, r.IsEdns0())
	}
}
