package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdns/fleetdns/cache"
	"github.com/fleetdns/fleetdns/field"
	"github.com/fleetdns/fleetdns/policy"
	"github.com/fleetdns/fleetdns/resolver"
	"github.com/fleetdns/fleetdns/resolver/upstream"
	"go.yaml.in/yaml/v3"
)

// config is the whole YAML file, turned into each package's Config.
type config struct {
	Resolver resolver.Config
	Cache    cache.Config
	Policy   policy.Config
	Log      logConfig
	Ops      opsConfig
	Server   serverConfig // server mode only
	Failover failoverConfig
	// Warnings are problems that do not stop the config from being used (deprecated keys):
	// check prints them, server logs them at start-up.
	Warnings []string
}

// opsConfig is where operators reach a running process.
type opsConfig struct {
	MetricsListen string // host:port of the Prometheus endpoint; "" is off
	ControlSocket string // unix socket of fleetdns ctl
}

// defaultControlSocket is the control socket unless the config says otherwise.
const defaultControlSocket = "/run/fleetdns/control.sock"

type logConfig struct {
	Level   slog.Level
	Format  string // text | json
	Queries bool
}

// defaultConfig is what runs without -config: the contract in DESIGN.md, with upstreams taken
// from resolv.conf by the caller.
func defaultConfig() config {
	listen := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:53"), netip.MustParseAddrPort("[::1]:53")}
	return config{
		Resolver: resolver.Config{
			Listen:             listen,
			OptionalListen:     listen[1:],
			StaleClientTimeout: resolver.DefaultStaleClientTimeout,
		},
		Cache: cache.DefaultConfig(),
		Policy: policy.Config{AccessControl: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}},
		Log:    logConfig{Level: slog.LevelInfo, Format: "text"},
		Ops:    opsConfig{ControlSocket: defaultControlSocket},
		Server: defaultServerConfig(),
	}
}

// plannedKeys are keys of the config contract that this version does not act on yet; naming
// them is better than calling them unknown or silently ignoring them.
var plannedKeys = map[string]bool{}

// loadConfig reads and checks a config file. Every error names the file, the line and the key;
// all errors found are returned together.
func loadConfig(path string) (config, error) {
	cfg, _, err := loadConfigPolicy(path)
	return cfg, err
}

// loadConfigPolicy is loadConfig that also returns the policy it built to check the zone
// files, so that starting or reloading does not read them twice.
func loadConfigPolicy(path string) (config, *policy.Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return config{}, nil, err
	}
	return parse(path, data)
}

func parseConfig(path string, data []byte) (config, error) {
	cfg, _, err := parse(path, data)
	return cfg, err
}

