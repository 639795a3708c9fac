// Package lab_test drives the anycast lab (lab.sh): BIRD 2 as the router, two fleetdns server
// nodes announcing 198.51.100.53/32, an NSD upstream and a client, each in a network namespace
// this test creates. It shows what server mode promises: the route appears, two nodes give two
// ECMP paths, a node whose upstream dies withdraws within fall × interval plus a second (and the
// other node takes the queries) and comes back after recovery, SIGTERM withdraws before the listener stops (no lost query), and a frozen
// process loses its route when the hold timer expires.
package lab_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

type lab struct {
	t      *testing.T
	dir    string
	prefix string
	env    []string
}

func need(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, bin := range []string{"bird", "birdc", "nsd", "dig", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			if _, err := os.Stat("/usr/sbin/" + bin); err != nil {
				missing = append(missing, bin)
			}
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("FLEETDNS_REQUIRE_TOOLS") != "" {
		t.Fatalf("missing %v", missing)
	}
	t.Skipf("missing %v", missing)
}

func startLab(t *testing.T, env ...string) *lab {
	return startLabPrefix(t, fmt.Sprintf("fdt%d", os.Getpid()%10000), env...)
}

func startLabPrefix(t *testing.T, prefix string, env ...string) *lab {
	need(t)
	l := &lab{t: t, dir: t.TempDir(), prefix: prefix, env: env}
	t.Cleanup(func() {
		if out, err := l.script("down"); err != nil {
			t.Errorf("lab down: %v\n%s", err, out)
		}
	})
	if out, err := l.script("up", "quiet"); err != nil {
		t.Fatalf("lab up: %v\n%s", err, out)
	}
	return l
}

func (l *lab) script(args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{"lab.sh"}, args...)...)
	cmd.Env = append(os.Environ(), "LAB_DIR="+l.dir, "LAB_PREFIX="+l.prefix, "PATH="+os.Getenv("PATH")+":/usr/sbin:/usr/local/go/bin")
	cmd.Env = append(cmd.Env, l.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (l *lab) ns(name string) string { return l.prefix + "-" + name }

// paths returns the router's routes for the anycast prefix, one line per path.
func (l *lab) paths() []string {
	out, _ := exec.Command("birdc", "-s", filepath.Join(l.dir, "bird.ctl"), "show", "route", "all", "198.51.100.53/32").CombinedOutput()
	var paths []string
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "unicast [") {
			paths = append(paths, line)
		}
	}
	if strings.Contains(string(out), "65535,0") && len(paths) > 0 {
		paths[0] += " GRACEFUL"
	}
	return paths
}

