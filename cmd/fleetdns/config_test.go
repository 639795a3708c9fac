package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/fabric"
	"github.com/fleetdns/fleetdns/resolver"
	"github.com/miekg/dns"
)

// useResolvConf points resolvConfPath at a file holding content until the test ends, so no
// test depends on the host's /etc/resolv.conf.
func useResolvConf(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	old := resolvConfPath
	resolvConfPath = path
	t.Cleanup(func() { resolvConfPath = old })
	return path
}

func addrs(ss ...string) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParseAddrPort(s))
	}
	return out
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestParseConfig(t *testing.T) {
	full, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		yaml       string
		resolvConf string        // for configs without forward
		want       func(*config) // changes to defaultConfig()
	}{
		{
			name: "every key",
			yaml: string(full),
			want: func(c *config) {
				c.Resolver.Listen = addrs("127.0.0.1:5300", "[::1]:5300")
				c.Resolver.OptionalListen = nil // addresses the operator wrote must bind
				c.Resolver.StaleClientTimeout = 500 * time.Millisecond
				c.Resolver.RoundRobin = true
				c.Resolver.RateLimit = resolver.RateLimit{ResponsesPerSecond: 300, Slip: 3, IPv4Prefix: 22, IPv6Prefix: 48, Prefixes: 1000}
				c.Resolver.Forward = []resolver.ZoneConfig{
					{Zone: "corp.example.", Upstreams: addrs("10.0.0.53:53", "10.0.0.54:5353"), Protocol: "tcp"},
					{Zone: ".", Upstreams: addrs("192.0.2.1:53", "[2001:db8::1]:5353", "[2001:db8::2]:53"), Protocol: "udp"},
				}
				c.Policy.AccessControl = prefixes("127.0.0.0/8", "10.0.0.0/8", "192.0.2.7/32", "::1/128")
				c.Cache.Size = 5000
				c.Cache.MaxBytes = 64 << 20
				c.Cache.MinTTL = 30 * time.Second
				c.Cache.MaxTTL = time.Hour
				c.Cache.MaxNegativeTTL = 15 * time.Second
				c.Cache.Prefetch = false
				c.Cache.ServeStale = false
				c.Cache.StaleTTL = 2 * time.Hour
				c.Log = logConfig{Level: slog.LevelDebug, Format: "json", Queries: true}
			},
		},
		{
			name: "rate_limit slip 0 is never",
			yaml: "rate_limit: {responses_per_second: 200, slip: 0}\nforward:\n  - zone: .\n    upstreams: [192.0.2.1]\n",
			want: func(c *config) {
				c.Resolver.RateLimit = resolver.RateLimit{ResponsesPerSecond: 200, Slip: -1}
				c.Resolver.Forward = []resolver.ZoneConfig{{Zone: ".", Upstreams: addrs("192.0.2.1:53")}}
			},
		},
		{
			name: "forward only keeps the defaults",
			yaml: "forward:\n  - zone: .\n    upstreams: [192.0.2.1]\n",
			want: func(c *config) {
				c.Resolver.Forward = []resolver.ZoneConfig{{Zone: ".", Upstreams: addrs("192.0.2.1:53")}}
			},
		},
		{
			name: "single values where lists are expected",
			yaml: "listen: 127.0.0.1:5300\naccess_control: 10.0.0.0/8\nforward:\n  - zone: .\n    upstreams: 192.0.2.1:5353\n",
			want: func(c *config) {
				c.Resolver.Listen = addrs("127.0.0.1:5300")
				c.Resolver.OptionalListen = nil
				c.Policy.AccessControl = prefixes("10.0.0.0/8")
				c.Resolver.Forward = []resolver.ZoneConfig{{Zone: ".", Upstreams: addrs("192.0.2.1:5353")}}
			},
		},
		{
			name: "bracketed IPv6 upstream without port",
			yaml: "forward:\n  - zone: .\n    upstreams: [\"[2001:db8::53]\"]\n",
			want: func(c *config) {
				c.Resolver.Forward = []resolver.ZoneConfig{{Zone: ".", Upstreams: addrs("[2001:db8::53]:53")}}
			},
		},
		{
			name: "empty access_control",
			yaml: "access_control: []\nforward:\n  - zone: .\n    upstreams: [192.0.2.1]\n",
			want: func(c *config) {
				c.Policy.AccessControl = nil // the policy allows loopback only
				c.Resolver.Forward = []resolver.ZoneConfig{{Zone: ".", Upstreams: addrs("192.0.2.1:53")}}
			},
		},
		{
			name: "log levels and zero durations",
			yaml: "cache:\n  min_ttl: 0s\n  stale_ttl: 0s\nlog:\n  level: warn\n  format: text\n  queries: false\nforward:\n  - zone: .\n    upstreams: [192.0.2.1]\n",
			want: func(c *config) {
				c.Cache.StaleTTL = 0
				c.Log.Level = slog.LevelWarn
				c.Resolver.Forward = []resolver.ZoneConfig{{Zone: ".", Upstreams: addrs("192.0.2.1:53")}}
			},
		},
		{
			name:       "no forward: resolv.conf without the default listen addresses",
			yaml:       "rrset_roundrobin: false\n",
			resolvConf: "nameserver 127.0.0.1\nnameserver ::1\nnameserver 192.0.2.53\n",
			want: func(c *config) {
				c.Resolver.Forward = []resolver.ZoneConfig{{Zone: ".", Upstreams: addrs("192.0.2.53:53"), Protocol: "udp"}}
			},
		},
		{
			name: "top-level health",
			yaml: "health:\n  name: health.example.\n  type: AAAA\n  interval: 2s\n  timeout: 1s\n  rise: 4\n  fall: 3\n  graceful_withdraw: 1s\n  siblings: [\"192.0.2.2\", \"[2001:db8::2]:5300\"]\n  listen: \"127.0.0.1:8053\"\nforward:\n  - {zone: ., upstreams: [192.0.2.1]}\n",
			want: func(c *config) {
				c.Resolver.Forward = []resolver.ZoneConfig{{Zone: ".", Upstreams: addrs("192.0.2.1:53")}}
				c.Server.HealthName, c.Server.HealthType = "health.example.", dns.TypeAAAA
				c.Server.Health = fabric.HealthConfig{Interval: 2 * time.Second, Timeout: time.Second, Rise: 4, Fall: 3}
				c.Server.Controller.GracefulWithdraw = time.Second
				c.Server.Siblings = addrs("192.0.2.2:53", "[2001:db8::2]:5300")
				c.Server.HealthListen = "127.0.0.1:8053"
			},
		},
		{
			name:       "no forward: resolv.conf without the configured listen addresses",
			yaml:       "listen: [\"127.0.0.1:5300\", \"127.0.0.2:53\"]\n",
			resolvConf: "nameserver 127.0.0.1\nnameserver 127.0.0.2\n",
			want: func(c *config) {
				c.Resolver.Listen = addrs("127.0.0.1:5300", "127.0.0.2:53")
				c.Resolver.OptionalListen = nil
				// 127.0.0.1:53 is not fleetdns here: it listens on 5300.
				c.Resolver.Forward = []resolver.ZoneConfig{{Zone: ".", Upstreams: addrs("127.0.0.1:53"), Protocol: "udp"}}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := tc.resolvConf
			if rc == "" {
				rc = "nameserver 192.0.2.99\n" // must not be used: each case without it has forward
			}
			useResolvConf(t, rc)
			got, err := parseConfig("good.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatalf("parseConfig(good.yaml) error: %v", err)
			}
			want := defaultConfig()
			tc.want(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("parseConfig(good.yaml) =\n%+v\nwant\n%+v", got, want)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{"268435456", 256 << 20, ""},
		{"256MiB", 256 << 20, ""},
		{"256 MiB", 256 << 20, ""},
		{"1GB", 1e9, ""},
		{"1gib", 1 << 30, ""},
		{"512KiB", 512 << 10, ""},
		{"64kb", 64000, ""},
		{"100B", 100, ""},
		{"2TiB", 2 << 40, ""},
		{"1.5GB", 0, "not a whole number"},
		{"256MB2", 0, "not a whole number"},
		{"lots", 0, `unknown unit "lots"`},
		{"12 parsecs", 0, `unknown unit "parsecs"`},
		{"1M", 0, `unknown unit "M"`},
		{"-1", 0, "must be at least 1 byte"},
		{"0GB", 0, "must be at least 1 byte"},
		{"9000000TiB", 0, "too large"},
		{"", 0, "not a whole number"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseSize(tc.in)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Errorf("parseSize(%q) = %d, %v, want error %q", tc.in, got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("parseSize(%q) = %d, %v, want %d", tc.in, got, err, tc.want)
			}
		})
	}
}

func TestLoadConfig(t *testing.T) {
	useResolvConf(t, "nameserver 192.0.2.99\n")
	t.Run("file", func(t *testing.T) {
		got, err := loadConfig("testdata/full.yaml")
		if err != nil {
			t.Fatalf("loadConfig(testdata/full.yaml) error: %v", err)
		}
		if got.Cache.Size != 5000 || len(got.Resolver.Forward) != 2 || got.Log.Format != "json" {
			t.Errorf("loadConfig(testdata/full.yaml) = %+v, want the values of the file", got)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "nope.yaml")
		_, err := loadConfig(path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("loadConfig(%s) error = %v, want one naming the file", path, err)
		}
	})
}

func TestParseConfigErrors(t *testing.T) {
	const okForward = "forward:\n  - zone: .\n    upstreams: [192.0.2.1]\n"
	for _, tc := range []struct {
		name       string
		yaml       string
		resolvConf string   // default: one usable nameserver
		want       []string // one per error, in order: each a prefix of that line of the error
	}{
		{
			name: "unknown top-level key",
			yaml: "listen: [\"127.0.0.1:5300\"]\nlissten: [\"127.0.0.1:5301\"]\n" + okForward,
			want: []string{"bad.yaml:2: lissten: unknown key"},
		},
		{
			name: "unknown cache key",
			yaml: "cache:\n  size: 100\n  sise: 100\n" + okForward,
			want: []string{"bad.yaml:3: cache.sise: unknown key"},
		},
		{
			name: "unknown forward key",
			yaml: okForward + "  - zone: corp.example.\n    upstreams: [192.0.2.2]\n    protocl: tcp\n",
			want: []string{"bad.yaml:6: forward[1].protocl: unknown key"},
		},
		{
			name: "unknown log key",
			yaml: "log:\n  level: info\n  colour: true\n" + okForward,
			want: []string{"bad.yaml:3: log.colour: unknown key"},
		},
		{
			name: "failover without a canary",
			yaml: "listen: [\"127.0.0.1:5300\"]\nfailover:\n  interval: 5s\n" + okForward,
			want: []string{"bad.yaml:3: failover: the canary needs a name and a type"},
		},
		{
			name: "failover expect not rdata of the canary's type",
			yaml: "listen: [\"127.0.0.1:5300\"]\nfailover:\n  local: [192.0.2.1]\n  remote: [192.0.2.2]\n  canary: {name: canary.test., type: A, expect: canary.test.}\n" + okForward,
			want: []string{`bad.yaml:3: failover: expect "canary.test." is not an A address`},
		},
		{
			name: "key given twice",
			yaml: "rrset_roundrobin: true\nrrset_roundrobin: false\n" + okForward,
			want: []string{"bad.yaml:2: rrset_roundrobin: given twice"},
		},
		{
			name: "duration without unit",
			yaml: "cache:\n  min_ttl: 30\n" + okForward,
			want: []string{`bad.yaml:2: cache.min_ttl: "30" is not a duration`},
		},
		{
			name: "negative duration",
			yaml: "cache:\n  size: 10\n  stale_client_timeout: -1s\n" + okForward,
			want: []string{`bad.yaml:3: cache.stale_client_timeout: "-1s" is not a duration`},
		},
		{
			name: "duration as a list",
			yaml: "cache:\n  max_ttl: [1h]\n" + okForward,
			want: []string{"bad.yaml:2: cache.max_ttl: must be a single value"},
		},
		{
			name: "size zero",
			yaml: "cache:\n  size: 0\n" + okForward,
			want: []string{`bad.yaml:2: cache.size: "0" is not a whole number of at least 1`},
		},
		{
			name: "yes is not a boolean",
			yaml: "cache:\n  prefetch: yes\n" + okForward,
			want: []string{`bad.yaml:2: cache.prefetch: "yes" is not true or false`},
		},
		{
			name: "cache not a mapping",
			yaml: "cache: big\n" + okForward,
			want: []string{"bad.yaml:1: cache: must be a mapping of keys to values"},
		},
		{
			name: "max_bytes with an unknown unit",
			yaml: "cache:\n  size: 10\n  max_bytes: 256MB2\n" + okForward,
			want: []string{`bad.yaml:3: cache.max_bytes: "256MB2" is not a size in bytes (write e.g. 268435456, 256MiB, 1GB): not a whole number`},
		},
		{
			name: "max_bytes zero",
			yaml: "cache:\n  max_bytes: 0\n" + okForward,
			want: []string{`bad.yaml:2: cache.max_bytes: "0" is not a size in bytes (write e.g. 268435456, 256MiB, 1GB): must be at least 1 byte`},
		},
		{
			name: "max_bytes as a list",
			yaml: "cache:\n  max_bytes: [1GB]\n" + okForward,
			want: []string{"bad.yaml:2: cache.max_bytes: must be a single value"},
		},
		{
			name: "min_ttl above max_ttl",
			yaml: "cache:\n  max_ttl: 1m\n  min_ttl: 1h\n" + okForward,
			want: []string{"bad.yaml:3: cache.min_ttl: 1h0m0s is above max_ttl 1m0s"},
		},
		{
			name: "listen address without port",
			yaml: "listen:\n  - 127.0.0.1:5300\n  - 127.0.0.1\n" + okForward,
			want: []string{`bad.yaml:3: listen: "127.0.0.1" is not an IP address and port`},
		},
		{
			name: "listen host name",
			yaml: "listen: localhost:53\n" + okForward,
			want: []string{`bad.yaml:1: listen: "localhost:53" is not an IP address and port`},
		},
		{
			name: "listen empty",
			yaml: "listen: []\n" + okForward,
			want: []string{"bad.yaml:1: listen: "},
		},
		{
			name: "bad prefix in access_control",
			yaml: "access_control:\n  - 127.0.0.0/8\n  - 10.0.0.0/33\n" + okForward,
			want: []string{`bad.yaml:3: access_control: "10.0.0.0/33" is not an address or prefix`},
		},
		{
			name: "host name in access_control",
			yaml: "access_control: [localhost]\n" + okForward,
			want: []string{`bad.yaml:1: access_control: "localhost" is not an address or prefix`},
		},
		{
			name: "upstream host name",
			yaml: okForward + "  - zone: corp.example.\n    upstreams:\n      - 10.0.0.53\n      - dns.corp.example\n",
			want: []string{`bad.yaml:7: forward[1].upstreams: "dns.corp.example" is not an IP address with an optional port`},
		},
		{
			name: "upstream port out of range",
			yaml: "forward:\n  - zone: .\n    upstreams: [192.0.2.2, \"192.0.2.1:70000\"]\n",
			want: []string{`bad.yaml:3: forward[0].upstreams: "192.0.2.1:70000" is not an IP address`},
		},
		{
			name: "upstream port zero",
			yaml: "forward:\n  - zone: .\n    upstreams: [\"192.0.2.1:0\"]\n",
			want: []string{"bad.yaml:3: forward[0].upstreams: "},
		},
		{
			name: "upstreams missing",
			yaml: "forward:\n  - zone: .\n  - zone: corp.example.\n    upstreams: [192.0.2.1]\n",
			want: []string{"bad.yaml:2: forward[0].upstreams: missing"},
		},
		{
			name: "zone missing",
			yaml: "forward:\n  - upstreams: [192.0.2.1]\n",
			want: []string{"bad.yaml:2: forward[0].zone: missing"},
		},
		{
			name: "zone not a domain name",
			yaml: "forward:\n  - zone: a..b\n    upstreams: [192.0.2.1]\n",
			want: []string{`bad.yaml:2: forward[0].zone: "a..b" is not a domain name`},
		},
		{
			name: "duplicate zone, compared without case or final dot",
			yaml: "forward:\n  - zone: example.test\n    upstreams: [192.0.2.1]\n  - zone: Example.Test.\n    upstreams: [192.0.2.2]\n",
			want: []string{`bad.yaml:4: forward[1].zone: zone "Example.Test." is listed twice`},
		},
		{
			name: "unknown protocol",
			yaml: "forward:\n  - zone: .\n    upstreams: [192.0.2.1]\n    protocol: quic\n",
			want: []string{`bad.yaml:4: forward[0].protocol: "quic" is not one of udp, tcp`},
		},
		{
			name: "protocol tls",
			yaml: "forward:\n  - zone: .\n    upstreams: [192.0.2.1]\n    protocol: tls\n",
			want: []string{"bad.yaml:4: forward[0].protocol: tls is not supported by this version yet"},
		},
		{
			name: "forward not a list",
			yaml: "forward:\n  zone: .\n",
			want: []string{"bad.yaml:2: forward: must be a list of zones"},
		},
		{
			name: "log level and format",
			yaml: "log:\n  level: loud\n  format: xml\n" + okForward,
			want: []string{
				`bad.yaml:2: log.level: "loud" is not one of debug, info, warn, error`,
				`bad.yaml:3: log.format: "xml" is not one of text, json`,
			},
		},
		{
			name: "every error at once",
			yaml: "listen: [\"127.0.0.1\"]\ncache:\n  min_ttl: soon\nforward:\n  - zone: .\n    upstreams: [192.0.2.1]\n    protocol: quic\nfailover: {}\n",
			want: []string{
				`bad.yaml:1: listen: "127.0.0.1" is not an IP address and port`,
				`bad.yaml:3: cache.min_ttl: "soon" is not a duration`,
				`bad.yaml:7: forward[0].protocol: "quic" is not one of udp, tcp`,
				"bad.yaml:8: failover: the canary needs a name and a type",
			},
		},
		{
			name:       "no forward and no usable resolv.conf",
			yaml:       "rrset_roundrobin: true\n",
			resolvConf: "nameserver 127.0.0.1\n",
			want:       []string{"bad.yaml: forward: none given, and upstreams from "},
		},
		{
			name: "YAML syntax",
			yaml: "listen: [\"127.0.0.1:5300\"\nforward: x\n",
			want: []string{"bad.yaml: yaml: line 1: "},
		},
		{
			name: "metrics listen without port",
			yaml: "metrics: {listen: localhost}\n" + okForward,
			want: []string{`bad.yaml:1: metrics.listen: "localhost" is not an IP address and port`},
		},
		{
			name: "control socket relative",
			yaml: "control:\n  socket: run/ctl.sock\n" + okForward,
			want: []string{`bad.yaml:2: control.socket: "run/ctl.sock" is not an absolute path`},
		},
		{
			name: "rate_limit errors",
			yaml: "rate_limit:\n  responses_per_second: -5\n  slip: x\n  ipv4_prefix: 33\n  burst: 3\n" + okForward,
			want: []string{
				`bad.yaml:2: rate_limit.responses_per_second: "-5" is not a whole number of at least 0`,
				`bad.yaml:3: rate_limit.slip: "x" is not a whole number of at least 0`,
				`bad.yaml:4: rate_limit.ipv4_prefix: 33 is longer than an address (32 bits)`,
				`bad.yaml:5: rate_limit.burst: unknown key`,
			},
		},
		{
			name: "server mode errors",
			yaml: "node: {id: n1}\nbgp:\n  asn: 0\n  router_id: 192.0.2.1\n  announce:\n    - {prefix: 198.51.100.53/24, priority: first, communities: [\"65000\"]}\n" + okForward,
			want: []string{
				`bad.yaml:3: bgp.asn: "0" is not an AS number`,
				`bad.yaml:6: bgp.announce[0].prefix: "198.51.100.53/24" is not a network prefix (198.51.100.53/32)`,
				`bad.yaml:6: bgp.announce[0].priority: "first" is not one of primary, secondary`,
				`bad.yaml:6: bgp.announce[0].communities: "65000" is not a community (65000:53)`,
			},
		},
		{
			name: "server mode on a service address without access_control",
			yaml: "listen: [\"127.0.0.1:53\", \"198.51.100.53:53\"]\nnode: {id: n1}\nbgp:\n  asn: 65053\n  router_id: 192.0.2.1\n  peers: [{address: 192.0.2.254, asn: 65000, local_address: 192.0.2.1}]\n  announce: [{prefix: 198.51.100.53/32}]\n" + okForward,
			want: []string{`bad.yaml:1: listen: 198.51.100.53:53 is not a loopback address, and without access_control only loopback clients are answered`},
		},
		{
			name: "announced prefix no listen address is in",
			yaml: "listen: [\"198.51.100.53:53\", \"192.0.2.1:53\"]\naccess_control: [192.0.2.0/24]\nnode: {id: n1}\nbgp:\n  asn: 65053\n  router_id: 192.0.2.1\n  peers: [{address: 192.0.2.254, asn: 65000, local_address: 192.0.2.1}, {address: \"2001:db8::254\", asn: 65000, local_address: \"2001:db8::1\"}]\n  announce:\n    - {prefix: 198.51.100.53/32}\n    - {prefix: 198.51.100.54/32, priority: secondary}\n    - {prefix: \"2001:db8:5353::53/128\"}\n" + okForward,
			want: []string{
				`bad.yaml:10: bgp.announce[1].prefix: no listen address is in 198.51.100.54/32: announced, it would draw queries that this node does not answer (add one to listen, e.g. "198.51.100.54:53")`,
				`bad.yaml:11: bgp.announce[2].prefix: no listen address is in 2001:db8:5353::53/128`,
			},
		},
		{
			name: "announced prefix with the default (loopback) listen",
			yaml: "node: {id: n1}\nbgp:\n  asn: 65053\n  router_id: 192.0.2.1\n  peers: [{address: 192.0.2.254, asn: 65000, local_address: 192.0.2.1}]\n  announce: [{prefix: 198.51.100.53/32}]\n" + okForward,
			want: []string{`bad.yaml:6: bgp.announce[0].prefix: no listen address is in 198.51.100.53/32`},
		},
		{
			name: "IPv6 prefix with an IPv4 wildcard listen",
			yaml: "listen: [\"0.0.0.0:53\"]\naccess_control: [192.0.2.0/24]\nnode: {id: n1}\nbgp:\n  asn: 65053\n  router_id: 192.0.2.1\n  peers: [{address: 192.0.2.254, asn: 65000, local_address: 192.0.2.1}, {address: \"2001:db8::254\", asn: 65000, local_address: \"2001:db8::1\"}]\n  announce: [{prefix: 198.51.100.53/32}, {prefix: \"2001:db8:5353::53/128\"}]\n" + okForward,
			want: []string{`bad.yaml:8: bgp.announce[1].prefix: no listen address is in 2001:db8:5353::53/128`},
		},
		{
			name: "kernel prefix not a prefix",
			yaml: "node: {id: n1}\nkernel:\n  prefixes: [198.51.100.53/32, 198.51.100.54/24]\n" + okForward,
			want: []string{`bad.yaml:3: kernel.prefixes[1]: "198.51.100.54/24" is not a network prefix (198.51.100.53/32)`},
		},
		{
			name: "announce kernel: its block, its prefixes served, no bgp",
			yaml: "listen: [\"192.0.2.1:53\"]\naccess_control: [192.0.2.0/24]\nnode: {id: n1}\nannounce: kernel\nkernel:\n  device: \"bad/name\"\n  prefixes: [198.51.100.53/32]\nbgp:\n  asn: 65053\n" + okForward,
			want: []string{
				`bad.yaml:9: bgp: given, but announce is kernel (a routing daemon on the node exports the prefixes): remove it, or set announce: bgp`,
				`bad.yaml:6: kernel: kernel.device:`,
				`bad.yaml:7: kernel.prefixes[0]: no listen address is in 198.51.100.53/32`,
			},
		},
		{
			name: "announce kernel without a kernel block",
			yaml: "listen: [\"127.0.0.1:53\"]\nnode: {id: n1}\nannounce: kernel\n" + okForward,
			want: []string{`bad.yaml:3: announce: kernel needs a kernel block with the prefixes to add`},
		},
		{
			name: "announce none needs the health endpoint",
			yaml: "listen: [\"127.0.0.1:53\"]\nnode: {id: n1}\nannounce: none\nkernel: {prefixes: [198.51.100.53/32]}\n" + okForward,
			want: []string{
				`bad.yaml:4: kernel: given, but announce is none: remove it, or set announce: kernel`,
				`bad.yaml:3: announce: none: the node leaves the path only through GET /health, so health.listen is needed`,
			},
		},
		{
			name: "announce bgp without a bgp block",
			yaml: "node: {id: n1}\nannounce: bgp\n" + okForward,
			want: []string{`bad.yaml:2: announce: bgp needs a bgp block`},
		},
		{
			name: "announce mode unknown",
			yaml: "node: {id: n1}\nannounce: ospf\nhealth: {listen: \"127.0.0.1:8053\"}\n" + okForward,
			want: []string{`bad.yaml:2: announce: "ospf" is not one of bgp, kernel, none`},
		},
		{
			name: "local zone type, reported by policy at its line",
			yaml: "local_zones:\n  - {zone: a.test, type: static}\n  - zone: b.test\n    type: deny\n  - {zone: c.test}\n" + okForward,
			want: []string{
				`bad.yaml:5: local_zones[2]: needs zone and type`,
				`bad.yaml:4: local_zones[1].type: b.test: type "deny" is not one of static, transparent, typetransparent, redirect, refuse, always_nxdomain`,
			},
		},
		{
			name: "health given twice",
			yaml: "node: {id: n1}\nhealth: {rise: 2}\nbgp:\n  health: {rise: 2}\n" + okForward,
			want: []string{`bad.yaml:4: bgp.health: given together with the top-level health block: keep only health`},
		},
		{
			name: "health keys",
			yaml: "health:\n  siblings: [\"192.0.2.2:53\", nope]\n  listen: \"localhost:80\"\n  rise: 0\n  interval: 1s\n  timeout: 2s\n  color: red\n" + okForward,
			want: []string{
				`bad.yaml:2: health.siblings: "nope" is not an IP address with an optional port`,
				`bad.yaml:3: health.listen: "localhost:80" is not an IP address and port`,
				`bad.yaml:4: health.rise: "0" is not a whole number of at least 1`,
				`bad.yaml:7: health.color: unknown key`,
				`bad.yaml:2: health: health: timeout must not be longer than interval`,
			},
		},
		{
			name: "siblings and listen only at the top level",
			yaml: "bgp:\n  health: {siblings: [\"192.0.2.2:53\"], listen: \"127.0.0.1:8053\"}\n" + okForward,
			want: []string{"bad.yaml:2: bgp.health.siblings: unknown key", "bad.yaml:2: bgp.health.listen: unknown key"},
		},
		{
			name: "health below the BGP minimum",
			yaml: "node: {id: n1}\nbgp:\n  peers: [{address: 192.0.2.254, asn: 65000, hold_time: 1s}]\n" + okForward,
			want: []string{`bad.yaml:3: bgp.peers[0].hold_time: 1s is below the 3s minimum of BGP (RFC 4271)`},
		},
		{
			name: "forward empty",
			yaml: "forward: []\n",
			want: []string{"bad.yaml:1: forward: at least one zone is needed (leave the key out to use /etc/resolv.conf)"},
		},
		{
			name: "upstreams empty",
			yaml: "forward:\n  - zone: .\n    upstreams: []\n",
			want: []string{"bad.yaml:3: forward[0].upstreams: at least one upstream is needed"},
		},
		{
			name: "log level with offset",
			yaml: "log:\n  level: info+2\n" + okForward,
			want: []string{`bad.yaml:2: log.level: "info+2" is not one of debug, info, warn, error`},
		},
		{
			name: "empty file",
			yaml: "# nothing here\n",
			want: []string{"bad.yaml: empty config"},
		},
		{
			name: "not a mapping",
			yaml: "- listen\n",
			want: []string{"bad.yaml:1: config: must be a mapping of keys to values"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := tc.resolvConf
			if rc == "" {
				rc = "nameserver 192.0.2.99\n"
			}
			useResolvConf(t, rc)
			_, err := parseConfig("bad.yaml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("parseConfig(bad.yaml) error = nil, want %q", tc.want)
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tc.want) {
				t.Fatalf("parseConfig(bad.yaml) error =\n%s\nwant %d lines starting %q", err, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("parseConfig(bad.yaml) error line %d = %q, want it to start %q", i+1, got[i], w)
				}
			}
		})
	}
}

func TestResolvConfForward(t *testing.T) {
	defaults := defaultConfig().Resolver.Listen // 127.0.0.1:53 and [::1]:53
	for _, tc := range []struct {
		name    string
		content string
		listen  []netip.AddrPort
		want    []netip.AddrPort
		wantErr string
	}{
		{
			name:    "own addresses left out, systemd-resolved kept",
			content: "nameserver 127.0.0.1\nnameserver ::1\nnameserver 127.0.0.53\n",
			listen:  defaults,
			want:    addrs("127.0.0.53:53"),
		},
		{
			name:    "IPv4-mapped own address left out",
			content: "nameserver ::ffff:127.0.0.1\nnameserver 192.0.2.53\n",
			listen:  defaults,
			want:    addrs("192.0.2.53:53"),
		},
		{
			name:    "own address on another port is an upstream",
			content: "nameserver 127.0.0.1\n",
			listen:  addrs("127.0.0.1:5300"),
			want:    addrs("127.0.0.1:53"),
		},
		{
			name:    "wildcard listen covers loopback nameservers",
			content: "nameserver 127.0.0.1\nnameserver 127.0.0.53\nnameserver 192.0.2.53\n",
			listen:  addrs("0.0.0.0:53"),
			want:    addrs("192.0.2.53:53"),
		},
		{
			name:    "IPv6 zone kept",
			content: "nameserver fe80::1%eth0\nnameserver 2001:db8::53\n",
			listen:  defaults,
			want:    addrs("[fe80::1%eth0]:53", "[2001:db8::53]:53"),
		},
		{
			name: "comments, options and garbage ignored",
			content: "# generated\n; old style comment\nsearch corp.example\noptions edns0 timeout:1\n" +
				"nameserver\nnameserver dns.example\n#nameserver 192.0.2.1\n  nameserver   192.0.2.2   # trailing\n",
			listen: defaults,
			want:   addrs("192.0.2.2:53"),
		},
		{
			name:    "only own addresses",
			content: "nameserver 127.0.0.1\nnameserver ::1\n",
			listen:  defaults,
			wantErr: "no nameserver other than fleetdns's own listen addresses",
		},
		{
			name:    "empty",
			content: "",
			listen:  defaults,
			wantErr: "no nameserver other than",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "resolv.conf")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := resolvConfForward(path, tc.listen)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("resolvConfForward(%q) = %v, %v, want an error naming the file and %q", tc.content, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("resolvConfForward(%q) error: %v", tc.content, err)
			}
			want := []resolver.ZoneConfig{{Zone: ".", Upstreams: tc.want, Protocol: "udp"}}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("resolvConfForward(%q) = %+v, want %+v", tc.content, got, want)
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "resolv.conf")
		if _, err := resolvConfForward(path, defaults); err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("resolvConfForward(%s) error = %v, want one naming the file", path, err)
		}
	})
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("cache:\n  min_ttl: 30\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ownOnly := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(ownOnly, []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		args       []string
		resolvConf string
		code       int
		stdout     string // a substring; "" means stdout must be empty
		stderr     string // likewise
	}{
		{name: "no command", args: nil, code: 2, stderr: "usage:"},
		{name: "help", args: []string{"help"}, code: 0, stdout: "usage:"},
		{name: "version", args: []string{"version"}, code: 0, stdout: "fleetdns "},
		{name: "unknown command", args: []string{"serve"}, code: 2, stderr: `unknown command "serve"`},
		{name: "command not built yet", args: []string{"install"}, code: 2, stderr: "fleetdns install: not built yet"},
		{name: "server without config", args: []string{"server"}, code: 2, stderr: "fleetdns server: -config FILE is required"},
		{name: "server with a client config", args: []string{"server", "-config", "testdata/full.yaml"}, code: 1, stderr: "server mode needs a bgp block"},
		{name: "check good", args: []string{"check", "-config", "testdata/full.yaml"}, code: 0, stdout: "testdata/full.yaml: ok"},
		{name: "check shipped example", args: []string{"check", "-config", "../../configs/client.yaml"}, code: 0, stdout: "client.yaml: ok"},
		{name: "check shipped server example", args: []string{"check", "-config", "../../configs/server.yaml"}, code: 0, stdout: "server.yaml: ok"},
		{name: "check shipped kernel server example", args: []string{"check", "-config", "../../configs/server-kernel.yaml"}, code: 0, stdout: "server-kernel.yaml: ok"},
		{name: "check deprecated bgp.health", args: []string{"check", "-config", "testdata/bgp-health.yaml"}, code: 0, stdout: "bgp-health.yaml: ok",
			stderr: "warning: testdata/bgp-health.yaml:12: bgp.health: deprecated: move it to the top-level health block"},
		{name: "check bad", args: []string{"check", "-config", bad}, code: 1, stderr: bad + `:2: cache.min_ttl: "30" is not a duration`},
		{name: "check missing file", args: []string{"check", "-config", filepath.Join(dir, "nope.yaml")}, code: 1, stderr: "nope.yaml"},
		{name: "check without -config", args: []string{"check"}, code: 2, stderr: "-config FILE is required"},
		{name: "check the file as the argument", args: []string{"check", "testdata/full.yaml"}, code: 0, stdout: "testdata/full.yaml: ok"},
		{name: "check a file given twice", args: []string{"check", "-config", "testdata/full.yaml", "../../configs/client.yaml"}, code: 2,
			stderr: "config file given twice: -config testdata/full.yaml and ../../configs/client.yaml"},
		{name: "check two arguments", args: []string{"check", "a.yaml", "b.yaml"}, code: 2, stderr: `unexpected arguments ["a.yaml" "b.yaml"]: give one config file`},
		{name: "check -mode server on a client config", args: []string{"check", "-mode", "server", "testdata/full.yaml"}, code: 1,
			stderr: "testdata/full.yaml: node: server mode needs a bgp block"},
		{name: "check -mode server on the shipped server example", args: []string{"check", "-mode", "server", "-config", "../../configs/server.yaml"}, code: 0, stdout: "server.yaml: ok"},
		{name: "check -mode server on the shipped kernel example", args: []string{"check", "-mode", "server", "../../configs/server-kernel.yaml"}, code: 0, stdout: "server-kernel.yaml: ok"},
		{name: "check -mode unknown", args: []string{"check", "-mode", "stub", "testdata/full.yaml"}, code: 2, stderr: `-mode "stub" is not one of client, server`},
		{name: "client bad config as the argument", args: []string{"client", bad}, code: 1, stderr: bad + ":2: cache.min_ttl"},
		{name: "client with a file given twice", args: []string{"client", "-config", bad, bad}, code: 2, stderr: "fleetdns client: config file given twice"},
		{name: "server with the file as the argument", args: []string{"server", "testdata/full.yaml"}, code: 1, stderr: "server mode needs a bgp block"},
		{name: "check unknown flag", args: []string{"check", "-conf", bad}, code: 2, stderr: "flag provided but not defined: -conf"},
		{name: "client bad config", args: []string{"client", "-config", bad}, code: 1, stderr: bad + ":2: cache.min_ttl"},
		{name: "client defaults without usable resolv.conf", args: []string{"client"}, resolvConf: ownOnly, code: 1,
			stderr: "upstreams from " + ownOnly + ": no nameserver other than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.resolvConf != "" {
				old := resolvConfPath
				resolvConfPath = tc.resolvConf
				t.Cleanup(func() { resolvConfPath = old })
			}
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.code {
				t.Errorf("run(%q) = %d, want %d; stderr: %s", tc.args, code, tc.code, stderr.String())
			}
			for _, out := range []struct {
				name      string
				got, want string
			}{{"stdout", stdout.String(), tc.stdout}, {"stderr", stderr.String(), tc.stderr}} {
				if (out.want == "" && out.got != "") || !strings.Contains(out.got, out.want) {
					t.Errorf("run(%q) %s = %q, want %q", tc.args, out.name, out.got, out.want)
				}
			}
		})
	}
}

