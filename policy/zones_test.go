package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// outcome is what a client sees of a Verdict, in a form tests compare exactly.
type outcome struct {
	action Action
	reason Reason
	rcode  int      // -1: no message (Pass, Refuse)
	answer []string // records as rr.String() with tabs as spaces: owner, TTL, class, type, rdata
	ns     []string // the authority section, likewise
	target string   // for Chase
}

func (o outcome) String() string {
	rcode := "no message"
	if o.rcode >= 0 {
		rcode = dns.RcodeToString[o.rcode]
	}
	s := fmt.Sprintf("%s/%s %s answer %q authority %q", o.action, o.reason, rcode, o.answer, o.ns)
	if o.target != "" {
		s += " target " + o.target
	}
	return s
}

func (o outcome) equal(w outcome) bool {
	return o.action == w.action && o.reason == w.reason && o.rcode == w.rcode && o.target == w.target &&
		slices.Equal(o.answer, w.answer) && slices.Equal(o.ns, w.ns)
}

func outcomeOf(v Verdict) outcome {
	o := outcome{action: v.Action, reason: v.Reason, rcode: -1, target: v.Target}
	if v.Msg != nil {
		o.rcode = v.Msg.Rcode
		for _, rr := range v.Msg.Answer {
			o.answer = append(o.answer, text(rr))
		}
		for _, rr := range v.Msg.Ns {
			o.ns = append(o.ns, text(rr))
		}
	}
	return o
}

func text(rr dns.RR) string { return strings.ReplaceAll(rr.String(), "\t", " ") }

// record normalizes zone-file text the way outcomeOf prints records, so tables are written as
// records and a typo in a table fails loudly.
func record(s string) string {
	rr, err := dns.NewRR(s)
	if err != nil || rr == nil {
		panic(fmt.Sprintf("test table: record %q: %v", s, err))
	}
	return text(rr)
}

func records(ss []string) []string {
	var out []string
	for _, s := range ss {
		out = append(out, record(s))
	}
	return out
}

// soaNeg is an SOA as zone-file text; "" means none.
func soaNeg(s string) []string {
	if s == "" {
		return nil
	}
	return []string{record(s)}
}

var (
	passed  = outcome{action: Pass, reason: ReasonNone, rcode: -1}
	refused = outcome{action: Refuse, reason: ReasonLocalRefuse, rcode: -1}
)

func answered(reason Reason, rrs ...string) outcome {
	return outcome{action: Answer, reason: reason, rcode: dns.RcodeSuccess, answer: records(rrs)}
}

func nodata(reason Reason, soa string) outcome {
	return outcome{action: Answer, reason: reason, rcode: dns.RcodeSuccess, ns: soaNeg(soa)}
}

func nxdomain(reason Reason, soa string) outcome {
	return outcome{action: Answer, reason: reason, rcode: dns.RcodeNameError, ns: soaNeg(soa)}
}

func chased(reason Reason, target string, rrs ...string) outcome {
	return outcome{action: Chase, reason: reason, rcode: dns.RcodeSuccess, answer: records(rrs), target: target}
}

// decideCase is one question and the outcome it must get.
type decideCase struct {
	name  string
	qtype uint16
	want  outcome
}

func (tc decideCase) String() string { return tc.name + "/" + dns.TypeToString[tc.qtype] }

// checkDecide asks p about tc and compares everything a client would see: the outcome, and for a
// message its flags (QR, AA, RA), its question and its empty additional section.
func checkDecide(t *testing.T, p *Policy, tc decideCase) {
	t.Helper()
	v := p.Decide(q(t, tc.name, tc.qtype))
	if got := outcomeOf(v); !got.equal(tc.want) {
		t.Errorf("Decide(%s) = %v, want %v", tc, got, tc.want)
	}
	m := v.Msg
	if m == nil {
		return
	}
	if !m.Response || !m.Authoritative || !m.RecursionAvailable {
		t.Errorf("Decide(%s) flags QR %v AA %v RA %v, want all set", tc, m.Response, m.Authoritative, m.RecursionAvailable)
	}
	// The question is the lowercased one policy was given.
	wantQ := dns.Question{Name: dns.CanonicalName(tc.name), Qtype: tc.qtype, Qclass: dns.ClassINET}
	if len(m.Question) != 1 || m.Question[0] != wantQ {
		t.Errorf("Decide(%s) question %v, want [%v]", tc, m.Question, wantQ)
	}
	if len(m.Extra) != 0 {
		t.Errorf("Decide(%s) additional %v, want none", tc, m.Extra)
	}
}

