//go:build linux

// Package configs holds no code: its tests check that the shipped examples work as shipped,
// the way a new user would try them.
package configs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The router snippets are tried unchanged: parsed, then started in a network namespace the
// test makes. The namespace has the router's address from server.yaml (192.0.2.254/24, on one
// end of a veth pair whose both ends stay in the namespace), so the neighbors 192.0.2.21/22
// are on a connected network; nothing answers there, and the sessions need not come up. The
// TEST-NET-1 address never leaves that namespace.

const (
	birdConf   = "router-bird.conf"
	frrConf    = "router-frr.conf"
	routerAddr = "192.0.2.254/24"
	routerID   = "192.0.2.254"
)

var neighbors = []string{"192.0.2.21", "192.0.2.22"}

// need returns the path of each tool, or skips (fails, with FLEETDNS_REQUIRE_TOOLS set)
// naming what is missing and how to install it.
func need(t *testing.T, root bool, install string, names ...string) []string {
	t.Helper()
	var paths, missing []string
	if root && os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, name := range names {
		p, err := exec.LookPath(name)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/lib/frr"} {
				if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
					p = filepath.Join(dir, name)
					break
				}
			}
		}
		if p == "" {
			missing = append(missing, name)
		}
		paths = append(paths, p)
	}
	if len(missing) > 0 {
		msg := "needs " + strings.Join(missing, ", ") + " (Debian: " + install + ")"
		if os.Getenv("FLEETDNS_REQUIRE_TOOLS") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return paths
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// namespace makes a network namespace with the router's address and returns its name.
func namespace(t *testing.T, ip, tag string) string {
	t.Helper()
	ns := fmt.Sprintf("fd-cfg-%s-%d", tag, os.Getpid())
	run(t, ip, "netns", "add", ns)
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", ns, err, out)
		}
	})
	run(t, ip, "-n", ns, "link", "set", "lo", "up")
	run(t, ip, "-n", ns, "link", "add", "rtr0", "type", "veth", "peer", "name", "rtr1")
	run(t, ip, "-n", ns, "addr", "add", routerAddr, "dev", "rtr0")
	run(t, ip, "-n", ns, "link", "set", "rtr0", "up")
	run(t, ip, "-n", ns, "link", "set", "rtr1", "up")
	return ns
}

// proc is a daemon the test started.
type proc struct {
	exited chan struct{}
	mu     sync.Mutex
	out    bytes.Buffer
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// daemon runs args in ns until the test ends; ip netns exec execs it in place, so the process
// is the daemon itself, and the test stops it by its own PID.
func daemon(t *testing.T, ip, ns string, args ...string) *proc {
	t.Helper()
	p := &proc{exited: make(chan struct{})}
	cmd := exec.Command(ip, append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", args[0], err)
	}
	go func() { cmd.Wait(); close(p.exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			t.Errorf("%s (pid %d) did not exit", args[0], cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", args[0], p.output())
		}
	})
	return p
}

// eventually polls f for up to 10 s, failing with its last output.
func eventually(t *testing.T, what string, p *proc, f func() (bool, string)) string {
	t.Helper()
	var last string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var ok bool
		if ok, last = f(); ok {
			return last
		}
		select {
		case <-p.exited:
			t.Fatalf("%s: the daemon exited; last:\n%s", what, last)
		default:
		}
	}
	t.Fatalf("%s: not so after 10s; last:\n%s", what, last)
	return ""
}

func TestBIRDConfigParses(t *testing.T) {
	bird := need(t, false, "apt-get install -y bird2", "bird")[0]
	// The router's snippet, and the node's for announce: kernel (bench/lab runs both).
	for _, conf := range []string{birdConf, "node-bird.conf"} {
		out := run(t, bird, "-p", "-c", conf)
		if strings.TrimSpace(out) != "" {
			t.Errorf("bird -p -c %s printed:\n%s", conf, out)
		}
	}
}

