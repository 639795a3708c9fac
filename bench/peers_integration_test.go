package bench

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/nsd"
	"github.com/miekg/dns"
)

// peerTestNames is the size of the zone the peers forward to: h0..h99.bench.test.
const peerTestNames = 100

func peerTestIP(i int) string { return fmt.Sprintf("192.0.2.%d", i%250+1) }

func TestPeerList(t *testing.T) {
	var names []string
	for _, p := range Peers() {
		names = append(names, p.Name)
		if p.Available == nil || p.Version == nil || p.Start == nil {
			t.Errorf("peer %s has a nil func", p.Name)
		}
	}
	want := []string{"fleetdns", "unbound", "dnsmasq", "pdns-recursor", "dnsdist", "knot-resolver"}
	if !slices.Equal(names, want) {
		t.Errorf("Peers() = %v, want %v", names, want)
	}
	for _, name := range want {
		if p, ok := PeerByName(name); !ok || p.Name != name {
			t.Errorf("PeerByName(%q) = %q, %v, want the peer", name, p.Name, ok)
		}
	}
	if _, ok := PeerByName("bind9"); ok {
		t.Errorf("PeerByName(bind9) found a peer, want none")
	}
}

// TestPeers starts each installed system in front of a real NSD and checks what the harness
// relies on: right answers over UDP and TCP, pinning, CPU time that grows with load, memory,
// and a stop that leaves nothing behind.
func TestPeers(t *testing.T) {
	upstream := peerTestNSD(t)
	var fleetdns string // built on first use
	for _, peer := range Peers() {
		t.Run(peer.Name, func(t *testing.T) {
			if err := peer.Available(); err != nil {
				if os.Getenv("FLEETDNS_BENCH_REQUIRE_PEERS") != "" {
					t.Fatal(err)
				}
				t.Skip(err)
			}
			port, err := nsd.FreePort(upstream.Addr.Addr())
			if err != nil {
				t.Fatal(err)
			}
			o := PeerOptions{
				Dir:          t.TempDir(),
				Listen:       netip.AddrPortFrom(upstream.Addr.Addr(), port),
				Upstream:     upstream.Addr,
				CPU:          0,
				CacheEntries: 10_000,
				ReadyName:    "h0.bench.test.",
			}
			version := peer.Version()
			if peer.Name == "fleetdns" {
				if fleetdns == "" {
					fleetdns = peerTestBuildFleetdns(t)
				}
				o.FleetdnsBinary = fleetdns
				version = FleetdnsVersion(fleetdns)
			}
			if version == "" || version == "unknown" {
				t.Errorf("Version() = %q, want a version", version)
			}
			p, err := peer.Start(o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = p.Stop() })
			t.Logf("%s %s, pid %d", peer.Name, version, p.PID())

			peerTestPinned(t, p.PID(), o.CPU)
			peerTestAnswers(t, o.Listen)

			cpu0, err := p.CPUTime()
			if err != nil || cpu0 < 0 {
				t.Fatalf("CPUTime() = %v, %v, want a duration >= 0", cpu0, err)
			}
			queries, cpu1 := peerTestLoad(t, p, o.Listen, cpu0)
			t.Logf("CPU time %v before, %v after %d queries", cpu0, cpu1, queries)
			rss, err := p.RSS()
			if err != nil || rss <= 0 {
				t.Fatalf("RSS() = %d, %v, want > 0", rss, err)
			}
			t.Logf("RSS %.1f MiB", float64(rss)/(1<<20))

			pid := p.PID()
			start := time.Now()
			if err := p.Stop(); err != nil {
				t.Fatalf("Stop() = %v, want nil", err)
			}
			t.Logf("stopped in %v", time.Since(start).Round(time.Millisecond))
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("after Stop, /proc/%d: %v, want it gone", pid, err)
			}
			if err := p.Stop(); err != nil {
				t.Errorf("second Stop() = %v, want nil again", err)
			}
			if _, err := p.CPUTime(); err == nil {
				t.Errorf("CPUTime() after Stop = nil error, want one")
			}
		})
	}
}

