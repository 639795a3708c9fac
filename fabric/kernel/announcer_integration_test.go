//go:build linux

package kernel

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
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
	parentEnv = "FLEETDNS_KERNEL_HELPER_PARENT"
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
			h.do(t, "stop")
			// The helper is still running: what changed, Stop did.
			if exists := ns.linkExists(t, dev); exists == tc.created {
				t.Errorf("after Stop: device %s exists = %v, want %v", dev, exists, !tc.created)
			}
			if r := h.send(t, "announce"); !strings.Contains(r, ErrNotStarted.Error()) {
				t.Errorf("announce after Stop: %q, want %q", r, ErrNotStarted)
			}
			if !tc.created {
				if got := st.announced(t); len(got) != 0 {
					t.Errorf("after Stop: %v still on %s, want none", got, dev)
				}
			}
			st.checkOnlyWhereConfigured(t, tc.prefixes)
			checkBystander("after Stop")
			h.exit(t)
		})
	}
}

// TestAnnounceFailure makes the second prefix fail (IPv6 is off on lo): Announce reports it
// and takes the first one back, so that the caller, who now believes the node withdrawn,
// is right.
func TestAnnounceFailure(t *testing.T) {
	ipPath := requireRoot(t)
	ns := newNetns(t, ipPath)
	out, err := exec.Command(ipPath, "netns", "exec", ns.name, "sh", "-c",
		"echo 1 > /proc/sys/net/ipv6/conf/lo/disable_ipv6").CombinedOutput()
	if err != nil {
		t.Fatalf("disable IPv6 on lo in %s: %v: %s", ns.name, err, out)
	}
	st := state{ns: ns, dev: "lo"}
	h := startHelper(t, ns, Config{Device: "lo", Prefixes: prefixes(host4, host6)})
	r := h.send(t, "announce")
	if want := "err kernel: add " + host6 + " to lo: "; !strings.HasPrefix(r, want) {
		t.Errorf("announce = %q, want %q...", r, want)
	}
	if got := st.announced(t); len(got) != 0 {
		t.Errorf("after a failed announce: %v present, want none", got)
	}
	if s := h.status(t); s.Announced {
		t.Errorf("Status().Announced = true after a failed announce")
	}
	h.do(t, "withdraw")
	h.exit(t)
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
