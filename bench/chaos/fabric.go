package chaos

// The fabric topology: the stubs (fleetdns client and unbound) in a client namespace in front of
// the anycast lab of bench/lab/lab.sh, driven with its own namespace prefix.
//
//	fdf-cl (client)                       fdf-rtr (BIRD 2)              fdf-n1, fdf-n2 (fleetdns server)
//	load ─► fleetdns 127.0.0.1:5301 ─┐                                ┌─ n1 192.0.2.2, lo 198.51.100.53 ─┐
//	    └─► unbound  127.0.0.1:5302 ─┴─ 192.0.2.10 ══ 192.0.2.9 ─ ECMP ┤                                  ├─ fdf-up NSD 192.0.2.14
//	                                                                   └─ n2 192.0.2.6, lo 198.51.100.53 ─┘  (fdf-up2 NSD 192.0.2.18: dc2)
//
// Both stubs forward "." to the anycast address first and to the two nodes' unicast addresses
// after it (see StubUpstreams). lab.sh builds the namespaces, BIRD, NSD and the nodes; its
// `up` first runs `down` for the same prefix, which removes a crashed run's leftovers (every
// process in an fdf-* namespace, then the namespaces), and Close runs `down` again.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fleetdns/fleetdns/bench"
	"github.com/miekg/dns"
)

// The fabric's names: lab.sh's addressing (TEST-NET only) under the prefix fdf, so it runs
// beside the loss lab's fdc-* namespaces.
const (
	FabricPrefix = "fdf"
	FabricClient = FabricPrefix + "-cl"
	fabricRouter = FabricPrefix + "-rtr"
	fabricZone   = "lab.test."
	// FabricHold is the BGP hold time of lab.sh on both sides (BIRD `hold time 3`, the nodes'
	// hold_time 3s).
	FabricHold  = 3 * time.Second
	fabricTable = "fdf_chaos"
)

var (
	anycastAddr = netip.MustParseAddrPort("198.51.100.53:53")
	node1Addr   = netip.MustParseAddrPort("192.0.2.2:53")
	node2Addr   = netip.MustParseAddrPort("192.0.2.6:53")
	dc1Recursor = netip.MustParseAddr("192.0.2.14")
)

// StubUpstreams are the stubs' upstreams for ".", in order: the anycast address, then each
// node's unicast address. That is how a fleet would configure a stub that must not depend on
// the routers alone: the unicast addresses are routed whatever BGP does, so a query whose
// packet went to a dead or frozen node is retried on a path that avoids it before the route is
// withdrawn.
var StubUpstreams = []netip.AddrPort{anycastAddr, node1Addr, node2Addr}

// FabricConfig says how to build the fabric.
type FabricConfig struct {
	Dir            string    // work directory (lab.sh's LAB_DIR is Dir/lab)
	FleetdnsBinary string    // the fleetdns binary: the nodes and the stub
	LabScript      string    // bench/lab/lab.sh; "": found above the working directory
	Log            io.Writer // progress; nil: none
	Datacenters    int       // 1, or 2 for dc2's recursor and the nodes' failover (LAB_DCS=2)
	AnycastOnly    bool      // the stubs forward to the anycast address alone, not StubUpstreams
}

// Fabric is a running fabric: lab.sh's lab plus the two stubs in its client namespace.
type Fabric struct {
	cfg      FabricConfig
	lock     *os.File
	labDir   string
	labUp    bool
	systems  []*system
	versions map[string]string
	runs     int
}

// FabricAvailable says why the fabric cannot run here, or nil.
func FabricAvailable() error {
	if err := Available(); err != nil {
		return err
	}
	for _, t := range []struct{ name, pkg string }{{"bird", "bird2"}, {"birdc", "bird2"}, {"bash", "bash"}} {
		if _, err := lookPath(t.name); err != nil {
			return fmt.Errorf("chaos fabric: %s not installed (Debian package %s)", t.name, t.pkg)
		}
	}
	return nil
}

