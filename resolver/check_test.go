package resolver

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/faultdns"
	"github.com/fleetdns/fleetdns/resolver/upstream"
	"github.com/miekg/dns"
)

// A node whose upstream starts after it (issue 18): the health checks that fail at start-up mark
// the upstream down, and a down upstream is otherwise probed at most once a second. A health
// check must not wait for that probe timer: the first check after the upstream's first answer
// passes, so the node announces within rise × interval of it.
func TestCheckPassesAtOnceWhenUpstreamComesBack(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault faultdns.Fault
	}{
		{"silent at first", faultdns.Drop},
		{"refusing at first", faultdns.Refuse},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := startFault(t, "192.0.2.36", 0)
			up.Set(tc.fault, 0)
			s := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
			const interval, timeout = 100 * time.Millisecond, 80 * time.Millisecond
			check := func() error {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				return s.Probe(ctx, "health.example.test.", 1)
			}
			// Long enough for three unanswered sends and a second of silence: marked down.
			for start := time.Now(); time.Since(start) < 1300*time.Millisecond; time.Sleep(interval) {
				if err := check(); err == nil {
					t.Fatalf("check passed while the upstream was %s", tc.name)
				}
			}
			if tc.fault == faultdns.Drop && s.Forwarder().Pools()[0].Upstreams[0].Status().Healthy {
				t.Fatalf("upstream not marked down after 1.3 s of silence")
			}
			up.Set(faultdns.None, 0)
			back := time.Now()
			for i := 0; ; i++ {
				err := check()
				if err == nil {
					t.Logf("check %d passed %s after the upstream came back", i, time.Since(back).Round(time.Millisecond))
					if i > 0 {
						t.Errorf("check %d was the first to pass after the upstream came back, want the first (the one right after)", i)
					}
					break
				}
				if i >= 20 {
					t.Fatalf("checks still failing %s after the upstream came back: %v", time.Since(back), err)
				}
				time.Sleep(interval)
			}
		})
	}
}

// A client query that carries the probe of a down upstream does not wait for it: the probe's
// timer is the upstream's RTO, which slow early answers (a first packet waiting for ARP) hold
// at hundreds of milliseconds, and during an outage every client is owed a fast SERVFAIL. The
// probe still goes out, in the background, and an answer to it brings the upstream back.
func TestProbeDoesNotHoldTheClient(t *testing.T) {
	up := startFault(t, "192.0.2.37", 0)
	up.Set(faultdns.Delay, 120*time.Millisecond) // slow answers: srtt ~120 ms, RTO larger
	s := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
	for i := range 3 {
		ask(t, s, "udp", fmt.Sprintf("slow%d.example.test", i), dns.TypeA)
	}
	if rto := s.Forwarder().Pools()[0].Upstreams[0].RTO(); rto < 120*time.Millisecond {
		t.Fatalf("rto %s after slow answers, want at least 120ms for the test to mean anything", rto)
	}
	up.Set(faultdns.Drop, 0)
	for start, i := time.Now(), 0; s.Forwarder().Pools()[0].Upstreams[0].Status().Healthy; i++ {
		if time.Since(start) > 10*time.Second {
			t.Fatal("upstream not marked down after 10 s of silence")
		}
		ask(t, s, "udp", fmt.Sprintf("down%d.example.test", i), dns.TypeA)
	}
	// Over 2.5 s, probes come due (every second at most): no client waits for one.
	var slowest time.Duration
	for start, i := time.Now(), 0; time.Since(start) < 2500*time.Millisecond; i++ {
		t0 := time.Now()
		r := ask(t, s, "udp", fmt.Sprintf("during%d.example.test", i), dns.TypeA)
		if r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("rcode %s during the outage, want SERVFAIL", dns.RcodeToString[r.Rcode])
		}
		slowest = max(slowest, time.Since(t0))
		time.Sleep(20 * time.Millisecond)
	}
	if slowest > 50*time.Millisecond {
		t.Errorf("slowest SERVFAIL during the outage took %s, want every one at once (no client waits for a probe)", slowest)
	}
	up.Set(faultdns.None, 0)
	back := time.Now()
	for i := 0; ; i++ {
		if r := ask(t, s, "udp", fmt.Sprintf("back%d.example.test", i), dns.TypeA); r.Rcode == dns.RcodeSuccess {
			break
		}
		if time.Since(back) > upstream.MaxProbe+2*time.Second {
			t.Fatalf("still failing %s after the upstream came back: the background probe did not bring it back", time.Since(back))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("slowest SERVFAIL during the outage %s; answered again %s after the upstream came back", slowest.Round(time.Millisecond), time.Since(back).Round(time.Millisecond))
}
