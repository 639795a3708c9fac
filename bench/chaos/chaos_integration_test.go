package chaos

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// requireTool skips the test when something it needs is missing, or fails it where the tools
// are meant to be there (scripts/test.sh sets FLEETDNS_REQUIRE_TOOLS as root).
func requireTool(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("FLEETDNS_REQUIRE_TOOLS") != "" {
		t.Fatal(err)
	}
	t.Skip(err)
}

// buildFleetdns builds the client from this tree.
func buildFleetdns(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "fleetdns")
	out, err := exec.Command(goBin, "build", "-o", bin, "github.com/fleetdns/fleetdns/cmd/fleetdns").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/fleetdns: %v\n%s", err, out)
	}
	return bin
}

// logWriter sends the lab's progress lines to t.Log.
type logWriter struct{ t *testing.T }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// chaosTestLoad is the load per loss level: 12 s is 2 400 uncached and 6 000 cached queries per
// system, three TTLs of the cached names, and keeps the whole test near 45 s.
const chaosTestLoad = 12 * time.Second

// tailSlack is added to unbound's p99 bound before fleetdns's p99 must be below it: timers and
// scheduling on a shared 2-CPU machine move single answers by a few milliseconds, which is not a
// difference between the two retransmission strategies (their steps are hundreds of ms apart).
const tailSlack = 10 * time.Millisecond

// startLab builds fleetdns and the lab, removed when the test ends.
func startLab(t *testing.T) *Lab {
	t.Helper()
	requireTool(t, Available())
	bin := buildFleetdns(t)
	l, err := Start(t.Context(), Config{Dir: t.TempDir(), FleetdnsBinary: bin, Log: logWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("closing the lab: %v", err)
		}
	})
	return l
}

// TestLoss is the short form of the chaos lab (the full run is `go run ./cmd/fleetdns-bench
// chaos`): fleetdns and unbound at the same time at 10% and 30% UDP loss both ways, and the
// issue's targets for fleetdns. It logs the whole table, so a failing run still shows numbers.
func TestLoss(t *testing.T) {
	l := startLab(t)
	ctx := t.Context()
	var rs []*Result
	for _, pct := range []int{10, 30} {
		r, err := l.RunLoss(ctx, pct, chaosTestLoad)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	t.Logf("machine: %s; fleetdns %s, unbound %s\n%s", ThisMachine(), l.Versions()["fleetdns"], l.Versions()["unbound"], LossTable(rs))

	for _, r := range rs {
		t.Run(strings.ReplaceAll(r.Name, "%", "pct"), func(t *testing.T) {
			checkLossWasReal(t, r)
			f, u := r.System("fleetdns"), r.System("unbound")
			if n := f.Cached.Failed(); n != 0 {
				t.Errorf("fleetdns: %d of %d cached lookups failed (%d SERVFAIL, %d lost), want 0",
					n, f.Cached.Sent, f.Cached.ServFail, f.Cached.Lost)
			}
			if p := f.Uncached.FailedPercent(); p >= 0.1 {
				t.Errorf("fleetdns: %.3f%% of uncached lookups failed (%d of %d: %d SERVFAIL, %d lost), want < 0.1%%",
					p, f.Uncached.Failed(), f.Uncached.Sent, f.Uncached.ServFail, f.Uncached.Lost)
			}
			if p99 := f.Cached.Quantile(0.99); p99 >= 5*time.Millisecond {
				t.Errorf("fleetdns: cached p99 %s, want < 5 ms", ms(p99))
			}
			// A short run's p99 is noisy (24 queries beyond it), so fleetdns fails only if its
			// p99 is beyond the upper end of the 95% confidence interval of unbound's p99 in the
			// same run, plus tailSlack: a difference this sample can show.
			fp99, bound := f.Uncached.Quantile(0.99), u.Uncached.QuantileUpperBound(0.99)
			if bound != noAnswer {
				bound += tailSlack
			}
			if fp99 > bound {
				t.Errorf("fleetdns: uncached p99 %s, want at most unbound's (p99 %s; upper 95%% bound %s + %s slack = %s)",
					ms(fp99), ms(u.Uncached.Quantile(0.99)), ms(u.Uncached.QuantileUpperBound(0.99)), tailSlack, ms(bound))
			}
		})
	}
}

// TestBlackhole is the short form of the outage scenario: the upstream blackholed for 8 s. It
// holds fleetdns to what serve-stale promises (every cached name answered during and after the
// outage) and to a quick recovery: new names answered again within 2 s of the restore.
func TestBlackhole(t *testing.T) {
	l := startLab(t)
	r, err := l.RunOutage(t.Context(), Blackhole, 3*time.Second, 8*time.Second, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("machine: %s; fleetdns %s, unbound %s\n%s", ThisMachine(), l.Versions()["fleetdns"], l.Versions()["unbound"],
		OutageTable([]*OutageResult{r}))
	if c := r.Counters; c.DropOut == 0 || c.UDPIn != 0 {
		t.Fatalf("%s: want queries to the upstream dropped and no UDP packet from it during the blackhole", c)
	}
	for _, phase := range []struct {
		name string
		rs   []SystemResult
	}{{"during the blackhole", r.During}, {"after the restore", r.AfterRestore}} {
		for _, s := range phase.rs {
			if s.Name == "fleetdns" && s.Cached.Failed() != 0 {
				t.Errorf("fleetdns %s: %d of %d cached lookups failed (%d SERVFAIL, %d lost), want 0 (serve-stale)",
					phase.name, s.Cached.Failed(), s.Cached.Sent, s.Cached.ServFail, s.Cached.Lost)
			}
		}
	}
	for _, rc := range r.Recovery {
		if rc.Name == "fleetdns" && (rc.FirstAnswer < 0 || rc.FirstAnswer > 2*time.Second) {
			t.Errorf("fleetdns: first uncached answer %s after the restore, want within 2 s", since(rc.FirstAnswer))
		}
	}
}

// checkLossWasReal makes sure the lab dropped what it was told to: the share of UDP packets
// nftables dropped each way is within 5 points of the configured loss (thousands of packets
// make the binomial spread well under one point), so a pass cannot come from rules that
// never matched.
func checkLossWasReal(t *testing.T, r *Result) {
	t.Helper()
	t.Log(r.Counters)
	t.Log(r.Metrics)
	want := float64(r.Fault.LossPercent)
	for _, dir := range []struct {
		name          string
		seen, dropped int64
	}{{"in", r.Counters.UDPIn, r.Counters.DropIn}, {"out", r.Counters.UDPOut, r.Counters.DropOut}} {
		if dir.seen < 1000 {
			t.Fatalf("nft saw %d UDP packets %s on the veth, want thousands: the load did not reach the upstream", dir.seen, dir.name)
		}
		got := 100 * float64(dir.dropped) / float64(dir.seen)
		if math.Abs(got-want) > 5 {
			t.Fatalf("nft dropped %.1f%% of UDP packets %s (%d of %d), want %.0f%%", got, dir.name, dir.dropped, dir.seen, want)
		}
	}
}
