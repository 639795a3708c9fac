package policy

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestBlockAAAA(t *testing.T) {
	cfg := Config{
		BlockAAAA:  BlockAAAA{Suffixes: []string{"prd.example.com", "v4only.test."}},
		LocalZones: []LocalZone{{Name: "v4only.test.", Type: "transparent"}},
		LocalData: []string{
			soaText("v4only.test.", 3600, 300),
			"dual.v4only.test. 300 IN AAAA 2001:db8::1",
		},
	}
	neg := soaText("v4only.test.", 300, 300)
	aaaa := "dual.v4only.test. 300 IN AAAA 2001:db8::1"

	t.Run("nodata", func(t *testing.T) {
		runDecide(t, mustNew(t, cfg), []decideCase{
			{"host.prd.example.com.", dns.TypeAAAA, nodata(ReasonBlockAAAA, "")},
			{"prd.example.com.", dns.TypeAAAA, nodata(ReasonBlockAAAA, "")},
			{"a.b.prd.example.com.", dns.TypeAAAA, nodata(ReasonBlockAAAA, "")},
			{"www.v4only.test.", dns.TypeAAAA, nodata(ReasonBlockAAAA, neg)}, // a local zone covers it
			{"dual.v4only.test.", dns.TypeAAAA, answered(ReasonLocalData, aaaa)},
			{"host.prd.example.com.", dns.TypeA, passed},
			{"host.prd.example.com.", dns.TypeHTTPS, passed},
			{"www.v4only.test.", dns.TypeA, passed},
			{"host.example.com.", dns.TypeAAAA, passed},
			{"xprd.example.com.", dns.TypeAAAA, passed},
			{"prd.example.com.evil.test.", dns.TypeAAAA, passed},
		})
	})

	t.Run("nxdomain", func(t *testing.T) {
		cfg := cfg
		cfg.BlockAAAA.NXDomain = true
		runDecide(t, mustNew(t, cfg), []decideCase{
			{"host.prd.example.com.", dns.TypeAAAA, nxdomain(ReasonBlockAAAA, "")},
			{"www.v4only.test.", dns.TypeAAAA, nxdomain(ReasonBlockAAAA, neg)},
			{"dual.v4only.test.", dns.TypeAAAA, answered(ReasonLocalData, aaaa)},
			{"host.prd.example.com.", dns.TypeA, passed},
			{"host.example.com.", dns.TypeAAAA, passed},
		})
	})
}

