package resolver

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
	resp.Ns = inBailiwick(resp.Ns, zone)
	resp.Extra = inBailiwick(resp.Extra, zone)
}

func underAny(names map[string]bool, zone string) bool {
	for n := range names {
		if dns.IsSubDomain(zone, n) {
			return true
		}
	}
	return false
}

func inBailiwick(rrs []dns.RR, zone string) []dns.RR {
	out := rrs[:0]
	for _, rr := range rrs {
		if rr.Header().Rrtype == dns.TypeOPT || dns.IsSubDomain(zone, rr.Header().Name) {
			out = append(out, rr)
		}
	}
	return out
}
