package resolver

import (
	"github.com/miekg/dns"
)

// Wire forms of the names that ask a server who it is (RFC 4892; BIND's hostname.bind).
var identityNames = [][]byte{
	{2, 'i', 'd', 6, 's', 'e', 'r', 'v', 'e', 'r', 0},
	{8, 'h', 'o', 's', 't', 'n', 'a', 'm', 'e', 4, 'b', 'i', 'n', 'd', 0},
}

// chaos answers a CHAOS-class query, which is never forwarded: the upstream's answer to
// version.bind, hostname.bind or id.server names the upstream's software and host, which a
// client of the stub has no business learning. With a node ID (server mode) id.server. and
// hostname.bind. are answered with it, so that operators and clients can tell which anycast
// node answered. Every other CHAOS query, and these too without a node ID (client mode), is
// REFUSED with no records: what unbound answers with hide-identity and hide-version (its test
// version_bind_hide.rpl), since it has no CH data either. A nil message means REFUSED.
func (s *Server) chaos(q *query) *dns.Msg {
	if s.nodeID == nil {
		return nil
	}
	name := q.lowerName()
	for _, n := range identityNames {
		if string(name) != string(n) {
			continue
		}
		m := new(dns.Msg)
		qname := q.question().Name
		m.Question = []dns.Question{{Name: qname, Qtype: q.qtype, Qclass: dns.ClassCHAOS}}
		m.Response, m.Authoritative, m.RecursionAvailable = true, true, true
		if q.qtype == dns.TypeTXT || q.qtype == dns.TypeANY {
			m.Answer = []dns.RR{&dns.TXT{
				Hdr: dns.RR_Header{Name: qname, Rrtype: dns.TypeTXT, Class: dns.ClassCHAOS},
				Txt: []string{string(s.nodeID)},
			}}
		}
		return m
	}
	return nil
}
