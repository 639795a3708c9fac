//go:build linux

package bgp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// The router (BIRD 2) runs in a network namespace made by the test. The speaker runs in the
// test process, whose sockets gobgp opens from whatever thread it likes, so the speaker's end
// of the veth stays in the test's own namespace. It carries only a TEST-NET-3 /29 and a
// 2001:db8::/64 chosen from the PID, never 192.0.2.0/24: on a host whose own network is
// TEST-NET-1 (as on this project's CI) an address from it would shadow the default gateway.

const (
	speakerASN = 65053
	routerASN  = 65000
	otherASN   = 65001 // peer b: a second eBGP router, where leaked routes would show up
	md5Key     = "fleetdns-md5"
	learned4   = "198.51.100.128/25" // announced by the router to the speaker
	primary4   = "198.51.100.53/32"
	secondary4 = "198.51.100.54/32"
	primary6   = "2001:db8:5353::53/128"
	pollEvery  = 50 * time.Millisecond
	pollMax    = 15 * time.Second
)

func TestSpeakerWithBIRD(t *testing.T) {
	tools := requireTools(t)
	for i, tc := range []struct {
		name   string
		asnA   uint32 // peer a's ASN: eBGP, or iBGP with the speaker
		withV6 bool
	}{
		{name: "ebgp", asnA: routerASN, withV6: true},
		{name: "ibgp", asnA: speakerASN},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			l := newLab(t, tools, i, tc.asnA, tc.withV6)
			sp := l.speaker(t)
			ctx := context.Background()
			if err := sp.Start(ctx); err != nil {
				t.Fatalf("Start: %v", err)
			}
			stopped := false
			t.Cleanup(func() {
				if !stopped {
					sctx, cancel := context.WithTimeout(context.Background(), pollMax)
					defer cancel()
					_ = sp.Stop(sctx)
				}
			})

			protos := l.protocols()
			for _, p := range protos {
				l.eventually(t, "session "+p+" established", func() (bool, string) {
					out := l.birdc(t, "show protocols "+p)
					return strings.Contains(out, "Established"), out
				})
			}
			// gobgp's own view lags BIRD's by a moment: it is updated by its event loop.
			l.eventually(t, "Peers() all established", func() (bool, string) {
				ps := sp.Peers()
				for _, p := range ps {
					if p.State != "established" {
						return false, fmt.Sprint(ps)
					}
				}
				return true, ""
			})
			t.Logf("sessions up after %v", time.Since(start).Round(time.Millisecond))
			// Start alone announces nothing.
			for _, p := range protos {
				if r := l.routes(t, p); len(r) != 0 {
					t.Errorf("before Announce: router got %v from %s, want nothing", keys(r), p)
				}
			}

			// (1), (2): the prefixes arrive, marked per peer.
			if err := sp.Announce(ctx, false); err != nil {
				t.Fatalf("Announce: %v", err)
			}
			if !sp.Announced() {
				t.Error("Announced() = false after Announce")
			}
			l.eventually(t, "prefixes at a and b", func() (bool, string) {
				ra, rb := l.routes(t, "a"), l.routes(t, "b")
				return len(ra) == 2 && len(rb) == 2, fmt.Sprintf("a: %v\nb: %v", ra, rb)
			})
			ra, rb := l.routes(t, "a"), l.routes(t, "b")
			checkAttr(t, "a", ra, primary4, "BGP.community", "(65000,53)")
			checkAttr(t, "b", rb, primary4, "BGP.community", "(65000,53)")
			checkAttr(t, "b", rb, primary4, "BGP.next_hop", l.spk4b.String())
			checkAttrEq(t, "b", rb, primary4, "BGP.as_path", "65053")
			checkAttrEq(t, "b", rb, secondary4, "BGP.as_path", "65053 65053 65053 65053")
			if tc.asnA == speakerASN {
				checkAttrEq(t, "a", ra, primary4, "BGP.local_pref", "100")
				checkAttrEq(t, "a", ra, secondary4, "BGP.local_pref", "50")
				checkAttrEq(t, "a", ra, primary4, "BGP.as_path", "")
				checkAttrEq(t, "a", ra, secondary4, "BGP.as_path", "")
				checkAttr(t, "a", ra, secondary4, "BGP.next_hop", l.spk4.String())
			} else {
				checkAttrEq(t, "a", ra, primary4, "BGP.as_path", "65053")
				checkAttrEq(t, "a", ra, secondary4, "BGP.as_path", "65053 65053 65053 65053")
			}
			if tc.withV6 {
				l.eventually(t, "IPv6 prefix at c", func() (bool, string) {
					rc := l.routes(t, "c")
					_, ok := rc[primary6]
					return ok && len(rc) == 1, fmt.Sprint(rc)
				})
				rc := l.routes(t, "c")
				checkAttr(t, "c", rc, primary6, "BGP.next_hop", l.spk6.String())
				checkAttr(t, "c", rc, primary6, "BGP.community", "(65000,53)")
			}

			// (3): graceful adds 65535:0; announcing plainly again takes it off.
			if err := sp.Announce(ctx, true); err != nil {
				t.Fatalf("Announce(graceful): %v", err)
			}
			for _, p := range []string{"a", "b"} {
				l.eventually(t, "65535:0 at "+p, func() (bool, string) {
					r := l.routes(t, p)
					c := attr(r[primary4], "BGP.community")
					return strings.Contains(c, "(65535,0)") && strings.Contains(c, "(65000,53)"), r[primary4]
				})
			}
			if err := sp.Announce(ctx, false); err != nil {
				t.Fatalf("Announce: %v", err)
			}
			l.eventually(t, "65535:0 gone at a", func() (bool, string) {
				r := l.routes(t, "a")
				c := attr(r[primary4], "BGP.community")
				return c != "" && !strings.Contains(c, "(65535,0)"), r[primary4]
			})

			// (5): the route the router announces reaches the speaker and goes no further.
			l.eventually(t, "speaker received "+learned4+" from a", func() (bool, string) {
				n := receivedFrom(t, sp, l.rtrA)
				return n >= 1, fmt.Sprintf("received %d", n)
			})
			// A negative check: watch b for the second a leak would take to show up.
			for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(pollEvery) {
				rb = l.routes(t, "b")
				if _, ok := rb[learned4]; ok || len(rb) != 2 {
					t.Fatalf("b got %v, want only %s and %s (a learned route leaked)", keys(rb), primary4, secondary4)
				}
			}
			if out := l.birdc(t, "show route protocol b count"); !strings.Contains(out, "\n2 of ") {
				t.Errorf("show route protocol b count = %q, want 2 of ...", out)
			}
			for _, p := range localRIB(t, sp) {
				if p != primary4 && p != secondary4 && p != primary6 {
					t.Errorf("speaker RIB holds %s, want only its own prefixes", p)
				}
			}

			// (4): Withdraw removes the routes within about a second.
			t0 := time.Now()
			if err := sp.Withdraw(ctx); err != nil {
				t.Fatalf("Withdraw: %v", err)
			}
			if sp.Announced() {
				t.Error("Announced() = true after Withdraw")
			}
			for _, p := range protos {
				l.eventually(t, "routes withdrawn at "+p, func() (bool, string) {
					r := l.routes(t, p)
					return len(r) == 0, fmt.Sprint(keys(r))
				})
			}
			if d := time.Since(t0); d > 1500*time.Millisecond {
				t.Errorf("withdraw took %v, want about 1s at most", d)
			} else {
				t.Logf("withdrawn at every peer after %v", d.Round(time.Millisecond))
			}

			// (6): Stop withdraws, closes every session with a Cease and returns once idle.
			if err := sp.Announce(ctx, false); err != nil {
				t.Fatalf("Announce: %v", err)
			}
			l.eventually(t, "prefixes back at a", func() (bool, string) {
				r := l.routes(t, "a")
				return len(r) == 2, fmt.Sprint(keys(r))
			})
			sctx, cancel := context.WithTimeout(ctx, pollMax)
			defer cancel()
			t0 = time.Now()
			err := sp.Stop(sctx)
			stopped = true
			if err != nil {
				t.Fatalf("Stop: %v", err)
			}
			t.Logf("Stop returned after %v", time.Since(t0).Round(time.Millisecond))
			for _, ps := range sp.Peers() {
				if ps.State != "idle" {
					t.Errorf("after Stop: peer %v state %q, want idle", ps.Address, ps.State)
				}
			}
			for _, p := range protos {
				l.eventually(t, "session "+p+" closed by Cease", func() (bool, string) {
					out := l.birdc(t, "show protocols all "+p)
					return !strings.Contains(out, "Established") && strings.Contains(out, "Administrative shutdown"), out
				})
				if r := l.routes(t, p); len(r) != 0 {
					t.Errorf("after Stop: %s still has %v", p, keys(r))
				}
			}
			if err := sp.Announce(ctx, false); !errors.Is(err, ErrNotStarted) {
				t.Errorf("Announce after Stop = %v, want ErrNotStarted", err)
			}
			t.Logf("subtest took %v", time.Since(start).Round(time.Millisecond))
		})
	}
}

