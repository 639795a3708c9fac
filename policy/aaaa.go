package policy

import (
	"slices"

	"github.com/miekg/dns"
)

// What AAAA blocking does besides answering AAAA itself: it keeps HTTPS and SVCB answers from
// handing out IPv6 addresses (ipv6hint), on the way into the cache and when the blocked names
// change on a reload. It lives here, with the rule, so that the resolver and the reload code
// know nothing of record types.

// FilterUpstream applies the policy to an upstream's answer for name (lowercased wire format)
// and qtype before it is cached: for a name whose AAAA is blocked, ipv6hint is removed from
// HTTPS and SVCB records, or a client would connect over IPv6 from the hint alone.
func (p *Policy) FilterUpstream(name []byte, qtype uint16, m *dns.Msg) {
	if (qtype != dns.TypeHTTPS && qtype != dns.TypeSVCB) || !p.BlocksAAAA(name) {
		return
	}
	for _, rr := range m.Answer {
		var kv *[]dns.SVCBKeyValue
		switch r := rr.(type) {
		case *dns.HTTPS:
			kv = &r.Value
		case *dns.SVCB:
			kv = &r.Value
		default:
			continue
		}
		out := (*kv)[:0]
		for _, v := range *kv {
			if v.Key() != dns.SVCB_IPV6HINT {
				out = append(out, v)
			}
		}
		*kv = out
	}
}

// Invalidation is a set of cached answers that a new policy makes wrong.
type Invalidation struct {
	Reason string // why, for the reload's summary: "block_aaaa example.com added"
	What   string // what kind of answers: "HTTPS/SVCB answers"
	// Match reports whether the cached answer for name (lowercased wire format) and qtype is
	// one of them.
	Match func(name []byte, qtype uint16) bool
}

// Invalidates lists the cached answers that replacing old with p makes wrong: the HTTPS and
// SVCB answers under a suffix newly under block_aaaa were cached with their ipv6hint.
func (p *Policy) Invalidates(old *Policy) []Invalidation {
	var out []Invalidation
	for _, sfx := range p.aaaaSuffixes {
		if old != nil && slices.Contains(old.aaaaSuffixes, sfx) {
			continue
		}
		under := newSuffixes([]string{sfx})
		out = append(out, Invalidation{
			Reason: "block_aaaa " + sfx + " added",
			What:   "HTTPS/SVCB answers",
			Match: func(name []byte, qtype uint16) bool {
				return (qtype == dns.TypeHTTPS || qtype == dns.TypeSVCB) && under.under(name)
			},
		})
	}
	return out
}
