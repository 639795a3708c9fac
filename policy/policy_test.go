package policy

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func q(t testing.TB, name string, qtype uint16) *Question {
	t.Helper()
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(strings.ToLower(name)), buf, 0, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return &Question{Name: buf[:n], Type: qtype, Class: dns.ClassINET}
}

func TestBuiltinZones(t *testing.T) {
	p, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	v6 := "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa."
	for _, tc := range []struct {
		name   string
		qtype  uint16
		action Action
		rcode  int
		answer string // rdata of the one answer record, "" for none
		soa    bool
	}{
		{"localhost.", dns.TypeA, Answer, dns.RcodeSuccess, "127.0.0.1", false},
		{"localhost.", dns.TypeAAAA, Answer, dns.RcodeSuccess, "::1", false},
		{"db.app.localhost.", dns.TypeA, Answer, dns.RcodeSuccess, "127.0.0.1", false},
		{"localhost.", dns.TypeMX, Answer, dns.RcodeSuccess, "", true},
		{"1.0.0.127.in-addr.arpa.", dns.TypePTR, Answer, dns.RcodeSuccess, "localhost.", false},
		{"0.0.127.in-addr.arpa.", dns.TypePTR, Answer, dns.RcodeSuccess, "", true}, // empty non-terminal: NODATA
		{"9.0.0.127.in-addr.arpa.", dns.TypePTR, Answer, dns.RcodeNameError, "", true},
		{v6, dns.TypePTR, Answer, dns.RcodeSuccess, "localhost.", false},
		{"www.example.com.", dns.TypeA, Pass, 0, "", false},
		{"localhost.example.com.", dns.TypeA, Pass, 0, "", false},
		{"128.in-addr.arpa.", dns.TypePTR, Pass, 0, "", false},
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.name, dns.TypeToString[tc.qtype]), func(t *testing.T) {
			v := p.Decide(q(t, tc.name, tc.qtype))
			if v.Action != tc.action {
				t.Fatalf("Decide = %s, want %s", v.Action, tc.action)
			}
			if tc.action == Pass {
				return
			}
			m := v.Msg
			if m.Rcode != tc.rcode || !m.Authoritative || !m.RecursionAvailable || !m.Response {
				t.Errorf("rcode %s AA %v RA %v QR %v, want %s with AA, RA, QR",
					dns.RcodeToString[m.Rcode], m.Authoritative, m.RecursionAvailable, m.Response, dns.RcodeToString[tc.rcode])
			}
			var got string
			if len(m.Answer) == 1 {
				f := strings.Split(m.Answer[0].String(), "\t")
				got = f[len(f)-1]
				if m.Answer[0].Header().Name != tc.name {
					t.Errorf("owner %q, want the question's name %q", m.Answer[0].Header().Name, tc.name)
				}
			}
			if got != tc.answer || len(m.Answer) > 1 {
				t.Errorf("answer %v, want %q", m.Answer, tc.answer)
			}
			if hasSOA := len(m.Ns) == 1 && m.Ns[0].Header().Rrtype == dns.TypeSOA; hasSOA != tc.soa {
				t.Errorf("authority %v, want SOA %v", m.Ns, tc.soa)
			}
			if tc.soa && m.Ns[0].Header().Ttl != 10800 {
				t.Errorf("SOA TTL %d, want min(TTL, MINIMUM) = 10800", m.Ns[0].Header().Ttl)
			}
		})
	}
}

func TestAllowed(t *testing.T) {
	def, _ := New(Config{})
	custom, _ := New(Config{AccessControl: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	for _, tc := range []struct {
		p    *Policy
		addr string
		want bool
	}{
		{def, "127.0.0.1", true},
		{def, "127.5.5.5", true},
		{def, "::1", true},
		{def, "::ffff:127.0.0.1", true},
		{def, "192.0.2.1", false},
		{custom, "10.1.2.3", true},
		{custom, "127.0.0.1", false},
	} {
		if got := tc.p.Allowed(netip.MustParseAddr(tc.addr)); got != tc.want {
			t.Errorf("Allowed(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

// BenchmarkDecidePass is the policy check every query pays: with no rule matching it must not
// allocate.
func BenchmarkDecidePass(b *testing.B) {
	p, _ := New(Config{})
	qq := q(b, "host.prd.example.com.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		if v := p.Decide(qq); v.Action != Pass {
			b.Fatal(v.Action)
		}
	}
}

func ExamplePolicy_Decide() {
	p, _ := New(Config{})
	for _, name := range []string{"localhost.", "www.example.com."} {
		buf := make([]byte, 256)
		n, _ := dns.PackDomainName(name, buf, 0, nil, false)
		v := p.Decide(&Question{Name: buf[:n], Type: dns.TypeA, Class: dns.ClassINET})
		fmt.Println(name, v.Action)
	}
	// Output:
	// localhost. answer
	// www.example.com. pass
}
