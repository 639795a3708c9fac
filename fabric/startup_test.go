package fabric

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// flaky is an Announcer that refuses its first n calls (a speaker not ready yet), then records.
type flaky struct {
	recorder
	refuse int
	mu     sync.Mutex
}

func (f *flaky) Announce(ctx context.Context, graceful bool) error {
	f.mu.Lock()
	if f.refuse > 0 {
		f.refuse--
		f.mu.Unlock()
		return errors.New("speaker not ready")
	}
	f.mu.Unlock()
	return f.recorder.Announce(ctx, graceful)
}

// A node whose upstream starts after it (issue 18): the upstream refuses for its first seconds,
// then answers. Whatever happened before, the node announces within rise × interval of the
// upstream's first answer, once, and while it waits its status says which check failed last,
// how far it is towards announcing and when the next check runs.
func TestAnnounceAfterUpstreamStartsLate(t *testing.T) {
	cfg := HealthConfig{Interval: 500 * time.Millisecond, Timeout: 300 * time.Millisecond, Rise: 2, Fall: 2}
	bound := time.Duration(cfg.Rise) * cfg.Interval
	for _, tc := range []struct {
		name   string
		back   time.Duration // when the upstream first answers
		refuse int           // announces the announcer refuses first
	}{
		{"upstream up from the start", 0, 0},
		{"upstream answers after 2.7s", 2700 * time.Millisecond, 0},
		{"upstream answers after 3s", 3 * time.Second, 0},
		{"upstream answers after 10s", 10 * time.Second, 0},
		{"first announce refused by the speaker", 2700 * time.Millisecond, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				ann := &flaky{recorder: recorder{start: start}, refuse: tc.refuse}
				ctl := NewController(ControllerConfig{}, ann, slog.New(slog.DiscardHandler))
				upstream := func(context.Context) error {
					if time.Since(start) < tc.back {
						return errors.New("upstream 127.0.0.1:5300: answered REFUSED")
					}
					return nil
				}
				ok := func(context.Context) error { return nil }
				h, err := NewNodeHealthChecker(cfg, Probes{Local: ok, Upstream: upstream},
					func(healthy bool) { ctl.SetHealthy(t.Context(), healthy) }, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan struct{})
				go func() { h.Run(ctx); close(done) }()

				if tc.back > 0 {
					time.Sleep(tc.back - time.Millisecond)
					synctest.Wait()
					st := h.Status()
					if announced, _, _ := ctl.Status(); announced || st.Healthy {
						t.Fatalf("announced before the upstream answered: %+v", st)
					}
					if !strings.Contains(st.LastError, "REFUSED") || st.Need != cfg.Rise ||
						st.NextCheck.Sub(st.LastCheck) != cfg.Interval || st.NextCheck.Before(time.Now()) {
						t.Errorf("status while waiting = %+v, want the last failure (REFUSED), %d checks needed and the next check ahead", st, cfg.Rise)
					}
				}
				limit := tc.back + bound
				if tc.refuse > 0 {
					limit += time.Duration(tc.refuse) * retryEvery
				}
				time.Sleep(limit - time.Since(start) + time.Millisecond)
				synctest.Wait()
				got := ann.got()
				cancel()
				<-done
				if !strings.HasPrefix(got, "announce@") || strings.Count(got, "@") != 1 {
					t.Fatalf("announcer saw %q by %s, want one announce (upstream back at %s, rise %d × interval %s)",
						got, limit, tc.back, cfg.Rise, cfg.Interval)
				}
				at, _ := time.ParseDuration(strings.TrimPrefix(got, "announce@"))
				t.Logf("upstream back at %s: announced at %s", tc.back, at)
				if tc.refuse == 0 && at > tc.back+bound {
					t.Errorf("announced at %s, want by %s (upstream back at %s + rise × interval)", at, tc.back+bound, tc.back)
				}
			})
		})
	}
}
