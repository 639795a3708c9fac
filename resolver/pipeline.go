package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/fleetdns/fleetdns/cache"
	"github.com/fleetdns/fleetdns/policy"
	"github.com/fleetdns/fleetdns/resolver/upstream"
	"github.com/miekg/dns"
)

// source says where an answer came from, for the query log and metrics.
type source int

const (
	srcDrop     source = iota // no answer sent
	srcError                  // FORMERR, NOTIMP, BADVERS
	srcRefused                // access control or a refused query type
	srcLocal                  // policy: local zones and data
	srcCache                  // a fresh cache hit
	srcPrefetch               // a cache hit that started a prefetch
	srcMiss                   // needs the upstream: not answered yet
	srcUpstream               // answered after an upstream resolution
	srcStale                  // an expired answer, served because the upstreams failed or were slow
	srcServfail               // resolution failed and nothing stale was there
	srcSynth                  // policy: synthesize.ip and synthesize.dc
	srcSlipped                // over the rate limit: truncated, so the client retries over TCP
)

func (s source) String() string {
	return [...]string{"drop", "error", "refused", "local", "cache", "prefetch", "miss", "upstream", "stale",
		"servfail", "synthesized", "rate_limited"}[s]
}

// policySource tells answers that policy synthesized from those of local zones and the junk
// guard and AAAA block, so the metrics show what each saves.
func policySource(r policy.Reason) source {
	if r == policy.ReasonSynthIP || r == policy.ReasonSynthDC {
		return srcSynth
	}
	return srcLocal
}

// answer runs the pipeline as far as it can go without waiting: parse, access control, policy,
// cache. It appends the reply to dst, or returns a miss when the query needs an upstream, which
// the caller hands to resolveMiss off the read loop: the miss carries what was found (the parsed
// query, the policy's CNAME, the stale entry), so the worker continues from there. A nil reply
// without a miss means drop. A cache hit does not allocate.
func (s *Server) answer(pkt []byte, from netip.AddrPort, tcp bool, dst []byte, now time.Time) (resp []byte, m *miss) {
	var f found
	resp, src := s.fast(pkt, from, tcp, dst, now, &f)
	if src == srcMiss {
		m := missPool.Get().(*miss)
		m.found, m.pkt, m.start = f, pkt, now
		return nil, m
	}
	if src != srcCache && src != srcPrefetch { // hits count themselves, without re-parsing
		s.count(resp, src)
	}
	if s.cfg.QueryLog {
		s.logQuery(&f, from, src, resp, now)
	}
	return resp, nil
}

// found is what the fast path learned about a query.
type found struct {
	q      query
	parsed bool           // q parsed without error
	chase  policy.Verdict // Action Chase: the CNAME policy made, to follow off the read loop
	stale  *cache.Entry   // the expired entry the cache holds, if any
}

// miss is a query the fast path could not answer, with what it found.
type miss struct {
	found
	pkt   []byte
	start time.Time // when the query arrived
}

// missPool recycles misses: one is taken per miss and given back when its answer is made, so
// that handing what the fast path found to the worker costs no allocation.
var missPool = sync.Pool{New: func() any { return new(miss) }}

// release gives m back; nothing may use it afterwards.
func (m *miss) release() {
	m.found, m.pkt = found{}, nil
	missPool.Put(m)
}

// own copies the packet off a read buffer that is about to be reused; the parsed name points
// into the copy.
func (m *miss) own() {
	m.pkt = append([]byte(nil), m.pkt...)
	m.q.name = m.pkt[12 : 12+len(m.q.name)]
}