// TestRateLimitByMode: without a rate_limit key, a server config (one with a bgp block) limits
// UDP answers per prefix and a client config does not; rate_limit given decides in both.
func TestRateLimitByMode(t *testing.T) {
	useResolvConf(t, "nameserver 192.0.2.99\n")
	const server = "listen: [\"198.51.100.53:53\"]\naccess_control: [192.0.2.0/24]\nnode: {id: n1}\nbgp:\n  asn: 65053\n  router_id: 192.0.2.1\n  peers: [{address: 192.0.2.254, asn: 65000, local_address: 192.0.2.1}]\n  announce: [{prefix: 198.51.100.53/32}]\n"
	for _, tc := range []struct {
		name, yaml string
		want       resolver.RateLimit
	}{
		{"client", "rrset_roundrobin: true\n", resolver.RateLimit{}},
		{"client with rate_limit", "rate_limit: {responses_per_second: 50}\n", resolver.RateLimit{ResponsesPerSecond: 50}},
		{"server", server, serverRateLimit},
		{"server with rate_limit off", server + "rate_limit: {responses_per_second: 0}\n", resolver.RateLimit{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig("mode.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Resolver.RateLimit != tc.want {
				t.Errorf("parseConfig(%q).Resolver.RateLimit = %+v, want %+v", tc.yaml, cfg.Resolver.RateLimit, tc.want)
			}
		})
	}
}

