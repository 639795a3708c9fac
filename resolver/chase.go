package resolver

import (
	"context"
	"errors"

	"github.com/fleetdns/fleetdns/cache"
	"github.com/fleetdns/fleetdns/policy"
	"github.com/miekg/dns"
)

// maxChase bounds how many CNAMEs made by policy are followed for one query.
const maxChase = 8

// chase answers a query that policy answered with a CNAME (synthesize.dc, or a CNAME in local
// data): the target goes through the same pipeline (policy, cache, forwarder) and its records
// follow the CNAME in one answer, since a stub's clients expect the chain resolved.
func (s *Server) chase(ctx context.Context, q *query, v policy.Verdict, tcp bool) ([]byte, source) {
	s.Stats.Policy[v.Reason].Add(1)
	p := s.policy.Load()
	m, target := v.Msg, v.Target
	src := policySource(v.Reason)
	for depth := 0; ; depth++ {
		if depth == maxChase {
			return s.servfail(q, tcp)
		}
		tq, err := cache.NewQuestion(target, q.qtype, q.qclass, q.do, q.cd)
		if err != nil {
			return s.servfail(q, tcp)
		}
		pq := policy.Question{Name: tq.Name, Type: q.qtype, Class: q.qclass}
		tv := p.Decide(&pq)
		if tv.Action == policy.Chase {
			m.Answer = append(m.Answer, tv.Msg.Answer...)
			target = tv.Target
			continue
		}
		switch tv.Action {
		case policy.Answer:
			m.Answer = append(m.Answer, tv.Msg.Answer...)
			m.Ns, m.Rcode = tv.Msg.Ns, tv.Msg.Rcode
		case policy.Refuse:
			return s.servfail(q, tcp)
		default:
			e, err := s.fetch(ctx, pendingFor(tq, target))
			if err != nil {
				return s.servfail(q, tcp)
			}
			tm, err := e.Msg()
			if err != nil {
				return s.servfail(q, tcp)
			}
			m.Answer = append(m.Answer, tm.Answer...)
			m.Ns, m.Rcode = tm.Ns, tm.Rcode
			m.Authoritative = false // the chain ends in data from an upstream
			src = srcUpstream
		}
		return s.respond(nil, q, tcp, m.Rcode, m, s.now()), src
	}
}

func (s *Server) servfail(q *query, tcp bool) ([]byte, source) {
	return s.respond(nil, q, tcp, dns.RcodeServerFailure, nil, s.now()), srcServfail
}

// pendingFor describes the resolution of name for a question already in cache form.
func pendingFor(cq cache.Question, name string) pending {
	return pending{key: flightKey(&cq), cq: cq, dq: dns.Question{Name: name, Qtype: cq.Type, Qclass: cq.Class}}
}

var errFailing = errors.New("resolution failed moments ago")

// fetch returns a usable answer for p: from the cache, or through lookup (the upstream, or a
// stale answer within the client's stale timer).
func (s *Server) fetch(ctx context.Context, p pending) (*cache.Entry, error) {
	now := s.now()
	e, st := s.cache.Get(&p.cq, now)
	switch st {
	case cache.Fresh, cache.Prefetch:
		return e, nil
	case cache.Miss:
		e = nil
	}
	e, _, err := s.lookup(ctx, p, e, now)
	return e, err
}
