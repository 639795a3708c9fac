package fabric

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// SiblingProbe asks a sibling node, at its unicast address, for name/qtype with recursion
// desired: the sibling resolves it through its own path to the upstreams. It passes on a
// NOERROR answer that holds a record of qtype and is not stale: a sibling serving the name
// from its stale cache (Extended DNS Error 3, RFC 8914) has lost its upstreams too. A fresh
// cached answer passes, so the health name should have a TTL shorter than fall × interval (0
// is best; cache.min_ttl raises it).
func SiblingProbe(addr netip.AddrPort, name string, qtype uint16) Check {
	return func(ctx context.Context) error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		m.RecursionDesired = true
		m.SetEdns0(1232, false)
		r, err := exchange(ctx, m, addr)
		if err != nil {
			return err
		}
		if r.Rcode != dns.RcodeSuccess {
			return fmt.Errorf("sibling %s: %s", addr, dns.RcodeToString[r.Rcode])
		}
		if o := r.IsEdns0(); o != nil {
			for _, opt := range o.Option {
				if e, ok := opt.(*dns.EDNS0_EDE); ok && e.InfoCode == dns.ExtendedErrorCodeStaleAnswer {
					return fmt.Errorf("sibling %s: stale answer", addr)
				}
			}
		}
		for _, rr := range r.Answer {
			if rr.Header().Rrtype == qtype {
				return nil
			}
		}
		return fmt.Errorf("sibling %s: no %s record in the answer", addr, dns.TypeToString[qtype])
	}
}

// LocalProbe asks the node's own listener for id.server. CH TXT and expects its node ID: it
// proves the listener and the pipeline answer without asking any upstream. A REFUSED answer
// also proves they run (access_control need not list the node's own address).
func LocalProbe(addr netip.AddrPort, nodeID string) Check {
	return func(ctx context.Context) error {
		m := new(dns.Msg)
		m.SetQuestion("id.server.", dns.TypeTXT)
		m.Question[0].Qclass = dns.ClassCHAOS
		r, err := exchange(ctx, m, addr)
		if err != nil {
			return err
		}
		if r.Rcode == dns.RcodeRefused {
			return nil
		}
		for _, rr := range r.Answer {
			if t, ok := rr.(*dns.TXT); ok && strings.Join(t.Txt, "") == nodeID {
				return nil
			}
		}
		return fmt.Errorf("own listener %s: id.server. answered %s without the node ID", addr, dns.RcodeToString[r.Rcode])
	}
}

func exchange(ctx context.Context, m *dns.Msg, addr netip.AddrPort) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp"}
	r, _, err := c.ExchangeContext(ctx, m, addr.String())
	if err == nil && r.Truncated {
		c.Net = "tcp"
		r, _, err = c.ExchangeContext(ctx, m, addr.String())
	}
	if err != nil {
		return nil, err
	}
	if r == nil {
		return nil, errors.New("no answer")
	}
	return r, nil
}
