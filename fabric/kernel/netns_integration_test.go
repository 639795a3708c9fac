//go:build linux

package kernel

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// requireRoot returns the path of ip, or skips (fails, with FLEETDNS_REQUIRE_TOOLS set)
// without root, ip or /dev/net/tun.
func requireRoot(t *testing.T) string {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if p := filepath.Join(dir, "ip"); isExecutable(p) {
				ipPath, err = p, nil
				break
			}
		}
	}
	if err != nil {
		missing = append(missing, "ip")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		missing = append(missing, "/dev/net/tun")
	}
	if len(missing) > 0 {
		msg := "needs " + strings.Join(missing, ", ") + " (Debian: apt-get install -y iproute2)"
		if os.Getenv("FLEETDNS_REQUIRE_TOOLS") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return ipPath
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// poll calls cond every pollEvery until it holds or max has passed, and reports whether it
// held.
func poll(t *testing.T, max time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(max)
	for range int(max/pollEvery) + 1 {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(pollEvery)
	}
	return cond()
}

var nsCount atomic.Int32

// netns is a network namespace made for one test, deleted at its end.
type netns struct {
	name   string
	ipPath string
}

func newNetns(t *testing.T, ipPath string) *netns {
	t.Helper()
	n := &netns{name: fmt.Sprintf("fdk%d-%d", os.Getpid()%10000, nsCount.Add(1)), ipPath: ipPath}
	if out, err := exec.Command(ipPath, "netns", "add", n.name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", n.name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ipPath, "netns", "del", n.name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", n.name, err, out)
		}
	})
	n.ip(t, "link", "set", "lo", "up")
	return n
}

// run runs `ip -n NS args...`.
func (n *netns) run(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	cmd := exec.Command(n.ipPath, append([]string{"-n", n.name}, args...)...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func (n *netns) ip(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := n.run(args...)
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", n.name, strings.Join(args, " "), err, errOut)
	}
	return out
}

func (n *netns) linkExists(t *testing.T, dev string) bool {
	t.Helper()
	_, errOut, err := n.run("link", "show", "dev", dev)
	if err != nil && strings.Contains(errOut, "does not exist") {
		return false
	}
	if err != nil {
		t.Fatalf("ip -n %s link show dev %s: %v: %s", n.name, dev, err, errOut)
	}
	return true
}

type ipAddr struct {
	Ifname   string `json:"ifname"`
	AddrInfo []struct {
		Local     string `json:"local"`
		Prefixlen int    `json:"prefixlen"`
		Scope     string `json:"scope"`
	} `json:"addr_info"`
}

// addrs lists the global addresses on dev as prefixes.
func (n *netns) addrs(t *testing.T, dev string) []string {
	t.Helper()
	var out []string
	for _, a := range n.allAddrs(t) {
		if a.dev == dev {
			out = append(out, a.prefix)
		}
	}
	return out
}

type devAddr struct{ dev, prefix string }

// allAddrs lists the global addresses on every device, sorted by prefix.
func (n *netns) allAddrs(t *testing.T) []devAddr {
	t.Helper()
	var links []ipAddr
	decode(t, n.ip(t, "-j", "addr", "show"), &links)
	var out []devAddr
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if a.Scope == "global" {
				out = append(out, devAddr{l.Ifname, fmt.Sprintf("%s/%d", a.Local, a.Prefixlen)})
			}
		}
	}
	slices.SortFunc(out, func(a, b devAddr) int { return strings.Compare(a.prefix, b.prefix) })
	return out
}

type ipRoute struct {
	Type     string `json:"type"`
	Dst      string `json:"dst"`
	Dev      string `json:"dev"`
	Protocol string `json:"protocol"`
	Scope    string `json:"scope"`
	Table    string `json:"table"`
}

// routeList is table ("all", "main", "local" or a number) in family "-4" or "-6".
func (n *netns) routeList(t *testing.T, family, table string) []ipRoute {
	t.Helper()
	out, errOut, err := n.run("-j", family, "route", "show", "table", table)
	if err != nil && strings.Contains(errOut, "FIB table does not exist") {
		return nil // the kernel makes a table with its first route
	}
	if err != nil {
		t.Fatalf("ip -n %s -j %s route show table %s: %v: %s", n.name, family, table, err, errOut)
	}
	var rs []ipRoute
	decode(t, out, &rs)
	for i, r := range rs {
		rs[i].Dst = canonical(r.Dst, family)
	}
	return rs
}

// routes lists the destinations in a numbered table.
func (n *netns) routes(t *testing.T, family string, table int) []string {
	t.Helper()
	var out []string
	for _, r := range n.routeList(t, family, fmt.Sprint(table)) {
		out = append(out, r.Dst)
	}
	return out
}

// anywhere lists every trace of ps in the namespace: an address on any device, or a route
// in any table.
func (n *netns) anywhere(t *testing.T, ps []string) []string {
	t.Helper()
	var out []string
	for _, a := range n.allAddrs(t) {
		if slices.Contains(ps, a.prefix) {
			out = append(out, fmt.Sprintf("address %s on %s", a.prefix, a.dev))
		}
	}
	for _, fam := range []string{"-4", "-6"} {
		for _, r := range n.routeList(t, fam, "all") {
			if slices.Contains(ps, r.Dst) {
				out = append(out, fmt.Sprintf("route %+v", r))
			}
		}
	}
	return out
}

func decode(t *testing.T, s string, v any) {
	t.Helper()
	if strings.TrimSpace(s) == "" {
		return
	}
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("decode ip's JSON %q: %v", s, err)
	}
}

// canonical writes ip's "198.51.100.53" as "198.51.100.53/32".
func canonical(dst, family string) string {
	if dst == "" || dst == "default" || strings.Contains(dst, "/") {
		return dst
	}
	if family == "-6" {
		return dst + "/128"
	}
	return dst + "/32"
}
