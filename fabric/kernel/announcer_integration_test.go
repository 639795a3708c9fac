//go:build linux

package kernel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Every address and route these tests make lives in a network namespace the test creates;
// the Announcer itself runs in a helper process (this test binary, TestHelperAnnouncer)
// started inside it by `ip netns exec`, so that its TUN device, addresses and routes never
// touch the host's namespace, and so that the helper can be SIGKILLed. The parent reads the
// kernel's state with `ip -n NS -j`, independently of netlink. Only TEST-NET-2 and
// 2001:db8::/32 are used.

const (
	helperEnv = "FLEETDNS_KERNEL_HELPER"
	host4     = "198.51.100.53/32"
	net4      = "198.51.100.64/26"
	host6     = "2001:db8:5353::53/128"
	bystander = "198.51.100.99/32" // the operator's, on the same device or table: must survive
	replyWait = 10 * time.Second
	pollEvery = 20 * time.Millisecond
)

func TestAnnouncer(t *testing.T) {
	ipPath := requireRoot(t)
	for _, tc := range []struct {
		name     string
		device   string // "": the default, created by Start
		table    int
		prefixes []string
		setup    [][]string // `ip -n NS` commands run before Start
		created  bool
	}{
		{name: "tun/addresses", prefixes: []string{host4, host6}, created: true},
		{name: "tun/table100", table: 100, prefixes: []string{host4, net4, host6}, created: true},
		{
			name: "lo/addresses", device: "lo", prefixes: []string{host4, host6},
			setup: [][]string{
				{"addr", "add", host4, "dev", "lo"}, // left by an earlier run
				{"addr", "add", bystander, "dev", "lo"},
			},
		},
		{
			// Above 255, the table travels in RTA_TABLE rather than in the header.
			name: "lo/table4000", device: "lo", table: 4000, prefixes: []string{host4, host6},
			setup: [][]string{
				{"route", "add", host4, "dev", "lo", "table", "4000", "proto", "static", "scope", "link"},
				{"-6", "route", "add", host6, "dev", "lo", "table", "4000", "proto", "static"},
				{"route", "add", bystander, "dev", "lo", "table", "4000", "proto", "static"},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetns(t, ipPath)
			for _, args := range tc.setup {
				ns.ip(t, args...)
			}
			dev := tc.device
			if dev == "" {
				dev = DefaultDevice
			}
			cfg := Config{Device: tc.device, Table: tc.table, Prefixes: prefixes(tc.prefixes...)}
			want := slices.Clone(tc.prefixes)
			slices.Sort(want)
			st := state{ns: ns, dev: dev, table: tc.table}
			checkBystander := func(when string) {
				t.Helper()
				if len(tc.setup) == 0 {
					return
				}
				var have []string
				if tc.table == 0 {
					have = ns.addrs(t, dev)
				} else {
					have = ns.routes(t, "-4", tc.table)
				}
				if !slices.Contains(have, bystander) {
					t.Errorf("%s: the operator's %s is gone (have %v)", when, bystander, have)
				}
			}

			h := startHelper(t, ns, cfg)
			if got := st.announced(t); len(got) != 0 {
				t.Errorf("after Start: %v present, want none (leftovers removed)", got)
			}
			checkBystander("after Start")
			if s := h.status(t); s.Device != dev || s.Table != tc.table || s.Created != tc.created || s.Announced {
				t.Errorf("Status() after Start = %+v, want device %s, table %d, created %v, not announced", s, dev, tc.table, tc.created)
			}
			if tc.created {
				checkTUN(t, ns)
			}

			for i := range 2 { // the second time finds everything in place
				h.do(t, "announce")
				if got := st.announced(t); !slices.Equal(got, want) {
					t.Fatalf("after announce #%d: present %v, want %v", i+1, got, want)
				}
			}
			st.checkOnlyWhereConfigured(t, tc.prefixes)
			if s := h.status(t); !s.Announced {
				t.Errorf("Status().Announced = false after announce")
			}
			if tc.table == 0 {
				h.do(t, "probe") // the addresses are local: a UDP datagram to each arrives
			}

			for i := range 2 {
				h.do(t, "withdraw")
				if got := st.announced(t); len(got) != 0 {
					t.Fatalf("after withdraw #%d: %v present, want none", i+1, got)
				}
			}
			st.checkOnlyWhereConfigured(t, tc.prefixes)

			h.do(t, "announce")
			h.do(t, "graceful")
			if got := st.announced(t); len(got) != 0 {
				t.Errorf("after Announce(graceful): %v present, want none", got)
			}
			if s := h.status(t); s.Announced {
				t.Errorf("Status().Announced = true after Announce(graceful)")
			}

			h.do(t, "announce")
			h.stop(t)
			if exists := ns.linkExists(t, dev); exists == tc.created {
				t.Errorf("after Stop: device %s exists = %v, want %v", dev, exists, !tc.created)
			}
			if !tc.created {
				if got := st.announced(t); len(got) != 0 {
					t.Errorf("after Stop: %v still on %s, want none", got, dev)
				}
			}
			st.checkOnlyWhereConfigured(t, tc.prefixes)
			checkBystander("after Stop")
		})
	}
}