func TestBlocksAAAA(t *testing.T) {
	p := mustNew(t, Config{BlockAAAA: BlockAAAA{Suffixes: []string{"prd.example.com", "v4only.test."}}})
	none := mustNew(t, Config{})
	for _, tc := range []struct {
		p    *Policy
		name string
		want bool
	}{
		{p, "prd.example.com.", true},
		{p, "host.prd.example.com.", true},
		{p, "a.b.v4only.test.", true},
		{p, "example.com.", false},
		{p, "xprd.example.com.", false},
		{p, "prd.example.com.evil.test.", false},
		{p, ".", false},
		{none, "host.prd.example.com.", false},
	} {
		if got := tc.p.BlocksAAAA(q(t, tc.name, dns.TypeAAAA).Name); got != tc.want {
			t.Errorf("BlocksAAAA(%s) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSynthIP(t *testing.T) {
	p := mustNew(t, Config{SynthIP: SynthIP{Domain: "ip.example.com", TTL: 10 * time.Minute}})
	nx := nxdomain(ReasonSynthIP, "")
	empty := nodata(ReasonSynthIP, "")
	runDecide(t, p, []decideCase{
		{"192.0.2.1.ip.example.com.", dns.TypeA, answered(ReasonSynthIP, "192.0.2.1.ip.example.com. 600 IN A 192.0.2.1")},
		{"0.0.0.0.ip.example.com.", dns.TypeA, answered(ReasonSynthIP, "0.0.0.0.ip.example.com. 600 IN A 0.0.0.0")},
		{"255.255.255.255.ip.example.com.", dns.TypeA, answered(ReasonSynthIP, "255.255.255.255.ip.example.com. 600 IN A 255.255.255.255")},
		{"192.0.2.1.ip.example.com.", dns.TypeAAAA, empty},
		{"192.0.2.1.ip.example.com.", dns.TypeMX, empty},
		{"192.0.2.01.ip.example.com.", dns.TypeA, nx},
		{"01.0.2.1.ip.example.com.", dns.TypeA, nx},
		{"192.0.2.256.ip.example.com.", dns.TypeA, nx},
		{"1000.0.2.1.ip.example.com.", dns.TypeA, nx},
		{"0.2.1.ip.example.com.", dns.TypeA, nx},
		{"1.192.0.2.1.ip.example.com.", dns.TypeA, nx},
		{"a.b.c.d.e.f.ip.example.com.", dns.TypeA, nx},
		{"192.0.2.x.ip.example.com.", dns.TypeA, nx},
		{"192.0.2.-1.ip.example.com.", dns.TypeA, nx},
		{"www.ip.example.com.", dns.TypeA, nx},
		{"ip.example.com.", dns.TypeA, empty},
		{"ip.example.com.", dns.TypeAAAA, empty},
		{"2001-db8--1.ip.example.com.", dns.TypeAAAA, answered(ReasonSynthIP, "2001-db8--1.ip.example.com. 600 IN AAAA 2001:db8::1")},
		{"--1.ip.example.com.", dns.TypeAAAA, answered(ReasonSynthIP, "--1.ip.example.com. 600 IN AAAA ::1")},
		{"2001-db8-0-0-0-0-0-1.ip.example.com.", dns.TypeAAAA, answered(ReasonSynthIP, "2001-db8-0-0-0-0-0-1.ip.example.com. 600 IN AAAA 2001:db8::1")},
		{"2001-db8--1.ip.example.com.", dns.TypeA, empty},
		{"2001-db8-zz--1.ip.example.com.", dns.TypeAAAA, nx},
		{"2001-db8---1.ip.example.com.", dns.TypeAAAA, nx},
		{"--ffff-102-304.ip.example.com.", dns.TypeAAAA, nx}, // ::ffff:1.2.3.4, IPv4-mapped
		{"--ffff-102-304.ip.example.com.", dns.TypeA, nx},
		{"2001-db8--1.x.ip.example.com.", dns.TypeAAAA, nx},
		{"example.com.", dns.TypeA, passed},
		{"xip.example.com.", dns.TypeA, passed},
		{"192.0.2.1.example.com.", dns.TypeA, passed},
	})
}

func TestSynthIPDefaultTTL(t *testing.T) {
	p := mustNew(t, Config{SynthIP: SynthIP{Domain: "ip.example.com"}})
	checkDecide(t, p, decideCase{"192.0.2.1.ip.example.com.", dns.TypeA,
		answered(ReasonSynthIP, "192.0.2.1.ip.example.com. 0 IN A 192.0.2.1")})
}

func TestSynthDC(t *testing.T) {
	p := mustNew(t, Config{SynthDC: SynthDC{Label: "dc", Local: "dc1", Domains: []string{"prd.example.com", "stg.example.com."}}})
	cname := func(owner, target string) string { return owner + " 300 IN CNAME " + target }
	runDecide(t, p, []decideCase{
		{"svc.dc.prd.example.com.", dns.TypeA, chased(ReasonSynthDC, "svc.dc1.prd.example.com.",
			cname("svc.dc.prd.example.com.", "svc.dc1.prd.example.com."))},
		{"svc.dc.prd.example.com.", dns.TypeAAAA, chased(ReasonSynthDC, "svc.dc1.prd.example.com.",
			cname("svc.dc.prd.example.com.", "svc.dc1.prd.example.com."))},
		{"a.b.dc.prd.example.com.", dns.TypeA, chased(ReasonSynthDC, "a.b.dc1.prd.example.com.",
			cname("a.b.dc.prd.example.com.", "a.b.dc1.prd.example.com."))},
		{"svc.dc.stg.example.com.", dns.TypeA, chased(ReasonSynthDC, "svc.dc1.stg.example.com.",
			cname("svc.dc.stg.example.com.", "svc.dc1.stg.example.com."))},
		{"svc.dc.prd.example.com.", dns.TypeCNAME, answered(ReasonSynthDC,
			cname("svc.dc.prd.example.com.", "svc.dc1.prd.example.com."))},
		{"dc.prd.example.com.", dns.TypeA, passed},
		{"svc.dc1.prd.example.com.", dns.TypeA, passed},
		{"svc.dcx.prd.example.com.", dns.TypeA, passed},
		{"svc.dc.x.prd.example.com.", dns.TypeA, passed},
		{"svc.dc.dev.example.com.", dns.TypeA, passed},
		{"svc.dc.example.com.", dns.TypeA, passed},
		{"svc.dc.prd.example.com.evil.test.", dns.TypeA, passed},
	})
}

func TestJunkGuard(t *testing.T) {
	p := mustNew(t, Config{JunkGuard: []string{"prd.example.com", "tst.example.com."}})
	nx := nxdomain(ReasonJunk, "")
	runDecide(t, p, []decideCase{
		{"host.prd.example.com.tst.example.com.", dns.TypeA, nx},
		{"host.prd.example.com.tst.example.com.", dns.TypeAAAA, nx},
		{"host.tst.example.com.prd.example.com.", dns.TypeA, nx},
		{"prd.example.com.prd.example.com.", dns.TypeA, nx},
		{"a.b.prd.example.com.prd.example.com.", dns.TypeA, nx},
		// q lowercases, as the resolver does before asking: matching is on lowercased names.
		{"HOST.PRD.EXAMPLE.COM.TST.EXAMPLE.COM.", dns.TypeA, nx},
		{"host.prd.example.com.", dns.TypeA, passed},
		{"prd.example.com.", dns.TypeA, passed},
		{"host.tst.example.com.", dns.TypeA, passed},
		{"host.prd.example.com.other.net.", dns.TypeA, passed},           // a suffix only in the middle
		{"host.prd.example.com.foo.tst.example.com.", dns.TypeA, passed}, // the labels before do not end with one
		{"xprd.example.com.tst.example.com.", dns.TypeA, passed},         // label boundaries
		{"example.com.tst.example.com.", dns.TypeA, passed},
	})
}

// TestDecideOrder: junk guard, local zones, synthesize.ip, synthesize.dc, block_aaaa; the first
// that decides wins.
func TestDecideOrder(t *testing.T) {
	p := mustNew(t, Config{
		JunkGuard: []string{"prd.example.com", "tst.example.com"},
		LocalData: []string{
			"host.prd.example.com.tst.example.com. 300 IN A 192.0.2.98",
			"1.2.3.4.ip.tst.example.com. 300 IN A 192.0.2.99",
			"v6.ip.prd.example.com. 300 IN AAAA 2001:db8::99",
		},
		SynthIP:   SynthIP{Domain: "ip.tst.example.com"},
		SynthDC:   SynthDC{Label: "ip", Local: "ip1", Domains: []string{"tst.example.com", "prd.example.com"}},
		BlockAAAA: BlockAAAA{Suffixes: []string{"prd.example.com"}},
	})
	runDecide(t, p, []decideCase{
		// junk guard before local data
		{"host.prd.example.com.tst.example.com.", dns.TypeA, nxdomain(ReasonJunk, "")},
		// local data before synthesize.ip
		{"1.2.3.4.ip.tst.example.com.", dns.TypeA, answered(ReasonLocalData, "1.2.3.4.ip.tst.example.com. 300 IN A 192.0.2.99")},
		{"5.6.7.8.ip.tst.example.com.", dns.TypeA, answered(ReasonSynthIP, "5.6.7.8.ip.tst.example.com. 0 IN A 5.6.7.8")},
		// synthesize.ip before synthesize.dc: svc.ip.tst.example.com fits both
		{"svc.ip.tst.example.com.", dns.TypeA, nxdomain(ReasonSynthIP, "")},
		// synthesize.dc before block_aaaa
		{"svc.ip.prd.example.com.", dns.TypeAAAA, chased(ReasonSynthDC, "svc.ip1.prd.example.com.",
			"svc.ip.prd.example.com. 300 IN CNAME svc.ip1.prd.example.com.")},
		// local data before synthesize.dc and block_aaaa
		{"v6.ip.prd.example.com.", dns.TypeAAAA, answered(ReasonLocalData, "v6.ip.prd.example.com. 300 IN AAAA 2001:db8::99")},
		{"host.prd.example.com.", dns.TypeAAAA, nodata(ReasonBlockAAAA, "")},
		{"host.prd.example.com.", dns.TypeA, passed},
	})
}