// TestAnnounceModes: each way of announcing parses to what server mode runs, and only an
// address that announce: kernel adds while healthy is bound with IP_FREEBIND.
func TestAnnounceModes(t *testing.T) {
	useResolvConf(t, "nameserver 192.0.2.99\n")
	const base = "listen: [\"198.51.100.53:53\", \"192.0.2.21:53\"]\naccess_control: [192.0.2.0/24]\nnode: {id: n1}\n"
	for _, tc := range []struct {
		name, yaml, via string
		freebind        bool
	}{
		{"bgp block alone", "bgp:\n  asn: 65053\n  router_id: 192.0.2.21\n  peers: [{address: 192.0.2.254, asn: 65000, local_address: 192.0.2.21}]\n  announce: [{prefix: 198.51.100.53/32}]\n", "bgp", false},
		{"kernel block alone, addresses", "kernel: {prefixes: [198.51.100.53/32]}\n", "kernel", true},
		{"kernel, routes in a table", "announce: kernel\nkernel: {device: lo, table: 100, prefixes: [198.51.100.53/32]}\n", "kernel", false},
		{"none, health endpoint", "announce: none\nhealth: {listen: \"192.0.2.21:8053\"}\n", "none", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := parseConfig("modes.yaml", []byte(base+tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if !cfg.Server.present() || cfg.Server.Announce != tc.via {
				t.Errorf("Announce = %q (server config %v), want %q", cfg.Server.Announce, cfg.Server.present(), tc.via)
			}
			if got := len(cfg.Resolver.FreeBind) > 0; got != tc.freebind {
				t.Errorf("FreeBind = %v, want it set %v", cfg.Resolver.FreeBind, tc.freebind)
			}
			if tc.via == "kernel" && cfg.Server.Kernel.Device == "" {
				t.Errorf("kernel.device not defaulted: %+v", cfg.Server.Kernel)
			}
		})
	}
}

// TestAnnounceServed: a prefix is served by a listen address in it, by 0.0.0.0 if it is IPv4,
// and by [::] in any case (Go opens [::] dual-stack); the port does not matter.
func TestAnnounceServed(t *testing.T) {
	useResolvConf(t, "nameserver 192.0.2.99\n")
	const bgp = "access_control: [192.0.2.0/24]\nnode: {id: n1}\nbgp:\n  asn: 65053\n  router_id: 192.0.2.1\n  peers: [{address: 192.0.2.254, asn: 65000, local_address: 192.0.2.1}, {address: \"2001:db8::254\", asn: 65000, local_address: \"2001:db8::1\"}]\n  announce: [{prefix: 198.51.100.53/32}, {prefix: 198.51.100.54/32, priority: secondary}, {prefix: \"2001:db8:5353::/64\"}]\n"
	for _, listen := range []string{
		`["198.51.100.53:53", "198.51.100.54:5300", "[2001:db8:5353::53]:53"]`,
		`["0.0.0.0:53", "[2001:db8:5353::53]:53"]`,
		`["[::]:53"]`,
		`["[::ffff:198.51.100.53]:53", "198.51.100.54:53", "[2001:db8:5353::1]:53"]`,
	} {
		if _, err := parseConfig("served.yaml", []byte("listen: "+listen+"\n"+bgp)); err != nil {
			t.Errorf("listen %s: %v, want every prefix served", listen, err)
		}
	}
}

// TestClientWarnsOfServerBlocks: `fleetdns client FILE` runs on FILE (not the embedded
// defaults), and says which of its blocks only server mode reads.
func TestClientWarnsOfServerBlocks(t *testing.T) {
	listen := freeAddr(t)
	path := filepath.Join(t.TempDir(), "host.yaml")
	config := fmt.Sprintf("listen: [%q]\nforward: [{zone: \".\", upstreams: [\"127.0.0.1:9\"]}]\ncontrol: {socket: %q}\nnode: {id: n1}\nannounce: none\nhealth: {listen: \"127.0.0.1:8053\"}\n",
		listen.String(), filepath.Join(socketDir(t), "ctl.sock"))
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"client", path}, io.Discard, &stderr) }()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(stderr.String(), "msg=serving") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("fleetdns client %s = %d, want 0; stderr:\n%s", path, code, stderr.String())
	}
	out := stderr.String()
	if !strings.Contains(out, "server mode's blocks are ignored by fleetdns client") || !strings.Contains(out, "blocks=\"[node announce health]\"") {
		t.Errorf("stderr:\n%s\nwant the warning naming node, announce and health", out)
	}
	if !strings.Contains(out, listen.String()) {
		t.Errorf("stderr:\n%s\nwant it serving on %s, the file's listen address (not the embedded defaults)", out, listen)
	}
}

// syncBuffer is a bytes.Buffer safe for the writer goroutine and the test reading it.
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
