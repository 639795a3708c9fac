package lab_test

import (
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestKernelAnnounce (announce: kernel): no BGP in fleetdns. Each node runs BIRD 2 with the
// shipped configs/node-bird.conf, which exports the addresses of fleetdns0; fleetdns adds the
// anycast address there while healthy. The route is at the router while a node is healthy and
// gone within fall × interval + 1 s when its upstream path is cut (siblings tell it is its own
// fault), back when the path is; a SIGKILLed node's TUN device, address and route go with it.
func TestKernelAnnounce(t *testing.T) {
	const bound = 2*time.Second + time.Second // fall 2 × interval 1s + 1s
	l := startLab(t, "LAB_ANNOUNCE=kernel", "LAB_SIBLINGS=1")
	d := l.waitPaths(2, 20*time.Second)
	t.Logf("both nodes' BIRD export the anycast address %s after the lab came up", d.Round(10*time.Millisecond))
	if out := l.ctl("n1", "bgp"); !strings.Contains(out, "announce via kernel") ||
		!strings.Contains(out, "addresses on fleetdns0 (created by fleetdns") || !strings.Contains(out, "198.51.100.53/32 kernel announced (healthy)") {
		t.Errorf("ctl bgp on n1:\n%s\nwant announce via kernel, fleetdns0 created by fleetdns, the prefix announced", out)
	}
	if !l.hasAnycast("n1") {
		t.Errorf("n1 healthy, but 198.51.100.53 is not on its fleetdns0")
	}
	l.wantBothNodes()

	// n1's own path to the upstream cut: n2 still passes, so n1 removes the address and its
	// BIRD withdraws the route.
	l.cutUpstream("n1", true)
	d = l.waitPaths(1, 10*time.Second)
	t.Logf("n1's upstream path cut: n1's route gone after %s (bound %s)", d.Round(10*time.Millisecond), bound)
	if d > bound {
		t.Errorf("withdrawal took %s, want within fall × interval + 1s = %s", d, bound)
	}
	if l.hasAnycast("n1") {
		t.Errorf("n1 withdrawn, but 198.51.100.53 is still on its fleetdns0")
	}
	l.wantOnly("lab-n2", 10, "with n1 withdrawn")
	l.cutUpstream("n1", false)
	d = l.waitPaths(2, 10*time.Second)
	t.Logf("n1's path back: announced again after %s", d.Round(10*time.Millisecond))

	// SIGKILL: no shutdown runs, yet the TUN device dies with the process, and the route with it.
	n1 := l.pid("n1")
	syscall.Kill(n1, syscall.SIGKILL)
	d = l.waitPaths(1, 10*time.Second)
	t.Logf("SIGKILL of n1: route gone after %s", d.Round(10*time.Millisecond))
	if d > time.Second {
		t.Errorf("a killed node's route stayed %s, want it gone with the process (within 1s)", d)
	}
	if out, _ := exec.Command("ip", "-n", l.ns("n1"), "link", "show", "fleetdns0").CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Errorf("fleetdns0 still there after n1 was killed: %s", out)
	}
	l.wantOnly("lab-n2", 10, "with n1 killed")
}

// hasAnycast reports whether node n has the anycast address on fleetdns0.
func (l *lab) hasAnycast(n string) bool {
	out, _ := exec.Command("ip", "-n", l.ns(n), "-4", "addr", "show", "dev", "fleetdns0").CombinedOutput()
	return strings.Contains(string(out), "198.51.100.53/32")
}