func parse(path string, data []byte) (config, *policy.Policy, error) {
	cfg := defaultConfig()
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return cfg, nil, fmt.Errorf("%s: %w", path, err)
	}
	p := &parser{file: path}
	var listenNode, aclNode, rateLimitNode *yaml.Node
	if len(root.Content) == 0 {
		return cfg, nil, fmt.Errorf("%s: empty config", path)
	}
	p.mapping(root.Content[0], "", func(key string, k, v *yaml.Node) {
		switch key {
		case "listen":
			listenNode = v
			cfg.Resolver.Listen = p.addrList(v, key, 0)
			cfg.Resolver.OptionalListen = nil // addresses the operator wrote must bind
			if len(v.Content) == 0 && v.Kind == yaml.SequenceNode {
				p.errorf(v, key, "at least one address is needed")
			}
		case "access_control":
			aclNode = v
			cfg.Policy.AccessControl = p.prefixList(v, key)
		case "cache":
			p.cache(v, &cfg.Cache, &cfg.Resolver)
		case "forward":
			cfg.Resolver.Forward = p.forward(v)
			if len(v.Content) == 0 && v.Kind == yaml.SequenceNode {
				p.errorf(v, key, "at least one zone is needed (leave the key out to use /etc/resolv.conf)")
			}
		case "rrset_roundrobin":
			cfg.Resolver.RoundRobin = p.boolean(v, key)
		case "rate_limit":
			rateLimitNode = v
			cfg.Resolver.RateLimit = p.rateLimit(v)
		case "log":
			p.log(v, &cfg.Log)
		case "failover":
			p.failover(v, &cfg.Failover)
		case "node":
			p.node(v, &cfg.Server)
		case "bgp":
			p.bgp(v, &cfg.Server)
		case "health":
			p.health(v, key, &cfg.Server)
		case "announce":
			p.announceMode(v, &cfg.Server)
		case "kernel":
			p.kernel(v, &cfg.Server)
		case "metrics":
			p.mapping(v, key, func(key string, k, v *yaml.Node) {
				if key != "metrics.listen" {
					p.errorf(k, key, "unknown key")
					return
				}
				cfg.Ops.MetricsListen = p.str(v, key)
				if _, err := parseAddrPort(cfg.Ops.MetricsListen, 0); err != nil {
					p.errorf(v, key, "%v", err)
				}
			})
		case "control":
			p.mapping(v, key, func(key string, k, v *yaml.Node) {
				if key != "control.socket" {
					p.errorf(k, key, "unknown key")
					return
				}
				cfg.Ops.ControlSocket = p.str(v, key)
				if !filepath.IsAbs(cfg.Ops.ControlSocket) {
					p.errorf(v, key, "%q is not an absolute path", cfg.Ops.ControlSocket)
				}
			})
		case "local_zones":
			cfg.Policy.LocalZones = p.localZones(v)
		case "local_data":
			cfg.Policy.LocalData = p.localData(v)
		case "local_data_files":
			cfg.Policy.LocalDataFiles = p.strList(v, key)
		case "block_aaaa":
			p.blockAAAA(v, &cfg.Policy.BlockAAAA)
		case "synthesize":
			p.synthesize(v, &cfg.Policy)
		case "junk_guard":
			p.mapping(v, key, func(key string, k, v *yaml.Node) {
				if key != "junk_guard.suffixes" {
					p.errorf(k, key, "unknown key")
					return
				}
				cfg.Policy.JunkGuard = p.domainList(v, key)
			})
		default:
			if plannedKeys[key] {
				p.errorf(k, key, "not supported by this version yet")
			} else {
				p.errorf(k, key, "unknown key")
			}
		}
	})
	cfg.Warnings = p.checkHealth(&cfg.Server)
	if len(p.errs) > 0 {
		return cfg, nil, errors.Join(p.errs...)
	}
	if len(cfg.Resolver.Forward) == 0 {
		fwd, err := resolvConfForward(resolvConfPath, cfg.Resolver.Listen)
		if err != nil {
			return cfg, nil, fmt.Errorf("%s: forward: none given, and %w", path, err)
		}
		cfg.Resolver.Forward = fwd
	}
	// Backstop: the packages' own checks, for rules that span keys.
	for _, err := range []error{cfg.Resolver.Validate(), cfg.Cache.Validate(), cfg.Policy.Validate()} {
		if err != nil {
			p.errs = append(p.errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	if cfg.Server.present() && rateLimitNode == nil {
		cfg.Resolver.RateLimit = serverRateLimit
	}
	if cfg.Server.present() && aclNode == nil && listenNode != nil {
		// Without access_control only loopback clients are answered: a node listening on
		// the service address would refuse every client and still pass its own health check.
		for _, a := range cfg.Resolver.Listen {
			if !a.Addr().Unmap().IsLoopback() {
				p.errorf(listenNode, "listen", "%s is not a loopback address, and without access_control only loopback clients are answered: set access_control to the clients' networks", a)
				break
			}
		}
	}
	if cfg.Server.present() {
		p.checkAnnounce(&cfg.Server, path)
		p.checkServed(&cfg.Server, cfg.Resolver.Listen)
		if _, given := cfg.Server.at["bgp"]; given && cfg.Server.Announce == "bgp" {
			if err := cfg.Server.BGP.Validate(); err != nil {
				p.errs = append(p.errs, fmt.Errorf("%s: bgp: %w", path, err))
			}
		}
		if cfg.Server.Announce == "kernel" && cfg.Server.Kernel.Table == 0 {
			// The addresses are on the host only while the node is healthy: its listeners on
			// them must bind before that.
			cfg.Resolver.FreeBind = cfg.Server.Kernel.Prefixes
		}
		if cfg.Server.NodeID == "" {
			p.errs = append(p.errs, fmt.Errorf("%s: node.id: server mode needs the node's ID", path))
		}
	}
	if len(p.errs) == 0 {
		// Building the policy reads local_data_files: their errors name the zone file and line.
		pol, err := policy.New(cfg.Policy)
		if err != nil {
			return cfg, nil, fmt.Errorf("%s: %w", path, err)
		}
		return cfg, pol, nil
	}
	return cfg, nil, errors.Join(p.errs...)
}

func (p *parser) cache(n *yaml.Node, c *cache.Config, r *resolver.Config) {
	p.mapping(n, "cache", func(key string, k, v *yaml.Node) {
		switch key {
		case "cache.size":
			c.Size = p.integer(v, key, 1)
		case "cache.max_bytes":
			c.MaxBytes = p.size(v, key)
		case "cache.min_ttl":
			c.MinTTL = p.duration(v, key)
		case "cache.max_ttl":
			c.MaxTTL = p.duration(v, key)
		case "cache.max_negative_ttl":
			c.MaxNegativeTTL = p.duration(v, key)
		case "cache.prefetch":
			c.Prefetch = p.boolean(v, key)
		case "cache.serve_stale":
			c.ServeStale = p.boolean(v, key)
		case "cache.stale_ttl":
			c.StaleTTL = p.duration(v, key)
		case "cache.stale_client_timeout":
			r.StaleClientTimeout = p.duration(v, key)
		default:
			p.errorf(k, key, "unknown key")
		}
	})
	p.check("cache", n, c.Validate()) // the cache's rules (min_ttl at most max_ttl)
}

// serverRateLimit is rate_limit where the config has a bgp block (server mode) and no
// rate_limit of its own; client mode, answering loopback only, has none. A node's clients are
// fleet hosts, a /24 a rack of them, each behind its own client-mode cache that sends only its
// misses and refreshes; the bucket covers every name the prefix asks (NSD's default of 200 is
// per prefix and per name), so it is set five times NSD's. A prefix over it loses latency, not
// answers: half of what is over comes back truncated, and client mode retries over TCP.
var serverRateLimit = resolver.RateLimit{ResponsesPerSecond: 1000}

// rateLimit parses rate_limit. slip 0 means never (BIND's meaning), which resolver.RateLimit
// spells -1, its zero being the default.
func (p *parser) rateLimit(n *yaml.Node) resolver.RateLimit {
	var r resolver.RateLimit
	p.mapping(n, "rate_limit", func(key string, k, v *yaml.Node) {
		switch key {
		case "rate_limit.responses_per_second":
			r.ResponsesPerSecond = max(p.integer(v, key, 0), 0)
			if r.ResponsesPerSecond > 1e9 {
				p.errorf(v, key, "%d is above 1000000000", r.ResponsesPerSecond)
			}
		case "rate_limit.slip":
			if r.Slip = max(p.integer(v, key, 0), 0); r.Slip == 0 {
				r.Slip = -1
			}
		case "rate_limit.ipv4_prefix":
			r.IPv4Prefix = p.prefixLen(v, key, 32)
		case "rate_limit.ipv6_prefix":
			r.IPv6Prefix = p.prefixLen(v, key, 128)
		case "rate_limit.prefixes":
			r.Prefixes = max(p.integer(v, key, 1), 0)
		default:
			p.errorf(k, key, "unknown key")
		}
	})
	return r
}

func (p *parser) prefixLen(n *yaml.Node, key string, bits int) int {
	v := max(p.integer(n, key, 1), 0)
	if v > bits {
		p.errorf(n, key, "%d is longer than an address (%d bits)", v, bits)
		return 0
	}
	return v
}

// forward maps the forward list; its rules (names, duplicates, protocols) are the resolver's.
func (p *parser) forward(n *yaml.Node) []resolver.ZoneConfig {
	var zones []resolver.ZoneConfig
	p.entries(n, "forward", "zones", func(prefix string, item *yaml.Node) {
		var z resolver.ZoneConfig
		var hasZone, hasUpstreams bool
		p.mapping(item, prefix, func(key string, k, v *yaml.Node) {
			switch strings.TrimPrefix(key, prefix+".") {
			case "zone":
				hasZone = true
				z.Zone = p.str(v, key)
			case "upstreams":
				hasUpstreams = true
				z.Upstreams = p.addrList(v, key, 53)
			case "protocol":
				z.Protocol = p.str(v, key)
			default:
				p.errorf(k, key, "unknown key")
			}
		})
		if !hasZone && item.Kind == yaml.MappingNode {
			p.errorf(item, prefix+".zone", "missing")
		}
		if !hasUpstreams && item.Kind == yaml.MappingNode {
			p.errorf(item, prefix+".upstreams", "missing: at least one upstream is needed")
		}
		zones = append(zones, z)
	})
	p.check("forward", n, upstream.ValidateZones(zones))
	return zones
}

func (p *parser) log(n *yaml.Node, l *logConfig) {
	p.mapping(n, "log", func(key string, k, v *yaml.Node) {
		switch key {
		case "log.level":
			levels := map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo,
				"warn": slog.LevelWarn, "error": slog.LevelError}
			lv, ok := levels[strings.ToLower(p.str(v, key))]
			if !ok {
				p.errorf(v, key, "%q is not one of debug, info, warn, error", v.Value)
			}
			l.Level = lv
		case "log.format":
			l.Format = p.str(v, key)
			if l.Format != "text" && l.Format != "json" {
				p.errorf(v, key, "%q is not one of text, json", l.Format)
			}
		case "log.queries":
			l.Queries = p.boolean(v, key)
		default:
			p.errorf(k, key, "unknown key")
		}
	})
}

// parser walks YAML nodes and collects errors that name file, line and key. It remembers the
// node of every key path it walked, so that a package's Validate, which names key paths
// (field.Error), is reported at the line of the key it rejects.
type parser struct {
	file  string
	errs  []error
	nodes map[string]*yaml.Node // key path -> its value (a list item: the item)
	bad   map[string]bool       // key paths already reported
}

func (p *parser) errorf(n *yaml.Node, key, format string, args ...any) {
	if p.bad == nil {
		p.bad = map[string]bool{}
	}
	p.bad[key] = true
	p.errs = append(p.errs, fmt.Errorf("%s:%d: %s: %s", p.file, n.Line, key, fmt.Sprintf(format, args...)))
}

// check reports a package's verdict on the block at base (its Validate's errors, paths relative
// to base) at the lines of the keys they name. A key already reported while decoding (not a
// duration, missing) is not reported again for what followed from it.
func (p *parser) check(base string, block *yaml.Node, err error) {
	field.Each(err, func(e *field.Error) {
		path := field.Join(base, e.Path)
		if p.reported(path) {
			return
		}
		p.errorf(p.nodeOf(path, block), path, "%s", e.Msg)
	})
}

// reported tells whether path, a key above it or a key below it was reported already.
func (p *parser) reported(path string) bool {
	under := func(a, b string) bool { return strings.HasPrefix(a, b+".") || strings.HasPrefix(a, b+"[") }
	for b := range p.bad {
		if b == path || under(path, b) || under(b, path) {
			return true
		}
	}
	return false
}

// nodeOf is the node of path, or of the nearest key above it that was given, or block.
func (p *parser) nodeOf(path string, block *yaml.Node) *yaml.Node {
	for path != "" {
		if n, ok := p.nodes[path]; ok {
			return n
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			break
		}
		path = path[:i]
	}
	return block
}

func (p *parser) remember(path string, n *yaml.Node) {
	if p.nodes == nil {
		p.nodes = map[string]*yaml.Node{}
	}
	p.nodes[path] = n
}

// entries walks a list of mappings (forward, local_zones, bgp.peers, bgp.announce), calling fn
// with each item and its path ("forward[1]"), under which its keys are reported.
func (p *parser) entries(n *yaml.Node, key, what string, fn func(path string, item *yaml.Node)) {
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, key, "must be a list of %s", what)
		return
	}
	for i, item := range n.Content {
		path := fmt.Sprintf("%s[%d]", key, i)
		p.remember(path, item)
		fn(path, item)
	}
}

