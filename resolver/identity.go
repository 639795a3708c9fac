package resolver

import (
	"github.com/miekg/dns"
)

// Wire forms of the names that ask a server who it is (RFC 4892; BIND's hostname.bind).
var identityNames = [][]byte{
	{2, 'i', 'd', 6, 's', 'e', 'r', 'v', 'e', 'r', 0},
	{8, 'h', 'o', 's', 't', 'n', 'a', 'm', 'e', 4, 'b', 'i', 'n', 'd', 0},
}

// identity answers id.server. and hostname.bind. CH TXT with the node's ID, so that operators
// and clients can tell which anycast node answered; nil for any other question.
func (s *Server) identity(q *query) *dns.Msg {
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