// findLabScript looks for bench/lab/lab.sh in the working directory and above it.
func findLabScript() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(dir, "bench", "lab", "lab.sh")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("chaos fabric: bench/lab/lab.sh not found above the working directory")
		}
		dir = parent
	}
}

// StartFabric builds the fabric and returns once the router has both nodes' paths and both
// stubs answer through it. On error, whatever it had made is removed again.
func StartFabric(ctx context.Context, cfg FabricConfig) (f *Fabric, err error) {
	if err := FabricAvailable(); err != nil {
		return nil, err
	}
	if cfg.Dir == "" || cfg.FleetdnsBinary == "" {
		return nil, errors.New("chaos fabric: FabricConfig needs Dir and FleetdnsBinary")
	}
	if cfg.Datacenters == 0 {
		cfg.Datacenters = 1
	}
	if cfg.LabScript == "" {
		if cfg.LabScript, err = findLabScript(); err != nil {
			return nil, err
		}
	}
	f = &Fabric{cfg: cfg, labDir: filepath.Join(cfg.Dir, "lab"), versions: map[string]string{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, f.Close())
			f = nil
		}
	}()
	if f.lock, err = lockFile(ctx, filepath.Join(os.TempDir(), "fleetdns-chaos-fabric.lock"), f.logf); err != nil {
		return f, err
	}
	if err := os.MkdirAll(f.labDir, 0o755); err != nil {
		return f, err
	}
	extra := filepath.Join(cfg.Dir, "zone-extra")
	var b strings.Builder
	for i := range CachedNames {
		fmt.Fprintf(&b, "n%d.c %d IN A 198.51.100.%d\n", i, int(CachedTTL.Seconds()), i%250+1)
	}
	if err := os.WriteFile(extra, []byte(b.String()), 0o644); err != nil {
		return f, err
	}
	f.labUp = true // from here on, Close runs `lab.sh down`
	start := time.Now()
	if out, err := f.script(ctx, "up", "quiet"); err != nil {
		return f, fmt.Errorf("lab.sh up: %v\n%s", err, out)
	}
	if err := f.waitPaths(ctx, 2, 30*time.Second); err != nil {
		return f, err
	}
	f.logf("fabric up (%d datacenter(s)): both nodes announced after %s", cfg.Datacenters, time.Since(start).Round(10*time.Millisecond))
	for _, s := range []struct {
		name string
		addr netip.AddrPort
	}{{"fleetdns", fleetdnsAddr}, {"unbound", unboundAddr}} {
		sys := &system{name: s.name, addr: s.addr, ns: FabricClient}
		if err := f.startStub(sys); err != nil {
			return f, err
		}
		f.systems = append(f.systems, sys)
		if s.name == "fleetdns" {
			f.versions[s.name] = bench.FleetdnsVersion(cfg.FleetdnsBinary)
		} else if peer, ok := bench.PeerByName(s.name); ok {
			f.versions[s.name] = peer.Version()
		}
		f.logf("%s %s answers on %s in %s (pid %d)", s.name, f.versions[s.name], s.addr, FabricClient, sys.proc.PID())
	}
	return f, nil
}

func (f *Fabric) logf(format string, args ...any) {
	if f.cfg.Log != nil {
		fmt.Fprintf(f.cfg.Log, "chaos fabric: "+format+"\n", args...)
	}
}

