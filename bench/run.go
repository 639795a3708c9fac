package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdns/fleetdns/bench/nsd"
)

// Config is one harness run.
type Config struct {
	Systems        []string      // names of Peers to run; empty: every one installed
	Rounds         int           // each system runs every workload this often, systems alternating
	Duration       time.Duration // of each measured run
	Names          int           // names in the upstream zone (the mix draws from all of them)
	HitNames       int           // names the hits and latency workloads cycle over
	Memory         int           // answers to fill for the memory measurement; 0 skips it
	Dnsperf        bool          // also measure hits with dnsperf, as a cross-check of the generator
	ServerCPU      int           // the systems under test run here
	LoadCPU        int           // the load generator and the upstream run here
	Dir            string        // work directory
	FleetdnsBinary string
	Command        string // recorded in the report
	Log            io.Writer
}

// Run measures every system of cfg and returns the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Log == nil {
		cfg.Log = io.Discard
	}
	peers, notes := choosePeers(cfg.Systems)
	if len(peers) == 0 {
		return nil, fmt.Errorf("no system to measure: %s", strings.Join(notes, "; "))
	}
	zone := filepath.Join(cfg.Dir, "bench.zone")
	if err := WriteZone(zone, cfg.Names); err != nil {
		return nil, err
	}
	nsdDir := filepath.Join(cfg.Dir, "nsd")
	if err := os.MkdirAll(nsdDir, 0o755); err != nil {
		return nil, err
	}
	up, err := nsd.StartOn(cfg.LoadCPU, nsdDir, netip.MustParseAddr("127.0.0.1"), nsd.Zone{Name: ZoneName, File: zone})
	if err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	defer up.Stop()

	r := &Report{
		Date: time.Now().UTC(), Machine: machine(), Command: cfg.Command, Baseline: "unbound",
		Versions:  map[string]string{},
		Workloads: []Workload{WorkloadHits, WorkloadLatency, WorkloadMix, WorkloadMisses},
		Notes:     notes,
	}
	if cfg.Dnsperf {
		if _, err := exec.LookPath("dnsperf"); err == nil {
			r.Workloads = append(r.Workloads, WorkloadDnsperf)
		} else {
			r.Notes = append(r.Notes, "dnsperf is not installed: no cross-check")
		}
	}
	for _, p := range peers {
		r.Systems = append(r.Systems, p.Name)
		r.Versions[p.Name] = p.Version()
		if p.Name == "fleetdns" {
			r.Versions[p.Name] = FleetdnsVersion(cfg.FleetdnsBinary)
		}
	}
	hits := HitQueries(cfg.HitNames)
	mix := MixQueries(1, 200000, cfg.Names)
	for round := 1; round <= cfg.Rounds; round++ {
		for _, p := range peers {
			samples, err := runSystem(ctx, cfg, p, round, up.Addr, hits, mix)
			r.Samples = append(r.Samples, samples...)
			if err != nil {
				r.Notes = append(r.Notes, fmt.Sprintf("%s, round %d: %v", p.Name, round, err))
				fmt.Fprintf(cfg.Log, "%s round %d: %v\n", p.Name, round, err)
			}
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
		}
	}
	for _, p := range peers {
		res, err := measureResources(ctx, cfg, p, up.Addr)
		if err != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("%s, memory: %v", p.Name, err))
		}
		r.Resources = append(r.Resources, res)
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
	}
	return r, nil
}

// WorkloadDnsperf is the hits workload driven by dnsperf instead of our generator.
var WorkloadDnsperf = Workload{Name: "hits-dnsperf", Description: "cache hits over 1 000 names, driven by dnsperf -c 10 -q 200 (cross-check)"}

func choosePeers(names []string) ([]Peer, []string) {
	var peers []Peer
	var notes []string
	all := Peers()
	if len(names) == 0 {
		for _, p := range all {
			names = append(names, p.Name)
		}
	}
	for _, n := range names {
		p, ok := PeerByName(n)
		if !ok {
			notes = append(notes, fmt.Sprintf("%s: no such system", n))
			continue
		}
		if err := p.Available(); err != nil {
			notes = append(notes, fmt.Sprintf("%s: not run: %v", n, err))
			continue
		}
		peers = append(peers, p)
	}
	return peers, notes
}

