package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/fleetdns/fleetdns/field"
	"github.com/miekg/dns"
)

// ZoneConfig is one forward zone: names under Zone go to Upstreams.
type ZoneConfig struct {
	Zone      string
	Upstreams []netip.AddrPort
	Protocol  string // "udp" (TCP when truncated) or "tcp"
}

// Validate reports a zone New would reject.
func (z ZoneConfig) Validate() error {
	var errs []error
	if _, ok := dns.IsDomainName(z.Zone); !ok || z.Zone == "" {
		errs = append(errs, field.Errorf("zone", "%q is not a domain name", z.Zone))
	}
	if len(z.Upstreams) == 0 {
		errs = append(errs, field.Errorf("upstreams", "at least one upstream is needed"))
	}
	for _, u := range z.Upstreams {
		if !u.IsValid() || u.Port() == 0 {
			errs = append(errs, field.Errorf("upstreams", "%v is not an address and port an upstream answers on", u))
		}
	}
	switch z.Protocol {
	case "", "udp", "tcp":
	case "tls":
		errs = append(errs, field.Errorf("protocol", "tls is not supported by this version yet"))
	default:
		errs = append(errs, field.Errorf("protocol", "%q is not one of udp, tcp", z.Protocol))
	}
	return errors.Join(errs...)
}

// ValidateZones checks the forward zones, each and together (no zone listed twice); errors
// carry each key's path ("[1].protocol"), for the config's "forward".
func ValidateZones(zones []ZoneConfig) error {
	var errs []error
	seen := map[string]bool{}
	for i, z := range zones {
		item := fmt.Sprintf("[%d]", i)
		if err := z.Validate(); err != nil {
			errs = append(errs, field.Under(item, err))
		}
		if name := dns.CanonicalName(z.Zone); z.Zone != "" && seen[name] {
			errs = append(errs, field.Errorf(item+".zone", "zone %q is listed twice", z.Zone))
		} else {
			seen[name] = true
		}
	}
	return errors.Join(errs...)
}

// Forwarder sends questions to the upstream pool of the longest matching forward zone.
type Forwarder struct {
	pools    map[string]*Pool // by lowercased FQDN zone
	zones    []string         // sorted, for listing
	deadline time.Duration

	mismatched   atomic.Uint64 // responses ignored because ID, question or source did not match
	retransmits  atomic.Uint64 // packets sent again after a query's timer ran out
	budgetDenied atomic.Uint64 // retransmissions not sent because the pool's budget was spent
}

// ErrNoZone means no forward zone covers the name.
var ErrNoZone = errors.New("no forward zone for name")

// NewForwarder builds the pools. deadline bounds one resolution across all upstreams.
func NewForwarder(zones []ZoneConfig, deadline time.Duration) (*Forwarder, error) {
	if err := ValidateZones(zones); err != nil {
		return nil, field.Under("forward", err)
	}
	f := &Forwarder{pools: make(map[string]*Pool), deadline: deadline}
	for _, z := range zones {
		name := dns.CanonicalName(z.Zone)
		p := &Pool{Zone: name, tcp: z.Protocol == "tcp"}
		p.budget.init()
		for _, a := range z.Upstreams {
			p.Upstreams = append(p.Upstreams, &Upstream{Addr: a, TCP: z.Protocol == "tcp"})
		}
		f.pools[name] = p
		f.zones = append(f.zones, name)
	}
	sort.Strings(f.zones)
	return f, nil
}

// SetNote says who set a zone's upstreams, if not the config (the failover controller), for
// status; zone is the canonical name.
func (f *Forwarder) SetNote(zone, note string) {
	if p, ok := f.pools[zone]; ok {
		p.Note = note
	}
}

// Pools lists the forward zones in name order.
func (f *Forwarder) Pools() []*Pool {
	out := make([]*Pool, len(f.zones))
	for i, z := range f.zones {
		out[i] = f.pools[z]
	}
	return out
}