// TestPeerProcessTree checks the bookkeeping of descendants with a shell that forks: their CPU
// time counts, and Stop kills the ones the shell leaves when SIGTERM ends it.
func TestPeerProcessTree(t *testing.T) {
	dir := t.TempDir()
	sh, err := lookBinary("sh")
	if err != nil {
		t.Skip(err)
	}
	// A child that spins for at most 20 s and one that sleeps; the shell waits for both.
	script := `end=$(( $(date +%s) + 20 )); while [ $(date +%s) -lt $end ]; do :; done & sleep 30 & wait`
	p, err := startProcess("sh", filepath.Join(dir, "sh.log"), nil, 0, sh, "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	var tree []procStat
	deadline := time.Now().Add(5 * time.Second)
	for len(tree) < 3 && time.Now().Before(deadline) {
		tree, err = processTree(p.PID())
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(tree) < 3 {
		t.Fatalf("processTree(%d) = %d processes, want the shell and 2 children", p.PID(), len(tree))
	}
	var cpu time.Duration
	for time.Now().Before(deadline) && cpu < 50*time.Millisecond {
		if cpu, err = p.CPUTime(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cpu < 50*time.Millisecond {
		t.Errorf("CPUTime() = %v with a spinning child, want at least 50ms", cpu)
	}
	if err := p.Stop(); err != nil {
		t.Fatalf("Stop() = %v, want nil", err)
	}
	for _, s := range tree[1:] {
		peerTestGone(t, s)
	}
}

// peerTestGone waits up to 2 s for a killed descendant to disappear (or be a zombie whose new
// parent has not reaped it yet).
func peerTestGone(t *testing.T, s procStat) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		now, err := readStat(s.pid)
		if err != nil || now.start != s.start || now.state == 'Z' {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("descendant %d still running (state %c) after Stop", s.pid, now.state)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func peerTestNSD(t *testing.T) *nsd.Server {
	t.Helper()
	dir := t.TempDir()
	var zone strings.Builder
	zone.WriteString("$ORIGIN bench.test.\n$TTL 86400\n" +
		"@ IN SOA ns.bench.test. h.bench.test. 1 3600 900 604800 300\n@ IN NS ns\nns IN A 192.0.2.1\n")
	for i := range peerTestNames {
		fmt.Fprintf(&zone, "h%d IN A %s\n", i, peerTestIP(i))
	}
	file := filepath.Join(dir, "bench.test.zone")
	if err := os.WriteFile(file, []byte(zone.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := nsd.Start(dir, netip.MustParseAddr("127.0.0.1"), nsd.Zone{Name: "bench.test.", File: file})
	if errors.Is(err, nsd.ErrNotInstalled) && os.Getenv("FLEETDNS_REQUIRE_TOOLS") == "" &&
		os.Getenv("FLEETDNS_BENCH_REQUIRE_PEERS") == "" {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

func peerTestBuildFleetdns(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fleetdns")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/fleetdns/fleetdns/cmd/fleetdns").CombinedOutput()
	if err != nil {
		t.Fatalf("go build fleetdns: %v\n%s", err, out)
	}
	return bin
}

// peerTestPinned checks that every thread of pid may run on cpu alone.
func peerTestPinned(t *testing.T, pid, cpu int) {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("threads of %d: %v", pid, err)
	}
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			continue // thread ended
		}
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "Cpus_allowed_list:"); ok {
				if got := strings.TrimSpace(rest); got != strconv.Itoa(cpu) {
					t.Errorf("%s: Cpus_allowed_list %s, want %d", task, got, cpu)
				}
			}
		}
	}
}

// peerTestAnswers checks a name twice over UDP (a miss, then a hit), once over TCP, and a
// name the zone does not have.
func peerTestAnswers(t *testing.T, addr netip.AddrPort) {
	t.Helper()
	for _, tc := range []struct {
		name, network, qname string
		rcode                int
		ip                   string
	}{
		{"miss", "udp", "h7.bench.test.", dns.RcodeSuccess, peerTestIP(7)},
		{"hit", "udp", "h7.bench.test.", dns.RcodeSuccess, peerTestIP(7)},
		{"tcp", "tcp", "h8.bench.test.", dns.RcodeSuccess, peerTestIP(8)},
		{"tcp hit", "tcp", "h7.bench.test.", dns.RcodeSuccess, peerTestIP(7)},
		{"nxdomain", "udp", "nope.bench.test.", dns.RcodeNameError, ""},
	} {
		c := &dns.Client{Net: tc.network, Timeout: 2 * time.Second}
		m := new(dns.Msg)
		m.SetQuestion(tc.qname, dns.TypeA)
		r, _, err := c.Exchange(m, addr.String())
		if err != nil {
			t.Fatalf("%s: %s A over %s: %v", tc.name, tc.qname, tc.network, err)
		}
		var ips []string
		for _, rr := range r.Answer {
			if a, ok := rr.(*dns.A); ok {
				ips = append(ips, a.A.String())
			}
		}
		var want []string
		if tc.ip != "" {
			want = []string{tc.ip}
		}
		if r.Rcode != tc.rcode || !slices.Equal(ips, want) {
			t.Errorf("%s: %s A over %s = %s %v, want %s %v", tc.name, tc.qname, tc.network,
				dns.RcodeToString[r.Rcode], ips, dns.RcodeToString[tc.rcode], want)
		}
	}
}

// peerTestLoad sends batches of 2000 cached queries until the system's CPU time grows past
// before (ticks are 10 ms, so one batch may not show), at most 10 batches.
func peerTestLoad(t *testing.T, p *Process, addr netip.AddrPort, before time.Duration) (int, time.Duration) {
	t.Helper()
	c := &dns.Client{Timeout: 2 * time.Second}
	conn, err := c.Dial(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sent := 0
	for batch := 0; batch < 10; batch++ {
		for range 2000 {
			m := new(dns.Msg)
			m.SetQuestion(fmt.Sprintf("h%d.bench.test.", sent%peerTestNames), dns.TypeA)
			sent++
			r, _, err := c.ExchangeWithConn(m, conn)
			if err != nil {
				t.Fatalf("query %d: %v", sent, err)
			}
			if r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
				t.Fatalf("query %d: %s with %d answers, want NOERROR with an A", sent, dns.RcodeToString[r.Rcode], len(r.Answer))
			}
		}
		after, err := p.CPUTime()
		if err != nil {
			t.Fatal(err)
		}
		if after > before {
			return sent, after
		}
	}
	t.Fatalf("CPUTime() still %v after %d queries, want it to grow", before, sent)
	return sent, before
}

// TestPeerStartFailure checks that a system that cannot start is reported with its log: unbound
// on a port that is taken exits at once.
func TestPeerStartFailure(t *testing.T) {
	peer, _ := PeerByName("unbound")
	if err := peer.Available(); err != nil {
		t.Skip(err)
	}
	lo := netip.MustParseAddr("127.0.0.1")
	port, err := nsd.FreePort(lo)
	if err != nil {
		t.Fatal(err)
	}
	taken, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo, port)))
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	o := PeerOptions{
		Dir:          t.TempDir(),
		Listen:       netip.AddrPortFrom(lo, port),
		Upstream:     netip.AddrPortFrom(lo, 9), // never asked: unbound does not get that far
		CacheEntries: 1000,
		ReadyName:    "h0.bench.test.",
	}
	p, err := peer.Start(o)
	if err == nil {
		_ = p.Stop()
		t.Fatalf("Start on a taken port = nil error, want one")
	}
	t.Log(err)
	if !strings.Contains(err.Error(), "exited while starting") || !strings.Contains(err.Error(), "unbound.log") {
		t.Errorf("Start on a taken port = %v, want it to say unbound exited and show its log", err)
	}
}
