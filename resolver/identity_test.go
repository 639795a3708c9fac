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

func TestNoIdentityInClientMode(t *testing.T) {
	up := startFault(t, "192.0.2.51", 300)
	s := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
	r, err := exchange(s, "udp", "id.server.", dns.TypeTXT, func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS })
	if err != nil {
		t.Fatal(err)
	}
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok && txt.Hdr.Class == dns.ClassCHAOS && r.Authoritative {
			t.Errorf("client mode answered id.server itself: %v", r.Answer)
		}
	}
}