// runSystem starts p with a cold cache and runs every workload on it once.
func runSystem(ctx context.Context, cfg Config, p Peer, round int, upstream netip.AddrPort, hits, mix [][]byte) ([]Sample, error) {
	port, err := nsd.FreePort(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.Dir, fmt.Sprintf("%s-%d", p.Name, round))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	proc, err := p.Start(PeerOptions{Dir: dir, Listen: addr, Upstream: upstream, CPU: cfg.ServerCPU,
		CacheEntries: max(cfg.Memory+cfg.Memory/5, 200000), FleetdnsBinary: cfg.FleetdnsBinary,
		ReadyName: "ns." + ZoneName})
	if err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	defer proc.Stop()

	measure := func(w Workload, l Load) (Sample, error) {
		l.Target = addr
		l.Duration = cfg.Duration
		before, err := proc.CPUTime()
		if err != nil {
			return Sample{}, err
		}
		res, err := RunLoad(ctx, l)
		if err != nil {
			return Sample{}, err
		}
		after, err := proc.CPUTime()
		if err != nil {
			return Sample{}, err
		}
		rss, _ := proc.RSS()
		s := Sample{System: p.Name, Workload: w.Name, Round: round, Sent: res.Sent, Answered: res.Answered,
			Lost: res.Lost, Duration: res.Duration, CPU: after - before, RSS: rss, Latencies: res.Latencies}
		fmt.Fprintf(cfg.Log, "%-14s round %d %-12s %9.0f q/s %9.0f q/CPU-s  p99 %-9v lost %d\n",
			p.Name, round, w.Name, s.QPS(), s.PerCPUSecond(), s.Percentile(0.99), s.Lost)
		return s, nil
	}
	var out []Sample
	// Cold start first: the mix.
	s, err := measure(WorkloadMix, Load{Queries: mix, Cycle: true})
	if err != nil {
		return out, err
	}
	out = append(out, s)
	// Warm the hit names (each asked once), then measure.
	if _, err := RunLoad(ctx, Load{Target: addr, Queries: hits, Duration: time.Minute, Window: 50}); err != nil {
		return out, err
	}
	for _, step := range []struct {
		w Workload
		l Load
	}{
		{WorkloadHits, Load{Queries: hits, Cycle: true}},
		{WorkloadLatency, Load{Queries: hits, Cycle: true, Rate: WorkloadLatency.Rate}},
		{WorkloadMisses, Load{Queries: MissQueries(fmt.Sprintf("r%d-%s", round, p.Name), int(cfg.Duration.Seconds()*80000))}},
	} {
		s, err := measure(step.w, step.l)
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	if cfg.Dnsperf {
		if _, err := exec.LookPath("dnsperf"); err == nil {
			s, err := runDnsperf(ctx, cfg, proc, addr, hits)
			if err != nil {
				return out, fmt.Errorf("dnsperf: %w", err)
			}
			s.System, s.Round = p.Name, round
			fmt.Fprintf(cfg.Log, "%-14s round %d %-12s %9.0f q/s %9.0f q/CPU-s  lost %d\n",
				p.Name, round, s.Workload, s.QPS(), s.PerCPUSecond(), s.Lost)
			out = append(out, s)
		}
	}
	return out, nil
}

var (
	dnsperfCompleted = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	dnsperfSent      = regexp.MustCompile(`Queries sent:\s+(\d+)`)
	dnsperfRunTime   = regexp.MustCompile(`Run time \(s\):\s+([0-9.]+)`)
)

// runDnsperf drives the hit names with dnsperf pinned to the load CPU.
func runDnsperf(ctx context.Context, cfg Config, proc *Process, addr netip.AddrPort, hits [][]byte) (Sample, error) {
	file := filepath.Join(cfg.Dir, "dnsperf-hits.txt")
	var b strings.Builder
	for i := range hits {
		fmt.Fprintf(&b, "h%d.%s A\n", i, ZoneName)
	}
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		return Sample{}, err
	}
	before, err := proc.CPUTime()
	if err != nil {
		return Sample{}, err
	}
	out, err := exec.CommandContext(ctx, "taskset", "-c", strconv.Itoa(cfg.LoadCPU), "dnsperf",
		"-s", addr.Addr().String(), "-p", strconv.Itoa(int(addr.Port())), "-d", file,
		"-c", "10", "-q", "200", "-T", "1", "-l", strconv.Itoa(max(1, int(cfg.Duration.Seconds())))).CombinedOutput()
	if err != nil {
		return Sample{}, fmt.Errorf("%v: %s", err, out)
	}
	after, err := proc.CPUTime()
	if err != nil {
		return Sample{}, err
	}
	num := func(re *regexp.Regexp) float64 {
		m := re.FindSubmatch(out)
		if m == nil {
			return 0
		}
		v, _ := strconv.ParseFloat(string(m[1]), 64)
		return v
	}
	completed, sent, secs := int(num(dnsperfCompleted)), int(num(dnsperfSent)), num(dnsperfRunTime)
	if secs == 0 {
		return Sample{}, fmt.Errorf("cannot read dnsperf's output: %s", out)
	}
	return Sample{Workload: WorkloadDnsperf.Name, Sent: sent, Answered: completed, Lost: sent - completed,
		Duration: time.Duration(secs * float64(time.Second)), CPU: after - before}, nil
}

