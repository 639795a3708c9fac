package chaos

import (
	"math"
	"slices"
	"time"

	"github.com/fleetdns/fleetdns/bench"
	"github.com/miekg/dns"
)

// Stats are the fates of one load's queries (or of those sent in one phase of it).
//
// A failed lookup is one a program would see fail: SERVFAIL, another error code (REFUSED,
// FORMERR...) or no answer within the client timeout. NXDOMAIN is an answer (the lab's loads
// never ask for a name that does not exist, so none is expected).
type Stats struct {
	Sent, NoError, NXDomain, ServFail, Other, Lost int
	// times to an answer of any code, sorted; a lost query is math.MaxInt64, so percentiles
	// over all queries sent put it beyond every answer rather than leave it out
	latencies []time.Duration
	servfail  []time.Duration // sorted times to a SERVFAIL
}

// noAnswer stands for a lost query in the sorted latencies.
const noAnswer = time.Duration(math.MaxInt64)

// statsOf summarizes the queries sent in [from, to) of a load (to <= 0: until the end).
func statsOf(fates []bench.QueryFate, from, to time.Duration) Stats {
	var s Stats
	for _, f := range fates {
		if f.At < from || (to > 0 && f.At >= to) {
			continue
		}
		s.Sent++
		if f.Latency == bench.Lost {
			s.Lost++
			s.latencies = append(s.latencies, noAnswer)
			continue
		}
		s.latencies = append(s.latencies, f.Latency)
		switch int(f.Rcode) {
		case dns.RcodeSuccess:
			s.NoError++
		case dns.RcodeNameError:
			s.NXDomain++
		case dns.RcodeServerFailure:
			s.ServFail++
			s.servfail = append(s.servfail, f.Latency)
		default:
			s.Other++
		}
	}
	slices.Sort(s.latencies)
	slices.Sort(s.servfail)
	return s
}

// Answered counts queries that got an answer of any code.
func (s Stats) Answered() int { return s.Sent - s.Lost }

// Failed counts failed lookups: SERVFAIL, other error codes, no answer.
func (s Stats) Failed() int { return s.ServFail + s.Other + s.Lost }

// FailedPercent is Failed as a percentage of Sent.
func (s Stats) FailedPercent() float64 {
	if s.Sent == 0 {
		return 0
	}
	return 100 * float64(s.Failed()) / float64(s.Sent)
}

// Quantile is the time by which a fraction p of the queries sent had an answer (nearest rank),
// noAnswer if that fraction was never reached.
func (s Stats) Quantile(p float64) time.Duration { return nearestRank(s.latencies, p) }

// Max is the slowest answer's time, or noAnswer if a query was lost.
func (s Stats) Max() time.Duration { return nearestRank(s.latencies, 1) }

// ServfailQuantile is Quantile over the SERVFAIL answers alone: how fast a failure comes.
func (s Stats) ServfailQuantile(p float64) time.Duration { return nearestRank(s.servfail, p) }

// QuantileUpperBound is the upper end of a distribution-free 95% confidence interval of the
// p-quantile that these queries sample: the order statistic of rank np + 1.96·sqrt(np(1-p))
// (normal approximation of the binomial count of queries below the true quantile). A short run
// has few queries beyond p99 (2 400 queries: 24), so its p99 moves by several ranks between runs
// of the same system; a comparison against this bound fails only on a difference the sample
// can show.
func (s Stats) QuantileUpperBound(p float64) time.Duration {
	n := float64(len(s.latencies))
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(n*p + 1.96*math.Sqrt(n*p*(1-p))))
	return s.latencies[min(max(rank, 1), len(s.latencies))-1]
}

func nearestRank(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}
