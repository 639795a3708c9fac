package policy

import (
	"strings"

	"github.com/miekg/dns"
)

// zoneType follows unbound's local-zone types.
type zoneType int

const (
	static   zoneType = iota // local data only: NXDOMAIN for names without data, NODATA for other types
	redirect                 // every name under the apex gets the apex's data
)

// zone is a local zone: an apex, a type and the records it holds.
type zone struct {
	apex  []byte // wire format, lowercased
	name  string // presentation, lowercased, fully qualified
	typ   zoneType
	soa   *dns.SOA
	data  map[string]map[uint16][]dns.RR // by wire name, then type
	names map[string]bool                // every name with data and every empty non-terminal
}

func newZone(apex string, typ zoneType, records ...string) *zone {
	apex = dns.Fqdn(strings.ToLower(apex))
	z := &zone{apex: wireName(apex), name: apex, typ: typ,
		data: make(map[string]map[uint16][]dns.RR), names: make(map[string]bool)}
	for _, s := range records {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic("builtin record " + s + ": " + err.Error()) // a programming error in builtinZones
		}
		z.add(rr)
	}
	return z
}

func (z *zone) add(rr dns.RR) {
	h := rr.Header()
	h.Name = strings.ToLower(h.Name)
	if soa, ok := rr.(*dns.SOA); ok && h.Name == z.name {
		z.soa = soa
	}
	key := string(wireName(h.Name))
	if z.data[key] == nil {
		z.data[key] = make(map[uint16][]dns.RR)
	}
	z.data[key][h.Rrtype] = append(z.data[key][h.Rrtype], rr)
	// The name and every name between it and the apex exist (empty non-terminals count).
	for name := h.Name; dns.IsSubDomain(z.name, name); {
		z.names[string(wireName(name))] = true
		off, end := dns.NextLabel(name, 0)
		if end {
			break
		}
		name = name[off:]
	}
}

func (z *zone) answer(q *Question) Verdict {
	name := q.Name
	if z.typ == redirect {
		name = z.apex
	}
	m := new(dns.Msg)
	qname := presentation(q.Name)
	m.Question = []dns.Question{{Name: qname, Qtype: q.Type, Qclass: q.Class}}
	m.Response, m.Authoritative, m.RecursionAvailable = true, true, true
	rrs := z.data[string(name)][q.Type]
	if len(rrs) == 0 && q.Type != dns.TypeCNAME {
		rrs = z.data[string(name)][dns.TypeCNAME]
	}
	switch {
	case len(rrs) > 0:
		for _, rr := range rrs {
			rr = dns.Copy(rr)
			rr.Header().Name = qname
			m.Answer = append(m.Answer, rr)
		}
		return Verdict{Action: Answer, Msg: m, Reason: "local_data"}
	case z.names[string(name)]:
		z.addSOA(m)
		return Verdict{Action: Answer, Msg: m, Reason: "local_nodata"}
	default:
		m.Rcode = dns.RcodeNameError
		z.addSOA(m)
		return Verdict{Action: Answer, Msg: m, Reason: "local_nxdomain"}
	}
}

// addSOA puts the zone's SOA in the authority section with the negative-caching TTL of RFC 2308
// (the smaller of its TTL and MINIMUM).
func (z *zone) addSOA(m *dns.Msg) {
	if z.soa == nil {
		return
	}
	soa := dns.Copy(z.soa).(*dns.SOA)
	soa.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
	m.Ns = append(m.Ns, soa)
}

// builtinZones are the locally served names of RFC 6761 section 6.3 and their reverse zones,
// with the records unbound serves for them by default.
func builtinZones() []*zone {
	const soa = "10800 IN SOA localhost. nobody.invalid. 1 3600 1200 604800 10800"
	v6loop := "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa."
	return []*zone{
		newZone("localhost.", redirect,
			"localhost. "+soa, "localhost. 10800 IN NS localhost.",
			"localhost. 10800 IN A 127.0.0.1", "localhost. 10800 IN AAAA ::1"),
		newZone("127.in-addr.arpa.", static,
			"127.in-addr.arpa. "+soa, "127.in-addr.arpa. 10800 IN NS localhost.",
			"1.0.0.127.in-addr.arpa. 10800 IN PTR localhost."),
		newZone(v6loop, static,
			v6loop+" "+soa, v6loop+" 10800 IN NS localhost.", v6loop+" 10800 IN PTR localhost."),
	}
}

func wireName(name string) []byte {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(name), buf, 0, nil, false)
	if err != nil {
		panic("policy: bad name " + name) // only called on names that parsed as records
	}
	return buf[:n]
}

// presentation turns a wire-format name into text.
func presentation(wire []byte) string {
	name, _, err := dns.UnpackDomainName(wire, 0)
	if err != nil {
		return "."
	}
	return name
}
