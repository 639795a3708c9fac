package bench

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// PeerOptions says how to run a system under test.
type PeerOptions struct {
	Dir            string           // a private work directory for configs, pid files, logs, caches
	Listen         netip.AddrPort   // where it must answer, over UDP and TCP (127.0.0.1:<port>)
	Upstream       netip.AddrPort   // the NSD it forwards every name to
	MoreUpstreams  []netip.AddrPort // further upstreams for "." after Upstream (fleetdns and unbound only)
	CPU            int              // the CPU it is pinned to (taskset -c CPU)
	CacheEntries   int              // cache size in answers, translated to each system's unit
	ReadyName      string           // a name the upstream answers: Start waits until it is forwarded
	FleetdnsBinary string           // path of the fleetdns binary (only for the fleetdns peer)
	FleetdnsConfig string           // more top-level YAML for fleetdns (control, metrics), appended
	Netns          string           // network namespace to run in (the chaos lab); "" for the harness's
}

func (o PeerOptions) validate() error {
	switch {
	case o.Dir == "":
		return errors.New("peer options: Dir is empty")
	case !o.Listen.IsValid() || o.Listen.Port() == 0:
		return fmt.Errorf("peer options: Listen %s needs an address and a port", o.Listen)
	case !o.Upstream.IsValid() || o.Upstream.Port() == 0:
		return fmt.Errorf("peer options: Upstream %s needs an address and a port", o.Upstream)
	case o.CacheEntries <= 0:
		return fmt.Errorf("peer options: CacheEntries %d, want at least 1", o.CacheEntries)
	case o.ReadyName == "":
		return errors.New("peer options: ReadyName is empty")
	case o.CPU < 0:
		return fmt.Errorf("peer options: CPU %d is not a CPU number", o.CPU)
	}
	return nil
}

// Peer is one system the harness can run.
type Peer struct {
	Name      string                                // "fleetdns", "unbound", ...
	Package   string                                // the Debian package that has it; "" for fleetdns
	Available func() error                          // nil if it can run here; else names the package
	Version   func() string                         // its version, "unknown" if it cannot tell
	Start     func(o PeerOptions) (*Process, error) // returns once it forwards o.ReadyName
}

// readyTimeout bounds how long Start waits for a system to answer.
const readyTimeout = 10 * time.Second

// Cache sizes. CacheEntries counts answers, as fleetdns's cache.size does; the others count in
// their own units. Per-answer costs were measured on Debian 12 with 20,000 single-A answers:
// unbound 1.17 keeps ~285 B per answer in its message cache and ~275 B in its RRset cache;
// kresd 5.6 uses ~100 B of its LMDB file. The ratios below leave 2-4x headroom for bigger
// answers (CNAME chains, several records), so no system evicts where fleetdns would not.
const (
	unboundMsgBytes   = 512  // msg-cache-size per answer
	unboundRRsetBytes = 1024 // rrset-cache-size per answer (unbound advises twice the msg cache)
	kresdBytes        = 256  // cache.size per answer
	kresdMinMB        = 10
	dnsmasqMaxCache   = 5_000_000 // dnsmasq 2.90 silently clamps cache-size to this
)

// Peers returns every system the harness knows, fleetdns first and the baseline, unbound,
// second.
func Peers() []Peer {
	return []Peer{
		{
			Name:      "fleetdns",
			Available: func() error { return nil }, // built from this tree by the harness
			Version:   harnessVersion,
			Start:     startFleetdns,
		},
		peer("unbound", "unbound", "unbound", []string{"-V"}, `Version (\S+)`, startUnbound),
		peer("dnsmasq", "dnsmasq-base", "dnsmasq", []string{"--version"}, `version (\S+)`, startDnsmasq),
		peer("pdns-recursor", "pdns-recursor", "pdns_recursor", []string{"--version"}, `Recursor (\S+)`, startPdnsRecursor),
		peer("dnsdist", "dnsdist", "dnsdist", []string{"--version"}, `dnsdist (\S+)`, startDnsdist),
		peer("knot-resolver", "knot-resolver", "kresd", []string{"--version"}, `version (\S+)`, startKresd),
	}
}