type toolPaths struct{ ip, bird, birdc string }

// requireTools skips (or, with FLEETDNS_REQUIRE_TOOLS set, fails) without root, ip and BIRD 2.
func requireTools(t *testing.T) toolPaths {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	find := func(name string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			if p := filepath.Join(dir, name); isExecutable(p) {
				return p
			}
		}
		missing = append(missing, name)
		return ""
	}
	tp := toolPaths{ip: find("ip"), bird: find("bird"), birdc: find("birdc")}
	if tp.bird != "" {
		out, _ := exec.Command(tp.bird, "--version").CombinedOutput()
		if !strings.Contains(string(out), "BIRD version 2.") {
			missing = append(missing, "BIRD 2 (found "+strings.TrimSpace(string(out))+")")
		}
	}
	if len(missing) > 0 {
		msg := "needs " + strings.Join(missing, ", ") + " (Debian: apt-get install -y bird2 iproute2)"
		if os.Getenv("FLEETDNS_REQUIRE_TOOLS") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return tp
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// lab is one router namespace running BIRD, wired to the test's namespace by a veth pair.
type lab struct {
	tools       toolPaths
	ns          string
	sock        string
	log         string
	asnA        uint32
	withV6      bool
	spk4, rtrA  netip.Addr
	spk4b, rtrB netip.Addr // BIRD 2.0 runs one session per neighbor address at a time
	spk6, rtrC  netip.Addr
	birdOut     *bytes.Buffer
}

func newLab(t *testing.T, tools toolPaths, idx int, asnA uint32, withV6 bool) *lab {
	t.Helper()
	pid := os.Getpid()
	base, six := freeSubnets(t, pid*2+idx)
	v6 := func(host byte) netip.Addr {
		a := six.Addr().As16()
		a[15] = host
		return netip.AddrFrom16(a)
	}
	dir := t.TempDir()
	l := &lab{
		tools:  tools,
		ns:     fmt.Sprintf("fb-rtr-%d-%d", pid, idx),
		sock:   filepath.Join(dir, "bird.ctl"),
		log:    filepath.Join(dir, "bird.log"),
		asnA:   asnA,
		withV6: withV6,
		spk4:   base.Next(),
		rtrA:   base.Next().Next(),
		rtrB:   base.Next().Next().Next(),
		spk4b:  base.Next().Next().Next().Next(),
		spk6:   v6(1),
		rtrC:   v6(2),
	}
	vethS := fmt.Sprintf("fbs%d%d", pid, idx) // at most 15 bytes: 3 + 7 + 1
	vethR := fmt.Sprintf("fbr%d%d", pid, idx)

	l.ip(t, "netns", "add", l.ns)
	t.Cleanup(func() {
		// Deleting the namespace destroys its veth end, and with it the pair.
		_ = exec.Command(l.tools.ip, "link", "del", vethS).Run()
		if out, err := exec.Command(l.tools.ip, "netns", "del", l.ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", l.ns, err, out)
		}
	})
	l.ip(t, "link", "add", vethS, "type", "veth", "peer", "name", vethR)
	l.ip(t, "link", "set", vethR, "netns", l.ns)
	l.ip(t, "addr", "add", l.spk4.String()+"/29", "dev", vethS)
	l.ip(t, "addr", "add", l.spk4b.String()+"/29", "dev", vethS)
	l.ip(t, "-n", l.ns, "addr", "add", l.rtrA.String()+"/29", "dev", vethR)
	l.ip(t, "-n", l.ns, "addr", "add", l.rtrB.String()+"/29", "dev", vethR)
	if withV6 {
		l.ip(t, "addr", "add", l.spk6.String()+"/64", "dev", vethS, "nodad")
		l.ip(t, "-n", l.ns, "addr", "add", l.rtrC.String()+"/64", "dev", vethR, "nodad")
	}
	l.ip(t, "link", "set", vethS, "up")
	l.ip(t, "-n", l.ns, "link", "set", "lo", "up")
	l.ip(t, "-n", l.ns, "link", "set", vethR, "up")

	l.startBird(t, dir)
	return l
}

// freeSubnets picks a /29 of 203.0.113.0/24 and a /64 of 2001:db8::/32, starting from seed,
// that no interface of the test's namespace already uses: a run killed by a timeout leaves
// its veth behind, and a colliding connected route would steal the sessions of the next.
func freeSubnets(t *testing.T, seed int) (netip.Addr, netip.Prefix) {
	t.Helper()
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	var inUse []netip.Prefix
	for _, a := range ifAddrs {
		if n, ok := a.(*net.IPNet); ok {
			if p, err := netip.ParsePrefix(n.String()); err == nil {
				inUse = append(inUse, p.Masked())
			}
		}
	}
	free := func(p netip.Prefix) bool {
		for _, u := range inUse {
			if u.Overlaps(p) {
				return false
			}
		}
		return true
	}
	var v4 netip.Addr
	for i := range 32 {
		k := (seed + i) % 32
		if p := netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, 113, byte(8 * k)}), 29); free(p) {
			v4 = p.Addr()
			break
		}
	}
	var v6 netip.Prefix
	for i := range 1024 {
		k := (seed + i) % 0xffff
		if p := netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(k >> 8), byte(k)}), 64); free(p) {
			v6 = p
			break
		}
	}
	if !v4.IsValid() || !v6.IsValid() {
		t.Fatal("no free test subnet in 203.0.113.0/24 or 2001:db8::/32")
	}
	return v4, v6
}

