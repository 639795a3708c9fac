package policy

import (
	"net"
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// dcTTL is the TTL of synthesized CNAMEs: the mapping is fixed by config, so a client may keep it
// as long as it keeps anything.
const dcTTL = 300

// synthesizeIP answers names under synthesize.ip's domain. Strict: exactly four decimal labels
// without leading zeros (0-255) make an A name; one label of an IPv6 address written with dashes
// for colons makes an AAAA name; the domain itself exists without data; anything else is
// NXDOMAIN. Other types on a valid name get NODATA.
func (p *Policy) synthesizeIP(q *Question) Verdict {
	prefix := q.Name[:len(q.Name)-len(p.synthIP.apex)]
	if len(prefix) == 0 {
		return negative(q, dns.RcodeSuccess, nil, ReasonSynthIP)
	}
	var labels [5][]byte
	n := 0
	for off := 0; off < len(prefix); off += int(prefix[off]) + 1 {
		if n == len(labels) {
			return negative(q, dns.RcodeNameError, nil, ReasonSynthIP)
		}
		labels[n] = prefix[off+1 : off+1+int(prefix[off])]
		n++
	}
	var addr netip.Addr
	switch n {
	case 4:
		var b [4]byte
		for i := range b {
			v, ok := octet(labels[i])
			if !ok {
				return negative(q, dns.RcodeNameError, nil, ReasonSynthIP)
			}
			b[i] = v
		}
		addr = netip.AddrFrom4(b)
	case 1:
		a, ok := dashed(labels[0])
		if !ok {
			return negative(q, dns.RcodeNameError, nil, ReasonSynthIP)
		}
		addr = a
	default:
		return negative(q, dns.RcodeNameError, nil, ReasonSynthIP)
	}
	m := reply(q)
	hdr := dns.RR_Header{Name: m.Question[0].Name, Class: dns.ClassINET, Ttl: p.ipTTL}
	switch {
	case addr.Is4() && q.Type == dns.TypeA:
		hdr.Rrtype = dns.TypeA
		m.Answer = []dns.RR{&dns.A{Hdr: hdr, A: net.IP(addr.AsSlice())}}
	case addr.Is6() && q.Type == dns.TypeAAAA:
		hdr.Rrtype = dns.TypeAAAA
		m.Answer = []dns.RR{&dns.AAAA{Hdr: hdr, AAAA: net.IP(addr.AsSlice())}}
	}
	return Verdict{Action: Answer, Msg: m, Reason: ReasonSynthIP}
}

// octet parses a decimal 0-255 without leading zeros.
func octet(b []byte) (byte, bool) {
	if len(b) == 0 || len(b) > 3 || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return byte(v), v <= 255
}

// dashed parses an IPv6 address with '-' for ':' (2001-db8--1).
func dashed(b []byte) (netip.Addr, bool) {
	if len(b) < 2 || len(b) > 39 {
		return netip.Addr{}, false
	}
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || c == '-') {
			return netip.Addr{}, false
		}
	}
	a, err := netip.ParseAddr(strings.ReplaceAll(string(b), "-", ":"))
	if err != nil || !a.Is6() || a.Is4In6() {
		return netip.Addr{}, false
	}
	return a, true
}

// synthesizeDC answers <name>.<label>.<domain> with a CNAME to <name>.<local>.<domain>, which the
// resolver follows so the client gets the addresses in the same answer.
func (p *Policy) synthesizeDC(q *Question) Verdict {
	name := q.Name
	prev := -1 // start of the label before off; > 0 means a host label comes before it
	for off := 0; off < len(name) && name[off] != 0; off += int(name[off]) + 1 {
		if prev > 0 && string(name[prev:off]) == string(p.dcLabel) {
			if _, ok := p.dcDomains.full[string(name[off:])]; ok {
				return p.dcCNAME(q, name[:prev], name[off:])
			}
		}
		prev = off
	}
	return Verdict{}
}

func (p *Policy) dcCNAME(q *Question, host, domain []byte) Verdict {
	m := reply(q)
	target := presentation(append(append([]byte{}, host...), 0)) + p.dcLocal + "." + presentation(domain)
	m.Answer = []dns.RR{&dns.CNAME{
		Hdr:    dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: dcTTL},
		Target: target,
	}}
	if q.Type == dns.TypeCNAME {
		return Verdict{Action: Answer, Msg: m, Reason: ReasonSynthDC}
	}
	return Verdict{Action: Chase, Msg: m, Target: target, Reason: ReasonSynthDC}
}