// PeerByName returns the peer called name.
func PeerByName(name string) (Peer, bool) {
	for _, p := range Peers() {
		if p.Name == name {
			return p, true
		}
	}
	return Peer{}, false
}

// peer makes a Peer of a system run from a Debian package's binary. start gets the binary's path
// and returns the process, not yet known to be ready.
func peer(name, pkg, binary string, versionArgs []string, versionRE string,
	start func(o PeerOptions, bin string) (*Process, error)) Peer {
	re := regexp.MustCompile(versionRE)
	find := func() (string, error) {
		bin, err := lookBinary(binary)
		if err != nil {
			return "", fmt.Errorf("%s is not installed (Debian package %s)", binary, pkg)
		}
		return bin, nil
	}
	return Peer{
		Name:    name,
		Package: pkg,
		Available: func() error {
			if _, err := find(); err != nil {
				return err
			}
			if _, err := lookBinary("taskset"); err != nil {
				return errors.New("taskset is not installed (Debian package util-linux)")
			}
			return nil
		},
		Version: func() string {
			bin, err := find()
			if err != nil {
				return "unknown"
			}
			// pdns_recursor prints it on stderr, after a timestamp.
			out, _ := exec.Command(bin, versionArgs...).CombinedOutput()
			if m := re.FindSubmatch(out); m != nil {
				return string(m[1])
			}
			return "unknown"
		},
		Start: func(o PeerOptions) (*Process, error) {
			if err := o.validate(); err != nil {
				return nil, err
			}
			bin, err := find()
			if err != nil {
				return nil, err
			}
			p, err := start(o, bin)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			return ready(p, o)
		},
	}
}

// ready waits for p to forward o.ReadyName; on failure it stops p and the error has its log.
func ready(p *Process, o PeerOptions) (*Process, error) {
	wait := func() error { return p.waitReady(o.Listen, o.ReadyName, readyTimeout) }
	var err error
	if o.Netns != "" {
		err = InNetns(o.Netns, wait)
	} else {
		err = wait()
	}
	if err != nil {
		_ = p.Stop()
		return nil, err
	}
	return p, nil
}

// harnessVersion is the version of the module the harness was built from, which is the tree
// it builds fleetdns from; FleetdnsVersion asks a given binary instead.
func harnessVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	v := bi.Main.Version
	if v == "" || v == "(devel)" {
		v = "devel"
	}
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}

// FleetdnsVersion is what `binary version` prints after "fleetdns", or "unknown".
func FleetdnsVersion(binary string) string {
	out, err := exec.Command(binary, "version").Output()
	if f := strings.Fields(string(out)); err == nil && len(f) == 2 && f[0] == "fleetdns" {
		return f[1]
	}
	return "unknown"
}

// write puts a config file into dir and returns its path.
func write(dir, name, content string) (string, error) {
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, []byte(content), 0o644)
}

// startFleetdns runs `fleetdns client` with one forward zone for everything. It is pinned to one
// core, so GOMAXPROCS=1 keeps the Go runtime from scheduling for cores it cannot use. The cache
// settings are the defaults, written out because unbound's config below mirrors them.
func startFleetdns(o PeerOptions) (*Process, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.FleetdnsBinary == "" {
		return nil, errors.New("fleetdns: PeerOptions.FleetdnsBinary is empty")
	}
	conf, err := write(o.Dir, "fleetdns.yaml", fmt.Sprintf(`listen: [%q]
forward:
  - {zone: ".", upstreams: [%s]}
cache: {size: %d, prefetch: true, serve_stale: true, stale_ttl: 24h, stale_client_timeout: 1800ms}
log: {level: warn}
%s`, o.Listen, fleetdnsUpstreams(o), o.CacheEntries, o.FleetdnsConfig))
	if err != nil {
		return nil, err
	}
	p, err := StartProcess("fleetdns", filepath.Join(o.Dir, "fleetdns.log"), []string{"GOMAXPROCS=1"},
		o.CPU, o.Netns, o.FleetdnsBinary, "client", "-config", conf)
	if err != nil {
		return nil, err
	}
	return ready(p, o)
}

