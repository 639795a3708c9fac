package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuick runs the harness as CI can: -quick, fleetdns against unbound, and checks that the
// report has a measured row for both on every workload and the charts it links.
func TestQuick(t *testing.T) {
	for _, bin := range []string{"nsd", "unbound", "taskset"} {
		if _, err := exec.LookPath(bin); err != nil {
			if _, serr := os.Stat("/usr/sbin/" + bin); serr == nil {
				continue
			}
			if os.Getenv("FLEETDNS_BENCH_REQUIRE_PEERS") != "" {
				t.Fatalf("%s is not installed", bin)
			}
			t.Skipf("%s is not installed", bin)
		}
	}
	t.Setenv("FLEETDNS_BENCH_PINNED", "1") // the test binary must not re-exec itself under taskset
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"-quick", "-duration", "1s", "-out", out}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	md, err := os.ReadFile(filepath.Join(out, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, workload := range []string{"#### hits", "#### latency", "#### mix", "#### misses"} {
		section := sectionOf(string(md), workload)
		if section == "" {
			t.Errorf("results.md has no %q section", workload)
			continue
		}
		for _, system := range []string{"| fleetdns |", "| unbound |"} {
			row := lineWith(section, system)
			if row == "" || strings.Contains(row, "not run") {
				t.Errorf("%s: row %q for %s, want a measured row", workload, row, system)
			}
		}
	}
	for _, chart := range []string{"cpu-efficiency.png", "throughput.png", "latency-cdf.png", "results.json"} {
		if _, err := os.Stat(filepath.Join(out, chart)); err != nil {
			t.Errorf("missing %s: %v", chart, err)
		}
	}
}

func sectionOf(md, heading string) string {
	i := strings.Index(md, heading)
	if i < 0 {
		return ""
	}
	rest := md[i+len(heading):]
	if j := strings.Index(rest, "\n#### "); j >= 0 {
		rest = rest[:j]
	}
	return rest
}

func lineWith(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return l
		}
	}
	return ""
}

func TestChaosFlags(t *testing.T) {
	for _, args := range [][]string{{"-loss", "10,x"}, {"-loss", "101"}, {"-nope"}, {"-fabric-scenarios", "kill,nope"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), append([]string{"chaos"}, args...), &stdout, &stderr); code != 2 {
			t.Errorf("chaos %v: exit %d, want 2 (usage)\n%s", args, code, stderr.String())
		}
	}
}