func (l *lab) ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(l.tools.ip, args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

type birdPeer struct {
	Name, Local, Local4, Speaker, Family string
	Password                             string
	LocalAS, SpeakerAS                   uint32
	Export, IBGP                         bool
}

func (l *lab) protocols() []string {
	if l.withV6 {
		return []string{"a", "b", "c"}
	}
	return []string{"a", "b"}
}

func (l *lab) startBird(t *testing.T, dir string) {
	t.Helper()
	tmpl, err := template.ParseFiles(filepath.Join("testdata", "bird.conf.tmpl"))
	if err != nil {
		t.Fatal(err)
	}
	peers := []birdPeer{
		{Name: "a", Local: l.rtrA.String(), Local4: l.rtrA.String(), LocalAS: l.asnA, Speaker: l.spk4.String(), SpeakerAS: speakerASN,
			Family: "ipv4", Export: true, IBGP: l.asnA == speakerASN},
		{Name: "b", Local: l.rtrB.String(), Local4: l.rtrB.String(), LocalAS: otherASN, Speaker: l.spk4b.String(), SpeakerAS: speakerASN,
			Family: "ipv4", Password: md5Key},
	}
	if l.withV6 {
		peers = append(peers, birdPeer{Name: "c", Local: l.rtrC.String(), Local4: "192.0.2.3", LocalAS: routerASN,
			Speaker: l.spk6.String(), SpeakerAS: speakerASN, Family: "ipv6"})
	}
	var conf bytes.Buffer
	err = tmpl.Execute(&conf, map[string]any{"RouterID": l.rtrA, "Log": l.log, "Learned": learned4, "Peers": peers})
	if err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}

	// ip netns exec execs bird in place, so cmd.Process is BIRD itself.
	cmd := exec.Command(l.tools.ip, "netns", "exec", l.ns, l.tools.bird, "-f", "-c", confPath, "-s", l.sock)
	l.birdOut = new(bytes.Buffer)
	cmd.Stdout, cmd.Stderr = l.birdOut, l.birdOut
	if err := cmd.Start(); err != nil {
		t.Fatalf("start bird: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		if t.Failed() {
			logFile, _ := os.ReadFile(l.log)
			t.Logf("bird.conf:\n%s\nbird output:\n%s\nbird.log:\n%s", conf.String(), l.birdOut, logFile)
		}
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("bird (pid %d) did not exit", cmd.Process.Pid)
		}
	})
	l.eventually(t, "bird control socket", func() (bool, string) {
		select {
		case <-done:
			t.Fatalf("bird exited: %s", l.birdOut)
		default:
		}
		out, err := l.birdcErr("show status")
		return err == nil && strings.Contains(out, "Daemon is up"), out
	})
}