// fleetdnsUpstreams is the YAML list of o's upstreams, Upstream first.
func fleetdnsUpstreams(o PeerOptions) string {
	s := strconv.Quote(o.Upstream.String())
	for _, u := range o.MoreUpstreams {
		s += ", " + strconv.Quote(u.String())
	}
	return s
}

// unboundForwardAddrs is one forward-addr line per upstream of o, Upstream first.
func unboundForwardAddrs(o PeerOptions) string {
	var b strings.Builder
	for _, u := range append([]netip.AddrPort{o.Upstream}, o.MoreUpstreams...) {
		fmt.Fprintf(&b, "  forward-addr: %s@%d\n", u.Addr(), u.Port())
	}
	return b.String()
}

// startUnbound runs unbound as a pure forwarder: the iterator module alone (no validator, like
// the others), one thread. Two defaults would skew a benchmark: unbound answers names under
// test. itself (NXDOMAIN, RFC 6761), so the bench zone would never be forwarded without
// "nodefault", and it refuses to query 127.0.0.0/8 without do-not-query-localhost: no.
// Prefetch and serve-expired match fleetdns's defaults: stale answers for 24 h, given only
// when the upstream has not answered within 1.8 s (RFC 8767), not at once as unbound would.
func startUnbound(o PeerOptions, bin string) (*Process, error) {
	conf, err := write(o.Dir, "unbound.conf", fmt.Sprintf(`server:
  interface: %s@%d
  port: %d
  num-threads: 1
  so-reuseport: yes
  do-daemonize: no
  username: ""
  chroot: ""
  directory: %q
  pidfile: %q
  use-syslog: no
  logfile: ""
  verbosity: 1
  access-control: 127.0.0.0/8 allow
  access-control: ::1/128 allow
  do-not-query-localhost: no
  local-zone: "test." nodefault
  module-config: "iterator"
  msg-cache-size: %d
  rrset-cache-size: %d
  prefetch: yes
  serve-expired: yes
  serve-expired-ttl: 86400
  serve-expired-client-timeout: 1800
remote-control:
  control-enable: no
forward-zone:
  name: "."
%s`, o.Listen.Addr(), o.Listen.Port(), o.Listen.Port(), o.Dir, filepath.Join(o.Dir, "unbound.pid"),
		int64(o.CacheEntries)*unboundMsgBytes, int64(o.CacheEntries)*unboundRRsetBytes,
		unboundForwardAddrs(o)))
	if err != nil {
		return nil, err
	}
	return StartProcess("unbound", filepath.Join(o.Dir, "unbound.log"), nil, o.CPU, o.Netns, bin, "-d", "-c", conf)
}

// startDnsmasq runs dnsmasq as it runs in production (-k, not the debug mode -d, which
// handles TCP in the main process instead of forking a child per connection), reading no
// config file, hosts file or resolv.conf. Its cache counts records, not answers, and is capped.
func startDnsmasq(o PeerOptions, bin string) (*Process, error) {
	return startProcess("dnsmasq", filepath.Join(o.Dir, "dnsmasq.log"), nil, o.CPU, bin,
		"--conf-file=/dev/null",
		"--keep-in-foreground",
		"--log-facility=-", // stderr, which is the log file
		"--user=root",      // no privilege drop: it would lose access to Dir
		"--pid-file="+filepath.Join(o.Dir, "dnsmasq.pid"),
		"--no-resolv",
		"--no-hosts",
		"--no-poll",
		"--bind-interfaces",
		"--listen-address="+o.Listen.Addr().String(),
		"--port="+strconv.Itoa(int(o.Listen.Port())),
		"--server="+o.Upstream.Addr().String()+"#"+strconv.Itoa(int(o.Upstream.Port())),
		"--cache-size="+strconv.Itoa(min(o.CacheEntries, dnsmasqMaxCache)),
	)
}

