// Package chaos is the chaos lab: fleetdns (client mode) and unbound side by side in one network
// namespace, both forwarding "." to one NSD in another, measured under network faults that
// nftables makes on the veth pair between them (packet loss, a blackholed upstream) and under a
// killed upstream.
//
//	fdc-st (stub)                                   fdc-up (upstream)
//	load generator ─► fleetdns 127.0.0.1:5301 ─┐
//	              └─► unbound  127.0.0.1:5302 ─┴─ fdc-st0 192.0.2.1 ══ veth ══ 192.0.2.2 fdc-up0 ─ NSD :53
//	              nftables input hook on fdc-st0:             nftables input hook on fdc-up0:
//	              drops packets from the upstream             drops packets to the upstream
//
// Each direction is dropped where it arrives, so the sender never learns of it, as with a
// packet lost on the wire (see Mechanism). Loopback traffic (load generator to the systems) is
// never touched: every rule matches the veth. Traffic goes only to 127.0.0.0/8 and to the
// lab's own TEST-NET-1 addresses. Both systems run at the same time, so they see the same
// faults at the same moments.
package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/fleetdns/fleetdns/bench"
	"github.com/fleetdns/fleetdns/bench/nsd"
	"github.com/miekg/dns"
)

// The lab's namespaces, interfaces and addresses. The names are fixed so that a crashed run's
// leftovers can be found and removed (every namespace whose name starts with "fdc-").
const (
	StubNS   = "fdc-st"
	UpNS     = "fdc-up"
	nsPrefix = "fdc-"
	stubIf   = "fdc-st0"
	upIf     = "fdc-up0"
	zoneName = "chaos.test."
	// CachedNames is how many names the cached load cycles over (n0..n199.c.chaos.test.).
	CachedNames = 200
	// CachedTTL is their TTL: short, so that prefetch and refresh run all the time under load.
	CachedTTL = 4 * time.Second
)

var (
	stubAddr     = netip.MustParseAddr("192.0.2.1")
	upAddr       = netip.MustParseAddr("192.0.2.2")
	upstream     = netip.AddrPortFrom(upAddr, 53)
	fleetdnsAddr = netip.MustParseAddrPort("127.0.0.1:5301")
	unboundAddr  = netip.MustParseAddrPort("127.0.0.1:5302")
	metricsAddr  = netip.MustParseAddrPort("127.0.0.1:9153")
)

// Config says how to build the lab.
type Config struct {
	Dir            string    // work directory: configs, zone, logs, control socket
	FleetdnsBinary string    // the fleetdns binary to measure
	Log            io.Writer // progress, one line per step; nil: none
}

// Lab is a running chaos lab. Close removes everything it made.
type Lab struct {
	cfg      Config
	lock     *os.File
	nsdConf  string
	nsd      *bench.Process
	systems  []*system // fleetdns first, then unbound
	madeNS   []string
	runs     int // scenarios run, for unique names
	versions map[string]string
}

type system struct {
	name string
	addr netip.AddrPort
	proc *bench.Process
	ns   string // the namespace it listens in; "": StubNS
}

func (s *system) netns() string {
	if s.ns == "" {
		return StubNS
	}
	return s.ns
}

// tools are the programs the lab runs, with the Debian package of each.
var tools = []struct{ name, pkg string }{
	{"ip", "iproute2"}, {"nft", "nftables"}, {"nsd", "nsd"}, {"unbound", "unbound"}, {"taskset", "util-linux"},
}

// Available says why the lab cannot run here, or nil: it needs root and the tools above.
func Available() error {
	if os.Geteuid() != 0 {
		return errors.New("chaos lab: needs root (network namespaces, nftables)")
	}
	var missing []string
	for _, t := range tools {
		if _, err := lookPath(t.name); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", t.name, t.pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("chaos lab: not installed: %s", strings.Join(missing, ", "))
	}
	return nil
}

