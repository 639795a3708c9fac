// Command fleetdns-bench measures fleetdns against unbound, dnsmasq, pdns-recursor, dnsdist and
// knot-resolver on this machine: each system pinned to one CPU, the load generator and the NSD
// upstream to another, medians over alternating rounds, ratios against unbound, written as
// Markdown and PNG charts. `fleetdns-bench chaos` runs the chaos lab instead (bench/chaos):
// fleetdns and unbound under packet loss and upstream outages, as root.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/fleetdns/fleetdns/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "chaos" {
		return runChaos(ctx, args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("fleetdns-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "a run under a minute: fleetdns and unbound, 2 s per workload, one round, small zone")
	systems := fs.String("systems", "", "comma-separated systems (default: every one installed; with -quick: fleetdns,unbound)")
	rounds := fs.Int("rounds", 3, "rounds; systems alternate within each")
	duration := fs.Duration("duration", 10*time.Second, "length of each measured run")
	names := fs.Int("names", 100000, "names in the upstream zone")
	memory := fs.Int("memory", 1000000, "answers to fill for the memory measurement (0: skip)")
	dnsperf := fs.Bool("dnsperf", true, "cross-check the hits workload with dnsperf, where installed")
	out := fs.String("out", "bench/results", "directory for results.md, results.json and the charts")
	fleetdns := fs.String("fleetdns", "", "fleetdns binary to measure (default: build ./cmd/fleetdns)")
	serverCPU := fs.Int("server-cpu", 0, "CPU the systems under test are pinned to")
	loadCPU := fs.Int("load-cpu", 1, "CPU the load generator and the upstream are pinned to")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *quick {
		*rounds, *duration, *names, *memory, *dnsperf = 1, 2*time.Second, 20000, 0, false
		if *systems == "" {
			*systems = "fleetdns,unbound"
		}
	}
	// Under taskset the process sees one CPU: check before pinning.
	if os.Getenv("FLEETDNS_BENCH_PINNED") == "" && runtime.NumCPU() < 2 {
		fmt.Fprintln(stderr, "fleetdns-bench: needs two CPUs (one for the systems, one for the load)")
		return 1
	}
	if code, done := pinSelf(*loadCPU, args, stderr); done {
		return code
	}
	work, err := workDir("fleetdns-bench-", fleetdns, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer os.RemoveAll(work)
	cfg := bench.Config{
		Rounds: *rounds, Duration: *duration, Names: *names, HitNames: 1000, Memory: *memory,
		Dnsperf: *dnsperf, ServerCPU: *serverCPU, LoadCPU: *loadCPU, Dir: work, FleetdnsBinary: *fleetdns,
		Command: "go run ./cmd/fleetdns-bench " + strings.Join(args, " "), Log: stdout,
	}
	if *systems != "" {
		cfg.Systems = strings.Split(*systems, ",")
	}
	r, err := bench.Run(ctx, cfg)
	if err != nil && r == nil {
		fmt.Fprintln(stderr, "fleetdns-bench:", err)
		return 1
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := r.Write(*out); err != nil {
		fmt.Fprintln(stderr, "write results:", err)
		return 1
	}
	fmt.Fprintf(stdout, "\n%s\nwritten to %s\n", r.Markdown(), *out)
	return 0
}

// pinSelf runs the harness again under taskset on the load CPU, so the generator never
// competes with the system it measures. It returns done=true with the child's exit code.
func pinSelf(cpu int, args []string, stderr io.Writer) (int, bool) {
	if os.Getenv("FLEETDNS_BENCH_PINNED") != "" {
		return 0, false
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		fmt.Fprintln(stderr, "fleetdns-bench: taskset not found (util-linux); the load generator is not pinned")
		return 0, false
	}
	self, err := os.Executable()
	if err != nil {
		return 0, false
	}
	cmd := exec.Command(taskset, append([]string{"-c", fmt.Sprint(cpu), self}, args...)...)
	cmd.Env = append(os.Environ(), "FLEETDNS_BENCH_PINNED=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), true
		}
		fmt.Fprintln(stderr, err)
		return 1, true
	}
	return 0, true
}

// buildFleetdns builds ./cmd/fleetdns into dir, stamped with the commit so the report says which
// fleetdns it measured.
// workDir makes a run's scratch directory and, unless *fleetdns names a binary, builds
// fleetdns into it.
func workDir(prefix string, fleetdns *string, stderr io.Writer) (string, error) {
	work, err := os.MkdirTemp("", prefix)
	if err != nil {
		return "", err
	}
	if *fleetdns == "" {
		if *fleetdns, err = buildFleetdns(work, stderr); err != nil {
			os.RemoveAll(work)
			return "", fmt.Errorf("build fleetdns: %w", err)
		}
	}
	return work, nil
}

func buildFleetdns(dir string, stderr io.Writer) (string, error) {
	bin := filepath.Join(dir, "fleetdns")
	rev, _ := exec.Command("git", "describe", "--always", "--dirty").Output()
	ver := strings.TrimSpace(string(rev))
	if ver == "" {
		ver = "devel"
	}
	build := exec.Command("go", "build", "-ldflags", "-X main.version="+ver, "-o", bin,
		"github.com/fleetdns/fleetdns/cmd/fleetdns")
	build.Stdout, build.Stderr = stderr, stderr
	return bin, build.Run()
}
