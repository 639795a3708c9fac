package chaos

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"time"
)

// RunConfig is a whole run: the loss scenarios, then the outages.
type RunConfig struct {
	Config
	Duration time.Duration // load per loss scenario
	Losses   []int         // loss percentages, each both ways
	Outage   time.Duration // how long the upstream is gone; 0: no outage scenarios
	Command  string        // how the run was started, for the report
	// Fabric runs the fabric scenarios too (each on its own fresh fabric), with the fault
	// lasting FabricOutage; FabricOnly skips the loss lab altogether.
	Fabric       bool
	FabricOnly   bool
	FabricOutage time.Duration
	// FabricScenarios are the fabric scenarios to run; nil: all (FabricScenarios()).
	FabricScenarios []FabricScenario
	// FabricAnycastOnly runs each fabric scenario a second time with stubs that forward to the
	// anycast address alone.
	FabricAnycastOnly bool
}

// Run builds the lab, runs every scenario and removes the lab again.
func Run(ctx context.Context, rc RunConfig) (rep *Report, err error) {
	if rc.FabricOnly {
		rep = &Report{Date: time.Now(), Command: rc.Command, Machine: ThisMachine(), Versions: map[string]string{}}
		defer func() { rep.EndLoad = LoadAverage() }()
		return rep, runFabric(ctx, rc, rep)
	}
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
	if rc.Fabric {
		// The loss lab's namespaces go first: the fabric runs alone.
		if err := l.Close(); err != nil {
			return rep, err
		}
		if err := runFabric(ctx, rc, rep); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// runFabric runs each fabric scenario on a fresh fabric (so a killed node or a cut recursor
// never leaks into the next one): 5 s of load before the fault, FabricOutage of it, 10 s after.
func runFabric(ctx context.Context, rc RunConfig, rep *Report) error {
	outage := rc.FabricOutage
	if outage <= 0 {
		outage = 10 * time.Second
	}
	scs := rc.FabricScenarios
	if scs == nil {
		scs = AllFabricScenarios()
	}
	type run struct {
		sc          FabricScenario
		anycastOnly bool
	}
	var runs []run
	for _, sc := range scs {
		runs = append(runs, run{sc: sc})
	}
	if rc.FabricAnycastOnly {
		for _, sc := range scs {
			runs = append(runs, run{sc: sc, anycastOnly: true})
		}
	}
	for i, ru := range runs {
		sc := ru.sc
		dir := filepath.Join(rc.Dir, fmt.Sprintf("fabric%d", i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		f, err := StartFabric(ctx, FabricConfig{Dir: dir, FleetdnsBinary: rc.FleetdnsBinary, Log: rc.Log,
			Datacenters: sc.Datacenters(), AnycastOnly: ru.anycastOnly})
		if err != nil {
			return err
		}
		r, err := f.RunFabricScenario(ctx, sc, 5*time.Second, outage, 10*time.Second)
		maps.Copy(rep.Versions, f.Versions())
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if r != nil {
			rep.Fabric = append(rep.Fabric, r)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