// idlePeriod is how long a fresh system is watched for wake-ups with nothing to do.
const idlePeriod = 5 * time.Second

// measureResources starts p fresh, reads its resident size and counts its wake-ups while idle,
// then, if cfg.Memory > 0, fills its cache with that many answers and reads the growth.
func measureResources(ctx context.Context, cfg Config, p Peer, upstream netip.AddrPort) (Resource, error) {
	res := Resource{System: p.Name}
	port, err := nsd.FreePort(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		return res, err
	}
	dir := filepath.Join(cfg.Dir, p.Name+"-resources")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	addr := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	proc, err := p.Start(PeerOptions{Dir: dir, Listen: addr, Upstream: upstream, CPU: cfg.ServerCPU,
		CacheEntries: max(cfg.Memory+cfg.Memory/5, 200000), FleetdnsBinary: cfg.FleetdnsBinary, ReadyName: "ns." + ZoneName})
	if err != nil {
		return res, fmt.Errorf("start: %w", err)
	}
	defer proc.Stop()
	time.Sleep(time.Second) // let start-up settle
	if res.IdleRSS, err = proc.RSS(); err != nil {
		return res, err
	}
	before, err := proc.ContextSwitches()
	if err != nil {
		return res, err
	}
	time.Sleep(idlePeriod)
	after, err := proc.ContextSwitches()
	if err != nil {
		return res, err
	}
	res.IdleWakeups = float64(after-before) / idlePeriod.Seconds()
	fmt.Fprintf(cfg.Log, "%-14s idle: RSS %.1f MiB, %.1f wake-ups/s\n", p.Name, float64(res.IdleRSS)/(1<<20), res.IdleWakeups)
	if cfg.Memory == 0 {
		return res, nil
	}
	filled, err := RunLoad(ctx, Load{Target: addr, Queries: MissQueries("mem", cfg.Memory), Duration: 10 * time.Minute})
	if err != nil {
		return res, err
	}
	rss, err := proc.RSS()
	if err != nil {
		return res, err
	}
	if filled.Answered == 0 {
		return res, errors.New("memory: no answers")
	}
	res.Answers, res.FilledRSS = filled.Answered, rss
	fmt.Fprintf(cfg.Log, "%-14s memory: %d answers, RSS %d -> %d MiB, %.0f bytes per answer\n",
		p.Name, res.Answers, res.IdleRSS>>20, rss>>20, res.BytesPerAnswer())
	return res, nil
}

// machine describes the CPU, core count and kernel, for the report.
func machine() string {
	model, cores := "unknown CPU", 0
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "model name") && cores == 0 {
				model = strings.TrimSpace(strings.SplitN(line, ":", 2)[1])
			}
			if strings.HasPrefix(line, "processor") {
				cores++ // the machine's, not the ones taskset leaves this process
			}
		}
	}
	kernel := ""
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(b))
	}
	if cores == 0 {
		cores = runtime.NumCPU()
	}
	return fmt.Sprintf("%s, %d cores%s", model, cores, kernel)
}