func runDecide(t *testing.T, p *Policy, cases []decideCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.String(), func(t *testing.T) { checkDecide(t, p, tc) })
	}
}

func mustNew(t testing.TB, cfg Config) *Policy {
	t.Helper()
	p, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

// soaText is an apex's SOA with the given TTL and MINIMUM.
func soaText(apex string, ttl, minimum uint32) string {
	return fmt.Sprintf("%s %d IN SOA ns.%s hostmaster.%s 1 7200 3600 1209600 %d", apex, ttl, apex, apex, minimum)
}

// zoneData is the same shape of data for every zone type: an SOA (TTL 3600, MINIMUM 300) and an
// A at the apex, an RRset of two at www, data below the empty non-terminal ent, and a CNAME.
func zoneData(apex string) []string {
	return []string{
		soaText(apex, 3600, 300),
		apex + " 300 IN A 192.0.2.10",
		"www." + apex + " 300 IN A 192.0.2.1",
		"www." + apex + " 300 IN A 192.0.2.2",
		"host.ent." + apex + " 300 IN A 192.0.2.3",
		"alias." + apex + " 300 IN CNAME www.example.net.",
	}
}

func TestZoneTypes(t *testing.T) {
	cfg := Config{}
	for _, z := range []struct{ apex, typ string }{
		{"static.test.", "static"},
		{"transparent.test.", "transparent"},
		{"typetransparent.test.", "typetransparent"},
		{"redirect.test.", "redirect"},
		{"refuse.test.", "refuse"},
		{"nxdomain.test.", "always_nxdomain"},
	} {
		cfg.LocalZones = append(cfg.LocalZones, LocalZone{Name: z.apex, Type: z.typ})
		cfg.LocalData = append(cfg.LocalData, zoneData(z.apex)...)
		// The same type again without an SOA: negatives carry no authority section.
		nosoa := strings.TrimSuffix(z.apex, ".test.") + "-nosoa.test."
		cfg.LocalZones = append(cfg.LocalZones, LocalZone{Name: nosoa, Type: z.typ})
		cfg.LocalData = append(cfg.LocalData, "www."+nosoa+" 300 IN A 192.0.2.1")
	}
	cfg.LocalZones = append(cfg.LocalZones,
		LocalZone{Name: "redirect-apex-nosoa.test.", Type: "redirect"},
		LocalZone{Name: "redirect-cname.test.", Type: "redirect"},
		LocalZone{Name: "redirect-empty.test.", Type: "redirect"},
	)
	cfg.LocalData = append(cfg.LocalData,
		"redirect-apex-nosoa.test. 300 IN A 192.0.2.10",
		"redirect-cname.test. 300 IN CNAME www.example.net.",
	)
	p := mustNew(t, cfg)

	rrs := func(apex string) (soaAnswer, neg, apexA, www1, www2, host, cname string) {
		return soaText(apex, 3600, 300), soaText(apex, 300, 300), apex + " 300 IN A 192.0.2.10",
			"www." + apex + " 300 IN A 192.0.2.1", "www." + apex + " 300 IN A 192.0.2.2",
			"host.ent." + apex + " 300 IN A 192.0.2.3", "alias." + apex + " 300 IN CNAME www.example.net."
	}
	const target = "www.example.net."

	t.Run("static", func(t *testing.T) {
		soa, neg, apexA, www1, www2, host, cname := rrs("static.test.")
		runDecide(t, p, []decideCase{
			{"www.static.test.", dns.TypeA, answered(ReasonLocalData, www1, www2)},
			{"www.static.test.", dns.TypeMX, nodata(ReasonLocalNoData, neg)},
			{"host.ent.static.test.", dns.TypeA, answered(ReasonLocalData, host)},
			{"ent.static.test.", dns.TypeA, nodata(ReasonLocalNoData, neg)},
			{"nope.static.test.", dns.TypeA, nxdomain(ReasonLocalNXDomain, neg)},
			{"below.www.static.test.", dns.TypeA, nxdomain(ReasonLocalNXDomain, neg)},
			{"alias.static.test.", dns.TypeA, chased(ReasonLocalData, target, cname)},
			{"alias.static.test.", dns.TypeCNAME, answered(ReasonLocalData, cname)},
			{"static.test.", dns.TypeA, answered(ReasonLocalData, apexA)},
			{"static.test.", dns.TypeSOA, answered(ReasonLocalData, soa)},
			{"static.test.", dns.TypeMX, nodata(ReasonLocalNoData, neg)},
			{"static-nosoa.test.", dns.TypeA, nodata(ReasonLocalNoData, "")}, // apex exists: data below it
			{"www.static-nosoa.test.", dns.TypeMX, nodata(ReasonLocalNoData, "")},
			{"nope.static-nosoa.test.", dns.TypeA, nxdomain(ReasonLocalNXDomain, "")},
		})
	})

	t.Run("transparent", func(t *testing.T) {
		soa, neg, apexA, www1, www2, host, cname := rrs("transparent.test.")
		runDecide(t, p, []decideCase{
			{"www.transparent.test.", dns.TypeA, answered(ReasonLocalData, www1, www2)},
			{"www.transparent.test.", dns.TypeMX, nodata(ReasonLocalNoData, neg)},
			{"host.ent.transparent.test.", dns.TypeA, answered(ReasonLocalData, host)},
			{"ent.transparent.test.", dns.TypeA, passed},
			{"nope.transparent.test.", dns.TypeA, passed},
			{"below.www.transparent.test.", dns.TypeA, passed},
			{"alias.transparent.test.", dns.TypeA, chased(ReasonLocalData, target, cname)},
			{"alias.transparent.test.", dns.TypeCNAME, answered(ReasonLocalData, cname)},
			{"transparent.test.", dns.TypeA, answered(ReasonLocalData, apexA)},
			{"transparent.test.", dns.TypeSOA, answered(ReasonLocalData, soa)},
			{"transparent.test.", dns.TypeMX, nodata(ReasonLocalNoData, neg)},
			{"transparent-nosoa.test.", dns.TypeA, passed}, // apex without data of its own
			{"www.transparent-nosoa.test.", dns.TypeMX, nodata(ReasonLocalNoData, "")},
			{"nope.transparent-nosoa.test.", dns.TypeA, passed},
		})
	})

	t.Run("typetransparent", func(t *testing.T) {
		soa, _, apexA, www1, www2, host, cname := rrs("typetransparent.test.")
		runDecide(t, p, []decideCase{
			{"www.typetransparent.test.", dns.TypeA, answered(ReasonLocalData, www1, www2)},
			{"www.typetransparent.test.", dns.TypeMX, passed},
			{"host.ent.typetransparent.test.", dns.TypeA, answered(ReasonLocalData, host)},
			{"ent.typetransparent.test.", dns.TypeA, passed},
			{"nope.typetransparent.test.", dns.TypeA, passed},
			{"below.www.typetransparent.test.", dns.TypeA, passed},
			{"alias.typetransparent.test.", dns.TypeA, chased(ReasonLocalData, target, cname)},
			{"alias.typetransparent.test.", dns.TypeCNAME, answered(ReasonLocalData, cname)},
			{"typetransparent.test.", dns.TypeA, answered(ReasonLocalData, apexA)},
			{"typetransparent.test.", dns.TypeSOA, answered(ReasonLocalData, soa)},
			{"typetransparent.test.", dns.TypeMX, passed},
			{"typetransparent-nosoa.test.", dns.TypeA, passed},
			{"www.typetransparent-nosoa.test.", dns.TypeMX, passed},
			{"nope.typetransparent-nosoa.test.", dns.TypeA, passed},
		})
	})

	t.Run("redirect", func(t *testing.T) {
		soa, neg, apexA, _, _, _, _ := rrs("redirect.test.")
		// Every name gets the apex's data under its own name; data below the apex is not used.
		a := func(owner string) string { return owner + " 300 IN A 192.0.2.10" }
		runDecide(t, p, []decideCase{
			{"www.redirect.test.", dns.TypeA, answered(ReasonLocalData, a("www.redirect.test."))},
			{"www.redirect.test.", dns.TypeMX, nodata(ReasonLocalNoData, neg)},
			{"host.ent.redirect.test.", dns.TypeA, answered(ReasonLocalData, a("host.ent.redirect.test."))},
			{"ent.redirect.test.", dns.TypeA, answered(ReasonLocalData, a("ent.redirect.test."))},
			{"nope.redirect.test.", dns.TypeA, answered(ReasonLocalData, a("nope.redirect.test."))},
			{"deep.below.nope.redirect.test.", dns.TypeA, answered(ReasonLocalData, a("deep.below.nope.redirect.test."))},
			{"alias.redirect.test.", dns.TypeA, answered(ReasonLocalData, a("alias.redirect.test."))},
			{"alias.redirect.test.", dns.TypeCNAME, nodata(ReasonLocalNoData, neg)},
			{"redirect.test.", dns.TypeA, answered(ReasonLocalData, apexA)},
			{"redirect.test.", dns.TypeSOA, answered(ReasonLocalData, soa)},
			{"nope.redirect.test.", dns.TypeSOA, answered(ReasonLocalData,
				"nope.redirect.test. 3600 IN SOA ns.redirect.test. hostmaster.redirect.test. 1 7200 3600 1209600 300")},
			{"redirect.test.", dns.TypeMX, nodata(ReasonLocalNoData, neg)},
			// redirect-nosoa has no apex data at all, only www: NODATA for every name.
			{"redirect-nosoa.test.", dns.TypeA, nodata(ReasonLocalNoData, "")},
			{"www.redirect-nosoa.test.", dns.TypeA, nodata(ReasonLocalNoData, "")},
			{"x.redirect-apex-nosoa.test.", dns.TypeA, answered(ReasonLocalData, a("x.redirect-apex-nosoa.test."))},
			{"x.redirect-apex-nosoa.test.", dns.TypeMX, nodata(ReasonLocalNoData, "")},
			{"x.redirect-cname.test.", dns.TypeA, chased(ReasonLocalData, target, "x.redirect-cname.test. 300 IN CNAME www.example.net.")},
			{"x.redirect-cname.test.", dns.TypeCNAME, answered(ReasonLocalData, "x.redirect-cname.test. 300 IN CNAME www.example.net.")},
			{"redirect-cname.test.", dns.TypeAAAA, chased(ReasonLocalData, target, "redirect-cname.test. 300 IN CNAME www.example.net.")},
			// unbound answers NOERROR for every name of a redirect zone (README: "NODATA for other
			// types"), even when the zone holds no data.
			{"redirect-empty.test.", dns.TypeA, nodata(ReasonLocalNoData, "")},
			{"x.redirect-empty.test.", dns.TypeA, nodata(ReasonLocalNoData, "")},
		})
	})

	t.Run("refuse", func(t *testing.T) {
		soa, _, apexA, www1, www2, host, cname := rrs("refuse.test.")
		runDecide(t, p, []decideCase{
			{"www.refuse.test.", dns.TypeA, answered(ReasonLocalData, www1, www2)},
			{"www.refuse.test.", dns.TypeMX, refused},
			{"host.ent.refuse.test.", dns.TypeA, answered(ReasonLocalData, host)},
			{"ent.refuse.test.", dns.TypeA, refused},
			{"nope.refuse.test.", dns.TypeA, refused},
			{"below.www.refuse.test.", dns.TypeA, refused},
			{"alias.refuse.test.", dns.TypeA, chased(ReasonLocalData, target, cname)},
			{"alias.refuse.test.", dns.TypeCNAME, answered(ReasonLocalData, cname)},
			{"refuse.test.", dns.TypeA, answered(ReasonLocalData, apexA)},
			{"refuse.test.", dns.TypeSOA, answered(ReasonLocalData, soa)},
			{"refuse.test.", dns.TypeMX, refused},
			{"refuse-nosoa.test.", dns.TypeA, refused},
			{"www.refuse-nosoa.test.", dns.TypeA, answered(ReasonLocalData, "www.refuse-nosoa.test. 300 IN A 192.0.2.1")},
			{"nope.refuse-nosoa.test.", dns.TypeA, refused},
		})
	})

	t.Run("always_nxdomain", func(t *testing.T) {
		// Local data is ignored, but its apex SOA still makes the negative answer cacheable (as
		// unbound's soa_negative does).
		_, neg, _, _, _, _, _ := rrs("nxdomain.test.")
		nx := nxdomain(ReasonLocalNXDomain, neg)
		runDecide(t, p, []decideCase{
			{"www.nxdomain.test.", dns.TypeA, nx},
			{"www.nxdomain.test.", dns.TypeMX, nx},
			{"host.ent.nxdomain.test.", dns.TypeA, nx},
			{"ent.nxdomain.test.", dns.TypeA, nx},
			{"nope.nxdomain.test.", dns.TypeA, nx},
			{"alias.nxdomain.test.", dns.TypeA, nx},
			{"alias.nxdomain.test.", dns.TypeCNAME, nx},
			{"nxdomain.test.", dns.TypeA, nx},
			{"nxdomain.test.", dns.TypeSOA, nx},
			{"nxdomain-nosoa.test.", dns.TypeA, nxdomain(ReasonLocalNXDomain, "")},
			{"www.nxdomain-nosoa.test.", dns.TypeA, nxdomain(ReasonLocalNXDomain, "")},
		})
	})
}

// TestNegativeSOATTL checks RFC 2308: a negative answer's SOA lives min(SOA TTL, MINIMUM).
func TestNegativeSOATTL(t *testing.T) {
	for _, tc := range []struct {
		ttl, minimum, want uint32
	}{
		{3600, 300, 300},
		{60, 300, 60},
		{300, 300, 300},
		{0, 300, 0},
	} {
		t.Run(fmt.Sprintf("ttl %d minimum %d", tc.ttl, tc.minimum), func(t *testing.T) {
			p := mustNew(t, Config{
				LocalZones: []LocalZone{{Name: "neg.test.", Type: "static"}},
				LocalData:  []string{soaText("neg.test.", tc.ttl, tc.minimum)},
			})
			neg := fmt.Sprintf("neg.test. %d IN SOA ns.neg.test. hostmaster.neg.test. 1 7200 3600 1209600 %d", tc.want, tc.minimum)
			checkDecide(t, p, decideCase{"nope.neg.test.", dns.TypeA, nxdomain(ReasonLocalNXDomain, neg)})
			checkDecide(t, p, decideCase{"neg.test.", dns.TypeA, nodata(ReasonLocalNoData, neg)})
			// The stored SOA is not changed by answering: the positive answer keeps its TTL.
			checkDecide(t, p, decideCase{"neg.test.", dns.TypeSOA, answered(ReasonLocalData, soaText("neg.test.", tc.ttl, tc.minimum))})
		})
	}
}

// TestImplicitTransparentZone: local data outside every declared zone makes a transparent zone
// of exactly its owner name, as unbound does.
func TestImplicitTransparentZone(t *testing.T) {
	p := mustNew(t, Config{LocalData: []string{
		"printer.lan. 300 IN A 192.168.1.20",
		`printer.lan. 300 IN TXT "2nd floor"`,
		soaText("implicit.test.", 3600, 300),
		"www.implicit.test. 300 IN A 192.0.2.1", // under the zone the SOA line made
		"Mixed.Case.test. 300 IN A 192.0.2.7",
	}})
	neg := soaText("implicit.test.", 300, 300)
	runDecide(t, p, []decideCase{
		{"printer.lan.", dns.TypeA, answered(ReasonLocalData, "printer.lan. 300 IN A 192.168.1.20")},
		{"printer.lan.", dns.TypeTXT, answered(ReasonLocalData, `printer.lan. 300 IN TXT "2nd floor"`)},
		{"printer.lan.", dns.TypeAAAA, nodata(ReasonLocalNoData, "")},
		{"x.printer.lan.", dns.TypeA, passed},
		{"scanner.lan.", dns.TypeA, passed},
		{"lan.", dns.TypeSOA, passed},
		{"www.implicit.test.", dns.TypeA, answered(ReasonLocalData, "www.implicit.test. 300 IN A 192.0.2.1")},
		{"www.implicit.test.", dns.TypeAAAA, nodata(ReasonLocalNoData, neg)},
		{"implicit.test.", dns.TypeA, nodata(ReasonLocalNoData, neg)},
		{"nope.implicit.test.", dns.TypeA, passed},
		{"mixed.case.test.", dns.TypeA, answered(ReasonLocalData, "mixed.case.test. 300 IN A 192.0.2.7")},
	})
}

// TestNestedZones: the longest zone a name is under decides, whatever its parent's type.
func TestNestedZones(t *testing.T) {
	p := mustNew(t, Config{
		LocalZones: []LocalZone{
			{Name: "example.test.", Type: "static"},
			{Name: "sub.example.test.", Type: "transparent"},
			{Name: "locked.sub.example.test.", Type: "static"},
		},
		LocalData: []string{
			soaText("example.test.", 3600, 300),
			"www.example.test. 300 IN A 192.0.2.1",
			"www.sub.example.test. 300 IN A 192.0.2.5",
		},
	})
	neg := soaText("example.test.", 300, 300)
	runDecide(t, p, []decideCase{
		{"www.example.test.", dns.TypeA, answered(ReasonLocalData, "www.example.test. 300 IN A 192.0.2.1")},
		{"nope.example.test.", dns.TypeA, nxdomain(ReasonLocalNXDomain, neg)},
		{"sub.example.test.", dns.TypeA, passed},
		{"www.sub.example.test.", dns.TypeA, answered(ReasonLocalData, "www.sub.example.test. 300 IN A 192.0.2.5")},
		{"www.sub.example.test.", dns.TypeAAAA, nodata(ReasonLocalNoData, "")}, // the transparent zone has no SOA
		{"nope.sub.example.test.", dns.TypeA, passed},                          // static parent would say NXDOMAIN
		{"locked.sub.example.test.", dns.TypeA, nxdomain(ReasonLocalNXDomain, "")},
		{"x.locked.sub.example.test.", dns.TypeA, nxdomain(ReasonLocalNXDomain, "")},
	})
}

// TestDecideClass: only class IN is decided here.
func TestDecideClass(t *testing.T) {
	p := mustNew(t, Config{LocalData: []string{"printer.lan. 300 IN A 192.168.1.20"}})
	for _, name := range []string{"localhost.", "printer.lan."} {
		qq := q(t, name, dns.TypeA)
		qq.Class = dns.ClassCHAOS
		if v := p.Decide(qq); v.Action != Pass || v.Reason != ReasonNone || v.Msg != nil {
			t.Errorf("Decide(%s CH A) = %v, want %v", name, outcomeOf(v), passed)
		}
	}
}
