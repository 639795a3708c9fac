package main

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetdns/fleetdns/bench/nsd"
)

// TestPolicyEndToEnd asks dig for every kind of policy answer through a running stub whose
// only upstream does not exist: each must come back, locally, with the flags glibc needs.
func TestPolicyEndToEnd(t *testing.T) {
	_, err := exec.LookPath("dig")
	requireTool(t, err)
	lo := netip.MustParseAddr("127.0.0.1")
	port, err := nsd.FreePort(lo)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := nsd.FreePort(lo) // nothing listens there
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.AddrPortFrom(lo, port)
	zones, err := filepath.Abs("testdata/zones/*.zone")
	if err != nil {
		t.Fatal(err)
	}
	config := fmt.Sprintf(`listen: ["%s"]
forward:
  - {zone: ".", upstreams: ["127.0.0.1:%d"]}
local_zones:
  - {zone: "static.test", type: static}
  - {zone: "blocked.test", type: always_nxdomain}
  - {zone: "refused.test", type: refuse}
local_data:
  - "static.test. 300 IN SOA ns.static.test. h.static.test. 1 3600 900 604800 60"
  - "app.static.test. 300 IN A 192.0.2.30"
  - "v6.prd.example.test. 300 IN AAAA 2001:db8::30"
  - "db1.dc1.dcs.test. 300 IN A 192.0.2.21"
local_data_files: ["%s"]
block_aaaa: {suffixes: ["prd.example.test"]}
synthesize:
  ip: {domain: "ip.example.test", ttl: 120s}
  dc: {label: "dc", local: "dc1", domains: ["dcs.test"]}
junk_guard: {suffixes: ["prd.example.test", "tst.example.test"]}
`, addr, dead, zones)
	startClient(t, addr, config)

	for _, tc := range []struct {
		args   []string
		status string
		answer []string // "owner type rdata"
	}{
		{[]string{"app.static.test", "A"}, "NOERROR", []string{"app.static.test. A 192.0.2.30"}},
		{[]string{"app.static.test", "AAAA"}, "NOERROR", nil},
		{[]string{"nope.static.test", "A"}, "NXDOMAIN", nil},
		{[]string{"x.blocked.test", "A"}, "NXDOMAIN", nil},
		{[]string{"x.refused.test", "A"}, "REFUSED", nil},
		{[]string{"db1.corp.test", "A"}, "NOERROR", []string{"db1.corp.test. A 192.0.2.20"}},
		{[]string{"web.corp.test", "A"}, "NOERROR", []string{"web.corp.test. CNAME db1.corp.test.", "db1.corp.test. A 192.0.2.20"}},
		{[]string{"db1.dc.dcs.test", "A"}, "NOERROR", []string{"db1.dc.dcs.test. CNAME db1.dc1.dcs.test.", "db1.dc1.dcs.test. A 192.0.2.21"}},
		{[]string{"host.prd.example.test", "AAAA"}, "NOERROR", nil},
		{[]string{"v6.prd.example.test", "AAAA"}, "NOERROR", []string{"v6.prd.example.test. AAAA 2001:db8::30"}},
		{[]string{"host.prd.example.test.tst.example.test", "A"}, "NXDOMAIN", nil},
		{[]string{"192.0.2.7.ip.example.test", "A"}, "NOERROR", []string{"192.0.2.7.ip.example.test. A 192.0.2.7"}},
		{[]string{"2001-db8--7.ip.example.test", "AAAA"}, "NOERROR", []string{"2001-db8--7.ip.example.test. AAAA 2001:db8::7"}},
		{[]string{"192.0.2.07.ip.example.test", "A"}, "NXDOMAIN", nil},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			a, err := dig(context.Background(), nil, addr, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			if a.status != tc.status {
				t.Fatalf("status %s, want %s", a.status, tc.status)
			}
			if strings.Join(a.rrs, "|") != strings.Join(tc.answer, "|") {
				t.Errorf("answer %q, want %q", a.rrs, tc.answer)
			}
			if tc.status != "REFUSED" && (!hasFlag(a.flags, "aa") || !hasFlag(a.flags, "ra") || !hasFlag(a.flags, "qr")) {
				t.Errorf("flags %v, want qr aa ra on a local answer", a.flags)
			}
		})
	}
}
