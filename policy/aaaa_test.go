package policy

import (
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func TestStripIPv6Hint(t *testing.T) {
	rr, err := dns.NewRR(`svc.example.test. 300 IN HTTPS 1 . alpn="h2" ipv4hint="192.0.2.1" ipv6hint="2001:db8::1"`)
	if err != nil {
		t.Fatal(err)
	}
	m := new(dns.Msg)
	m.Answer = []dns.RR{rr}
	p, err := New(Config{BlockAAAA: BlockAAAA{Suffixes: []string{"example.test"}}})
	if err != nil {
		t.Fatal(err)
	}
	p.FilterUpstream(q(t, "svc.example.test", dns.TypeHTTPS).Name, dns.TypeHTTPS, m)
	h := m.Answer[0].(*dns.HTTPS)
	var keys []string
	for _, kv := range h.Value {
		keys = append(keys, kv.Key().String())
	}
	if len(keys) != 2 || keys[0] != "alpn" || keys[1] != "ipv4hint" {
		t.Errorf("keys after strip = %v, want [alpn ipv4hint]", keys)
	}
	if ip := h.Value[1].(*dns.SVCBIPv4Hint).Hint[0]; !ip.Equal(net.ParseIP("192.0.2.1")) {
		t.Errorf("ipv4hint = %v, want 192.0.2.1 kept", ip)
	}
	// A name whose AAAA is not blocked keeps its hint.
	other, _ := dns.NewRR(`svc.other.test. 300 IN HTTPS 1 . ipv6hint="2001:db8::1"`)
	m.Answer = []dns.RR{other}
	p.FilterUpstream(q(t, "svc.other.test", dns.TypeHTTPS).Name, dns.TypeHTTPS, m)
	if n := len(m.Answer[0].(*dns.HTTPS).Value); n != 1 {
		t.Errorf("svc.other.test lost its ipv6hint: %v", m.Answer[0])
	}
}

// TestInvalidates: a reload that puts a suffix under block_aaaa invalidates the HTTPS and SVCB
// answers cached under it (they carry ipv6hint), and nothing else.
func TestInvalidates(t *testing.T) {
	old, _ := New(Config{BlockAAAA: BlockAAAA{Suffixes: []string{"a.test"}}})
	p, _ := New(Config{BlockAAAA: BlockAAAA{Suffixes: []string{"a.test", "b.test"}}})
	invs := p.Invalidates(old)
	if len(invs) != 1 || invs[0].Reason != "block_aaaa b.test added" || invs[0].What != "HTTPS/SVCB answers" {
		t.Fatalf("Invalidates = %+v, want one for b.test", invs)
	}
	for _, tc := range []struct {
		name  string
		qtype uint16
		want  bool
	}{
		{"svc.b.test", dns.TypeHTTPS, true},
		{"svc.b.test", dns.TypeSVCB, true},
		{"svc.b.test", dns.TypeA, false},
		{"svc.a.test", dns.TypeHTTPS, false},
	} {
		if got := invs[0].Match(q(t, tc.name, tc.qtype).Name, tc.qtype); got != tc.want {
			t.Errorf("Match(%s %s) = %v, want %v", tc.name, dns.TypeToString[tc.qtype], got, tc.want)
		}
	}
	if got := p.Invalidates(p); len(got) != 0 {
		t.Errorf("Invalidates(itself) = %v, want none", got)
	}
	if !strings.Contains(old.Invalidates(nil)[0].Reason, "a.test") {
		t.Errorf("from no policy: %+v, want a.test", old.Invalidates(nil))
	}
}
