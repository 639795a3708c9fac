package chaos

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Report is a whole run of the lab.
type Report struct {
	Date     time.Time
	Command  string
	Machine  Machine
	Versions map[string]string
	Loss     []*Result
	Outages  []*OutageResult
	Fabric   []*FabricResult
	EndLoad  string // load averages at the end
}

// Machine is what the lab ran on.
type Machine struct {
	CPUs   int
	Model  string
	Kernel string
	Load   string // 1-, 5- and 15-minute load averages when asked: other work on the machine shows here
}

// ThisMachine describes the machine the lab runs on: nproc, the CPU model from /proc/cpuinfo,
// the kernel release.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), Model: "unknown", Kernel: "unknown"}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.Model = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	m.Load = LoadAverage()
	return m
}

// LoadAverage is the first three fields of /proc/loadavg.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func (m Machine) String() string {
	return fmt.Sprintf("%d CPUs (nproc), %s, Linux %s; load average %s at the start", m.CPUs, m.Model, m.Kernel, m.Load)
}

// ms prints a latency in milliseconds, "lost" for a query that got no answer.
func ms(d time.Duration) string {
	switch {
	case d == noAnswer:
		return "lost"
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

const statsHeader = "| scenario | names | system | sent | answered | SERVFAIL | lost | failed % | p50 | p99 | max |\n" +
	"| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n"

func statsRows(b *strings.Builder, scenario string, systems []SystemResult) {
	for _, kind := range []string{"cached", "uncached"} {
		for _, s := range systems {
			st := s.Cached
			if kind == "uncached" {
				st = s.Uncached
			}
			fmt.Fprintf(b, "| %s | %s | %s | %d | %d | %d | %d | %.3f | %s | %s | %s |\n", scenario, kind, s.Name,
				st.Sent, st.Answered(), st.ServFail, st.Lost, st.FailedPercent(),
				ms(st.Quantile(0.5)), ms(st.Quantile(0.99)), ms(st.Max()))
		}
	}
}

// LossTable is the Markdown table of the loss scenarios, with nftables' and fleetdns's counters
// below it.
func LossTable(rs []*Result) string {
	var b strings.Builder
	b.WriteString(statsHeader)
	for _, r := range rs {
		statsRows(&b, r.Name, r.Systems)
	}
	b.WriteString("\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "- %s, %s of load: %s. %s.\n", r.Name, r.Duration, r.Counters, r.Metrics)
	}
	return b.String()
}

// runAndMachine writes when and how the report was made and on what machine.
func (r *Report) runAndMachine(b *strings.Builder) {
	fmt.Fprintf(b, "Run of %s with `%s`.\n\n", r.Date.UTC().Format("2006-01-02 15:04 UTC"), r.Command)
	fmt.Fprintf(b, "- Machine: %s, %s at the end (other work on a shared machine delays everything: a load "+
		"average near the CPU count means the numbers are noisy).\n", r.Machine, r.EndLoad)
}

// Markdown is the whole report.
func (r *Report) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Chaos lab: fleetdns and unbound under network faults\n\n")
	r.runAndMachine(&b)
	fmt.Fprintf(&b, "- Systems: fleetdns %s (client mode, built from the tree), unbound %s; both forward \".\" to one NSD "+
		"across a veth pair, with prefetch and serve-stale on (stale answers after 1.8 s without a fresh one: "+
		"fleetdns stale_client_timeout 1800ms, unbound serve-expired-client-timeout 1800), and run at the same time "+
		"on CPU 0, so they see the same faults at the same moments.\n", r.Versions["fleetdns"], r.Versions["unbound"])
	fmt.Fprintf(&b, "- Faults: %s.\n", Mechanism)
	fmt.Fprintf(&b, "- Load per system: cached = %d names with TTL %s cycled at %d queries/s (warmed first); "+
		"uncached = a new name (wildcard) per query at %d queries/s; open loop; a query unanswered in %s is lost.\n",
		CachedNames, CachedTTL, CachedRate, UncachedRate, ClientTimeout)
	b.WriteString("- failed = SERVFAIL, other error codes, or lost. Latencies are over all queries sent, a lost query " +
		"counting as slower than any answer (\"lost\" where a percentile falls on one); answers of every code count.\n\n")
	if len(r.Loss) > 0 {
		b.WriteString("## Packet loss (both ways)\n\n")
		b.WriteString(LossTable(r.Loss))
		b.WriteString("\n")
	}
	if len(r.Outages) > 0 {
		b.WriteString("## Upstream outages\n\n")
		b.WriteString(OutageTable(r.Outages))
	}
	return b.String()
}

// FabricMarkdown is the report of the fabric scenarios alone.
func (r *Report) FabricMarkdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Chaos lab, fabric scenarios: stubs in front of two anycast nodes behind BIRD 2\n\n")
	r.runAndMachine(&b)
	fmt.Fprintf(&b, "- Topology: bench/lab/lab.sh with prefix %s- (BIRD 2 router, eBGP to two fleetdns server nodes "+
		"announcing %s/32 with ECMP, hold time %s both sides, NSD as dc1's recursor; dc2's recursor and the nodes' "+
		"failover only for the recursor cut). A fresh fabric per scenario.\n", FabricPrefix, anycastAddr.Addr(), FabricHold)
	fmt.Fprintf(&b, "- Stubs in %s: fleetdns %s (client mode, built from the tree) and unbound %s, both forwarding \".\" to %s "+
		"in that order (the anycast address, then each node's unicast address), prefetch and serve-stale on "+
		"(stale answers after 1.8 s), on CPU 0; scenarios marked \"stubs: anycast only\" forward to %s alone.\n",
		FabricClient, r.Versions["fleetdns"], r.Versions["unbound"], upstreamList(), anycastAddr)
	fmt.Fprintf(&b, "- Load per stub: cached = %d names with TTL %s cycled at %d queries/s (warmed first); "+
		"uncached = a new name (wildcard) per query at %d queries/s; open loop; a query unanswered in %s is lost. "+
		"failed = SERVFAIL, other error codes, or lost.\n", CachedNames, CachedTTL, CachedRate, UncachedRate, ClientTimeout)
	b.WriteString("- \"during\": queries sent from the fault to its end (SIGCONT, blackhole removed, both stubs answering " +
		"again) or, for the kill, to the end of the load. Event times are from the fault; the router's paths are polled " +
		"with `birdc show route` every 50 ms, the nodes' failover state with `fleetdns ctl failover` every 100 ms.\n\n")
	b.WriteString(FabricTable(r.Fabric))
	return b.String()
}

func upstreamList() string {
	var s []string
	for _, u := range StubUpstreams {
		s = append(s, u.String())
	}
	return strings.Join(s, ", ")
}
