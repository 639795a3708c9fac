package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdns/fleetdns/bench/chaos"
)

// runChaos is `fleetdns-bench chaos`: the chaos lab's full run (about 5 minutes with the
// defaults), written as Markdown. It needs root, nft, nsd and unbound.
func runChaos(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("fleetdns-bench chaos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	duration := fs.Duration("duration", 60*time.Second, "load per loss scenario")
	losses := fs.String("loss", "0,10,30", "comma-separated loss percentages (each both ways)")
	outage := fs.Duration("outage", 30*time.Second, "how long the upstream is blackholed, and killed (0: skip both)")
	out := fs.String("out", "bench/results/chaos.md", "Markdown report")
	fleetdns := fs.String("fleetdns", "", "fleetdns binary to measure (default: build ./cmd/fleetdns)")
	fabric := fs.Bool("fabric", false, "run the fabric scenarios too (stubs in front of two anycast nodes behind BIRD 2; needs bird2)")
	fabricOnly := fs.Bool("fabric-only", false, "run only the fabric scenarios (implies -fabric; -loss and -outage are ignored)")
	fabricOutage := fs.Duration("fabric-outage", 10*time.Second, "how long each fabric fault lasts (a node frozen, dc1's recursor cut)")
	fabricScenarios := fs.String("fabric-scenarios", "kill,stop,cut,restart", "comma-separated fabric scenarios: kill, stop, cut, restart")
	fabricAnycast := fs.Bool("fabric-anycast", false, "run each fabric scenario again with stubs that forward to the anycast address alone")
	fabricOut := fs.String("fabric-out", "bench/results/chaos-fabric.md", "Markdown report of the fabric scenarios")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var pcts []int
	for f := range strings.SplitSeq(*losses, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > 100 {
			fmt.Fprintf(stderr, "fleetdns-bench chaos: -loss %q: want percentages 0-100\n", f)
			return 2
		}
		pcts = append(pcts, n)
	}
	*fabric = *fabric || *fabricOnly
	var scs []chaos.FabricScenario
	for f := range strings.SplitSeq(*fabricScenarios, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		sc, err := chaos.ParseFabricScenario(f)
		if err != nil {
			fmt.Fprintln(stderr, "fleetdns-bench chaos: -fabric-scenarios:", err)
			return 2
		}
		scs = append(scs, sc)
	}
	avail := chaos.Available
	if *fabric {
		avail = chaos.FabricAvailable
	}
	if err := avail(); err != nil {
		fmt.Fprintln(stderr, "fleetdns-bench chaos:", err)
		return 1
	}
	work, err := workDir("fleetdns-chaos-", fleetdns, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	defer os.RemoveAll(work)
	lab := filepath.Join(work, "lab")
	if err := os.Mkdir(lab, 0o755); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	rep, err := chaos.Run(ctx, chaos.RunConfig{
		Config:   chaos.Config{Dir: lab, FleetdnsBinary: *fleetdns, Log: stdout},
		Duration: *duration, Losses: pcts, Outage: *outage,
		Fabric: *fabric, FabricOnly: *fabricOnly, FabricOutage: *fabricOutage, FabricScenarios: scs, FabricAnycastOnly: *fabricAnycast,
		Command: strings.TrimSpace("go run ./cmd/fleetdns-bench chaos " + strings.Join(args, " ")),
	})
	if err != nil {
		// What was measured is printed, but a partial run does not replace the report.
		fmt.Fprintln(stderr, "fleetdns-bench chaos:", err)
		if rep != nil {
			if !*fabricOnly {
				fmt.Fprintf(stdout, "\n%s", rep.Markdown())
			}
			if len(rep.Fabric) > 0 {
				fmt.Fprintf(stdout, "\n%s", rep.FabricMarkdown())
			}
		}
		return 1
	}
	if !*fabricOnly {
		if code := writeReport(rep.Markdown(), *out, stdout, stderr); code != 0 {
			return code
		}
	}
	if *fabric {
		return writeReport(rep.FabricMarkdown(), *fabricOut, stdout, stderr)
	}
	return 0
}

func writeReport(md, path string, stdout, stderr io.Writer) int {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprintf(stdout, "\n%s\nwritten to %s\n", md, path)
	return 0
}