// Start builds the lab: namespaces, veth pair, nftables table (no fault yet), NSD, fleetdns and
// unbound, and returns once both systems answer through the upstream. On error, whatever it
// had made is removed again.
func Start(ctx context.Context, cfg Config) (l *Lab, err error) {
	if err := Available(); err != nil {
		return nil, err
	}
	if cfg.Dir == "" || cfg.FleetdnsBinary == "" {
		return nil, errors.New("chaos lab: Config needs Dir and FleetdnsBinary")
	}
	l = &Lab{cfg: cfg, versions: map[string]string{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Close())
			l = nil
		}
	}()
	// Two labs would share the fixed names, and the second would delete the first's namespaces:
	// one waits for the other.
	if l.lock, err = lockFile(ctx, filepath.Join(os.TempDir(), "fleetdns-chaos.lock"), l.logf); err != nil {
		return l, err
	}
	if err := removeLeftovers(l.logf); err != nil {
		return l, err
	}
	if err := l.network(); err != nil {
		return l, err
	}
	if err := checkNft(); err != nil {
		return l, err
	}
	if err := l.SetFault(ctx, Fault{}); err != nil {
		return l, err
	}
	if err := l.startNSD(ctx); err != nil {
		return l, err
	}
	if err := l.startSystems(); err != nil {
		return l, err
	}
	return l, nil
}

func (l *Lab) logf(format string, args ...any) {
	if l.cfg.Log != nil {
		fmt.Fprintf(l.cfg.Log, "chaos: "+format+"\n", args...)
	}
}

// lockWait bounds how long Start waits for another lab on the machine to finish.
const lockWait = 3 * time.Minute

// lockFile takes an exclusive lock on path, waiting up to lockWait while another lab holds it.
func lockFile(ctx context.Context, path string, logf func(string, ...any)) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(lockWait)
	for logged := false; ; {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("chaos lab: another lab runs (%s is locked) and did not finish within %s: %w", path, lockWait, err)
		}
		if !logged {
			logf("another chaos lab runs on this machine (%s is locked); waiting up to %s", path, lockWait)
			logged = true
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// removeLeftovers deletes the namespaces of a lab that crashed. Its processes died with it
// (Pdeathsig), so only the namespaces, and the veth pair inside them, remain.
func removeLeftovers(logf func(string, ...any)) error {
	ip, err := lookPath("ip")
	if err != nil {
		return err
	}
	out, err := exec.Command(ip, "netns", "list").Output()
	if err != nil {
		return fmt.Errorf("ip netns list: %w", err)
	}
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 0 || !strings.HasPrefix(f[0], nsPrefix) {
			continue
		}
		logf("removing leftover namespace %s", f[0])
		if err := run("ip", "netns", "del", f[0]); err != nil {
			return err
		}
	}
	return nil
}

// network makes the two namespaces and the veth pair between them (created in place, so no name
// ever appears in the host's namespace).
func (l *Lab) network() error {
	for _, ns := range []string{StubNS, UpNS} {
		if err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		l.madeNS = append(l.madeNS, ns)
		if err := run("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"ip", "link", "add", stubIf, "netns", StubNS, "type", "veth", "peer", "name", upIf, "netns", UpNS},
		{"ip", "-n", StubNS, "addr", "add", stubAddr.String() + "/24", "dev", stubIf},
		{"ip", "-n", UpNS, "addr", "add", upAddr.String() + "/24", "dev", upIf},
		{"ip", "-n", StubNS, "link", "set", stubIf, "up"},
		{"ip", "-n", UpNS, "link", "set", upIf, "up"},
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return err
		}
	}
	return nil
}