// startPdnsRecursor runs pdns_recursor 4.8 with an empty config dir (Debian's recursor.conf
// would set a user and include more files). One worker thread that reads its own sockets:
// the default, pdns-distributes-queries=yes, adds a distributor thread. DNSSEC processing is off
// as in the others; refresh-on-ttl-perc and serve-stale-extensions are its prefetch and serve
// stale (24 h, like fleetdns's default stale_ttl).
func startPdnsRecursor(o PeerOptions, bin string) (*Process, error) {
	if _, err := write(o.Dir, "recursor.conf", "# all settings are on the command line\n"); err != nil {
		return nil, err
	}
	return startProcess("pdns-recursor", filepath.Join(o.Dir, "pdns-recursor.log"), nil, o.CPU, bin,
		"--config-dir="+o.Dir,
		"--socket-dir="+o.Dir,
		"--daemon=no",
		"--disable-syslog=yes",
		"--local-address="+o.Listen.Addr().String(),
		"--local-port="+strconv.Itoa(int(o.Listen.Port())),
		"--allow-from=127.0.0.0/8,::1/128",
		"--forward-zones-recurse=.="+o.Upstream.String(),
		"--dont-query=", // the default list has 127.0.0.0/8, which holds the upstream
		"--threads=1",
		"--pdns-distributes-queries=no",
		"--reuseport=yes",
		"--dnssec=off",
		"--security-poll-suffix=",
		"--max-cache-entries="+strconv.Itoa(o.CacheEntries),
		"--max-packetcache-entries="+strconv.Itoa(o.CacheEntries),
		"--refresh-on-ttl-perc=10",
		"--serve-stale-extensions=2880", // 30 s each
	)
}

// startDnsdist runs dnsdist 1.7 as a packet cache in front of one backend. The backend is
// marked up for good: health checks would send extra queries to the upstream, and 1.7 has no
// healthCheckMode to turn them off otherwise.
func startDnsdist(o PeerOptions, bin string) (*Process, error) {
	conf, err := write(o.Dir, "dnsdist.conf", fmt.Sprintf(`setSecurityPollSuffix("")
setACL({"127.0.0.0/8", "::1/128"})
setLocal(%q)
local upstream = newServer({address = %q})
upstream:setUp()
setStaleCacheEntriesTTL(86400)
local pc = newPacketCache(%d, {maxTTL = 86400, keepStaleData = true})
getPool(""):setCache(pc)
`, o.Listen, o.Upstream, o.CacheEntries))
	if err != nil {
		return nil, err
	}
	// --supervised: foreground, no console; --disable-syslog: log to stdout only.
	return startProcess("dnsdist", filepath.Join(o.Dir, "dnsdist.log"), nil, o.CPU, bin,
		"--supervised", "--disable-syslog", "-C", conf)
}

// startKresd runs one kresd 5 process forwarding everything, with the serve_stale module and
// the predict module's refresh of expiring records (its prediction off) as serve stale and
// prefetch. kresd validates DNSSEC by default with a built-in root trust anchor, which fails
// every name of an unsigned bench zone forwarded to an NSD that has no root zone, so the anchor
// is removed. Its cache is a file of fixed size (posix_fallocate'd in Dir) mapped into memory,
// which RSS counts as it is touched. Without Debian's kres-cache-gc beside it, kresd empties the
// whole cache when it fills.
func startKresd(o PeerOptions, bin string) (*Process, error) {
	mb := max((int64(o.CacheEntries)*kresdBytes+1<<20-1)>>20, kresdMinMB)
	cacheDir := filepath.Join(o.Dir, "kresd-cache")
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return nil, err
	}
	conf, err := write(o.Dir, "kresd.conf", fmt.Sprintf(`net.listen(%q, %d, { kind = 'dns' })
trust_anchors.remove('.')
modules.unload('priming')          -- root priming and the clock-skew check query '.' NS,
modules.unload('detect_time_skew') -- which the upstream refuses
modules.load('serve_stale < cache')
modules.load('predict')
predict.config({ window = 0, period = 0 }) -- refresh expiring records only, predict nothing
cache.open(%d * MB, %q)
policy.add(policy.all(policy.FORWARD(%q)))
`, o.Listen.Addr(), o.Listen.Port(), mb, "lmdb://"+cacheDir,
		fmt.Sprintf("%s@%d", o.Upstream.Addr(), o.Upstream.Port())))
	if err != nil {
		return nil, err
	}
	// -n: non-interactive (no REPL on stdin); the last argument is its run directory.
	return startProcess("knot-resolver", filepath.Join(o.Dir, "kresd.log"), nil, o.CPU, bin,
		"-n", "-c", conf, o.Dir)
}
