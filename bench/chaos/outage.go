package chaos

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fleetdns/fleetdns/bench"
	"github.com/miekg/dns"
)

// OutageKind is how the upstream goes away.
type OutageKind int

const (
	// Blackhole drops every UDP and TCP packet to and from the upstream (nftables), so queries
	// time out; restored by removing the rule.
	Blackhole OutageKind = iota
	// KillUpstream kills NSD with SIGKILL (its whole process tree), so queries get ICMP port
	// unreachable; restored by starting it again, and the restore moment is when it answers.
	KillUpstream
)

func (k OutageKind) String() string {
	if k == KillUpstream {
		return "upstream killed"
	}
	return "upstream blackholed"
}

// OutageResult is one outage scenario: load before, during and after the outage.
type OutageResult struct {
	Name                  string
	Kind                  OutageKind
	Before, Outage, After time.Duration // as planned
	Measured              time.Duration // fault to restore, as it happened
	During, AfterRestore  []SystemResult
	Recovery              []Recovery
	Counters              Counters // of the blackhole while it lasted; of the whole load for a kill
	Metrics               string
}

// Recovery is how one system came back after the upstream did.
type Recovery struct {
	Name string
	// FirstAnswer is from the restore to the first NOERROR answer to an uncached query
	// (whenever that query was sent); -1 if none came.
	FirstAnswer time.Duration
	// AllAnsweredFrom is from the restore to the sending of the last uncached query that still
	// failed (0: none failed after the restore); from then on every one was answered. -1 if
	// failures went on until the last second of the load.
	AllAnsweredFrom time.Duration
}

// RunOutage measures both systems for before, then with the upstream gone for outage, then for
// after once it is back.
func (l *Lab) RunOutage(ctx context.Context, kind OutageKind, before, outage, after time.Duration) (*OutageResult, error) {
	r := &OutageResult{Name: fmt.Sprintf("%s %s", kind, outage), Kind: kind, Before: before, Outage: outage, After: after}
	l.logf("%s: load for %s, outage after %s", r.Name, before+outage+after, before)
	if err := l.warm(ctx); err != nil {
		return nil, err
	}
	m0, err := l.fleetdnsMetrics(ctx)
	if err != nil {
		return nil, err
	}
	ss := l.loads(before + outage + after)
	wait, done := startStreams(ctx, ss)
	var faultAt, restoreAt time.Time
	step := func() error {
		if err := wait(before); err != nil {
			return err
		}
		faultAt = time.Now()
		if kind == KillUpstream {
			l.nsd.Kill()
		} else if err := l.SetFault(ctx, Fault{Blackhole: true}); err != nil {
			return err
		}
		if err := wait(outage); err != nil {
			return err
		}
		if kind == KillUpstream {
			if err := l.startNSD(ctx); err != nil {
				return err
			}
		} else {
			// The counters of the blackhole itself: the restore resets them.
			var err error
			if r.Counters, err = l.Counters(ctx); err != nil {
				return err
			}
			if err := l.SetFault(ctx, Fault{}); err != nil {
				return err
			}
		}
		restoreAt = time.Now()
		return nil
	}
	stepErr := step()
	if err := <-done; err != nil || stepErr != nil {
		return nil, fmt.Errorf("%s: %w", r.Name, errors.Join(stepErr, err))
	}
	r.Measured = restoreAt.Sub(faultAt)
	if kind == KillUpstream {
		if r.Counters, err = l.Counters(ctx); err != nil {
			return nil, err
		}
	}
	m1, err := l.fleetdnsMetrics(ctx)
	if err != nil {
		return nil, err
	}
	r.Metrics = metricsSummary(m0, m1)
	rel := func(s *stream, t time.Time) time.Duration { return t.Sub(s.res.Start) }
	for _, s := range ss {
		during := statsOf(s.res.Fates, rel(s, faultAt), rel(s, restoreAt))
		afterSt := statsOf(s.res.Fates, rel(s, restoreAt), 0)
		r.During = addStats(r.During, s, during)
		r.AfterRestore = addStats(r.AfterRestore, s, afterSt)
		if !s.cached {
			r.Recovery = append(r.Recovery, recovery(s, rel(s, restoreAt), before+outage+after))
		}
	}
	return r, l.checkAlive()
}

func addStats(out []SystemResult, s *stream, st Stats) []SystemResult {
	if len(out) == 0 || out[len(out)-1].Name != s.sys.name {
		out = append(out, SystemResult{Name: s.sys.name})
	}
	if s.cached {
		out[len(out)-1].Cached = st
	} else {
		out[len(out)-1].Uncached = st
	}
	return out
}

// recovery finds, in an uncached load, when answers came back after restore (relative times).
func recovery(s *stream, restore, end time.Duration) Recovery {
	rc := Recovery{Name: s.sys.name, FirstAnswer: -1}
	lastFail := time.Duration(-1)
	for _, f := range s.res.Fates {
		ok := f.Latency != bench.Lost && int(f.Rcode) == dns.RcodeSuccess
		if ok && f.At+f.Latency >= restore && (rc.FirstAnswer < 0 || f.At+f.Latency-restore < rc.FirstAnswer) {
			rc.FirstAnswer = f.At + f.Latency - restore
		}
		if !ok && f.At >= restore && f.At > lastFail {
			lastFail = f.At
		}
	}
	switch {
	case lastFail < 0:
		rc.AllAnsweredFrom = 0
	case lastFail > end-time.Second:
		rc.AllAnsweredFrom = -1
	default:
		rc.AllAnsweredFrom = lastFail - restore
	}
	return rc
}

func since(d time.Duration) string {
	switch {
	case d < 0:
		return "not recovered"
	case d == 0:
		return "at once (none failed)"
	}
	return ms(d)
}

// OutageTable is the Markdown of the outage scenarios: the load during the outage and after
// the restore, then how each system recovered.
func OutageTable(rs []*OutageResult) string {
	var b strings.Builder
	b.WriteString(statsHeader)
	for _, r := range rs {
		statsRows(&b, r.Name+": during", r.During)
		statsRows(&b, r.Name+": after restore", r.AfterRestore)
	}
	b.WriteString("\n| scenario | system | cached answered during (stale) | uncached during: SERVFAIL after p50 / p99 | first uncached answer after restore | every uncached query answered from |\n")
	b.WriteString("| --- | --- | ---: | ---: | ---: | ---: |\n")
	for _, r := range rs {
		for i, rc := range r.Recovery {
			d := r.During[i]
			sf := "no SERVFAIL"
			if d.Uncached.ServFail > 0 {
				sf = fmt.Sprintf("%d: %s / %s", d.Uncached.ServFail, ms(d.Uncached.ServfailQuantile(0.5)), ms(d.Uncached.ServfailQuantile(0.99)))
			}
			fmt.Fprintf(&b, "| %s | %s | %d of %d | %s | %s | %s |\n", r.Name, rc.Name, d.Cached.NoError, d.Cached.Sent,
				sf, since(rc.FirstAnswer), since(rc.AllAnsweredFrom))
		}
	}
	b.WriteString("\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "- %s: %s before, outage measured %s (fault to upstream answering again), %s after; %s. %s.\n",
			r.Name, r.Before, r.Measured.Round(time.Millisecond), r.After, r.Counters, r.Metrics)
	}
	return b.String()
}