// waitPaths polls until the router has n paths and returns how long that took.
func (l *lab) waitPaths(n int, limit time.Duration) time.Duration {
	l.t.Helper()
	start := time.Now()
	for time.Since(start) < limit {
		if len(l.paths()) == n {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.t.Fatalf("router has %d paths after %s, want %d: %q", len(l.paths()), limit, n, l.paths())
	return 0
}

// whoAnswers asks the anycast address which node answers, from the client namespace.
func (l *lab) whoAnswers() (string, error) {
	out, err := exec.Command("ip", "netns", "exec", l.ns("cl"), "dig", "+short", "+time=1", "+tries=1",
		"@198.51.100.53", "id.server", "CH", "TXT").CombinedOutput()
	s := strings.Trim(strings.TrimSpace(string(out)), `"`)
	if err != nil || !strings.HasPrefix(s, "lab-n") {
		return "", fmt.Errorf("dig: %v %q", err, s)
	}
	return s, nil
}

func (l *lab) pid(name string) int {
	b, err := os.ReadFile(filepath.Join(l.dir, name+".pid"))
	if err != nil {
		l.t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func TestAnycastFabric(t *testing.T) {
	// Each node is the other's health sibling, as a fabric should be configured: a node's own
	// faults withdraw it, and a shared one (TestSharedFault) withdraws nobody.
	l := startLab(t, "LAB_SIBLINGS=1")
	d := l.waitPaths(2, 20*time.Second)
	t.Logf("both nodes announced %s after the lab came up", d.Round(10*time.Millisecond))

	out, err := exec.Command(filepath.Join(l.dir, "fleetdns"), "ctl", "-socket", filepath.Join(l.dir, "n2.sock"), "bgp").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "192.0.2.5 AS65000 established") ||
		!strings.Contains(string(out), "198.51.100.53/32 primary announced (healthy)") {
		t.Errorf("fleetdns ctl bgp = %v\n%s\nwant the router's session established and the prefix announced", err, out)
	}

	l.wantBothNodes()

	// n1's upstream dies (a blackhole route in n1 towards NSD): n1 withdraws within fall 2 x
	// interval 1s plus a second, and every query goes to n2.
	l.cutUpstream("n1", true)
	d = l.waitPaths(1, 10*time.Second)
	t.Logf("n1's upstream down: n1 withdrawn after %s", d.Round(10*time.Millisecond))
	if d > 3*time.Second {
		t.Errorf("withdrawal took %s, want within fall x interval + 1s = 3s", d)
	}
	l.wantOnly("lab-n2", 10, "with n1 withdrawn")
	l.cutUpstream("n1", false)
	d = l.waitPaths(2, 10*time.Second)
	t.Logf("n1's upstream back: n1 announced again after %s", d.Round(10*time.Millisecond))

	// A planned shutdown of n1: it leaves the path first and keeps answering through the drain,
	// so no client query is lost.
	results := make(chan error, 1)
	go func() {
		var failed []string
		for range 40 {
			if _, err := l.whoAnswers(); err != nil {
				failed = append(failed, err.Error())
			}
			time.Sleep(75 * time.Millisecond)
		}
		if len(failed) > 0 {
			results <- fmt.Errorf("%d of 40 queries failed during the shutdown: %v", len(failed), failed)
			return
		}
		results <- nil
	}()
	time.Sleep(300 * time.Millisecond)
	n1 := l.pid("n1")
	syscall.Kill(n1, syscall.SIGTERM)
	start := time.Now()
	graceful := false
	for time.Since(start) < 2*time.Second && !graceful {
		graceful = strings.Contains(strings.Join(l.paths(), " "), "GRACEFUL")
		time.Sleep(20 * time.Millisecond)
	}
	if !graceful {
		t.Errorf("the router never saw n1's route with GRACEFUL_SHUTDOWN (65535:0) before the withdrawal")
	}
	t.Logf("SIGTERM: GRACEFUL_SHUTDOWN seen at the router after %s", time.Since(start).Round(10*time.Millisecond))
	l.waitPaths(1, 10*time.Second)
	t.Logf("SIGTERM: n1 withdrawn after %s (drain 2s)", time.Since(start).Round(10*time.Millisecond))
	if err := <-results; err != nil {
		t.Error(err)
	}
	exited := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if syscall.Kill(n1, 0) != nil {
			exited = true
			break
		}
	}
	if !exited {
		t.Errorf("n1 (pid %d) still running 10s after SIGTERM", n1)
	}
	log, _ := os.ReadFile(filepath.Join(l.dir, "n1.log"))
	if !strings.Contains(string(log), "msg=stopped") {
		t.Errorf("n1's log does not end with stopped:\n%s", log)
	}

	// SIGKILL: no shutdown runs; the BGP session dies with the process (the router sees the
	// connection closed, at the latest when the hold timer runs out).
	l.run("node", "1")
	l.waitPaths(2, 15*time.Second)
	n1 = l.pid("n1")
	syscall.Kill(n1, syscall.SIGKILL)
	d = l.waitPaths(1, 10*time.Second)
	t.Logf("SIGKILL: n1's route gone after %s (hold time 3s)", d.Round(10*time.Millisecond))
	if d > 4*time.Second {
		t.Errorf("killed node kept its route %s, want at most the 3s hold time plus a second", d)
	}
	l.wantOnly("lab-n2", 5, "with n1 killed")

	// A frozen n2 keeps no route: the router drops it when the hold timer (3s) runs out.
	n2 := l.pid("n2")
	syscall.Kill(n2, syscall.SIGSTOP)
	defer syscall.Kill(n2, syscall.SIGCONT)
	d = l.waitPaths(0, 10*time.Second)
	t.Logf("SIGSTOP: frozen n2 lost its route after %s (hold time 3s)", d.Round(10*time.Millisecond))
	if d > 4*time.Second {
		t.Errorf("frozen node kept its route %s, want at most the 3s hold time plus a second", d)
	}
}

// wantBothNodes asks the anycast address 30 times: two ECMP paths must reach both nodes.
func (l *lab) wantBothNodes() {
	l.t.Helper()
	seen := map[string]bool{}
	for range 30 {
		who, err := l.whoAnswers()
		if err != nil {
			l.t.Fatal(err)
		}
		seen[who] = true
	}
	if !seen["lab-n1"] || !seen["lab-n2"] {
		l.t.Errorf("answers over two ECMP paths came from %v, want both nodes", seen)
	}
}

// wantOnly asks the anycast address n times: node must answer each.
func (l *lab) wantOnly(node string, n int, when string) {
	l.t.Helper()
	for range n {
		if who, err := l.whoAnswers(); err != nil || who != node {
			l.t.Errorf("%s, answered by %q (%v), want %s", when, who, err, node)
		}
	}
}

// cutUpstream cuts node's path to dc1's NSD (a blackhole route in its namespace), or restores it.
func (l *lab) cutUpstream(node string, cut bool) {
	l.t.Helper()
	op := "del"
	if cut {
		op = "add"
	}
	if out, err := exec.Command("ip", "netns", "exec", l.ns(node), "ip", "route", op, "blackhole", "192.0.2.14/32").CombinedOutput(); err != nil && cut {
		l.t.Fatalf("cut %s's upstream: %v: %s", node, err, out)
	}
}

// ctl runs fleetdns ctl against node n ("n1", "n2").
func (l *lab) ctl(n string, args ...string) string {
	out, _ := exec.Command(filepath.Join(l.dir, "fleetdns"), append([]string{"ctl", "-socket", filepath.Join(l.dir, n+".sock")}, args...)...).CombinedOutput()
	return string(out)
}

// TestTwoDatacenters cuts dc1's recursor off the lab: both nodes fail over to dc2's recursor,
// stay announced and keep answering names only a recursor can resolve, then fail back.
func TestTwoDatacenters(t *testing.T) {
	l := startLab(t, "LAB_DCS=2")
	l.waitPaths(2, 20*time.Second)
	for _, n := range []string{"n1", "n2"} {
		if out := l.ctl(n, "failover"); !strings.Contains(out, "state local") {
			t.Fatalf("%s: ctl failover = %q, want state local", n, out)
		}
	}
	link := l.prefix + "ua"
	if out, err := exec.Command("ip", "netns", "exec", l.ns("rtr"), "ip", "link", "set", link, "down").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	start := time.Now()
	for _, n := range []string{"n1", "n2"} {
		for !strings.Contains(l.ctl(n, "failover"), "state failed-over") {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s did not fail over: %s", n, l.ctl(n, "failover"))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// The failover's bound: fall (2) rounds of interval (500ms) fail, the last after its timeout
	// (300ms). Polling two nodes' ctl adds up to ~100 ms to what is measured.
	const bound = 2*500*time.Millisecond + 300*time.Millisecond
	took := time.Since(start)
	t.Logf("dc1's recursor cut off: both nodes failed over to dc2 after %s (bound fall × interval + timeout = %s)", took.Round(10*time.Millisecond), bound)
	if took > bound+200*time.Millisecond {
		t.Errorf("failover took %s, want within fall × interval + timeout = %s (+200ms for polling)", took, bound)
	}
	if f := l.ctl("n1", "forwards"); !strings.Contains(f, "192.0.2.18:53") || !strings.Contains(f, "failed-over") {
		t.Errorf("ctl forwards = %q, want dc2's recursor in the root zone and the failover state", f)
	}
	for i := range 10 {
		out, err := exec.Command("ip", "netns", "exec", l.ns("cl"), "dig", "+short", "+time=2", "+tries=1",
			"@198.51.100.53", fmt.Sprintf("new%d.lab.test", i), "A").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "203.0.113.81" {
			t.Errorf("query %d during the outage: %q %v, want 203.0.113.81 from dc2", i, out, err)
		}
	}
	if n := len(l.paths()); n != 2 {
		t.Errorf("router has %d paths during dc1's outage, want both nodes still announced", n)
	}
	exec.Command("ip", "netns", "exec", l.ns("rtr"), "ip", "link", "set", link, "up").Run()
	start = time.Now()
	for !strings.Contains(l.ctl("n1", "failover"), "state local") {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("n1 did not fail back: %s", l.ctl("n1", "failover"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("dc1's recursor back: failed back after %s", time.Since(start).Round(10*time.Millisecond))
}
