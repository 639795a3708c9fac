package lab_test

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dig asks the anycast address from the client namespace and returns the status, the answer
// and the query time dig measured.
func (l *lab) dig(name string, timeout int) (status, answer string, took time.Duration, err error) {
	out, err := exec.Command("ip", "netns", "exec", l.ns("cl"), "dig", fmt.Sprintf("+time=%d", timeout), "+tries=1", "+noall", "+comments", "+answer", "+stats",
		"@198.51.100.53", name, "A").CombinedOutput()
	s := string(out)
	if m := regexp.MustCompile(`status: ([A-Z]+)`).FindStringSubmatch(s); m != nil {
		status = m[1]
	}
	if m := regexp.MustCompile(`(?m)^\S+\s+\d+\s+IN\s+A\s+(\S+)$`).FindStringSubmatch(s); m != nil {
		answer = m[1]
	}
	if m := regexp.MustCompile(`Query time: (\d+) msec`).FindStringSubmatch(s); m != nil {
		ms, _ := strconv.Atoi(m[1])
		took = time.Duration(ms) * time.Millisecond
	}
	if err != nil || status == "" {
		return status, answer, took, fmt.Errorf("dig %s: %v\n%s", name, err, s)
	}
	return status, answer, took, nil
}

// healthEndpoint asks node n's GET /health from the client namespace.
func (l *lab) healthEndpoint(addr string) string {
	out, _ := exec.Command("ip", "netns", "exec", l.ns("cl"), "curl", "-s", "-w", " %{http_code}", "--max-time", "1", "http://"+addr+":8053/health").CombinedOutput()
	return strings.Join(strings.Fields(string(out)), " ")
}