// TestFateSharing kills the announcing process outright: its TUN device, and with it every
// prefix, must go without any help from the process.
func TestFateSharing(t *testing.T) {
	ipPath := requireRoot(t)
	for _, tc := range []struct {
		name  string
		table int
	}{
		{name: "addresses"},
		{name: "table100", table: 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetns(t, ipPath)
			all := []string{host4, host6}
			st := state{ns: ns, dev: DefaultDevice, table: tc.table}
			h := startHelper(t, ns, Config{Table: tc.table, Prefixes: prefixes(all...)})
			h.do(t, "announce")
			if got := st.announced(t); len(got) != len(all) {
				t.Fatalf("after announce: present %v, want %v", got, all)
			}
			killed := time.Now()
			if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatalf("SIGKILL helper: %v", err)
			}
			gone := poll(t, 2*time.Second, func() bool { return !ns.linkExists(t, DefaultDevice) })
			if !gone {
				t.Fatalf("%s still exists 2s after SIGKILL", DefaultDevice)
			}
			t.Logf("device gone %v after SIGKILL", time.Since(killed).Round(time.Millisecond))
			if got := ns.anywhere(t, all); len(got) != 0 {
				t.Errorf("after SIGKILL: %v", got)
			}
		})
	}
}

// TestHelperAnnouncer is the announcing process of the tests above; run directly, it does
// nothing. It starts an Announcer with the Config in $FLEETDNS_KERNEL_HELPER, answers "ok"
// or "err ..." to that and to each command on stdin, and stops the Announcer at EOF.
func TestHelperAnnouncer(t *testing.T) {
	js := os.Getenv(helperEnv)
	if js == "" {
		return
	}
	reply := func(err error) {
		if err != nil {
			fmt.Printf("err %v\n", strings.ReplaceAll(err.Error(), "\n", "; "))
			return
		}
		fmt.Println("ok")
	}
	// The last line of defence for the host: `ip netns exec` failing open would put us there.
	if err := notInitNetns(); err != nil {
		reply(err)
		t.Fatal(err)
	}
	var cfg Config
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		reply(err)
		t.Fatal(err)
	}
	a, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		reply(err)
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Start(ctx); err != nil {
		reply(err)
		t.Fatal(err)
	}
	reply(nil)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch cmd := in.Text(); cmd {
		case "announce":
			reply(a.Announce(ctx, false))
		case "graceful":
			reply(a.Announce(ctx, true))
		case "withdraw":
			reply(a.Withdraw(ctx))
		case "probe":
			reply(probe(cfg.Prefixes))
		case "status":
			b, _ := json.Marshal(a.Status())
			fmt.Printf("ok %s\n", b)
		case "stop":
			reply(a.Stop(ctx))
			return
		default:
			reply(fmt.Errorf("unknown command %q", cmd))
		}
	}
	_ = a.Stop(ctx) // the parent is gone: leave nothing behind
}

