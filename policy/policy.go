// Package policy decides the answers fleetdns gives without asking anyone: access control, the
// junk guard, local zones and local data (unbound's semantics), synthesized names and AAAA
// blocking. It is pure: a Policy is immutable, built from a Config (reading its zone files once),
// and consulted with a question; no sockets, no clock. A question no rule matches costs no
// allocation.
package policy

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/fleetdns/fleetdns/field"
	"github.com/miekg/dns"
)

// Config is what the operator sets. The zero value answers the RFC 6761 names and lets
// everything else pass. Decide applies the rules in this order, the first that decides wins:
// junk guard, local zones and local data, synthesized names, AAAA blocking.
type Config struct {
	AccessControl  []netip.Prefix // clients allowed to query; empty allows loopback only
	LocalZones     []LocalZone
	LocalData      []string // resource records in zone-file syntax
	LocalDataFiles []string // RFC 1035 zone files (globs); each file's apex becomes a static zone
	BlockAAAA      BlockAAAA
	SynthIP        SynthIP
	SynthDC        SynthDC
	JunkGuard      []string // suffixes; a name under one of them twice is search-list junk
}

// LocalZone is a zone answered locally, of one of unbound's local-zone types.
type LocalZone struct {
	Name string
	Type string // static | transparent | redirect | refuse | always_nxdomain | typetransparent
}

// BlockAAAA answers AAAA queries for names under Suffixes with NODATA (or NXDOMAIN).
type BlockAAAA struct {
	Suffixes []string
	NXDomain bool // answer: nxdomain, the older practice; NODATA is the safe default (RFC 8020)
}

// SynthIP answers A.B.C.D.<Domain> with A A.B.C.D and <v6 with dashes>.<Domain> with AAAA.
type SynthIP struct {
	Domain string
	TTL    time.Duration
}

// SynthDC answers <name>.<Label>.<domain> with a CNAME to <name>.<Local>.<domain> for each of
// Domains, and the resolver follows it.
type SynthDC struct {
	Label   string
	Local   string
	Domains []string
}

// Validate reports a config New would reject, without reading files.
func (c Config) Validate() error {
	return c.validate()
}

// ValidateLocalZones checks local zones (their types are unbound's); errors carry each key's
// path ("[1].type"), for the config's "local_zones".
func ValidateLocalZones(zones []LocalZone) error {
	var errs []error
	for i, z := range zones {
		if _, err := parseZoneType(z.Type); err != nil {
			errs = append(errs, field.Errorf(fmt.Sprintf("[%d].type", i), "%s: %v", z.Name, err))
		}
		if _, ok := dns.IsDomainName(z.Name); !ok {
			errs = append(errs, field.Errorf(fmt.Sprintf("[%d].zone", i), "%q is not a domain name", z.Name))
		}
	}
	return errors.Join(errs...)
}