func (s *Server) fast(pkt []byte, from netip.AddrPort, tcp bool, dst []byte, now time.Time, f *found) ([]byte, source) {
	q := &f.q
	switch err := parseQuery(pkt, q); err {
	case nil:
		f.parsed = true
	case errDrop:
		return nil, srcDrop
	case errNotImpl:
		return appendError(dst, pkt, dns.RcodeNotImplemented), srcError
	default:
		s.Stats.Formerr.Add(1)
		return appendError(dst, pkt, dns.RcodeFormatError), srcError
	}
	s.Stats.Queries.Add(1)
	p := s.policy.Load()
	if !p.Allowed(from.Addr()) {
		return s.respond(dst, q, tcp, dns.RcodeRefused, nil, now), srcRefused
	}
	if s.rrl != nil && !tcp {
		switch s.rrl.decide(from.Addr(), now) {
		case rrlDrop:
			s.hit(limitRRLDropped)
			return nil, srcDrop
		case rrlSlip:
			s.hit(limitRRLSlipped)
			return appendSlip(dst, pkt, q), srcSlipped
		}
	}
	if q.edns && q.version != 0 {
		return s.badVersion(dst, pkt), srcError
	}
	if q.qtype == dns.TypeAXFR || q.qtype == dns.TypeIXFR {
		return s.respond(dst, q, tcp, dns.RcodeRefused, nil, now), srcRefused
	}
	if q.qclass != dns.ClassINET { // one comparison on the hit path; the rest only for other classes
		if q.qclass == dns.ClassCHAOS {
			// The node's identity in server mode; never the upstream's version or host name.
			if m := s.chaos(q); m != nil {
				return s.respond(dst, q, tcp, dns.RcodeSuccess, m, now), srcLocal
			}
		}
		// Class NONE and ANY are meta-classes (RFC 2136, RFC 1035 3.2.5), meaningful in
		// UPDATE prerequisites and to servers holding several classes; our upstreams serve
		// IN, and a forwarded class NONE query only timed out into SERVFAIL while it held a
		// slot. No forward zone or policy rule is per class, so no other class (HS, the
		// unassigned ones) has an upstream that could answer either. All are REFUSED here,
		// at once: what BIND answers for a class no view serves, and the rcode that says
		// "not from this server" where NOTIMP would claim the query kind (RFC 1035 4.1.1)
		// is unknown. unbound instead resolves class ANY as one query per class it has
		// hints for, which a forwarder without per-class upstreams has no way to do.
		return s.respond(dst, q, tcp, dns.RcodeRefused, nil, now), srcRefused
	}
	pq := q.policyQuestion()
	switch v := p.Decide(&pq); v.Action {
	case policy.Answer:
		s.Stats.Policy[v.Reason].Add(1)
		return s.respond(dst, q, tcp, v.Msg.Rcode, v.Msg, now), policySource(v.Reason)
	case policy.Refuse:
		s.Stats.Policy[v.Reason].Add(1)
		return s.respond(dst, q, tcp, dns.RcodeRefused, nil, now), srcRefused
	case policy.Chase:
		f.chase = v
		return nil, srcMiss // the CNAME's target may need an upstream: off the read loop
	}
	cq := q.cacheQuestion()
	e, st := s.cache.Get(&cq, now)
	src := srcCache
	switch st {
	case cache.Prefetch:
		if q.qtype != dns.TypeANY { // the minimal answer is made here again once it expires
			s.prefetch(q, e)
		}
		src = srcPrefetch
	case cache.Stale, cache.Miss:
		if q.qtype == dns.TypeANY { // class IN: the others were answered above
			return s.minimalANY(dst, q, tcp, now), srcLocal
		}
		if st == cache.Miss || e.RetryDue(now, s.cfg.StaleRetry) {
			if st == cache.Stale {
				f.stale = e
			}
			return nil, srcMiss // resolved, or refreshed, off the read loop
		}
		// A refresh of it runs or failed moments ago: the stale answer goes out at once,
		// without leaving the read loop, so an outage costs no goroutines for cached names.
		s.Stats.Misses.Add(1)
		r := s.reply(q, tcp)
		return s.stale(dst, e, &r, now)
	}
	r := s.reply(q, tcp)
	out := e.AppendAnswer(dst, &r, now)
	s.Stats.Answers[src].Add(1)
	s.Stats.Requests[typeSlot(q.qtype)][e.Rcode()].Add(1)
	return out, src
}