func (l *lab) birdcErr(cmd string) (string, error) {
	args := append([]string{"netns", "exec", l.ns, l.tools.birdc, "-s", l.sock}, strings.Fields(cmd)...)
	out, err := exec.Command(l.tools.ip, args...).CombinedOutput()
	return string(out), err
}

func (l *lab) birdc(t *testing.T, cmd string) string {
	t.Helper()
	out, err := l.birdcErr(cmd)
	if err != nil {
		t.Fatalf("birdc %s: %v: %s", cmd, err, out)
	}
	return out
}

// routes returns BIRD's routes from one protocol: prefix -> the "show route all" block.
func (l *lab) routes(t *testing.T, proto string) map[string]string {
	t.Helper()
	out := l.birdc(t, "show route all protocol "+proto)
	routes := make(map[string]string)
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		switch {
		case line == "", strings.HasPrefix(line, "BIRD "), strings.HasPrefix(line, "Table "):
		case line[0] != ' ' && line[0] != '\t':
			cur = strings.Fields(line)[0]
			routes[cur] = line + "\n"
		case cur != "":
			routes[cur] += line + "\n"
		}
	}
	return routes
}

// attr returns the value of one attribute line ("\tBGP.as_path: 65053") of a route block.
func attr(block, name string) string {
	for _, line := range strings.Split(block, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func checkAttr(t *testing.T, proto string, routes map[string]string, prefix, name, want string) {
	t.Helper()
	block, ok := routes[prefix]
	if !ok {
		t.Errorf("%s: no route for %s; have %v", proto, prefix, keys(routes))
		return
	}
	if got := attr(block, name); !strings.Contains(got, want) {
		t.Errorf("%s %s: %s = %q, want it to contain %q\n%s", proto, prefix, name, got, want, block)
	}
}

func checkAttrEq(t *testing.T, proto string, routes map[string]string, prefix, name, want string) {
	t.Helper()
	block, ok := routes[prefix]
	if !ok {
		t.Errorf("%s: no route for %s; have %v", proto, prefix, keys(routes))
		return
	}
	if got := attr(block, name); got != want {
		t.Errorf("%s %s: %s = %q, want %q\n%s", proto, prefix, name, got, want, block)
	}
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// eventually polls f every 50ms for at most 15s.
func (l *lab) eventually(t *testing.T, what string, f func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(pollMax)
	for {
		ok, detail := f()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v; last:\n%s", what, pollMax, detail)
		}
		time.Sleep(pollEvery)
	}
}

func (l *lab) speaker(t *testing.T) *Speaker {
	t.Helper()
	peers := []Peer{
		{Address: l.rtrA, ASN: l.asnA, LocalAddress: l.spk4},
		{Address: l.rtrB, ASN: otherASN, LocalAddress: l.spk4b, Password: md5Key, HoldTime: 6 * time.Second},
	}
	prefixes := []Prefix{
		{Prefix: netip.MustParsePrefix(primary4), Communities: []string{"65000:53"}},
		{Prefix: netip.MustParsePrefix(secondary4), Secondary: true, Communities: []string{"65000:54"}},
	}
	if l.withV6 {
		peers = append(peers, Peer{Address: l.rtrC, ASN: routerASN, LocalAddress: l.spk6})
		prefixes = append(prefixes, Prefix{Prefix: netip.MustParsePrefix(primary6), Communities: []string{"65000:53"}})
	}
	sp, err := New(Config{ASN: speakerASN, RouterID: l.spk4, Peers: peers, Prefixes: prefixes}, testLogger(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return sp
}

// receivedFrom is how many routes the speaker has received from peer addr (before import
// policy), read from gobgp itself.
func receivedFrom(t *testing.T, sp *Speaker, addr netip.Addr) uint64 {
	t.Helper()
	sp.mu.Lock()
	srv := sp.srv
	sp.mu.Unlock()
	var n uint64
	err := srv.ListPeer(context.Background(), &api.ListPeerRequest{Address: addr.String()}, func(p *api.Peer) {
		for _, af := range p.GetAfiSafis() {
			n += af.GetState().GetReceived()
		}
	})
	if err != nil {
		t.Fatalf("ListPeer: %v", err)
	}
	return n
}

// localRIB lists the prefixes in the speaker's global RIB.
func localRIB(t *testing.T, sp *Speaker) []string {
	t.Helper()
	sp.mu.Lock()
	srv := sp.srv
	sp.mu.Unlock()
	var out []string
	for _, fam := range []*api.Family{familyV4, familyV6} {
		err := srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: fam},
			func(d *api.Destination) { out = append(out, d.Prefix) })
		if err != nil {
			t.Fatalf("ListPath: %v", err)
		}
	}
	return out
}

// testLogger logs through t until the test ends; gobgp's goroutines may still log after
// that, and t.Log would then panic.
func testLogger(t *testing.T) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct {
	mu   sync.Mutex
	t    *testing.T
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

var _ io.Writer = (*testWriter)(nil)