// script runs lab.sh with the fabric's environment.
func (f *Fabric) script(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", append([]string{f.cfg.LabScript}, args...)...)
	cmd.Env = append(os.Environ(), "LAB_DIR="+f.labDir, "LAB_PREFIX="+FabricPrefix,
		"LAB_DCS="+strconv.Itoa(f.cfg.Datacenters), "LAB_FLEETDNS="+f.cfg.FleetdnsBinary,
		"LAB_ZONE_EXTRA="+filepath.Join(f.cfg.Dir, "zone-extra"),
		"PATH="+os.Getenv("PATH")+":/usr/sbin:/sbin")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// startStub starts (or starts again) one stub in the client namespace; it returns once the
// stub answers through the fabric.
func (f *Fabric) startStub(sys *system) error {
	peer, ok := bench.PeerByName(sys.name)
	if !ok {
		return fmt.Errorf("no peer %s in bench", sys.name)
	}
	dir := filepath.Join(f.cfg.Dir, sys.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var extra string
	if sys.name == "fleetdns" {
		extra = fmt.Sprintf("control: {socket: %q}\nmetrics: {listen: %q}\n", filepath.Join(dir, "control.sock"), metricsAddr.String())
	}
	p, err := peer.Start(bench.PeerOptions{
		Dir: dir, Listen: sys.addr, Upstream: StubUpstreams[0], MoreUpstreams: f.moreUpstreams(),
		CPU: systemCPU, CacheEntries: 10_000, ReadyName: "www." + fabricZone,
		FleetdnsBinary: f.cfg.FleetdnsBinary, FleetdnsConfig: extra, Netns: FabricClient,
	})
	if err != nil {
		return err
	}
	sys.proc = p
	return nil
}

func (f *Fabric) moreUpstreams() []netip.AddrPort {
	if f.cfg.AnycastOnly {
		return nil
	}
	return StubUpstreams[1:]
}

// Close stops the stubs (by PID), then runs `lab.sh down`, which stops the lab's processes by
// PID and deletes the fdf-* namespaces. It keeps going on errors and returns them all.
func (f *Fabric) Close() error {
	var errs []error
	for i := len(f.systems) - 1; i >= 0; i-- {
		if p := f.systems[i].proc; p != nil {
			if err := p.Stop(); err != nil {
				errs = append(errs, err)
			}
		}
	}
	f.systems = nil
	if f.labUp {
		if out, err := f.script(context.Background(), "down"); err != nil {
			errs = append(errs, fmt.Errorf("lab.sh down: %v\n%s", err, out))
		}
		f.labUp = false
	}
	if f.lock != nil {
		f.lock.Close()
		f.lock = nil
	}
	return errors.Join(errs...)
}

// Versions are the stubs' versions, by name.
func (f *Fabric) Versions() map[string]string { return f.versions }

// paths is how many paths the router has for the anycast prefix (birdc show route), -1 if
// birdc failed.
func (f *Fabric) paths(ctx context.Context) int {
	bin, err := lookPath("birdc")
	if err != nil {
		return -1
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-s", filepath.Join(f.labDir, "bird.ctl"), "show", "route", "all",
		anycastAddr.Addr().String()+"/32").CombinedOutput()
	if err != nil {
		return -1
	}
	return strings.Count(string(out), "unicast [")
}

// protocols is the state of the router's BGP sessions to the nodes (`birdc show protocols`),
// one "name state info" per node, "" if birdc failed.
func (f *Fabric) protocols(ctx context.Context) string {
	bin, err := lookPath("birdc")
	if err != nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-s", filepath.Join(f.labDir, "bird.ctl"), "show", "protocols").CombinedOutput()
	if err != nil {
		return ""
	}
	var ps []string
	for line := range strings.Lines(string(out)) {
		fs := strings.Fields(line)
		if len(fs) >= 4 && (fs[0] == "n1" || fs[0] == "n2") && fs[1] == "BGP" {
			// name, state, then what follows the "since" time
			ps = append(ps, strings.Join(append([]string{fs[0], fs[3]}, fs[5:]...), " "))
		}
	}
	return strings.Join(ps, ", ")
}

func (f *Fabric) waitPaths(ctx context.Context, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		got := f.paths(ctx)
		if got == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos fabric: router has %d paths for %s after %s, want %d", got, anycastAddr.Addr(), limit, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ctl runs `fleetdns ctl VERB` against node n ("n1", "n2").
func (f *Fabric) ctl(ctx context.Context, n string, verb string) string {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, filepath.Join(f.labDir, "fleetdns"), "ctl", "-socket",
		filepath.Join(f.labDir, n+".sock"), verb).CombinedOutput()
	return string(out)
}

// nodePID is the PID lab.sh recorded for node n.
func (f *Fabric) nodePID(n string) (int, error) {
	b, err := os.ReadFile(filepath.Join(f.labDir, n+".pid"))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return 0, fmt.Errorf("%s.pid: %q", n, b)
	}
	return pid, nil
}

// Event is something that happened during a fabric scenario, At from the fault.
type Event struct {
	At   time.Duration
	What string
}

// watcher polls a state (the router's paths, a node's failover state) and records each change.
type watcher struct {
	mu     sync.Mutex
	events []Event
	stop   chan struct{}
	done   chan struct{}
}

// watch calls state every interval until stopped; each change is an event "name: state".
func watch(ctx context.Context, name string, interval time.Duration, since func() time.Duration, state func() string) *watcher {
	w := &watcher{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		last := ""
		for {
			s := state()
			if s != last && s != "" {
				w.mu.Lock()
				w.events = append(w.events, Event{At: since(), What: name + ": " + s})
				w.mu.Unlock()
				last = s
			}
			select {
			case <-ctx.Done():
				return
			case <-w.stop:
				return
			case <-time.After(interval):
			}
		}
	}()
	return w
}

func (w *watcher) end() []Event {
	close(w.stop)
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.events
}

func pathsState(n int) string {
	switch n {
	case -1:
		return ""
	case 1:
		return "1 path"
	}
	return fmt.Sprintf("%d paths", n)
}

func failoverState(out string) string {
	for _, s := range []string{"failed-over", "local"} {
		if strings.Contains(out, "state "+s) {
			return s
		}
	}
	return ""
}

// FabricScenario is one of the fabric's faults.
type FabricScenario int

const (
	NodeKilled    FabricScenario = iota // n1 SIGKILLed, not restarted
	NodeStopped                         // n1 SIGSTOPped for the outage, then SIGCONT
	RecursorsCut                        // dc1's recursor blackholed at the router (two datacenters)
	StubRestarted                       // both stubs SIGTERMed, then started again at once
)

func (s FabricScenario) String() string {
	return [...]string{"node SIGKILL", "node SIGSTOP", "dc1 recursors cut", "stub restart"}[s]
}

// AllFabricScenarios are the fabric scenarios, in the order a run makes them.
func AllFabricScenarios() []FabricScenario {
	return []FabricScenario{NodeKilled, NodeStopped, RecursorsCut, StubRestarted}
}

// ParseFabricScenario reads a scenario's short name: kill, stop, cut or restart.
func ParseFabricScenario(s string) (FabricScenario, error) {
	for i, n := range []string{"kill", "stop", "cut", "restart"} {
		if s == n {
			return FabricScenario(i), nil
		}
	}
	return 0, fmt.Errorf("fabric scenario %q: want kill, stop, cut or restart", s)
}

// Datacenters is how many datacenters the scenario's fabric needs.
func (s FabricScenario) Datacenters() int {
	if s == RecursorsCut {
		return 2
	}
	return 1
}

// FailWindow is when one system's failed lookups of one kind were sent, from the fault.
type FailWindow struct {
	Failed      int
	First, Last time.Duration // send times of the first and last failed query (Failed > 0)
	Bursts      []Burst       // the failures grouped: a gap of more than burstGap starts a new one
}

// Burst is a run of failed lookups with no gap over burstGap between their send times.
type Burst struct {
	First, Last time.Duration
	Failed      int
}

// burstGap splits failures into bursts: at 200 queries/s a query goes every 5 ms, so 250 ms
// without a failure is fifty answered queries in a row.
const burstGap = 250 * time.Millisecond

func (w FailWindow) String() string {
	if w.Failed == 0 {
		return "none failed"
	}
	var bs []string
	for i, b := range w.Bursts {
		if i == 3 {
			bs = append(bs, fmt.Sprintf("and %d more bursts", len(w.Bursts)-3))
			break
		}
		if b.Failed == 1 {
			bs = append(bs, fmt.Sprintf("1 at %s", signed(b.First)))
		} else {
			bs = append(bs, fmt.Sprintf("%d from %s to %s", b.Failed, signed(b.First), signed(b.Last)))
		}
	}
	return fmt.Sprintf("%d: %s", w.Failed, strings.Join(bs, ", "))
}

func signed(d time.Duration) string {
	if d < 0 {
		return "-" + ms(-d)
	}
	return "+" + ms(d)
}

// FabricResult is one fabric scenario: load before, during and after the fault.
type FabricResult struct {
	Scenario               FabricScenario
	Name                   string
	Before, Outage, After  time.Duration
	Systems                []SystemResult // the whole load
	During                 []SystemResult // queries sent from the fault to the restore (or the end)
	CachedFail, UncachFail map[string]FailWindow
	Events                 []Event // from the fault
	Metrics                string
	Load                   string // load average at the end
	// RcvbufErrors counts UDP packets the client namespace's kernel dropped over the load
	// because a socket's receive buffer was full: a stub (or the load generator) that did not
	// read for a while, which is the machine's doing (both stubs share CPU 0), not the fault's.
	RcvbufErrors int64
	// ListenerDrops are the packets dropped on each stub's listening sockets (their whole life:
	// since the start or the restart), by stub: where the RcvbufErrors were.
	ListenerDrops map[string]int64
}

// Starved says whether the machine, not a stub, lost queries: the kernel dropped packets on
// full receive buffers and not only at fleetdns's listener (unbound's listener or the load
// generator's sockets dropped some too), so the stubs or the load generator did not get the
// CPU for a while. A scenario measured so says nothing about the fault.
func (r *FabricResult) Starved() bool {
	return r.RcvbufErrors > 0 && r.RcvbufErrors != r.ListenerDrops["fleetdns"]
}

// System returns the whole load's result of the system called name.
func (r *FabricResult) System(name string) *SystemResult {
	for i := range r.Systems {
		if r.Systems[i].Name == name {
			return &r.Systems[i]
		}
	}
	return nil
}

// Withdrawn is when the router first had fewer than two paths, from the fault; -1 if never.
func (r *FabricResult) Withdrawn() time.Duration {
	for _, e := range r.Events {
		if e.What == "router: 1 path" || e.What == "router: 0 paths" {
			return e.At
		}
	}
	return -1
}

// RunFabricScenario warms the stubs, then loads them for before+outage+after with the fault
// made after before (and undone after outage, where it is undone).
func (f *Fabric) RunFabricScenario(ctx context.Context, sc FabricScenario, before, outage, after time.Duration) (*FabricResult, error) {
	r := &FabricResult{Scenario: sc, Name: fmt.Sprintf("%s %s", sc, outage), Before: before, Outage: outage, After: after,
		CachedFail: map[string]FailWindow{}, UncachFail: map[string]FailWindow{}}
	if sc == NodeKilled {
		r.Name = sc.String()
	}
	if f.cfg.AnycastOnly {
		r.Name += " (stubs: anycast only)"
	}
	total := before + outage + after
	f.logf("%s: load for %s, fault after %s", r.Name, total, before)
	if err := warmSystems(ctx, f.systems, fabricZone); err != nil {
		return nil, err
	}
	m0, err := fleetdnsMetricsIn(ctx, FabricClient)
	if err != nil {
		return nil, err
	}
	udp0, _ := udpErrors(ctx, FabricClient)
	f.runs++
	var ss []*stream
	for _, sys := range f.systems {
		ss = append(ss,
			&stream{sys: sys, cached: true, load: bench.Load{Target: sys.addr, Queries: cachedQueriesIn(fabricZone), Cycle: true,
				Duration: total, Rate: CachedRate, Timeout: ClientTimeout, Record: true}},
			&stream{sys: sys, load: bench.Load{Target: sys.addr, Queries: uncachedQueriesIn(fmt.Sprintf("f%d-%d-%s-", os.Getpid(), f.runs, sys.name[:1]), fabricZone, total),
				Duration: total, Rate: UncachedRate, Timeout: ClientTimeout, Record: true}})
	}
	// The fault's time, read by the watchers' goroutines: planned until it happens, so that
	// events before it are negative.
	var faultNanos atomic.Int64
	faultNanos.Store(time.Now().Add(before).UnixNano())
	sinceFault := func() time.Duration { return time.Duration(time.Now().UnixNano() - faultNanos.Load()) }
	watchers := []*watcher{watch(ctx, "router", 50*time.Millisecond, sinceFault, func() string { return pathsState(f.paths(ctx)) })}
	if sc == RecursorsCut {
		for _, n := range []string{"n1", "n2"} {
			watchers = append(watchers, watch(ctx, n+" failover", 100*time.Millisecond, sinceFault, func() string { return failoverState(f.ctl(ctx, n, "failover")) }))
		}
	}
	var faultAt time.Time
	wait, done := startStreams(ctx, ss)
	var events []Event
	mark := func(what string) { events = append(events, Event{At: sinceFault(), What: what}) }
	restoreAt := time.Time{}
	var n1 int
	step := func() error {
		if sc == NodeKilled || sc == NodeStopped {
			var err error
			if n1, err = f.nodePID("n1"); err != nil {
				return err
			}
		}
		if err := wait(before); err != nil {
			return err
		}
		faultAt = time.Now()
		faultNanos.Store(faultAt.UnixNano())
		switch sc {
		case NodeKilled:
			if err := syscall.Kill(n1, syscall.SIGKILL); err != nil {
				return fmt.Errorf("SIGKILL n1 (pid %d): %w", n1, err)
			}
			mark(fmt.Sprintf("n1 (pid %d) SIGKILLed", n1))
			return wait(outage)
		case NodeStopped:
			if err := syscall.Kill(n1, syscall.SIGSTOP); err != nil {
				return fmt.Errorf("SIGSTOP n1 (pid %d): %w", n1, err)
			}
			mark(fmt.Sprintf("n1 (pid %d) SIGSTOPped", n1))
			werr := wait(outage)
			// Always continued, even when the wait failed: a frozen process would hold up `down`.
			if err := syscall.Kill(n1, syscall.SIGCONT); err != nil {
				return errors.Join(werr, fmt.Errorf("SIGCONT n1 (pid %d): %w", n1, err))
			}
			restoreAt = time.Now()
			mark("n1 SIGCONTed")
			return werr
		case RecursorsCut:
			if err := f.cutRecursors(ctx, true); err != nil {
				return err
			}
			mark("nftables: dc1's recursor 192.0.2.14 blackholed at the router")
			werr := wait(outage)
			if err := f.cutRecursors(ctx, false); err != nil {
				return errors.Join(werr, err)
			}
			restoreAt = time.Now()
			mark("nftables: blackhole removed")
			return werr
		case StubRestarted:
			var wg sync.WaitGroup
			errs := make([]error, len(f.systems))
			var mu sync.Mutex
			for i, sys := range f.systems {
				wg.Go(func() {
					t := time.Now()
					if err := sys.proc.Stop(); err != nil {
						errs[i] = err
						return
					}
					mu.Lock()
					mark(fmt.Sprintf("%s exited %s after SIGTERM", sys.name, ms(time.Since(t))))
					mu.Unlock()
					if err := f.startStub(sys); err != nil {
						errs[i] = err
						return
					}
					mu.Lock()
					mark(fmt.Sprintf("%s answers again (pid %d)", sys.name, sys.proc.PID()))
					mu.Unlock()
				})
			}
			wg.Wait()
			restoreAt = time.Now()
			if err := errors.Join(errs...); err != nil {
				return err
			}
			return wait(max(0, outage-time.Since(faultAt)))
		}
		return nil
	}
	stepErr := step()
	loadErr := <-done
	for _, w := range watchers {
		events = append(events, w.end()...)
	}
	if err := errors.Join(stepErr, loadErr); err != nil {
		return nil, fmt.Errorf("%s: %w", r.Name, err)
	}
	if udp1, err := udpErrors(ctx, FabricClient); err == nil {
		r.RcvbufErrors = udp1 - udp0
	}
	r.ListenerDrops = map[string]int64{}
	if drops, err := socketDrops(ctx, FabricClient); err == nil {
		for _, sys := range f.systems {
			r.ListenerDrops[sys.name] = drops[sys.addr.Port()]
		}
	}
	if p := f.protocols(ctx); p != "" {
		events = append(events, Event{At: sinceFault(), What: "router at the end: " + p})
	}
	sortEvents(events)
	r.Events = events
	if sc != StubRestarted {
		m1, err := fleetdnsMetricsIn(ctx, FabricClient)
		if err != nil {
			return nil, err
		}
		r.Metrics = metricsSummary(m0, m1)
	} else {
		r.Metrics = "fleetdns counters: not comparable across its restart"
	}
	rel := func(s *stream, t time.Time) time.Duration { return t.Sub(s.res.Start) }
	for _, s := range ss {
		r.Systems = addStats(r.Systems, s, statsOf(s.res.Fates, 0, 0))
		end := time.Duration(0)
		if !restoreAt.IsZero() {
			end = rel(s, restoreAt)
		}
		r.During = addStats(r.During, s, statsOf(s.res.Fates, rel(s, faultAt), end))
		w := failWindow(s.res.Fates, rel(s, faultAt))
		if s.cached {
			r.CachedFail[s.sys.name] = w
		} else {
			r.UncachFail[s.sys.name] = w
		}
	}
	r.Load = LoadAverage()
	for _, s := range f.systems {
		if s.proc.Exited() {
			return r, fmt.Errorf("%s (pid %d) exited during the scenario; log %s", s.name, s.proc.PID(), s.proc.Log())
		}
	}
	return r, nil
}

func sortEvents(es []Event) {
	slices.SortStableFunc(es, func(a, b Event) int { return cmp.Compare(a.At, b.At) })
}

// failWindow finds the failed lookups of a load, their send times relative to fault.
func failWindow(fates []bench.QueryFate, fault time.Duration) FailWindow {
	var at []time.Duration
	for _, q := range fates {
		if q.Latency == bench.Lost || int(q.Rcode) != dns.RcodeSuccess {
			at = append(at, q.At-fault)
		}
	}
	slices.Sort(at)
	w := FailWindow{Failed: len(at)}
	for i, t := range at {
		if i == 0 || t-at[i-1] > burstGap {
			w.Bursts = append(w.Bursts, Burst{First: t})
		}
		b := &w.Bursts[len(w.Bursts)-1]
		b.Last = t
		b.Failed++
	}
	if len(at) > 0 {
		w.First, w.Last = at[0], at[len(at)-1]
	}
	return w
}

// udpErrors is the UDP RcvbufErrors counter of namespace ns (/proc/net/snmp there).
func udpErrors(ctx context.Context, ns string) (int64, error) {
	ip, err := lookPath("ip")
	if err != nil {
		return 0, err
	}
	out, err := exec.CommandContext(ctx, ip, "netns", "exec", ns, "cat", "/proc/net/snmp").Output()
	if err != nil {
		return 0, err
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		fs := strings.Fields(line)
		if len(fs) == 0 || fs[0] != "Udp:" {
			continue
		}
		if names == nil {
			names = fs
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(fs) {
				return strconv.ParseInt(fs[i], 10, 64)
			}
		}
	}
	return 0, errors.New("no Udp RcvbufErrors in /proc/net/snmp")
}

// socketDrops sums the drops counter of namespace ns's IPv4 UDP sockets by local port
// (/proc/net/udp there).
func socketDrops(ctx context.Context, ns string) (map[uint16]int64, error) {
	ip, err := lookPath("ip")
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, ip, "netns", "exec", ns, "cat", "/proc/net/udp").Output()
	if err != nil {
		return nil, err
	}
	drops := map[uint16]int64{}
	for line := range strings.Lines(string(out)) {
		fs := strings.Fields(line)
		if len(fs) < 13 || fs[0] == "sl" {
			continue
		}
		_, port, ok := strings.Cut(fs[1], ":")
		p, perr := strconv.ParseUint(port, 16, 16)
		d, derr := strconv.ParseInt(fs[len(fs)-1], 10, 64)
		if ok && perr == nil && derr == nil {
			drops[uint16(p)] += d
		}
	}
	return drops, nil
}

