// Package bench measures fleetdns against the servers a user would pick instead (unbound,
// dnsmasq, pdns-recursor, dnsdist, knot-resolver): it starts an NSD upstream and each system
// pinned to one core, drives workloads from its own load generator on the other core, reads each
// system's CPU time from /proc, and reports medians and ratios against unbound as Markdown and
// PNG charts.
package bench

import (
	"math"
	"slices"
	"time"
)

// Sample is one run of one workload against one system.
type Sample struct {
	System   string
	Workload string
	Round    int

	Sent     int // queries sent
	Answered int // responses received
	Lost     int // queries without a response within the loss timeout
	Duration time.Duration
	CPU      time.Duration // the system's CPU time (user+system, all threads and children) during the run
	RSS      int64         // the system's resident memory at the end of the run, bytes

	// Latencies of the answered queries, sorted ascending; exact (every answer), not sampled.
	Latencies []time.Duration
}

// QPS is answered queries per second of wall time.
func (s *Sample) QPS() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Answered) / s.Duration.Seconds()
}

// PerCPUSecond is answered queries per second of the system's CPU time: the efficiency that
// separates servers even where the load generator, not the server, is the limit.
func (s *Sample) PerCPUSecond() float64 {
	if s.CPU <= 0 {
		return 0
	}
	return float64(s.Answered) / s.CPU.Seconds()
}

// Percentile returns the latency below which the fraction p (0..1) of answers fall, by the
// nearest-rank method on the exact sorted latencies.
func (s *Sample) Percentile(p float64) time.Duration {
	n := len(s.Latencies)
	if n == 0 {
		return 0
	}
	x := p * float64(n)
	rank := int(math.Ceil(x-x*1e-12)) - 1 // the tolerance absorbs p*n's rounding error at any n
	return s.Latencies[min(max(rank, 0), n-1)]
}

// Workload describes one kind of load.
type Workload struct {
	Name        string // short id: hits, mix, misses, latency
	Description string
	Rate        int // queries per second for an open loop; 0 means closed loop (as fast as answered)
}

// Report is one harness run: every sample of every system and workload.
type Report struct {
	Date      time.Time
	Machine   string // CPU model and cores, kernel
	Command   string // the exact command that produced it
	Baseline  string // the system ratios are taken against ("unbound")
	Systems   []string
	Versions  map[string]string // system -> version string
	Workloads []Workload
	Samples   []Sample
	Resources []Resource
	Notes     []string // systems skipped and why, and similar
}

// Resource is one system's memory and idle behaviour, measured on a fresh start.
type Resource struct {
	System      string
	IdleRSS     int64   // resident bytes after start-up, before any query
	IdleWakeups float64 // context switches per second over an idle period, all threads
	Answers     int     // answers filled into the cache for the memory measurement (0: not run)
	FilledRSS   int64   // resident bytes once they are in
}

// BytesPerAnswer is the resident memory per cached answer: the whole resident size after the
// fill, divided by the answers. Not the growth: some systems (dnsmasq) allocate their whole
// cache at start-up, so their growth is zero; with a million answers the start-up size of the
// others is noise.
func (r Resource) BytesPerAnswer() float64 {
	if r.Answers == 0 {
		return 0
	}
	return float64(r.FilledRSS) / float64(r.Answers)
}

// Samples of one system and workload, in round order.
func (r *Report) Select(system, workload string) []*Sample {
	var out []*Sample
	for i := range r.Samples {
		s := &r.Samples[i]
		if s.System == system && s.Workload == workload {
			out = append(out, s)
		}
	}
	return out
}

// Median of f over samples; 0 for none.
func Median(samples []*Sample, f func(*Sample) float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	v := make([]float64, len(samples))
	for i, s := range samples {
		v[i] = f(s)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
