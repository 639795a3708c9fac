package fabric

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is an Announcer that writes down what it was told, with the time.
type recorder struct {
	mu    sync.Mutex
	start time.Time
	calls []string
}

func (r *recorder) Announce(_ context.Context, graceful bool) error {
	if graceful {
		return r.add("announce-graceful")
	}
	return r.add("announce")
}

func (r *recorder) Withdraw(context.Context) error { return r.add("withdraw") }

func (r *recorder) add(s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, s+"@"+time.Since(r.start).Round(time.Millisecond).String())
	return nil
}

func (r *recorder) got() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.calls, " ")
}

func TestControllerHealth(t *testing.T) {
	for _, tc := range []struct {
		name  string
		cfg   ControllerConfig
		steps []bool // health verdicts, one per second
		want  string
	}{
		{"nothing before healthy", ControllerConfig{}, []bool{false}, ""},
		{"announce once healthy", ControllerConfig{}, []bool{true, true}, "announce@0s"},
		{"withdraw at once", ControllerConfig{}, []bool{true, false}, "announce@0s withdraw@1s"},
		{"graceful first", ControllerConfig{GracefulWithdraw: 1500 * time.Millisecond}, []bool{true, false},
			"announce@0s announce-graceful@1s withdraw@2.5s"},
		{"recovery cancels the withdraw", ControllerConfig{GracefulWithdraw: 1500 * time.Millisecond}, []bool{true, false, true},
			"announce@0s announce-graceful@1s announce@2s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := &recorder{start: time.Now()}
				c := NewController(tc.cfg, r, slog.New(slog.DiscardHandler))
				for i, h := range tc.steps {
					if i > 0 {
						time.Sleep(time.Second)
					}
					c.SetHealthy(t.Context(), h)
				}
				time.Sleep(3 * time.Second)
				synctest.Wait()
				if got := r.got(); got != tc.want {
					t.Errorf("announcements %q, want %q", got, tc.want)
				}
			})
		})
	}
}

func TestControllerShutdown(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  ControllerConfig
		want string
	}{
		{"graceful, drain, withdraw", ControllerConfig{ShutdownGraceful: true, Drain: 3 * time.Second},
			"announce@0s announce-graceful@1s withdraw@4s"},
		{"withdraw, drain", ControllerConfig{Drain: 3 * time.Second}, "announce@0s withdraw@1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				r := &recorder{start: time.Now()}
				c := NewController(tc.cfg, r, slog.New(slog.DiscardHandler))
				c.SetHealthy(t.Context(), true)
				time.Sleep(time.Second)
				start := time.Now()
				c.Shutdown(t.Context())
				if d := time.Since(start); d != tc.cfg.Drain {
					t.Errorf("Shutdown took %s, want the drain period %s", d, tc.cfg.Drain)
				}
				c.SetHealthy(t.Context(), true) // a late health verdict must not announce again
				if got := r.got(); got != tc.want {
					t.Errorf("announcements %q, want %q", got, tc.want)
				}
				if announced, _, _ := c.Status(); announced {
					t.Errorf("still announced after Shutdown")
				}
			})
		})
	}
}