// cutRecursors blackholes (or restores) dc1's recursor at the router: every packet forwarded
// to or from 192.0.2.14 is dropped in the router's forward hook, so the nodes' packets leave
// them normally and are lost on the way, as on a cut link.
func (f *Fabric) cutRecursors(ctx context.Context, cut bool) error {
	rules := fmt.Sprintf("table inet %[1]s\ndelete table inet %[1]s\n", fabricTable)
	if cut {
		rules += fmt.Sprintf(`table inet %s {
	chain forward {
		type filter hook forward priority filter; policy accept;
		ip daddr %[2]s counter drop
		ip saddr %[2]s counter drop
	}
}
`, fabricTable, dc1Recursor)
	}
	cmd, err := nft(ctx, fabricRouter, "-f", "-")
	if err != nil {
		return err
	}
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft in %s: %v: %s", fabricRouter, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// warmSystems asks each system for every cached name under zone once, so the cached load
// starts from a full cache; every answer must be NOERROR.
func warmSystems(ctx context.Context, systems []*system, zone string) error {
	var ss []*stream
	for _, sys := range systems {
		ss = append(ss, &stream{sys: sys, load: bench.Load{Target: sys.addr, Queries: cachedQueriesIn(zone),
			Duration: 2 * time.Second, Rate: 1000, Timeout: ClientTimeout}})
	}
	if err := runStreams(ctx, ss); err != nil {
		return err
	}
	for _, s := range ss {
		if s.res.Sent != CachedNames || s.res.Rcodes[dns.RcodeSuccess] != CachedNames {
			return fmt.Errorf("warming %s: %d sent, %d NOERROR, want %d (lost %d)", s.sys.name, s.res.Sent,
				s.res.Rcodes[dns.RcodeSuccess], CachedNames, s.res.Lost)
		}
	}
	return nil
}

// FabricTable is the Markdown of the fabric scenarios: the whole load and the queries sent
// during the fault, then when lookups failed and what the router and the nodes did.
func FabricTable(rs []*FabricResult) string {
	var b strings.Builder
	b.WriteString(statsHeader)
	for _, r := range rs {
		statsRows(&b, r.Name+": whole load", r.Systems)
		statsRows(&b, r.Name+": during", r.During)
	}
	b.WriteString("\n| scenario | system | failed cached lookups (sent from the fault) | failed uncached lookups (sent from the fault) | route withdrawn after |\n")
	b.WriteString("| --- | --- | --- | --- | ---: |\n")
	for _, r := range rs {
		wd := "never"
		if d := r.Withdrawn(); d >= 0 {
			wd = ms(d)
		}
		for _, s := range r.Systems {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Name, s.Name, r.CachedFail[s.Name], r.UncachFail[s.Name], wd)
		}
	}
	b.WriteString("\n")
	for _, r := range rs {
		var es []string
		for _, e := range r.Events {
			es = append(es, fmt.Sprintf("%s %s", signed(e.At), e.What))
		}
		fmt.Fprintf(&b, "- %s (%s before the fault, %s of it, %s after; load average %s at its end; %d UDP packets dropped on full receive buffers in %s, %d of them at fleetdns's listener, %d at unbound's): %s. %s.\n",
			r.Name, r.Before, r.Outage, r.After, r.Load, r.RcvbufErrors, FabricClient, r.ListenerDrops["fleetdns"],
			r.ListenerDrops["unbound"], strings.Join(es, "; "), r.Metrics)
	}
	return b.String()
}