// Retransmits counts packets sent again after a query's timer ran out; BudgetDenied the ones
// not sent because the pool's retransmission budget was spent.
func (f *Forwarder) Retransmits() uint64  { return f.retransmits.Load() }
func (f *Forwarder) BudgetDenied() uint64 { return f.budgetDenied.Load() }

// Mismatched counts responses ignored as not matching their query (RFC 5452).
func (f *Forwarder) Mismatched() uint64 { return f.mismatched.Load() }

// pool returns the pool of the longest zone name is under.
func (f *Forwarder) pool(name string) *Pool {
	name = strings.ToLower(name)
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		if p, ok := f.pools[name[off:]]; ok {
			return p
		}
	}
	return f.pools["."]
}

// Resolve asks the zone's upstreams for q until one answers with something other than SERVFAIL
// or REFUSED, or the deadline passes: over UDP with retransmissions on the query's own timer
// (resolveUDP), over TCP one upstream after the other.
func (f *Forwarder) Resolve(ctx context.Context, q dns.Question, do, cd bool) (*dns.Msg, error) {
	return f.resolve(ctx, q, do, cd, nil, false, 0)
}

// ResolveNotify is Resolve with slow called once when no answer came in the time one normally
// takes (the upstream's srtt + 4·rttvar): a client holding a stale answer need not wait longer.
func (f *Forwarder) ResolveNotify(ctx context.Context, q dns.Question, do, cd bool, slow func()) (*dns.Msg, error) {
	return f.resolve(ctx, q, do, cd, slow, false, 0)
}

// Check is Resolve for a health check: it also sends to every upstream marked down, as a probe,
// instead of failing at once or waiting for the next probe that is due. A health check is rare
// (one per interval) and asks whether the path works now: an upstream that came back must pass
// the very next check, not the one after its probe timer (up to a second later), so a node
// announces within rise × interval of its upstream's first answer.
func (f *Forwarder) Check(ctx context.Context, q dns.Question) (*dns.Msg, error) {
	return f.resolve(ctx, q, false, false, nil, true, 0)
}

// resolve is Resolve with slow called when the first packet goes unanswered for its RTO, and
// with every down upstream probed when probeAll is set (Check); depth counts the forward zones
// a CNAME chain has crossed.
func (f *Forwarder) resolve(ctx context.Context, q dns.Question, do, cd bool, slow func(), probeAll bool, depth int) (*dns.Msg, error) {
	p := f.pool(q.Name)
	if p == nil {
		return nil, ErrNoZone
	}
	ctx, cancel := context.WithTimeout(ctx, f.deadline)
	defer cancel()
	var resp *dns.Msg
	var err error
	if p.tcp {
		resp, err = f.resolveTCP(ctx, p, q, do, cd, probeAll)
	} else {
		resp, err = f.resolveUDP(ctx, p, q, do, cd, slow, probeAll)
	}
	if err != nil {
		return nil, err
	}
	scrub(resp, p.Zone)
	if target, ok := f.leavesZone(p, resp); ok {
		return f.followTarget(ctx, resp, target, do, cd, probeAll, depth)
	}
	return resp, nil
}

// maxChain bounds the CNAME links of one answer that are followed to find where it leaves its
// zone.
const maxChain = 8

// maxZoneHops bounds how many times one answer's CNAME chain is continued in another zone.
const maxZoneHops = 4

// leavesZone finds the first CNAME in resp's chain whose target belongs to another forward
// zone. The upstream of this zone has no say over names there: records it added for them are
// dropped and the target is resolved through its own zone's upstreams, as unbound does. A
// forged address for victim.example slipped in after a CNAME is never believed.
func (f *Forwarder) leavesZone(p *Pool, resp *dns.Msg) (string, bool) {
	if len(resp.Question) != 1 {
		return "", false
	}
	chain := map[string]bool{}
	name := strings.ToLower(resp.Question[0].Name)
	for range maxChain {
		chain[name] = true
		next := ""
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && strings.EqualFold(c.Hdr.Name, name) {
				next = strings.ToLower(c.Target)
			}
		}
		if next == "" || chain[next] {
			return "", false
		}
		if f.pool(next) != p {
			answer := resp.Answer[:0]
			for _, rr := range resp.Answer {
				if chain[strings.ToLower(rr.Header().Name)] {
					answer = append(answer, rr)
				}
			}
			resp.Answer = answer
			return next, true
		}
		name = next
	}
	return "", false
}

