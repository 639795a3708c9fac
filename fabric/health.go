package fabric

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	Healthy bool
	Checks  uint64 // checks run
	// Towards a change of state: Streak consecutive checks disagree with Healthy, Need of them
	// flip it (rise while unhealthy, fall while healthy). LastCheck is when the last check
	// started, NextCheck when the next one will: together they say why a node is not (yet)
	// announced and when that can change.
	Streak, Need int
	LastCheck    time.Time
	NextCheck    time.Time
	Failures     uint64 // of which failed
	Transitions  uint64 // healthy <-> unhealthy
	LastLatency  time.Duration
	LastError    string

	// Of node checks (NewNodeHealthChecker): the last round's evidence and the reason of the
	// verdict. SharedFault is true while a shared upstream failure keeps the node announced.
	Reason      string
	SharedFault bool
	Local       string // "ok" or the local probe's error
	Upstream    string // "ok" or the upstream probe's error
	Siblings    []ProbeResult
}

// ProbeResult is one sibling's answer in the last round.
type ProbeResult struct {
	Name   string `json:"name"`
	Result string `json:"result"` // "ok" or the error
}

// HealthChecker runs Check every interval with hysteresis: the node starts unhealthy, becomes
// healthy after Rise consecutive successes and unhealthy again after Fall consecutive failures,
// so that one lost packet does not flap the route.
type HealthChecker struct {
	cfg    HealthConfig
	check  Check
	probes *Probes // set by NewNodeHealthChecker: check is unused
	log    *slog.Logger
	change func(healthy bool) // called on every transition, from Run's goroutine

	mu       sync.Mutex
	status   HealthStatus
	verdicts hysteresis // starts down: a node is announced only after rise passing rounds
}

// NewHealthChecker builds a checker; change is called on each transition.
func NewHealthChecker(cfg HealthConfig, check Check, change func(healthy bool), log *slog.Logger) (*HealthChecker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if check == nil || change == nil || log == nil {
		return nil, errors.New("health: check, change and logger are required")
	}
	return &HealthChecker{cfg: cfg, check: check, change: change, log: log,
		verdicts: hysteresis{rise: cfg.Rise, fall: cfg.Fall}}, nil
}

// NewNodeHealthChecker builds a checker whose every round runs the probes and decides with
// Decide: rise and fall apply to that verdict, so that a node withdraws for faults of its own
// and stays announced through a fault every node shares.
func NewNodeHealthChecker(cfg HealthConfig, probes Probes, change func(healthy bool), log *slog.Logger) (*HealthChecker, error) {
	if probes.Local == nil || probes.Upstream == nil {
		return nil, errors.New("health: local and upstream probes are required")
	}
	h, err := NewHealthChecker(cfg, func(context.Context) error { return nil }, change, log)
	if err != nil {
		return nil, err
	}
	h.probes = &probes
	return h, nil
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
	var v Verdict
	var round Round
	var err error
	if h.probes != nil {
		round = h.probes.run(cctx)
		v = Decide(round, h.probes.names())
		if !v.OK {
			err = errors.New(v.Reason)
		}
	} else {
		err = h.check(cctx)
		v = Verdict{OK: err == nil, Reason: "ok"}
		if err != nil {
			v.Reason = err.Error()
		}
	}
	cancel()
	if ctx.Err() != nil {
		return // shutting down: not the node's fault
	}
	h.mu.Lock()
	st := &h.status
	st.Checks++
	st.LastCheck, st.NextCheck = start, start.Add(h.cfg.Interval)
	st.LastLatency = time.Since(start)
	st.LastError = ""
	ok := v.OK
	if !ok {
		st.Failures++
		st.LastError = err.Error()
	}
	wasShared := st.SharedFault
	prevReason := st.Reason
	st.Reason = v.Reason
	if h.probes != nil {
		st.Local, st.Upstream = result(round.Local), result(round.Upstream)
		st.Siblings = make([]ProbeResult, len(round.Siblings))
		for i, e := range round.Siblings {
			st.Siblings[i] = ProbeResult{Name: h.probes.Siblings[i].Name, Result: result(e)}
		}
	}
	var flip bool
	st.Healthy, flip = h.verdicts.observe(ok)
	if flip {
		st.Transitions++
	}
	st.Streak, st.Need = h.verdicts.streak, h.verdicts.need()
	healthy := st.Healthy
	st.SharedFault = healthy && v.Shared
	evidence := []any{"reason", v.Reason}
	if h.probes != nil {
		evidence = append(evidence, "local", st.Local, "upstream", st.Upstream, "siblings", st.Siblings)
	}
	toward := []any{"toward_change", fmt.Sprintf("%d of %d", st.Streak, st.Need), "next_check", st.NextCheck.Format(time.TimeOnly + ".000")}
	shared := st.SharedFault
	h.mu.Unlock()
	if flip {
		h.log.Info("health changed", append([]any{"healthy", healthy, "last_error", errString(err)}, evidence...)...)
		h.change(healthy)
	}
	switch {
	case shared && !wasShared:
		h.log.Warn("shared fault: staying announced", evidence...)
	case wasShared && !shared:
		h.log.Info("shared fault over", evidence...)
	case !flip && (prevReason == "" || kind(v.Reason) != kind(prevReason)):
		// The first round too: a node that is not announcing says why from its first check,
		// and when the next one runs.
		h.log.Info("health evidence changed", append(append([]any{"healthy", healthy}, evidence...), toward...)...)
	}
}

// kind is a reason without its error text (which can differ each round: source ports), so
// that a change of evidence is logged once, not every round.
func kind(reason string) string {
	k, _, _ := strings.Cut(reason, ":")
	return k
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
