package chaos

import (
	"context"
	"time"
)

// RunConfig is a whole run: the loss scenarios, then the outages.
type RunConfig struct {
	Config
	Duration time.Duration // load per loss scenario
	Losses   []int         // loss percentages, each both ways
	Outage   time.Duration // how long the upstream is gone; 0: no outage scenarios
	Command  string        // how the run was started, for the report
}

// Run builds the lab, runs every scenario and removes the lab again.
func Run(ctx context.Context, rc RunConfig) (rep *Report, err error) {
	l, err := Start(ctx, rc.Config)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := l.Close(); err == nil {
			err = cerr
		}
	}()
	rep = &Report{Date: time.Now(), Command: rc.Command, Machine: ThisMachine(), Versions: l.Versions()}
	defer func() { rep.EndLoad = LoadAverage() }()
	for _, pct := range rc.Losses {
		r, err := l.RunLoss(ctx, pct, rc.Duration)
		if err != nil {
			return rep, err
		}
		rep.Loss = append(rep.Loss, r)
	}
	if rc.Outage > 0 {
		// Before: long enough for the cached names to be refreshed at least once (TTL 4 s);
		// after: long enough to see recovery and a holddown of a few seconds.
		before, after := 5*time.Second, max(10*time.Second, rc.Outage/2)
		for _, kind := range []OutageKind{Blackhole, KillUpstream} {
			r, err := l.RunOutage(ctx, kind, before, rc.Outage, after)
			if err != nil {
				return rep, err
			}
			rep.Outages = append(rep.Outages, r)
		}
	}
	return rep, nil
}
