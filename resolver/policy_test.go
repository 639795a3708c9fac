package resolver

import (
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/faultdns"
	"github.com/fleetdns/fleetdns/policy"
	"github.com/miekg/dns"
)

func setPolicy(t *testing.T, s *Server, cfg policy.Config) {
	t.Helper()
	p, err := policy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.SetPolicy(p)
}

// A synthesized CNAME is followed through the cache and the forwarder: the client gets the
// upstream's address in the same answer.
func TestSynthesizedCNAMEChasedUpstream(t *testing.T) {
	up := startFault(t, "192.0.2.40", 300)
	s := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
	setPolicy(t, s, policy.Config{SynthDC: policy.SynthDC{Label: "dc", Local: "dc1", Domains: []string{"prd.example.test"}}})
	r := ask(t, s, "udp", "api.dc.prd.example.test", dns.TypeA)
	if len(r.Answer) != 2 {
		t.Fatalf("answer %v, want the CNAME and the upstream's A", r.Answer)
	}
	c, ok := r.Answer[0].(*dns.CNAME)
	if !ok || c.Hdr.Name != "api.dc.prd.example.test." || c.Target != "api.dc1.prd.example.test." {
		t.Errorf("first record %v, want api.dc.prd.example.test. CNAME api.dc1.prd.example.test.", r.Answer[0])
	}
	if a, ok := r.Answer[1].(*dns.A); !ok || a.Hdr.Name != "api.dc1.prd.example.test." || a.A.String() != "192.0.2.40" {
		t.Errorf("second record %v, want api.dc1.prd.example.test. A 192.0.2.40", r.Answer[1])
	}
	if r.Authoritative {
		t.Errorf("AA set on an answer that ends in upstream data")
	}
	// The target is cached under its own name: a second query needs no upstream.
	ask(t, s, "udp", "api.dc.prd.example.test", dns.TypeA)
	if up.Queries() != 1 {
		t.Errorf("upstream queries = %d, want 1", up.Queries())
	}
	if n := s.Stats.Policy[policy.ReasonSynthDC].Load(); n != 2 {
		t.Errorf("synthesize_dc decisions counted = %d, want 2", n)
	}
}

func TestPolicyDecisionsCounted(t *testing.T) {
	up := startFault(t, "192.0.2.41", 300)
	s := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
	setPolicy(t, s, policy.Config{
		JunkGuard: []string{"prd.example.test"},
		BlockAAAA: policy.BlockAAAA{Suffixes: []string{"example.test"}},
	})
	ask(t, s, "udp", "a.prd.example.test.prd.example.test", dns.TypeA)
	ask(t, s, "udp", "a.prd.example.test", dns.TypeAAAA)
	ask(t, s, "udp", "b.prd.example.test", dns.TypeAAAA)
	ask(t, s, "udp", "a.prd.example.test", dns.TypeA) // passes to the upstream
	for _, tc := range []struct {
		reason policy.Reason
		want   uint64
	}{{policy.ReasonJunk, 1}, {policy.ReasonBlockAAAA, 2}, {policy.ReasonSynthIP, 0}} {
		if got := s.Stats.Policy[tc.reason].Load(); got != tc.want {
			t.Errorf("%s decisions = %d, want %d", tc.reason, got, tc.want)
		}
	}
	if up.Queries() != 1 {
		t.Errorf("upstream queries = %d, want 1 (only the A query passes)", up.Queries())
	}
}

// A chased CNAME target that is stale behind a dead upstream is answered within the client's
// stale timer, as a plain stale name is, not after the whole resolution timeout: the chase and
// the plain miss share one wait.
func TestChasedTargetStaleAtOnce(t *testing.T) {
	up := startFault(t, "192.0.2.41", 1) // TTL 1: stale a second later
	const staleTimer = 300 * time.Millisecond
	s := startServer(t, Config{Forward: forwardTo(up), StaleClientTimeout: staleTimer, ResolveTimeout: 3 * time.Second}, testCacheConfig())
	setPolicy(t, s, policy.Config{SynthDC: policy.SynthDC{Label: "dc", Local: "dc1", Domains: []string{"prd.example.test"}}})
	if r := ask(t, s, "udp", "api.dc.prd.example.test", dns.TypeA); len(r.Answer) != 2 {
		t.Fatalf("answer %v, want the CNAME and the upstream's A", r.Answer)
	}
	up.Set(faultdns.Drop, 0)
	time.Sleep(1100 * time.Millisecond)
	start := time.Now()
	r := ask(t, s, "udp", "api.dc.prd.example.test", dns.TypeA)
	took := time.Since(start)
	if len(r.Answer) != 2 || r.Answer[1].(*dns.A).A.String() != "192.0.2.41" {
		t.Fatalf("answer %v, want the CNAME and the stale A", r.Answer)
	}
	t.Logf("stale chased target answered after %s", took.Round(time.Millisecond))
	if took > staleTimer+200*time.Millisecond {
		t.Errorf("stale chased target answered after %s, want within the stale client timer %s", took, staleTimer)
	}
}
