package fabric

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// script is a Check that answers from a list, one result per call.
type script struct {
	mu      sync.Mutex
	results []bool
	calls   int
}

func (s *script) check(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ok := s.results[min(s.calls, len(s.results)-1)]
	s.calls++
	if !ok {
		return errors.New("upstream dead")
	}
	return nil
}

func TestHealthHysteresis(t *testing.T) {
	for _, tc := range []struct {
		name    string
		results []bool
		rise    int
		fall    int
		want    []bool // transitions, in order
	}{
		{"rises after rise successes", []bool{true, true, true}, 3, 2, []bool{true}},
		{"not before", []bool{true, true, false, true, true}, 3, 2, nil},
		{"one failure does not fall", []bool{true, true, false, true, false, true}, 2, 2, []bool{true}},
		{"falls after fall failures", []bool{true, true, false, false}, 2, 2, []bool{true, false}},
		{"and rises again", []bool{true, false, false, true, true}, 1, 2, []bool{true, false, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &script{results: tc.results}
				var got []bool
				h, err := NewHealthChecker(HealthConfig{Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: tc.rise, Fall: tc.fall},
					s.check, func(healthy bool) { got = append(got, healthy) }, slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(t.Context())
				done := make(chan struct{})
				go func() { h.Run(ctx); close(done) }()
				// Checks run at 0s, 1s, 2s, ...: stop just after the last scripted one.
				time.Sleep(time.Duration(len(tc.results)-1)*time.Second + time.Millisecond)
				synctest.Wait()
				cancel()
				<-done
				if s.calls != len(tc.results) {
					t.Fatalf("checks run = %d, want %d", s.calls, len(tc.results))
				}
				if len(got) != len(tc.want) {
					t.Fatalf("transitions = %v, want %v", got, tc.want)
				}
				for i := range got {
					if got[i] != tc.want[i] {
						t.Fatalf("transitions = %v, want %v", got, tc.want)
					}
				}
				if st := h.Status(); st.Transitions != uint64(len(tc.want)) || st.Checks != uint64(len(tc.results)) {
					t.Errorf("status %+v, want %d transitions and %d checks", st, len(tc.want), len(tc.results))
				}
			})
		})
	}
}

func TestHealthTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hang := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
		var got []bool
		h, err := NewHealthChecker(HealthConfig{Interval: time.Second, Timeout: 300 * time.Millisecond, Rise: 1, Fall: 1},
			hang, func(healthy bool) { got = append(got, healthy) }, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { h.Run(ctx); close(done) }()
		time.Sleep(2*time.Second + 500*time.Millisecond)
		synctest.Wait()
		cancel()
		<-done
		st := h.Status()
		if st.Checks != 3 || st.Failures != 3 || st.Healthy || len(got) != 0 {
			t.Errorf("status %+v transitions %v, want 3 timed-out checks and never healthy", st, got)
		}
		if st.LastLatency != 300*time.Millisecond {
			t.Errorf("last latency %s, want the 300ms timeout", st.LastLatency)
		}
	})
}

func TestHealthConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg HealthConfig
		ok  bool
	}{
		{HealthConfig{Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 3, Fall: 2}, true},
		{HealthConfig{Interval: time.Second, Timeout: 2 * time.Second, Rise: 3, Fall: 2}, false},
		{HealthConfig{Interval: 0, Timeout: 0, Rise: 3, Fall: 2}, false},
		{HealthConfig{Interval: time.Second, Timeout: time.Second, Rise: 0, Fall: 2}, false},
	} {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%+v) = %v, want ok %v", tc.cfg, err, tc.ok)
		}
	}
}
