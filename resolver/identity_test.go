package resolver

import (
	"testing"

	"github.com/miekg/dns"
)

func TestNodeIdentity(t *testing.T) {
	up := startFault(t, "192.0.2.50", 300)
	s := startServer(t, Config{Forward: forwardTo(up), NodeID: "dc1-ns1"}, testCacheConfig())
	for _, name := range []string{"id.server.", "hostname.bind.", "ID.Server."} {
		r, err := exchange(s, "udp", name, dns.TypeTXT, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != "dc1-ns1" || r.Answer[0].Header().Class != dns.ClassCHAOS {
			t.Errorf("%s CH TXT = %v, want TXT \"dc1-ns1\" in class CH", name, r.Answer)
		}
	}
	// NSID on a cache miss and on a cache hit, only when asked for.
	for _, pass := range []string{"miss", "hit"} {
		r, err := exchange(s, "udp", "www.example.test", dns.TypeA, func(m *dns.Msg) {
			m.SetEdns0(1232, false)
			m.IsEdns0().Option = []dns.EDNS0{&dns.EDNS0_NSID{Code: dns.EDNS0NSID}}
		})
		if err != nil {
			t.Fatal(err)
		}
		var nsid string
		if o := r.IsEdns0(); o != nil {
			for _, opt := range o.Option {
				if n, ok := opt.(*dns.EDNS0_NSID); ok {
					nsid = n.Nsid
				}
			}
		}
		if nsid != "6463312d6e7331" || firstA(r) != "192.0.2.50" { // hex of "dc1-ns1"
			t.Errorf("%s: NSID %q answer %q, want 6463312d6e7331 (dc1-ns1) and 192.0.2.50", pass, nsid, firstA(r))
		}
	}
	r, err := exchange(s, "udp", "www.example.test", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) })
	if err != nil {
		t.Fatal(err)
	}
	if o := r.IsEdns0(); o == nil || len(o.Option) != 0 {
		t.Errorf("OPT without an NSID request = %v, want no options", o)
	}
}

// TestChaosNotForwarded shows that a CHAOS query never reaches the upstream, whose answer
// would name its software and host: without a node ID (client mode) id.server. and
// hostname.bind. are REFUSED like version.bind., as unbound does with hide-identity and
// hide-version; with one (server mode) only the identity names are answered.
func TestChaosNotForwarded(t *testing.T) {
	up := startFault(t, "192.0.2.51", 300)
	client := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
	server := startServer(t, Config{Forward: forwardTo(up), NodeID: "dc1-ns1"}, testCacheConfig())
	tests := []struct {
		name   string
		s      *Server
		qname  string
		qtype  uint16
		rcode  int
		answer string // the TXT answered, "" for none
	}{
		{"client version.bind", client, "version.bind.", dns.TypeTXT, dns.RcodeRefused, ""},
		{"client version.server", client, "version.server.", dns.TypeTXT, dns.RcodeRefused, ""},
		{"client hostname.bind", client, "hostname.bind.", dns.TypeTXT, dns.RcodeRefused, ""},
		{"client id.server", client, "id.server.", dns.TypeTXT, dns.RcodeRefused, ""},
		{"client authors.bind ANY", client, "authors.bind.", dns.TypeANY, dns.RcodeRefused, ""},
		{"server version.bind", server, "version.bind.", dns.TypeTXT, dns.RcodeRefused, ""},
		{"server hostname.bind", server, "HOSTNAME.bind.", dns.TypeTXT, dns.RcodeSuccess, "dc1-ns1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, proto := range []string{"udp", "tcp"} {
				before := up.Queries()
				r, err := exchange(tc.s, proto, tc.qname, tc.qtype, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })
				if err != nil {
					t.Fatal(err)
				}
				var txt string
				for _, rr := range r.Answer {
					if a, ok := rr.(*dns.TXT); ok {
						txt = a.Txt[0]
					}
				}
				if r.Rcode != tc.rcode || txt != tc.answer || len(r.Answer) > 1 || len(r.Ns) != 0 {
					t.Errorf("%s CH %s over %s = %s %v %v, want %s with TXT %q", tc.qname, dns.TypeToString[tc.qtype], proto,
						dns.RcodeToString[r.Rcode], r.Answer, r.Ns, dns.RcodeToString[tc.rcode], tc.answer)
				}
				if len(r.Question) != 1 || r.Question[0].Qclass != dns.ClassCHAOS {
					t.Errorf("%s over %s: question %v, want the query's, class CH", tc.qname, proto, r.Question)
				}
				if n := up.Queries() - before; n != 0 {
					t.Errorf("%s CH over %s: the upstream was asked %d times, want never", tc.qname, proto, n)
				}
			}
		})
	}
}