// anyTTL is the TTL of the minimal answer to ANY. RFC 8482 section 4.2 leaves it to the
// operator: long enough that a client repeating its ANY query is answered from caches, short
// enough that a change of this policy reaches them. An hour, well under the day the cache keeps
// anything at most.
const anyTTL = 3600

// minimalANY answers a qtype ANY query in class IN with one synthesized HINFO "RFC8482" ""
// record (RFC 8482 section 4.2), and stores it, so that repeats are plain cache hits. An ANY
// answer from upstream is the classic amplification reflector and, from a cache, never complete
// anyway (RFC 8482 section 2). It is the same over TCP, though section 4.4 would allow a full
// answer there: our upstreams minimize ANY themselves more often than not, and one answer for
// both transports keeps one cache entry. The name's existence is not checked: that would take
// the upstream query this answer exists to avoid. Local zones and data still answer ANY first.
func (s *Server) minimalANY(dst []byte, q *query, tcp bool, now time.Time) []byte {
	qq := q.question()
	m := new(dns.Msg)
	m.Response = true
	m.Question = []dns.Question{qq}
	m.Answer = []dns.RR{&dns.HINFO{
		Hdr: dns.RR_Header{Name: qq.Name, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: anyTTL},
		Cpu: "RFC8482",
	}}
	cq := q.cacheQuestion()
	e, err := s.cache.Build(&cq, m, now)
	if err != nil {
		s.log.Error("pack minimal ANY answer", "err", err)
		return nil
	}
	s.cache.Put(e)
	r := s.reply(q, tcp)
	return e.AppendAnswer(dst, &r, now)
}

// reply is how an answer is patched for this client: the query's details plus the server's
// round-robin setting and, if asked for and configured, the node's NSID.
func (s *Server) reply(q *query, tcp bool) cache.Reply {
	r := q.reply(tcp)
	r.Rotate = s.cfg.RoundRobin
	if q.nsid {
		r.NSID = s.nodeID
	}
	return r
}

// logQuery writes one query log line: client, name, type, rcode, latency, where the answer
// came from.
func (s *Server) logQuery(f *found, from netip.AddrPort, src source, resp []byte, start time.Time) {
	name, qtype := "", ""
	if f.parsed {
		name, qtype = f.q.question().Name, dns.TypeToString[f.q.qtype]
	}
	rcode := "-"
	if len(resp) >= 12 {
		rcode = dns.RcodeToString[int(resp[3]&0xf)]
	}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "query",
		slog.String("client", from.String()), slog.String("name", name), slog.String("type", qtype),
		slog.String("rcode", rcode), slog.Duration("latency", s.now().Sub(start)), slog.String("source", src.String()))
}

// resolveMiss answers a query that missed the cache or found only a stale answer, from where
// the fast path left it. It returns nil when there is nothing to send.
func (s *Server) resolveMiss(ctx context.Context, m *miss, from netip.AddrPort, tcp bool) []byte {
	defer m.release()
	resp, src := s.slow(ctx, m, tcp)
	s.count(resp, src)
	if s.cfg.QueryLog {
		s.logQuery(&m.found, from, src, resp, m.start)
	}
	return resp
}

func (s *Server) slow(ctx context.Context, m *miss, tcp bool) ([]byte, source) {
	q := &m.q
	if m.chase.Action == policy.Chase {
		return s.chase(ctx, q, m.chase, tcp)
	}
	r := s.reply(q, tcp)
	s.Stats.Misses.Add(1)
	got, stale, err := s.lookup(ctx, q.pending(), m.stale, m.start)
	switch {
	case err != nil:
		return s.servfailFor(q, tcp, err)
	case stale:
		return s.stale(nil, got, &r, s.now())
	}
	return got.AppendAnswer(nil, &r, s.now()), srcUpstream
}