// followTarget resolves target (of resp's last CNAME) in its own zone and completes resp with
// that answer.
func (f *Forwarder) followTarget(ctx context.Context, resp *dns.Msg, target string, do, cd, probeAll bool, depth int) (*dns.Msg, error) {
	if depth >= maxZoneHops {
		return nil, fmt.Errorf("CNAME chain crosses more than %d forward zones", maxZoneHops)
	}
	q := resp.Question[0]
	sub, err := f.resolve(ctx, dns.Question{Name: dns.Fqdn(target), Qtype: q.Qtype, Qclass: q.Qclass}, do, cd, nil, probeAll, depth+1)
	if err != nil {
		return nil, err
	}
	resp.Answer = append(resp.Answer, sub.Answer...)
	resp.Rcode, resp.Ns = sub.Rcode, sub.Ns
	extra := resp.Extra[:0]
	for _, rr := range resp.Extra {
		if rr.Header().Rrtype == dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	resp.Extra = extra
	return resp, nil
}

// resolveTCP asks the upstreams in turn over TCP, which retransmits by itself: each gets a few
// of its RTOs (at least tcpMinWait) before the next is asked.
func (f *Forwarder) resolveTCP(ctx context.Context, p *Pool, q dns.Question, do, cd, probeAll bool) (*dns.Msg, error) {
	live, probes := p.plan(time.Now(), probeAll)
	order := append(probes, live...)
	if len(order) == 0 {
		return nil, ErrUpstreamsDown
	}
	var lastErr error
	for i := 0; ctx.Err() == nil; i++ {
		if i == len(order) {
			if lastErr != nil && !isTimeout(lastErr) {
				return nil, lastErr // every upstream answered, with SERVFAIL or REFUSED
			}
			i = 0
		}
		resp, err := f.tryTCP(ctx, order[i], q, do, cd)
		if err == nil {
			return resp, nil
		}
		lastErr = err
	}
	return nil, errors.Join(lastErr, ctx.Err())
}

const tcpMinWait = 200 * time.Millisecond

func (f *Forwarder) tryTCP(ctx context.Context, u *Upstream, q dns.Question, do, cd bool) (*dns.Msg, error) {
	m := upstreamQuery(q, do, cd)
	start := time.Now()
	actx, cancel := context.WithTimeout(ctx, max(3*u.rto(), tcpMinWait))
	resp, err := f.exchangeTCP(actx, u, m)
	cancel()
	now := time.Now()
	rtt := now.Sub(start)
	if err != nil {
		u.unanswered(now, start)
		r := ResultError
		if isTimeout(err) {
			r = ResultTimeout
		}
		u.record(r, rtt)
		return nil, exchangeError(u, err)
	}
	u.answered(now, rtt)
	if err := u.judge(resp, rtt); err != nil {
		return nil, err
	}
	return resp, nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// Ask sends one query for name/qtype straight to addr, past every pool: the failover
// controller's canary. It returns the answer's records as text; an rcode other than NOERROR is
// an error.
func (f *Forwarder) Ask(ctx context.Context, addr netip.AddrPort, name string, qtype uint16) ([]string, error) {
	u := &Upstream{Addr: addr}
	resp, err := f.exchange(ctx, u, dns.Question{Name: dns.Fqdn(name), Qtype: qtype, Qclass: dns.ClassINET}, false, false)
	if err != nil {
		return nil, err
	}
	if resp.Rcode != dns.RcodeSuccess {
		return nil, fmt.Errorf("answered %s", dns.RcodeToString[resp.Rcode])
	}
	out := make([]string, 0, len(resp.Answer))
	for _, rr := range resp.Answer {
		out = append(out, rr.String())
	}
	return out, nil
}