// notInitNetns fails unless this process is in a network namespace other than PID 1's.
func notInitNetns() error {
	self, err1 := os.Readlink("/proc/self/ns/net")
	pid1, err2 := os.Readlink("/proc/1/ns/net")
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("refusing to run: %w", err)
	}
	if self == pid1 {
		return fmt.Errorf("refusing to run in PID 1's network namespace (%s)", self)
	}
	return nil
}

// probe sends a UDP datagram to each host prefix's address and reads it back there.
func probe(ps []netip.Prefix) error {
	for _, p := range ps {
		if !p.IsSingleIP() {
			continue
		}
		if err := echo(p.Addr()); err != nil {
			return fmt.Errorf("probe %v: %w", p.Addr(), err)
		}
	}
	return nil
}

func echo(a netip.Addr) error {
	l, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	if err != nil {
		return err
	}
	defer l.Close()
	c, err := net.DialUDP("udp", nil, l.LocalAddr().(*net.UDPAddr))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("fleetdns")); err != nil {
		return err
	}
	if err := l.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := l.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "fleetdns" {
		return fmt.Errorf("read %q, want %q", buf[:n], "fleetdns")
	}
	return nil
}

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

// state is where a configuration puts its prefixes.
type state struct {
	ns    *netns
	dev   string
	table int
}

// announced lists the prefixes present where the configuration puts them and as it puts
// them: global addresses on dev, or routes "dev DEV proto static" (scope link for IPv4) in
// the table. Bystanders are left out.
func (s state) announced(t *testing.T) []string {
	t.Helper()
	var out []string
	if s.table == 0 {
		for _, a := range s.ns.addrs(t, s.dev) {
			if a != bystander {
				out = append(out, a)
			}
		}
		return out
	}
	for _, fam := range []string{"-4", "-6"} {
		for _, r := range s.ns.routeList(t, fam, fmt.Sprint(s.table)) {
			if r.Dst == bystander {
				continue
			}
			if r.Dev != s.dev || r.Protocol != "static" || (fam == "-4" && r.Scope != "link") {
				t.Errorf("table %d has %+v, want dev %s proto static (scope link)", s.table, r, s.dev)
			}
			out = append(out, r.Dst)
		}
	}
	slices.Sort(out)
	return out
}

// checkOnlyWhereConfigured fails if ps are found as addresses on another device (or, in
// table mode, on any), or as routes in another table than the configured one (in address
// mode, the kernel's own routes for the addresses are expected in main and local).
func (s state) checkOnlyWhereConfigured(t *testing.T, ps []string) {
	t.Helper()
	for _, a := range s.ns.allAddrs(t) {
		if slices.Contains(ps, a.prefix) && (s.table != 0 || a.dev != s.dev) {
			t.Errorf("address %s on %s, want it only on %s in address mode", a.prefix, a.dev, s.dev)
		}
	}
	if s.table == 0 {
		return
	}
	for _, fam := range []string{"-4", "-6"} {
		for _, r := range s.ns.routeList(t, fam, "all") {
			if slices.Contains(ps, r.Dst) && r.Table != fmt.Sprint(s.table) {
				t.Errorf("route %+v outside table %d", r, s.table)
			}
		}
	}
}

