package upstream

import (
	"strings"

	"github.com/miekg/dns"
)

// scrub removes from resp what an upstream for zone has no business telling us, before anything
// is cached: answer records that are not part of the chain from the question's name (via CNAME
// and DNAME), and authority or additional records outside the zone (out of bailiwick).
func scrub(resp *dns.Msg, zone string) {
	if len(resp.Question) != 1 {
		return
	}
	chain := map[string]bool{strings.ToLower(resp.Question[0].Name): true}
	answer := resp.Answer[:0]
	for _, rr := range resp.Answer {
		owner := strings.ToLower(rr.Header().Name)
		switch rr := rr.(type) {
		case *dns.DNAME:
			if underAny(chain, owner) {
				answer = append(answer, rr)
			}
			continue
		case *dns.CNAME:
			if chain[owner] {
				chain[strings.ToLower(rr.Target)] = true
			}
		}
		if chain[owner] {
			answer = append(answer, rr)
		}
	}
	resp.Answer = answer
	resp.Ns = inBailiwick(resp.Ns, zone, resp.Question[0].Name)
	resp.Extra = inBailiwick(resp.Extra, zone, "")
}

func underAny(names map[string]bool, zone string) bool {
	for n := range names {
		if dns.IsSubDomain(zone, n) {
			return true
		}
	}
	return false
}

// inBailiwick keeps the records under zone. An SOA of a zone above the forward zone stays when
// qname is under it: a forward zone may point at the servers of its parent, and their negative
// answers carry the parent's SOA, which RFC 2308 caching needs.
func inBailiwick(rrs []dns.RR, zone, qname string) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		h := rr.Header()
		keep := h.Rrtype == dns.TypeOPT || dns.IsSubDomain(zone, h.Name) ||
			(h.Rrtype == dns.TypeSOA && qname != "" && dns.IsSubDomain(h.Name, qname))
		if keep {
			out = append(out, rr)
		}
	}
	return out
}