// mapping calls fn for each key of a mapping node with the key's dotted path.
func (p *parser) mapping(n *yaml.Node, path string, fn func(key string, k, v *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		name := path
		if name == "" {
			name = "config"
		}
		p.errorf(n, name, "must be a mapping of keys to values")
		return
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key := k.Value
		if path != "" {
			key = path + "." + k.Value
		}
		if seen[key] {
			p.errorf(k, key, "given twice")
			continue
		}
		seen[key] = true
		p.remember(key, v)
		fn(key, k, v)
	}
}

func (p *parser) scalar(n *yaml.Node, key string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, key, "must be a single value")
		return "", false
	}
	return n.Value, true
}

func (p *parser) str(n *yaml.Node, key string) string {
	s, _ := p.scalar(n, key)
	return s
}

func (p *parser) boolean(n *yaml.Node, key string) bool {
	s, ok := p.scalar(n, key)
	if !ok {
		return false
	}
	switch s {
	case "true":
		return true
	case "false":
		return false
	}
	p.errorf(n, key, "%q is not true or false", s)
	return false
}

func (p *parser) integer(n *yaml.Node, key string, least int) int {
	s, ok := p.scalar(n, key)
	if !ok {
		return 0
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < least {
		p.errorf(n, key, "%q is not a whole number of at least %d", s, least)
	}
	return v
}

// size parses a positive number of bytes: a whole number, or one with a unit, decimal (KB,
// MB, GB, TB) or binary (KiB, MiB, GiB, TiB), in any case and with or without a space.
func (p *parser) size(n *yaml.Node, key string) int64 {
	s, ok := p.scalar(n, key)
	if !ok {
		return 0
	}
	v, err := parseSize(s)
	if err != nil {
		p.errorf(n, key, "%q is not a size in bytes (write e.g. 268435456, 256MiB, 1GB): %v", s, err)
	}
	return v
}

func parseSize(s string) (int64, error) {
	num := strings.TrimRight(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
	unit := strings.ToLower(s[len(num):])
	num = strings.TrimSpace(num)
	mult := map[string]int64{"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("unknown unit %q", s[len(s)-len(unit):])
	}
	v, err := strconv.ParseInt(num, 10, 64)
	switch {
	case err != nil:
		return 0, errors.New("not a whole number")
	case v < 1:
		return 0, errors.New("must be at least 1 byte")
	case v > math.MaxInt64/mult:
		return 0, errors.New("too large")
	}
	return v * mult, nil
}

func (p *parser) duration(n *yaml.Node, key string) time.Duration {
	s, ok := p.scalar(n, key)
	if !ok {
		return 0
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		p.errorf(n, key, "%q is not a duration (write e.g. 1500ms, 30s, 24h)", s)
	}
	return d
}

func (p *parser) list(n *yaml.Node, key string) []*yaml.Node {
	if n.Kind == yaml.ScalarNode && n.Value != "" {
		return []*yaml.Node{n} // a single value where a list was expected
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, key, "must be a list")
		return nil
	}
	return n.Content
}

// addrList parses addresses with ports; defaultPort, if not 0, is used when one is missing.
func (p *parser) addrList(n *yaml.Node, key string, defaultPort uint16) []netip.AddrPort {
	var out []netip.AddrPort
	for _, item := range p.list(n, key) {
		s, ok := p.scalar(item, key)
		if !ok {
			continue
		}
		a, err := parseAddrPort(s, defaultPort)
		if err != nil {
			p.errorf(item, key, "%v", err)
			continue
		}
		out = append(out, a)
	}
	return out
}

func parseAddrPort(s string, defaultPort uint16) (netip.AddrPort, error) {
	if a, err := netip.ParseAddrPort(s); err == nil {
		if a.Port() == 0 && defaultPort != 0 {
			return netip.AddrPort{}, fmt.Errorf("%q: port 0 is not a port an upstream answers on", s)
		}
		return a, nil
	}
	if defaultPort != 0 {
		if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
			return netip.AddrPortFrom(a, defaultPort), nil
		}
		return netip.AddrPort{}, fmt.Errorf("%q is not an IP address with an optional port (192.0.2.1, 192.0.2.1:5300, [2001:db8::1]:53)", s)
	}
	return netip.AddrPort{}, fmt.Errorf("%q is not an IP address and port (127.0.0.1:53, [::1]:53)", s)
}

func (p *parser) prefixList(n *yaml.Node, key string) []netip.Prefix {
	var out []netip.Prefix
	for _, item := range p.list(n, key) {
		s, ok := p.scalar(item, key)
		if !ok {
			continue
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil {
				p.errorf(item, key, "%q is not an address or prefix (10.0.0.0/8, ::1)", s)
				continue
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, pfx.Masked())
	}
	return out
}
