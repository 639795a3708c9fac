package chaos

import (
	"strings"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench"
	"github.com/miekg/dns"
)

func TestStatsOf(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	fates := []bench.QueryFate{
		{At: ms(0), Latency: ms(1), Rcode: dns.RcodeSuccess},
		{At: ms(10), Latency: ms(3), Rcode: dns.RcodeSuccess},
		{At: ms(20), Latency: ms(2), Rcode: dns.RcodeServerFailure},
		{At: ms(30), Latency: bench.Lost},
		{At: ms(40), Latency: ms(4), Rcode: dns.RcodeRefused},
		{At: ms(50), Latency: ms(5), Rcode: dns.RcodeNameError},
	}
	s := statsOf(fates, 0, 0)
	if s.Sent != 6 || s.NoError != 2 || s.ServFail != 1 || s.Lost != 1 || s.Other != 1 || s.NXDomain != 1 {
		t.Errorf("statsOf = %+v, want 6 sent: 2 NOERROR, 1 SERVFAIL, 1 lost, 1 other, 1 NXDOMAIN", s)
	}
	if s.Failed() != 3 || s.Answered() != 5 {
		t.Errorf("Failed() = %d, Answered() = %d, want 3, 5", s.Failed(), s.Answered())
	}
	// Sorted: 1 2 3 4 5 lost.
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, ms(3)}, {0.8, ms(5)}, {0.99, noAnswer}, {0.01, ms(1)}} {
		if got := s.Quantile(tc.p); got != tc.want {
			t.Errorf("Quantile(%v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := s.ServfailQuantile(0.5); got != ms(2) {
		t.Errorf("ServfailQuantile(0.5) = %v, want 2ms", got)
	}
	if w := statsOf(fates, ms(10), ms(30)); w.Sent != 2 || w.NoError != 1 || w.ServFail != 1 {
		t.Errorf("statsOf [10ms, 30ms) = %+v, want the 2 queries sent then", w)
	}
}

func TestQuantileUpperBound(t *testing.T) {
	var fates []bench.QueryFate
	for i := range 2400 {
		fates = append(fates, bench.QueryFate{Latency: time.Duration(i+1) * time.Millisecond})
	}
	s := statsOf(fates, 0, 0)
	// np = 2376, sqrt(np(1-p)) = 4.87: rank ceil(2376 + 9.55) = 2386.
	if got, want := s.QuantileUpperBound(0.99), 2386*time.Millisecond; got != want {
		t.Errorf("QuantileUpperBound(0.99) = %v, want %v", got, want)
	}
	if got := s.Quantile(0.99); got != 2376*time.Millisecond {
		t.Errorf("Quantile(0.99) = %v, want 2376ms", got)
	}
}

func TestRuleset(t *testing.T) {
	for _, tc := range []struct {
		f         Fault
		want, not string
	}{
		{Fault{}, `iifname "x0" meta l4proto udp counter name "seen"`, " drop\n"},
		{Fault{LossPercent: 30}, `iifname "x0" meta l4proto udp numgen random mod 100 < 30 counter name "dropped" drop`, "tcp"},
		{Fault{Blackhole: true}, `iifname "x0" meta l4proto { udp, tcp } counter name "dropped" drop`, "numgen"},
	} {
		got := ruleset(tc.f, "x0")
		if !strings.Contains(got, tc.want) || strings.Contains(got, tc.not) {
			t.Errorf("ruleset(%s) =\n%s\nwant it to have %q and no %q", tc.f, got, tc.want, tc.not)
		}
		if !strings.Contains(got, "hook input") || strings.Contains(got, "hook output") {
			t.Errorf("ruleset(%s) =\n%s\nwant an input hook only (a drop in output fails the sender with EPERM)", tc.f, got)
		}
	}
}
