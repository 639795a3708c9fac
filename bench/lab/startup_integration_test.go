package lab_test

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestNodesBeforeUpstream (issue 18): the nodes start before their upstream, 20 times in a row,
// with the upstream following after 0 to 1.5 s. Each time both nodes must be announced (two
// next hops at the router) within rise × interval of the upstream's start plus the BGP session's
// set-up, whatever failed before it: health checks that found no upstream leave nothing behind
// that delays the first announcement.
func TestNodesBeforeUpstream(t *testing.T) {
	const (
		interval = 500 * time.Millisecond
		rise     = 2
		cycles   = 20
		// Session set-up: the router's and the speaker's connect retry are 1 s each; a node
		// started with its upstream may find its session still coming up after rise checks.
		setup = 2 * time.Second
	)
	bound := rise*interval + setup
	l := startLab(t, "LAB_INTERVAL=500ms", "LAB_TIMEOUT=300ms", "LAB_DRAIN=0s")
	l.waitPaths(2, 20*time.Second)
	var took []time.Duration
	for i := range cycles {
		l.run("stop", "n1", "n2", "nsd")
		l.waitPaths(0, 10*time.Second)
		l.run("node", "1")
		l.run("node", "2")
		delay := time.Duration(i%4) * 500 * time.Millisecond
		time.Sleep(delay)
		l.run("nsd")
		upstream := time.Now()
		for len(l.paths()) != 2 && time.Since(upstream) < bound+5*time.Second {
			time.Sleep(50 * time.Millisecond)
		}
		d := time.Since(upstream)
		took = append(took, d)
		if n := len(l.paths()); n != 2 {
			t.Fatalf("cycle %d (upstream %s after the nodes): %d next hops %s after the upstream started, want 2\nn1: %s\nn2: %s",
				i, delay, n, d.Round(time.Millisecond), l.ctl("n1", "bgp"), l.ctl("n2", "bgp"))
		}
		if d > bound {
			t.Errorf("cycle %d (upstream %s after the nodes): both announced %s after the upstream started, want within rise × interval + session set-up = %s\nn1: %s\nn2: %s",
				i, delay, d.Round(time.Millisecond), bound, l.ctl("n1", "bgp"), l.ctl("n2", "bgp"))
		}
	}
	slices.Sort(took)
	t.Logf("%d starts with the nodes before their upstream: both next hops %s to %s (median %s) after the upstream started; bound %s",
		cycles, took[0].Round(time.Millisecond), took[len(took)-1].Round(time.Millisecond), took[len(took)/2].Round(time.Millisecond), bound)
}

// run runs a lab.sh verb and fails the test if it fails.
func (l *lab) run(args ...string) {
	l.t.Helper()
	if out, err := l.script(args...); err != nil {
		l.t.Fatalf("lab.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}