// checkTUN checks that Start made fleetdns0 a non-persistent TUN device, up, with carrier.
func checkTUN(t *testing.T, ns *netns) {
	t.Helper()
	var links []struct {
		Flags    []string `json:"flags"`
		Linkinfo struct {
			InfoKind string `json:"info_kind"`
			InfoData struct {
				Type    string `json:"type"`
				Persist bool   `json:"persist"`
			} `json:"info_data"`
		} `json:"linkinfo"`
	}
	decode(t, ns.ip(t, "-j", "-d", "link", "show", "dev", DefaultDevice), &links)
	if len(links) != 1 {
		t.Fatalf("ip link show dev %s: %d links", DefaultDevice, len(links))
	}
	l := links[0]
	if l.Linkinfo.InfoKind != "tun" || l.Linkinfo.InfoData.Type != "tun" || l.Linkinfo.InfoData.Persist {
		t.Errorf("%s linkinfo = %+v, want a non-persistent tun", DefaultDevice, l.Linkinfo)
	}
	if !slices.Contains(l.Flags, "UP") || !slices.Contains(l.Flags, "LOWER_UP") {
		t.Errorf("%s flags = %v, want UP and LOWER_UP", DefaultDevice, l.Flags)
	}
}

// helper is the announcing process, driven line by line.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	done   chan error // the exit status, once
	stderr *syncBuffer
	exited bool
}

// syncBuffer is the helper's stderr (its log), written by exec's copying goroutine and read
// by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startHelper(t *testing.T, ns *netns, cfg Config) *helper {
	t.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ns.ipPath, "netns", "exec", ns.name, os.Args[0],
		"-test.run=^TestHelperAnnouncer$", "-test.count=1", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), helperEnv+"="+string(js))
	h := &helper{cmd: cmd, lines: make(chan string, 16), done: make(chan error, 1), stderr: &syncBuffer{}}
	cmd.Stderr = h.stderr
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.WaitDelay = 5 * time.Second
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		h.done <- err
	}()
	// `ip netns exec` execs the helper in place, so this PID is the helper's own.
	t.Cleanup(func() {
		if !h.exited {
			h.stdin.Close() // the helper stops its Announcer at EOF
			select {
			case <-h.done:
			case <-time.After(replyWait):
				_ = cmd.Process.Kill()
				<-h.done
			}
		}
		if t.Failed() {
			t.Logf("helper log:\n%s", h.stderr.String())
		}
	})
	if r := h.reply(t); r != "ok" {
		t.Fatalf("helper Start: %s", r)
	}
	return h
}

// reply is the helper's next answer: a line that is "ok", starts with "ok " or "err ".
func (h *helper) reply(t *testing.T) string {
	t.Helper()
	timeout := time.After(replyWait)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				t.Fatalf("helper exited before replying; log:\n%s", h.stderr.String())
			}
			if l == "ok" || strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "err ") {
				return l
			}
			t.Logf("helper: %s", l)
		case <-timeout:
			t.Fatalf("no reply from the helper in %v", replyWait)
		}
	}
}

func (h *helper) send(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := io.WriteString(h.stdin, cmd+"\n"); err != nil {
		t.Fatalf("send %q to helper: %v", cmd, err)
	}
	return h.reply(t)
}

// do sends cmd and fails the test unless the helper answers "ok".
func (h *helper) do(t *testing.T, cmd string) {
	t.Helper()
	if r := h.send(t, cmd); r != "ok" {
		t.Fatalf("%s: %s", cmd, r)
	}
}

func (h *helper) status(t *testing.T) Status {
	t.Helper()
	r := h.send(t, "status")
	var s Status
	if err := json.Unmarshal([]byte(strings.TrimPrefix(r, "ok ")), &s); err != nil {
		t.Fatalf("status reply %q: %v", r, err)
	}
	return s
}

// stop sends "stop" and waits for the helper to exit cleanly.
func (h *helper) stop(t *testing.T) {
	t.Helper()
	h.do(t, "stop")
	h.stdin.Close()
	select {
	case err := <-h.done:
		h.exited = true
		if err != nil {
			t.Errorf("helper exit: %v", err)
		}
	case <-time.After(replyWait):
		t.Fatalf("helper still running %v after stop", replyWait)
	}
}