// writeZone writes the upstream's zone: a wildcard under u. for the uncached load (every name
// new) and n0..n199 under c. with a 4 s TTL for the cached one.
func writeZone(path string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s\n$TTL 60\n@ 3600 IN SOA ns hostmaster 1 3600 900 604800 60\n@ 3600 IN NS ns\n", zoneName)
	fmt.Fprintf(&b, "ns 3600 IN A %s\nready IN A 192.0.2.53\n*.u IN A 198.51.100.1\n", upAddr)
	for i := range CachedNames {
		fmt.Fprintf(&b, "n%d.c %d IN A 198.51.100.%d\n", i, int(CachedTTL.Seconds()), i%250+1)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// startNSD starts NSD in the upstream namespace (first start, and restart after a kill) and
// waits until it answers across the veth.
func (l *Lab) startNSD(ctx context.Context) error {
	dir := filepath.Join(l.cfg.Dir, "nsd")
	if l.nsdConf == "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		zone := filepath.Join(dir, "chaos.test.zone")
		if err := writeZone(zone); err != nil {
			return err
		}
		conf, err := nsd.WriteConfig(dir, upstream, nsd.Zone{Name: zoneName, File: zone})
		if err != nil {
			return err
		}
		l.nsdConf = conf
	}
	bin, err := lookPath("nsd")
	if err != nil {
		return err
	}
	p, err := bench.StartProcess("nsd", filepath.Join(dir, "nsd.stderr"), nil, upstreamCPU(), UpNS, bin, "-d", "-c", l.nsdConf)
	if err != nil {
		return err
	}
	l.nsd = p
	if err := waitAnswer(ctx, upstream, zoneName, dns.TypeSOA, 10*time.Second, p); err != nil {
		return fmt.Errorf("nsd in %s: %w (log %s)", UpNS, err, filepath.Join(dir, "nsd.log"))
	}
	return nil
}

// The systems share CPU 0 (one thread each: GOMAXPROCS=1, num-threads 1), as in the
// benchmark; NSD gets the last CPU. The load generator is not pinned: at 1 400 queries/s it
// needs little, and the lab's latencies under faults are retransmission timers, not CPU.
const systemCPU = 0

func upstreamCPU() int { return runtime.NumCPU() - 1 }

func (l *Lab) startSystems() error {
	extra := fmt.Sprintf("control: {socket: %q}\nmetrics: {listen: %q}\n",
		filepath.Join(l.cfg.Dir, "fleetdns", "control.sock"), metricsAddr.String())
	for _, s := range []struct {
		name string
		addr netip.AddrPort
	}{{"fleetdns", fleetdnsAddr}, {"unbound", unboundAddr}} {
		peer, ok := bench.PeerByName(s.name)
		if !ok {
			return fmt.Errorf("no peer %s in bench", s.name)
		}
		dir := filepath.Join(l.cfg.Dir, s.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		p, err := peer.Start(bench.PeerOptions{
			Dir: dir, Listen: s.addr, Upstream: upstream, CPU: systemCPU, CacheEntries: 10_000,
			ReadyName: "ready." + zoneName, FleetdnsBinary: l.cfg.FleetdnsBinary, FleetdnsConfig: extra,
			Netns: StubNS,
		})
		if err != nil {
			return err
		}
		l.systems = append(l.systems, &system{name: s.name, addr: s.addr, proc: p})
		if s.name == "fleetdns" {
			l.versions[s.name] = bench.FleetdnsVersion(l.cfg.FleetdnsBinary)
		} else {
			l.versions[s.name] = peer.Version()
		}
		l.logf("%s %s answers on %s in %s (pid %d)", s.name, l.versions[s.name], s.addr, StubNS, p.PID())
	}
	return nil
}

// Close stops every process the lab started (by PID) and deletes its namespaces, which takes the
// veth pair and the nftables table with them. It returns what went wrong, and keeps going.
func (l *Lab) Close() error {
	var errs []error
	for i := len(l.systems) - 1; i >= 0; i-- {
		if err := l.systems[i].proc.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	l.systems = nil
	if l.nsd != nil {
		if err := l.nsd.Stop(); err != nil {
			errs = append(errs, err)
		}
		l.nsd = nil
	}
	for i := len(l.madeNS) - 1; i >= 0; i-- {
		if err := run("ip", "netns", "del", l.madeNS[i]); err != nil {
			errs = append(errs, err)
		}
	}
	l.madeNS = nil
	if l.lock != nil {
		l.lock.Close() // releases the flock
		l.lock = nil
	}
	return errors.Join(errs...)
}

// Versions are the measured systems' versions, by name.
func (l *Lab) Versions() map[string]string { return l.versions }

// waitAnswer asks addr (inside the stub namespace) for name until it gets NOERROR, for up to
// limit; p, if not nil, is the process that must answer, so its exit ends the wait at once.
func waitAnswer(ctx context.Context, addr netip.AddrPort, name string, qtype uint16, limit time.Duration, p *bench.Process) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	var last error
	for {
		if p != nil && p.Exited() {
			return fmt.Errorf("exited while starting (pid %d)", p.PID())
		}
		err := bench.InNetns(StubNS, func() error {
			r, _, err := c.ExchangeContext(ctx, m, addr.String())
			if err == nil && r.Rcode != dns.RcodeSuccess {
				err = fmt.Errorf("answer %s", dns.RcodeToString[r.Rcode])
			}
			return err
		})
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("no answer from %s for %s within %s: %v", addr, name, limit, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func run(name string, args ...string) error {
	bin, err := lookPath(name)
	if err != nil {
		return err
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// lookPath finds a program on PATH or in the sbin directories, which go test's PATH may lack.
func lookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}