// lookup is the one wait of a miss, for a client's question and for every link of a chased
// CNAME alike: e is the expired entry the cache holds for p, or nil. It applies the failure
// backoff (RFC 9520), the retry claim of a stale entry, the coalescing of identical questions
// and the stale client timer, and returns the entry to answer with and whether it is stale.
func (s *Server) lookup(ctx context.Context, p pending, e *cache.Entry, now time.Time) (*cache.Entry, bool, error) {
	if e != nil {
		// A stale answer waits only for a refresh this query starts, and only while that
		// refresh goes as usual: when a refresh already runs, ran moments ago (and so failed),
		// or its first packet goes unanswered, the stale answer goes out at once (RFC 8767
		// allows any client timer up to stale_client_timeout).
		if !e.ClaimRetry(now, s.cfg.StaleRetry) || s.fails.failing(p.key, now) {
			return e, true, nil
		}
		f, leader := s.flights.join(p.key)
		if !leader {
			return e, true, nil
		}
		s.runFlight(p, f, false)
		t := time.NewTimer(s.cfg.StaleClientTimeout)
		defer t.Stop()
		select {
		case <-f.done:
			if f.err == nil {
				return f.entry, false, nil
			}
		case <-f.slow:
		case <-t.C:
		case <-ctx.Done():
		}
		return e, true, nil
	}
	if s.fails.failing(p.key, now) {
		// Resolution failed moments ago (RFC 9520): do not ask again yet.
		return nil, false, errFailing
	}
	f := s.startFlight(p, true)
	select {
	case <-f.done: // entry and err are set once done is closed, not before
		if f.err == nil {
			return f.entry, false, nil
		}
		return nil, false, f.err
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// stale answers with an expired entry, marked as such (EDE 3).
func (s *Server) stale(dst []byte, e *cache.Entry, r *cache.Reply, now time.Time) ([]byte, source) {
	r.Stale = true
	return e.AppendAnswer(dst, r, now), srcStale
}

// servfailFor answers a failed resolution: SERVFAIL, or REFUSED when every upstream asked
// refused (their word is passed on, not turned into a failure of ours).
func (s *Server) servfailFor(q *query, tcp bool, err error) ([]byte, source) {
	var re *upstream.RcodeError
	if errors.As(err, &re) && re.Rcode == dns.RcodeRefused {
		return s.respond(nil, q, tcp, dns.RcodeRefused, nil, s.now()), srcRefused
	}
	return s.respond(nil, q, tcp, dns.RcodeServerFailure, nil, s.now()), srcServfail
}

// prefetch refreshes an answer in the last 10% of its TTL in the background (unbound's rule).
func (s *Server) prefetch(q *query, e *cache.Entry) {
	s.Stats.Prefetches.Add(1)
	p := q.pending()
	p.refresh = e
	s.startFlight(p, false)
}

// pending is what one upstream resolution needs, copied off the packet buffer.
type pending struct {
	key     string
	cq      cache.Question
	dq      dns.Question
	refresh *cache.Entry // a prefetch: the entry it refreshes, allowed another try if this fails
}

func (q *query) pending() pending {
	cq := cache.Question{Name: append([]byte(nil), q.lowerName()...), Type: q.qtype, Class: q.qclass, DO: q.do, CD: q.cd}
	return pending{key: flightKey(&cq), cq: cq, dq: q.question()}
}

// startFlight starts the upstream resolution of p, or joins the one already running. The
// resolution runs on the server's context, not the client's, so that clients that give up do
// not cancel it for the others. inline runs it in the calling goroutine, already off the read
// loop, when the caller would only wait for it anyway: a goroutine less per miss, and one stack
// less to grow. A caller that may stop waiting (a stale answer's timer, a prefetch) does not.
func (s *Server) startFlight(p pending, inline bool) *flight {
	f, leader := s.flights.join(p.key)
	if leader {
		s.runFlight(p, f, inline)
	}
	return f
}

// runFlight runs the resolution of flight f, which the caller leads.
func (s *Server) runFlight(p pending, f *flight, inline bool) {
	run := func() {
		resp, err := s.Forwarder().ResolveNotify(s.ctx, p.dq, p.cq.DO, p.cq.CD, f.markSlow)
		var e *cache.Entry
		now := s.now()
		if err == nil {
			s.policy.Load().FilterUpstream(p.cq.Name, p.dq.Qtype, resp)
			e, err = s.cache.Build(&p.cq, resp, now)
		}
		if err != nil {
			if p.refresh != nil {
				p.refresh.PrefetchFailed() // the next hit in the window tries again
			}
			if !errors.Is(err, upstream.ErrUpstreamsDown) { // that is the pool's state, not the name's
				s.fails.record(p.key, now)
			}
			s.log.LogAttrs(context.Background(), slog.LevelDebug, "resolution failed",
				slog.String("name", p.dq.Name), slog.String("err", err.Error()))
		} else {
			s.fails.clear(p.key)
			s.cache.Put(e)
		}
		s.flights.finish(p.key, f, e, err)
	}
	if inline {
		run()
	} else if !s.offLoop(run) {
		if p.refresh != nil {
			p.refresh.PrefetchFailed()
		}
		s.flights.finish(p.key, f, nil, errors.New("too many queries in flight"))
	}
}

func flightKey(q *cache.Question) string {
	b := make([]byte, 0, len(q.Name)+5)
	b = append(b, q.Name...)
	b = binary.BigEndian.AppendUint16(b, q.Type)
	b = binary.BigEndian.AppendUint16(b, q.Class)
	var f byte
	if q.DO {
		f |= 1
	}
	if q.CD {
		f |= 2
	}
	return string(append(b, f))
}

// respond writes a locally made answer (m), or an empty one with rcode when m is nil, through
// the same writer as cached answers, so ID, case, flags and EDNS are handled in one place.
func (s *Server) respond(dst []byte, q *query, tcp bool, rcode int, m *dns.Msg, now time.Time) []byte {
	if m == nil {
		m = new(dns.Msg)
		m.Question = []dns.Question{q.question()}
		m.Rcode = rcode
	}
	cq := q.cacheQuestion()
	e, err := cache.Pack(&cq, m, now)
	if err != nil {
		s.log.Error("pack local answer", "err", err)
		return nil
	}
	r := s.reply(q, tcp)
	return e.AppendAnswer(dst, &r, now)
}

// badVersion answers an EDNS version we do not speak with BADVERS (RFC 6891 section 6.1.3).
func (s *Server) badVersion(dst []byte, pkt []byte) []byte {
	req := new(dns.Msg)
	if err := req.Unpack(pkt); err != nil {
		return appendError(dst, pkt, dns.RcodeFormatError)
	}
	m := new(dns.Msg)
	m.SetRcode(req, dns.RcodeBadVers)
	m.RecursionAvailable = true
	m.SetEdns0(cache.EDNSBufferSize, false)
	out, err := m.PackBuffer(dst)
	if err != nil {
		return nil
	}
	return out
}

func netipAddrPort(a net.Addr) (netip.AddrPort, error) {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort(), nil
	}
	return netip.AddrPort{}, errors.New("not a TCP address")
}

// Probe resolves name/qtype through the pipeline with the cache bypassed (policy, then the
// forwarder), as server mode's health check does: it tests the path to the upstreams, not the
// cache. nil means an answer came back that was not SERVFAIL or REFUSED.
func (s *Server) Probe(ctx context.Context, name string, qtype uint16) error {
	q, err := cache.NewQuestion(name, qtype, dns.ClassINET, false, false)
	if err != nil {
		return err
	}
	pq := policy.Question{Name: q.Name, Type: qtype, Class: dns.ClassINET}
	switch v := s.policy.Load().Decide(&pq); v.Action {
	case policy.Answer, policy.Chase:
		return nil
	case policy.Refuse:
		return errors.New("refused by policy")
	}
	_, err = s.Forwarder().Check(ctx, dns.Question{Name: dns.Fqdn(name), Qtype: qtype, Qclass: dns.ClassINET})
	return err
}