// TestBIRDConfigStarts: BIRD starts with the shipped file (it needs a router ID and protocol
// device for that, and for the sessions to leave Idle) and lists both sessions, trying to
// connect.
func TestBIRDConfigStarts(t *testing.T) {
	tools := need(t, true, "apt-get install -y bird2 iproute2", "ip", "bird", "birdc")
	ip, bird, birdc := tools[0], tools[1], tools[2]
	if out, _ := exec.Command(bird, "--version").CombinedOutput(); !strings.Contains(string(out), "BIRD version 2.") {
		t.Skipf("needs BIRD 2, found %s", bytes.TrimSpace(out))
	}
	conf, err := filepath.Abs(birdConf)
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, ip, "bird")
	sock := filepath.Join(t.TempDir(), "bird.ctl")
	p := daemon(t, ip, ns, bird, "-f", "-c", conf, "-s", sock)
	birdcOut := func(args ...string) (bool, string) {
		out, err := exec.Command(ip, append([]string{"netns", "exec", ns, birdc, "-s", sock}, args...)...).CombinedOutput()
		return err == nil, string(out)
	}
	status := eventually(t, "birdc show status answers", p, func() (bool, string) {
		ok, out := birdcOut("show", "status")
		return ok && strings.Contains(out, "Daemon is up and running"), out
	})
	if !strings.Contains(status, "Router ID is "+routerID) {
		t.Errorf("show status:\n%s\nwant router ID %s", status, routerID)
	}
	protocols := eventually(t, "both sessions listed and past Idle", p, func() (bool, string) {
		ok, out := birdcOut("show", "protocols")
		if !ok {
			return false, out
		}
		for _, name := range []string{"dc1_ns1", "dc1_ns2"} {
			line := lineWith(out, name+" ")
			// Without protocol device a direct session waits in Idle for its neighbor's
			// network; with it, it tries to connect (Connect/Active) to nobody.
			if !strings.Contains(line, " BGP ") || strings.Contains(line, "Idle") || strings.Contains(line, "down") {
				return false, out
			}
		}
		return strings.Contains(out, " Device ") && strings.Contains(out, " Kernel "), out
	})
	t.Logf("birdc show protocols:\n%s", protocols)
	for i, name := range []string{"dc1_ns1", "dc1_ns2"} {
		_, out := birdcOut("show", "protocols", "all", name)
		for _, want := range []string{"Neighbor address: " + neighbors[i], "Neighbor AS:      65053", "Local AS:         65000", "Input filter:   from_fleetdns"} {
			if !strings.Contains(out, want) {
				t.Errorf("show protocols all %s lacks %q:\n%s", name, want, out)
			}
		}
	}
}

func TestFRRConfigParses(t *testing.T) {
	vtysh := need(t, false, "apt-get install -y frr; FRR is not needed for fleetdns, only to check "+frrConf, "vtysh")[0]
	out, err := exec.Command(vtysh, "-C", "-f", frrConf).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "" {
		t.Errorf("vtysh -C -f %s: %v\n%s", frrConf, err, out)
	}
}

// TestFRRConfigStarts: bgpd alone (no zebra: the test makes no FRR install of its own) loads
// the shipped file without a complaint, takes the router ID from it, and lists both neighbors.
func TestFRRConfigStarts(t *testing.T) {
	tools := need(t, true, "apt-get install -y frr iproute2; FRR is not needed for fleetdns, only to check "+frrConf, "ip", "bgpd", "vtysh")
	ip, bgpd, vtysh := tools[0], tools[1], tools[2]
	conf, err := filepath.Abs(frrConf)
	if err != nil {
		t.Fatal(err)
	}
	ns := namespace(t, ip, "frr")
	dir := t.TempDir()
	p := daemon(t, ip, ns, bgpd, "-f", conf, "-i", filepath.Join(dir, "bgpd.pid"),
		"-z", filepath.Join(dir, "zserv.api"), "--vty_socket", dir, "-P", "0",
		"--no_zebra", "--no_kernel", "--skip_runas", "--log", "stdout")
	summary := eventually(t, "show bgp summary lists both neighbors", p, func() (bool, string) {
		out, err := exec.Command(ip, "netns", "exec", ns, vtysh, "--vty_socket", dir, "-d", "bgpd",
			"-c", "show bgp ipv4 unicast summary").CombinedOutput()
		s := string(out)
		return err == nil && strings.Contains(s, neighbors[0]) && strings.Contains(s, neighbors[1]), s
	})
	t.Logf("show bgp ipv4 unicast summary:\n%s", summary)
	if !strings.Contains(summary, "BGP router identifier "+routerID+", local AS number 65000") {
		t.Errorf("summary lacks router ID %s and AS 65000:\n%s", routerID, summary)
	}
	for _, n := range neighbors {
		if line := lineWith(summary, n+" "); !strings.Contains(line, " 65053 ") {
			t.Errorf("neighbor %s not in AS 65053: %q", n, line)
		}
	}
	// bgpd reports a line it cannot take from the file and goes on: a shipped file must have none.
	if s := p.output(); strings.Contains(s, "config line") {
		t.Errorf("bgpd complained about %s:\n%s", frrConf, s)
	}
}

func lineWith(text, s string) string {
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}
