package policy

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// allRules is a policy with every rule configured, so a question no rule matches walks them all.
func allRules(tb testing.TB) *Policy {
	tb.Helper()
	return mustNew(tb, Config{
		LocalZones: []LocalZone{
			{Name: "corp.test.", Type: "static"},
			{Name: "lan.test.", Type: "transparent"},
			{Name: "cdn.test.", Type: "typetransparent"},
			{Name: "ads.test.", Type: "redirect"},
			{Name: "blocked.test.", Type: "refuse"},
			{Name: "tracker.test.", Type: "always_nxdomain"},
		},
		LocalData: append(zoneData("corp.test."),
			"printer.lan.test. 300 IN A 192.168.1.20",
			"www.cdn.test. 300 IN A 192.0.2.80",
			"ads.test. 300 IN A 0.0.0.0",
			"db1.prd.example.com. 300 IN A 192.0.2.20",
		),
		LocalDataFiles: []string{filesZone, "testdata/glob/*.zone"},
		BlockAAAA:      BlockAAAA{Suffixes: []string{"prd.example.com", "stg.example.com", "lan.test"}},
		SynthIP:        SynthIP{Domain: "ip.example.com", TTL: 5 * time.Minute},
		SynthDC:        SynthDC{Label: "dc", Local: "dc1", Domains: []string{"prd.example.com", "stg.example.com"}},
		JunkGuard:      []string{"prd.example.com", "stg.example.com", "tst.example.com"},
	})
}

// noMatch are questions every rule looks at and none decides: they go on to the cache.
var noMatch = []struct {
	name  string
	qtype uint16
}{
	{"www.example.org.", dns.TypeA},
	{"www.example.org.", dns.TypeAAAA},
	{"a.b.c.d.e.f.g.h.example.org.", dns.TypeA},
	{"host.prd.example.com.", dns.TypeA},                 // under the junk, aaaa and dc suffixes
	{"host.prd.example.com.other.net.", dns.TypeAAAA},    // a junk suffix in the middle
	{"svc.dc.dev.example.com.", dns.TypeA},               // dc label under no listed domain
	{"nope.lan.test.", dns.TypeA},                        // a transparent zone lets it pass
	{"www.cdn.test.", dns.TypeAAAA},                      // typetransparent, other type
	{"1.2.3.4.ip.example.org.", dns.TypeA},               // looks like synthesize.ip, other domain
	{"ip.example.com.example.org.", dns.TypeA},           // the synthesize.ip domain in the middle
	{"db1.prd.example.com.stg.example.org.", dns.TypeA},  // a suffix twice, but not at the end
	{"x.1.0.0.127.in-addr.arpa.example.org.", dns.TypeA}, // a built-in zone in the middle
}

// TestDecideNoMatchAllocs keeps the promise of the package doc: a question no rule matches costs
// no allocation, with every rule configured.
func TestDecideNoMatchAllocs(t *testing.T) {
	p := allRules(t)
	for _, tc := range noMatch {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			qq := q(t, tc.name, tc.qtype)
			if v := p.Decide(qq); v.Action != Pass {
				t.Fatalf("Decide(%s %s) = %v, want %v", tc.name, dns.TypeToString[tc.qtype], outcomeOf(v), passed)
			}
			if allocs := testing.AllocsPerRun(100, func() { p.Decide(qq) }); allocs != 0 {
				t.Errorf("Decide(%s %s) allocates %v times per call, want 0", tc.name, dns.TypeToString[tc.qtype], allocs)
			}
		})
	}
}

// BenchmarkDecideNoMatchAllRules is the policy check every query pays with every rule
// configured; it must report 0 allocs/op.
func BenchmarkDecideNoMatchAllRules(b *testing.B) {
	p := allRules(b)
	for _, tc := range []struct {
		bench, name string
		qtype       uint16
	}{
		{"short", "www.example.org.", dns.TypeA},
		{"aaaa", "www.example.org.", dns.TypeAAAA},
		{"deep", "a.b.c.d.e.f.g.h.example.org.", dns.TypeA},
		{"under-suffixes", "host.prd.example.com.", dns.TypeA},
	} {
		b.Run(tc.bench, func(b *testing.B) {
			qq := q(b, tc.name, tc.qtype)
			b.ReportAllocs()
			for b.Loop() {
				if v := p.Decide(qq); v.Action != Pass {
					b.Fatal(v.Action)
				}
			}
		})
	}
}

// BenchmarkDecideAnswer measures the local answers, which build a message and may allocate.
func BenchmarkDecideAnswer(b *testing.B) {
	p := allRules(b)
	for _, tc := range []struct {
		bench, name string
		qtype       uint16
		action      Action
	}{
		{"local-data", "www.corp.test.", dns.TypeA, Answer},
		{"local-nxdomain", "nope.corp.test.", dns.TypeA, Answer},
		{"synthesize-ip", "192.0.2.1.ip.example.com.", dns.TypeA, Answer},
		{"synthesize-dc", "svc.dc.prd.example.com.", dns.TypeA, Chase},
		{"block-aaaa", "host.prd.example.com.", dns.TypeAAAA, Answer},
		{"junk-guard", "host.prd.example.com.tst.example.com.", dns.TypeA, Answer},
	} {
		b.Run(tc.bench, func(b *testing.B) {
			qq := q(b, tc.name, tc.qtype)
			b.ReportAllocs()
			for b.Loop() {
				if v := p.Decide(qq); v.Action != tc.action {
					b.Fatal(v.Action)
				}
			}
		})
	}
}