// TestSharedFault: with each node the other's health sibling, (1) the upstream cut for both
// nodes is a shared fault: both stay announced (the router never loses a path), cached names
// are answered (stale), uncached names SERVFAIL in under 100 ms, and the nodes are normal
// again once the upstream is back; (2) one node's own path cut withdraws that node only.
func TestSharedFault(t *testing.T) {
	l := startLabPrefix(t, fmt.Sprintf("fds%d", os.Getpid()%10000), "LAB_SIBLINGS=1")
	l.waitPaths(2, 20*time.Second)
	nodes := map[string]string{"n1": "192.0.2.2", "n2": "192.0.2.6"}
	// Cache short.lab.test (TTL 1s) on both nodes, through their unicast addresses.
	for _, addr := range nodes {
		out, err := exec.Command("ip", "netns", "exec", l.ns("cl"), "dig", "+short", "+time=1", "+tries=1", "@"+addr, "short.lab.test", "A").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "203.0.113.82" {
			t.Fatalf("priming %s: %v %q", addr, err, out)
		}
	}
	_, hasCurl := exec.LookPath("curl")

	// (1) The upstream's link at the router goes down: both nodes lose it at once.
	link := []string{"netns", "exec", l.ns("rtr"), "ip", "link", "set", l.prefix + "ua", "down"}
	if out, err := exec.Command("ip", link...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	cut := time.Now()
	for time.Since(cut) < 5*time.Second { // fall 2 x interval 1s + timeout, with margin
		if p := l.paths(); len(p) != 2 {
			t.Fatalf("%s after the shared cut the router has %d paths %q, want both nodes kept", time.Since(cut).Round(10*time.Millisecond), len(p), p)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("shared upstream cut: both nodes still announced after %s", time.Since(cut).Round(10*time.Millisecond))
	// From here until the upstream is back, the router is watched in the background.
	stopWatch := make(chan struct{})
	lost := make(chan string, 1)
	go func() {
		defer close(lost)
		for {
			select {
			case <-stopWatch:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if p := l.paths(); len(p) != 2 {
				lost <- fmt.Sprintf("%s after the shared cut the router had %d paths %q", time.Since(cut).Round(10*time.Millisecond), len(p), p)
				return
			}
		}
	}()
	for _, n := range []string{"n1", "n2"} {
		if out := l.ctl(n, "bgp"); !strings.Contains(out, "shared upstream failure: serving cache and stale") || !strings.Contains(out, "shared fault") {
			t.Errorf("%s ctl bgp during the shared fault:\n%s", n, out)
		}
		if hasCurl == nil {
			if got := l.healthEndpoint(nodes[n]); !strings.HasSuffix(got, " 200") || !strings.Contains(got, "shared upstream failure") {
				t.Errorf("%s GET /health during the shared fault = %q, want 200 with the shared-fault reason", n, got)
			}
		}
	}
	// Cached names: every one answered, stale. Uncached names: SERVFAIL at once, the queries
	// that come when a node's once-a-second probe of the upstream is due included
	// (resolver/retransmit.go: the probe goes out in the background; no client waits for it).
	if hasCurl == nil {
		out, _ := exec.Command("ip", "netns", "exec", l.ns("cl"), "curl", "-s", "--max-time", "1", "http://192.0.2.2:9153/metrics").CombinedOutput()
		if !regexp.MustCompile(`(?m)^fleetdns_health_shared_fault 1$`).Match(out) {
			t.Errorf("n1 metrics during the shared fault: no fleetdns_health_shared_fault 1")
		}
	}
	var fast, slowProbe int
	var slowest, slowestStale time.Duration
	const n = 20
	for i := range n {
		status, answer, took, err := l.dig("short.lab.test", 1)
		if err != nil || status != "NOERROR" || answer != "203.0.113.82" || took >= 500*time.Millisecond {
			t.Errorf("cached name during the shared fault: %s %q after %s %v, want the stale answer", status, answer, took, err)
		}
		slowestStale = max(slowestStale, took)
		status, _, took, err = l.dig(fmt.Sprintf("uncached%d.lab.test", i), 6)
		if err != nil || status != "SERVFAIL" {
			t.Errorf("uncached name during the shared fault: %s %v, want SERVFAIL", status, err)
		}
		if took < 100*time.Millisecond {
			fast++
			slowest = max(slowest, took)
		} else {
			slowProbe++
			t.Logf("uncached%d.lab.test: SERVFAIL after %s", i, took)
		}
	}
	t.Logf("shared fault: %d cached names answered stale (slowest %s); uncached: %d SERVFAIL in under 100 ms (slowest %s), %d after waiting for a probe",
		n, slowestStale, fast, slowest, slowProbe)
	if fast < n {
		t.Errorf("only %d of %d uncached names SERVFAIL in under 100 ms", fast, n)
	}
	close(stopWatch)
	if msg, ok := <-lost; ok {
		t.Errorf("%s, want both nodes kept through the shared fault", msg)
	}
	link[7] = "up"
	if out, err := exec.Command("ip", link...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	back := time.Now()
	for {
		status, answer, _, _ := l.dig("fresh.lab.test", 1)
		if status == "NOERROR" && answer == "203.0.113.81" {
			break
		}
		if time.Since(back) > 5*time.Second {
			t.Fatalf("5s after the upstream came back, fresh.lab.test: %s %q\nn1 forwards: %s\nn2 forwards: %s", status, answer, l.ctl("n1", "forwards"), l.ctl("n2", "forwards"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("upstream back: uncached names resolve again after %s", time.Since(back).Round(10*time.Millisecond))
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if o1, o2 := l.ctl("n1", "bgp"), l.ctl("n2", "bgp"); strings.Contains(o1, "health healthy (ok)") && strings.Contains(o2, "health healthy (ok)") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("nodes not back to ok 5s after the upstream returned:\n%s\n%s", l.ctl("n1", "bgp"), l.ctl("n2", "bgp"))
		}
	}

	// (2) Only n1's path to the upstream is cut: n2 still resolves the health name, so n1's
	// failure is its own: n1 withdraws within fall x interval + 1s, n2 takes every query.
	blackhole := []string{"netns", "exec", l.ns("n1"), "ip", "route", "add", "blackhole", "192.0.2.14/32"}
	if out, err := exec.Command("ip", blackhole...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	d := l.waitPaths(1, 10*time.Second)
	t.Logf("n1's own path cut: n1 withdrawn after %s", d.Round(10*time.Millisecond))
	if d > 3*time.Second {
		t.Errorf("withdrawal took %s, want within fall x interval + 1s = 3s", d)
	}
	if out := l.ctl("n1", "bgp"); !strings.Contains(out, "192.0.2.6:53 passes: this node's path is cut") {
		t.Errorf("n1 ctl bgp with its path cut:\n%s", out)
	}
	if hasCurl == nil {
		if got := l.healthEndpoint("192.0.2.2"); !strings.HasSuffix(got, " 503") || !strings.Contains(got, "path is cut") {
			t.Errorf("n1 GET /health with its path cut = %q, want 503 with the reason", got)
		}
	}
	for range 10 {
		if who, err := l.whoAnswers(); err != nil || who != "lab-n2" {
			t.Errorf("with n1 withdrawn, answered by %q (%v), want lab-n2", who, err)
		}
		if status, answer, _, err := l.dig("www.lab.test", 1); err != nil || status != "NOERROR" || answer != "203.0.113.80" {
			t.Errorf("www.lab.test with n1 withdrawn: %s %q %v", status, answer, err)
		}
	}
	blackhole[5] = "del"
	exec.Command("ip", blackhole...).Run()
	d = l.waitPaths(2, 10*time.Second)
	t.Logf("n1's path back: announced again after %s", d.Round(10*time.Millisecond))

	// SIGTERM n2: its GET /health answers 503 draining at once, while its route is still at
	// the router (graceful shutdown, drain 2s) and it still answers.
	if hasCurl != nil {
		return
	}
	syscall.Kill(l.pid("n2"), syscall.SIGTERM)
	start := time.Now()
	for {
		got := l.healthEndpoint("192.0.2.6")
		if got == "draining 503" {
			break
		}
		if time.Since(start) > time.Second {
			t.Fatalf("n2 GET /health after SIGTERM = %q, want %q within a second", got, "draining 503")
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	paths := len(l.paths())
	out, err := exec.Command("ip", "netns", "exec", l.ns("cl"), "dig", "+short", "+time=1", "+tries=1", "@192.0.2.6", "id.server", "CH", "TXT").CombinedOutput()
	if paths != 2 || err != nil || !strings.Contains(string(out), "lab-n2") {
		t.Errorf("while /health says draining: router paths %d, n2 answers %q %v; want the route still there and n2 answering", paths, out, err)
	}
	t.Logf("SIGTERM: n2's /health answered 503 draining after %s, route still at the router", took.Round(10*time.Millisecond))
}
