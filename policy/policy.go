// Package policy decides the answers fleetdns gives without asking anyone: access control and
// local zones (for now the RFC 6761 names: localhost and the loopback reverse zones). It is pure:
// a Policy is immutable, built from a Config, and consulted with a question; no sockets, no
// clock.
package policy

import (
	"fmt"
	"net/netip"

	"github.com/miekg/dns"
)

// Config is what the operator sets; the zero value answers the RFC 6761 names and lets
// everything else pass.
type Config struct {
	AccessControl []netip.Prefix // clients allowed to query; empty allows loopback only
}

// Validate reports a config New would reject.
func (c Config) Validate() error {
	for _, p := range c.AccessControl {
		if !p.IsValid() {
			return fmt.Errorf("access_control: invalid prefix %v", p)
		}
	}
	return nil
}

// Question is what policy looks at: the lowercased wire-format name, type and class.
type Question struct {
	Name  []byte
	Type  uint16
	Class uint16
}

// Action is what to do with a query.
type Action int

const (
	Pass   Action = iota // not decided here: go on to the cache and the forwarder
	Answer               // Verdict.Msg is the answer
	Refuse               // answer REFUSED
)

func (a Action) String() string {
	return [...]string{"pass", "answer", "refuse"}[a]
}

// Verdict is the decision for one question.
type Verdict struct {
	Action Action
	Msg    *dns.Msg // for Answer: the answer, with QR, AA and RA set and the question filled in
	Reason string   // which rule decided, for counting
}

// Policy is an immutable set of local rules.
type Policy struct {
	acl   []netip.Prefix
	zones map[string]*zone // by wire-format lowercased apex
}

// New builds a Policy.
func New(cfg Config) (*Policy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Policy{acl: cfg.AccessControl, zones: make(map[string]*zone)}
	if len(p.acl) == 0 {
		p.acl = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	}
	for _, z := range builtinZones() {
		p.zones[string(z.apex)] = z
	}
	return p, nil
}

// Allowed reports whether a client may query.
func (p *Policy) Allowed(a netip.Addr) bool {
	a = a.Unmap()
	for _, pfx := range p.acl {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// Decide finds the local answer for q, if any. A question no rule matches costs no allocation.
func (p *Policy) Decide(q *Question) Verdict {
	if z := p.zoneFor(q.Name); z != nil && q.Class == dns.ClassINET {
		return z.answer(q)
	}
	return Verdict{}
}

// zoneFor returns the local zone with the longest apex that name is under.
func (p *Policy) zoneFor(name []byte) *zone {
	for off := 0; off < len(name); off += int(name[off]) + 1 {
		if z, ok := p.zones[string(name[off:])]; ok {
			return z
		}
		if name[off] == 0 {
			break
		}
	}
	return nil
}
