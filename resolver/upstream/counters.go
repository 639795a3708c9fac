package upstream

import "time"

// RTTBuckets are the upper bounds of the upstream RTT histogram.
var RTTBuckets = []time.Duration{
	500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	200 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second,
}

// Result is how one try of an upstream ended.
type Result int

const (
	ResultOK Result = iota
	ResultServfail
	ResultRefused
	ResultTimeout
	ResultError
	NumResults
)

func (r Result) String() string {
	return [...]string{"ok", "servfail", "refused", "timeout", "error"}[r]
}

// Counts are an upstream's counters, for metrics and ctl.
type Counts struct {
	Results [NumResults]uint64
	RTT     [13]uint64 // answers by RTT bucket (RTTBuckets, then above the last)
	RTTSum  time.Duration
}

// Counts returns a snapshot of u's counters.
func (u *Upstream) Counts() Counts {
	var c Counts
	for i := range u.results {
		c.Results[i] = u.results[i].Load()
	}
	for i := range u.rtt {
		c.RTT[i] = u.rtt[i].Load()
	}
	c.RTTSum = time.Duration(u.rttSum.Load())
	return c
}
