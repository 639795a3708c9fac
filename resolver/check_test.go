package resolver

import (
	"context"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/faultdns"
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