func (c Config) validate() error {
	for _, p := range c.AccessControl {
		if !p.IsValid() {
			return fmt.Errorf("access_control: invalid prefix %v", p)
		}
	}
	if err := ValidateLocalZones(c.LocalZones); err != nil {
		return field.Under("local_zones", err)
	}
	names := append(append(append([]string{}, c.BlockAAAA.Suffixes...), c.JunkGuard...), c.SynthDC.Domains...)
	for _, n := range names {
		if _, ok := dns.IsDomainName(n); !ok || n == "" {
			return fmt.Errorf("%q is not a domain name", n)
		}
	}
	if c.SynthIP.Domain != "" {
		if _, ok := dns.IsDomainName(c.SynthIP.Domain); !ok {
			return fmt.Errorf("synthesize.ip.domain: %q is not a domain name", c.SynthIP.Domain)
		}
		if c.SynthIP.TTL < 0 {
			return errors.New("synthesize.ip.ttl must not be negative")
		}
	}
	if c.SynthDC.Label != "" || c.SynthDC.Local != "" || len(c.SynthDC.Domains) > 0 {
		if c.SynthDC.Label == "" || c.SynthDC.Local == "" || len(c.SynthDC.Domains) == 0 {
			return errors.New("synthesize.dc needs label, local and domains")
		}
		for _, l := range []string{c.SynthDC.Label, c.SynthDC.Local} {
			if n, ok := dns.IsDomainName(l); !ok || n != 1 {
				return fmt.Errorf("synthesize.dc: %q is not a single DNS label", l)
			}
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
	Chase                // Verdict.Msg holds a CNAME to Verdict.Target: resolve that and append it
)

func (a Action) String() string {
	return [...]string{"pass", "answer", "refuse", "chase"}[a]
}

// Reason says which rule decided, so every decision can be counted without allocating.
type Reason uint8

const (
	ReasonNone          Reason = iota
	ReasonLocalData            // answered from local data (or the RFC 6761 built-ins)
	ReasonLocalNoData          // a local zone's NODATA
	ReasonLocalNXDomain        // a local zone's NXDOMAIN (always_nxdomain included)
	ReasonLocalRefuse          // a refuse zone
	ReasonJunk                 // search-list junk
	ReasonBlockAAAA            // AAAA blocked
	ReasonSynthIP              // synthesize.ip
	ReasonSynthDC              // synthesize.dc
	NumReasons
)

func (r Reason) String() string {
	return [...]string{"none", "local_data", "local_nodata", "local_nxdomain", "local_refuse",
		"junk_guard", "block_aaaa", "synthesize_ip", "synthesize_dc"}[r]
}

// Verdict is the decision for one question.
type Verdict struct {
	Action Action
	Msg    *dns.Msg // for Answer and Chase: with QR, AA and RA set and the question filled in
	Target string   // for Chase: the name the CNAME points to
	Reason Reason
}

// Policy is an immutable set of local rules.
type Policy struct {
	acl       []netip.Prefix
	zones     map[string]*zone // by wire-format lowercased apex
	junk      suffixes
	blockAAAA suffixes
	blockNX   bool
	// aaaaSuffixes are BlockAAAA.Suffixes as given, for the reload's summary (Invalidates).
	aaaaSuffixes []string
	synthIP      *zone // a pseudo-zone for its apex; nil when off
	ipTTL        uint32
	dcLabel      []byte   // wire label (length byte and text)
	dcLocal      string   // presentation label
	dcDomains    suffixes // the domains <name>.<label>.<domain> is under
}

// New builds a Policy, reading LocalDataFiles. Errors name the file and line.
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
	if err := p.addLocal(cfg); err != nil {
		return nil, err
	}
	p.junk = newSuffixes(cfg.JunkGuard)
	p.blockAAAA = newSuffixes(cfg.BlockAAAA.Suffixes)
	p.aaaaSuffixes = cfg.BlockAAAA.Suffixes
	p.blockNX = cfg.BlockAAAA.NXDomain
	if cfg.SynthIP.Domain != "" {
		p.synthIP = newZone(cfg.SynthIP.Domain, static)
		p.ipTTL = uint32(cfg.SynthIP.TTL / time.Second)
	}
	if cfg.SynthDC.Label != "" {
		label := wireName(cfg.SynthDC.Label)
		p.dcLabel = label[:len(label)-1]
		p.dcLocal = dns.CanonicalName(cfg.SynthDC.Local)
		p.dcLocal = p.dcLocal[:len(p.dcLocal)-1]
		p.dcDomains = newSuffixes(cfg.SynthDC.Domains)
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
	if q.Class != dns.ClassINET {
		return Verdict{}
	}
	if p.junk.twice(q.Name) {
		return negative(q, dns.RcodeNameError, nil, ReasonJunk)
	}
	if z := p.zoneFor(q.Name); z != nil {
		if v := z.answer(q); v.Action != Pass {
			return v
		}
	}
	if p.synthIP != nil && isUnder(q.Name, p.synthIP.apex) {
		return p.synthesizeIP(q)
	}
	if p.dcDomains.any() {
		if v := p.synthesizeDC(q); v.Action != Pass {
			return v
		}
	}
	if q.Type == dns.TypeAAAA && p.blockAAAA.under(q.Name) {
		rcode := dns.RcodeSuccess
		if p.blockNX {
			rcode = dns.RcodeNameError
		}
		return negative(q, rcode, p.soaFor(q.Name), ReasonBlockAAAA)
	}
	return Verdict{}
}

// BlocksAAAA reports whether AAAA is blocked for name (lowercased wire format); FilterUpstream
// strips ipv6hint from HTTPS and SVCB answers for such names.
func (p *Policy) BlocksAAAA(name []byte) bool { return p.blockAAAA.under(name) }

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

// soaFor returns the SOA of the local zone name is under, if one has an SOA.
func (p *Policy) soaFor(name []byte) *dns.SOA {
	if z := p.zoneFor(name); z != nil {
		return z.soa
	}
	return nil
}

// negative makes an NXDOMAIN or NODATA answer with soa (if any) in the authority section.
func negative(q *Question, rcode int, soa *dns.SOA, reason Reason) Verdict {
	m := reply(q)
	m.Rcode = rcode
	if soa != nil {
		s := dns.Copy(soa).(*dns.SOA)
		s.Hdr.Ttl = min(s.Hdr.Ttl, s.Minttl)
		m.Ns = append(m.Ns, s)
	}
	return Verdict{Action: Answer, Msg: m, Reason: reason}
}

// reply starts a local answer: QR, AA and RA set (glibc takes an empty NOERROR without RA for a
// referral and moves on), the question filled in.
func reply(q *Question) *dns.Msg {
	m := new(dns.Msg)
	m.Question = []dns.Question{{Name: presentation(q.Name), Qtype: q.Type, Qclass: q.Class}}
	m.Response, m.Authoritative, m.RecursionAvailable = true, true, true
	return m
}
