package upstream

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/cache"
	"github.com/miekg/dns"
)

// FuzzUpstreamAnswer feeds arbitrary packets to a query's socket as an upstream's answer, from
// the upstream's address with the ID of a packet sent (so that the fuzzer gets past both), to
// the question www.example.test A and to the question the packet itself carries. What the
// matching accepts must answer the question asked; scrubbed for the forward zone
// example.test, built into a cache entry and served from it (as the resolver serves a hit), it
// must parse, answer the client's ID and question, and carry no authority or additional
// record from outside the zone (an SOA above the name aside).
func FuzzUpstreamAnswer(f *testing.F) {
	c, err := cache.New(cache.DefaultConfig())
	if err != nil {
		f.Fatal(err)
	}
	fwd := &Forwarder{}
	up := &Upstream{Addr: netip.MustParseAddrPort("127.0.0.1:53")}
	const zone = "example.test."
	reply := func(name string, qtype uint16, rcode int, rrs ...string) []byte {
		m := new(dns.Msg)
		m.SetQuestion(name, qtype)
		m.Id = 0x1234 // seeds stay the same from run to run
		m.Response, m.RecursionAvailable, m.Rcode = true, true, rcode
		for _, s := range rrs {
			rr, err := dns.NewRR(s)
			if err != nil {
				f.Fatal(err)
			}
			switch {
			case strings.Contains(s, " SOA ") || strings.Contains(s, " NS "):
				m.Ns = append(m.Ns, rr)
			case strings.HasPrefix(s, "ns."):
				m.Extra = append(m.Extra, rr)
			default:
				m.Answer = append(m.Answer, rr)
			}
		}
		m.SetEdns0(1232, false)
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	f.Add(reply("www.example.test.", dns.TypeA, dns.RcodeSuccess, "www.example.test. 300 IN A 192.0.2.1",
		"example.test. 300 IN NS ns.example.test.", "ns.example.test. 300 IN A 192.0.2.53"))
	f.Add(reply("www.example.test.", dns.TypeA, dns.RcodeSuccess, "www.example.test. 300 IN CNAME a.example.test.",
		"a.example.test. 300 IN A 192.0.2.2", "bank.example. 300 IN A 203.0.113.66",
		"victim.example. 300 IN NS ns.evil.example.", "ns.evil.example. 300 IN A 203.0.113.66"))
	f.Add(reply("www.example.test.", dns.TypeA, dns.RcodeSuccess, "example.test. 300 IN DNAME example.net.",
		"www.example.test. 300 IN CNAME www.example.net.", "www.example.net. 300 IN A 192.0.2.3"))
	f.Add(reply("WWW.Example.Test.", dns.TypeA, dns.RcodeNameError,
		"test. 300 IN SOA ns.test. h.test. 1 2 3 4 60", "evil. 300 IN SOA ns.evil. h.evil. 1 2 3 4 86400"))
	f.Add(reply("www.example.test.", dns.TypeAAAA, dns.RcodeSuccess, "www.example.test. 300 IN AAAA 2001:db8::1"))
	f.Add(reply("x.example.test.", dns.TypeTXT, dns.RcodeSuccess, `x.example.test. 0 IN TXT "zero ttl"`))
	f.Add(reply("www.example.test.", dns.TypeA, dns.RcodeServerFailure))
	f.Add([]byte{0x12, 0x34, 0x81, 0x82, 0, 0, 0, 0, 0, 0, 0, 0}) // SERVFAIL without a question
	f.Add([]byte{0x12, 0x34, 0x81, 0x80, 0, 0, 0, 0, 0, 0, 0, 0}) // NOERROR without a question
	asked := dns.Question{Name: "www.example.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET}
	f.Fuzz(func(t *testing.T, pkt []byte) {
		var id uint16
		if len(pkt) >= 2 {
			id = binary.BigEndian.Uint16(pkt)
		}
		questions := []dns.Question{asked}
		var own dns.Msg
		if own.Unpack(pkt) == nil && len(own.Question) == 1 {
			questions = append(questions, own.Question[0])
		}
		now := time.Now()
		for _, q := range questions {
			uq := &udpQuery{f: fwd, q: q, sent: []sent{{u: up, id: id}}}
			sn, resp := uq.match(0, up.Addr, pkt)
			if sn == nil {
				continue
			}
			if len(resp.Question) != 1 || !sameQuestion(resp.Question[0], q) {
				t.Fatalf("match accepted an answer to %v for the question %v", resp.Question, q)
			}
			scrub(resp, zone)
			cq, err := cache.NewQuestion(q.Name, q.Qtype, q.Qclass, false, false)
			if err != nil {
				continue
			}
			e, err := c.Build(&cq, resp, now)
			if err != nil {
				continue
			}
			if _, err := e.Msg(); err != nil {
				t.Fatalf("the entry built from % x does not unpack: %v", pkt, err)
			}
			out := e.AppendAnswer(nil, &cache.Reply{ID: 0xbeef, Name: cq.Name, RD: true}, now)
			if out == nil {
				continue
			}
			var r dns.Msg
			if err := r.Unpack(out); err != nil {
				t.Fatalf("served % x for upstream answer % x: does not parse: %v", out, pkt, err)
			}
			if r.Id != 0xbeef || !r.Response {
				t.Fatalf("served ID %#x response %v, want the client's 0xbeef and a response", r.Id, r.Response)
			}
			if len(r.Question) == 0 || !sameQuestion(r.Question[0], q) {
				t.Fatalf("served question %v for %v", r.Question, q)
			}
			for _, rr := range append(r.Ns, r.Extra...) {
				h := rr.Header()
				if h.Rrtype != dns.TypeOPT && !dns.IsSubDomain(zone, h.Name) &&
					!(h.Rrtype == dns.TypeSOA && dns.IsSubDomain(h.Name, q.Name)) {
					t.Fatalf("served %s, outside %s, for upstream answer % x", rr, zone, pkt)
				}
			}
		}
	})
}
