package upstream

import (
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestScrub(t *testing.T) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, tc := range []struct {
		name        string
		zone, qname string
		answer, ns  []string
		extra       []string
		wantAnswer  int
		wantNs      int
		wantExtra   int
	}{
		{
			name: "CNAME chain kept, unrelated record dropped", zone: ".", qname: "a.example.test.",
			answer: []string{"a.example.test. 60 IN CNAME b.example.test.", "b.example.test. 60 IN A 192.0.2.1",
				"bank.example. 60 IN A 203.0.113.66"},
			wantAnswer: 2,
		},
		{
			name: "out-of-zone authority and glue dropped", zone: "prd.example.test.", qname: "db.prd.example.test.",
			answer:     []string{"db.prd.example.test. 60 IN A 192.0.2.1"},
			ns:         []string{"prd.example.test. 60 IN NS ns.prd.example.test.", "example.com. 60 IN NS ns.evil.example."},
			extra:      []string{"ns.prd.example.test. 60 IN A 192.0.2.2", "ns.evil.example. 60 IN A 203.0.113.66"},
			wantAnswer: 1, wantNs: 1, wantExtra: 1,
		},
		{
			name: "parent SOA kept for a negative answer", zone: "prd.example.test.", qname: "x.prd.example.test.",
			ns:     []string{"example.test. 60 IN SOA ns.example.test. h.example.test. 1 2 3 4 5"},
			wantNs: 1,
		},
		{
			name: "unrelated SOA dropped", zone: "prd.example.test.", qname: "x.prd.example.test.",
			ns: []string{"example.com. 60 IN SOA ns.example.com. h.example.com. 1 2 3 4 5"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion(tc.qname, dns.TypeA)
			for _, s := range tc.answer {
				m.Answer = append(m.Answer, rr(s))
			}
			for _, s := range tc.ns {
				m.Ns = append(m.Ns, rr(s))
			}
			for _, s := range tc.extra {
				m.Extra = append(m.Extra, rr(s))
			}
			scrub(m, tc.zone)
			if len(m.Answer) != tc.wantAnswer || len(m.Ns) != tc.wantNs || len(m.Extra) != tc.wantExtra {
				t.Errorf("scrub kept answer %d ns %d extra %d, want %d %d %d\n%s", len(m.Answer), len(m.Ns), len(m.Extra),
					tc.wantAnswer, tc.wantNs, tc.wantExtra, strings.TrimSpace(m.String()))
			}
			for _, r := range append(m.Answer, m.Extra...) {
				if a, ok := r.(*dns.A); ok && a.A.String() == "203.0.113.66" {
					t.Errorf("kept the poisoned record %s", r)
				}
			}
		})
	}
}
