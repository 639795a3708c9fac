package fabric

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// HealthConfig is how often and how strictly the node checks itself.
type HealthConfig struct {
	Interval time.Duration // between checks
	Timeout  time.Duration // for one check
	Rise     int           // consecutive successes that make the node healthy
	Fall     int           // consecutive failures that make it unhealthy
}

// Validate reports a config NewHealthChecker would reject.
func (c HealthConfig) Validate() error {
	switch {
	case c.Interval <= 0 || c.Timeout <= 0:
		return errors.New("health: interval and timeout must be positive")
	case c.Timeout > c.Interval:
		return errors.New("health: timeout must not be longer than interval")
	case c.Rise < 1 || c.Fall < 1:
		return errors.New("health: rise and fall must be at least 1")
	}
	return nil
}

// Check is one health probe: nil means the node answers correctly.
type Check func(ctx context.Context) error

// HealthStatus is a snapshot of the checker.
type HealthStatus struct {
	Healthy     bool
	Checks      uint64 // checks run
	Failures    uint64 // of which failed
	Transitions uint64 // healthy <-> unhealthy
	LastLatency time.Duration
	LastError   string
}

// HealthChecker runs Check every interval with hysteresis: the node starts unhealthy, becomes
// healthy after Rise consecutive successes and unhealthy again after Fall consecutive failures,
// so that one lost packet does not flap the route.
type HealthChecker struct {
	cfg    HealthConfig
	check  Check
	log    *slog.Logger
	change func(healthy bool) // called on every transition, from Run's goroutine

	mu     sync.Mutex
	status HealthStatus
	streak int // consecutive results that disagree with the current state
}

// NewHealthChecker builds a checker; change is called on each transition.
func NewHealthChecker(cfg HealthConfig, check Check, change func(healthy bool), log *slog.Logger) (*HealthChecker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if check == nil || change == nil || log == nil {
		return nil, errors.New("health: check, change and logger are required")
	}
	return &HealthChecker{cfg: cfg, check: check, change: change, log: log}, nil
}

// Status returns a snapshot.
func (h *HealthChecker) Status() HealthStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.status
}

// Run checks until ctx ends. The first check runs at once.
func (h *HealthChecker) Run(ctx context.Context) error {
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	for {
		h.once(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (h *HealthChecker) once(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	start := time.Now()
	err := h.check(cctx)
	cancel()
	if ctx.Err() != nil {
		return // shutting down: not the node's fault
	}
	h.mu.Lock()
	st := &h.status
	st.Checks++
	st.LastLatency = time.Since(start)
	st.LastError = ""
	ok := err == nil
	if !ok {
		st.Failures++
		st.LastError = err.Error()
	}
	flip := false
	if ok == st.Healthy {
		h.streak = 0
	} else {
		h.streak++
		need := h.cfg.Rise
		if st.Healthy {
			need = h.cfg.Fall
		}
		if h.streak >= need {
			st.Healthy, h.streak, flip = ok, 0, true
			st.Transitions++
		}
	}
	healthy := st.Healthy
	h.mu.Unlock()
	if flip {
		h.log.Info("health changed", "healthy", healthy, "last_error", errString(err))
		h.change(healthy)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
