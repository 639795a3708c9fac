package policy

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/miekg/dns"
)

// zoneType follows unbound's local-zone types (unbound.conf(5)).
type zoneType int

const (
	static          zoneType = iota // local data, else NODATA where the name exists, else NXDOMAIN
	transparent                     // local data, else NODATA where the name has data, else resolve
	typetransparent                 // local data for the exact name and type, else resolve
	redirect                        // every name under the apex gets the apex's data
	refuse                          // local data, else REFUSED
	alwaysNXDomain                  // NXDOMAIN for every name, local data ignored
)

func parseZoneType(s string) (zoneType, error) {
	switch s {
	case "static":
		return static, nil
	case "transparent":
		return transparent, nil
	case "typetransparent":
		return typetransparent, nil
	case "redirect":
		return redirect, nil
	case "refuse":
		return refuse, nil
	case "always_nxdomain":
		return alwaysNXDomain, nil
	}
	return 0, fmt.Errorf("type %q is not one of static, transparent, typetransparent, redirect, refuse, always_nxdomain", s)
}

// zone is a local zone: an apex, a type and the records it holds.
type zone struct {
	apex  []byte // wire format, lowercased
	name  string // presentation, lowercased, fully qualified
	typ   zoneType
	soa   *dns.SOA
	data  map[string]map[uint16][]dns.RR // by wire name, then type
	names map[string]bool                // every name with data and every empty non-terminal

	builtin bool // an RFC 6761 zone, which the operator's zones replace
}

// checkRdata rejects a record that parses but cannot be served: one without rdata (the zone
// parser allows it, for dynamic updates, but served it would be an A or MX of zero bytes), one
// whose data cannot be encoded, or one whose owner name has a raw byte outside ASCII.
func checkRdata(rr dns.RR) error {
	// A raw byte above 0x7f in a name (the parser keeps it as it is) would not survive the
	// case folding of names (FuzzZoneFile found it growing past a label's 63 bytes); RFC 4343
	// folds ASCII only, and a zone file writes such a byte as \DDD.
	for _, c := range []byte(rr.Header().Name) {
		if c > 0x7f {
			return fmt.Errorf("name %q has a byte outside ASCII: write it as \\DDD", rr.Header().Name)
		}
	}
	if newRR, ok := dns.TypeToRR[rr.Header().Rrtype]; ok {
		empty := newRR()
		*empty.Header() = *rr.Header()
		if dns.IsDuplicate(rr, empty) {
			return fmt.Errorf("%s record without data", dns.TypeToString[rr.Header().Rrtype])
		}
	}
	// Some data the parser takes cannot be put on the wire (an odd number of hex digits in an
	// EID, a non-hex digit in an unknown type's \# data; FuzzZoneFile found both): every
	// answer with the record would fail to pack.
	buf := make([]byte, dns.Len(rr)+64)
	if _, err := dns.PackRR(rr, buf, 0, nil, false); err != nil {
		return fmt.Errorf("%s record cannot be encoded: %v", dns.TypeToString[rr.Header().Rrtype], err)
	}
	return nil
}

func newZone(apex string, typ zoneType) *zone {
	apex = dns.CanonicalName(apex)
	return &zone{apex: wireName(apex), name: apex, typ: typ,
		data: make(map[string]map[uint16][]dns.RR), names: make(map[string]bool)}
}

func (z *zone) add(rr dns.RR) {
	h := rr.Header()
	h.Name = dns.CanonicalName(h.Name)
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

// addLocal builds the operator's zones: declared local zones, local data (in the zone it falls
// under, or a transparent zone of its own name, as unbound does), and zone files (each a static
// zone at its SOA's name unless declared otherwise).
func (p *Policy) addLocal(cfg Config) error {
	for _, lz := range cfg.LocalZones {
		typ, _ := parseZoneType(lz.Type) // Validate checked it
		z := newZone(lz.Name, typ)
		p.zones[string(z.apex)] = z
	}
	// Zone files first: local data then lands in the zones they make rather than in zones of
	// its own that would hide them.
	for _, pattern := range cfg.LocalDataFiles {
		files, err := filepath.Glob(pattern)
		if err != nil {
			return fmt.Errorf("local_data_files: %q: %w", pattern, err)
		}
		if len(files) == 0 && !strings.ContainsAny(pattern, "*?[") {
			return fmt.Errorf("local_data_files: %s: no such file", pattern) // a typo, not an empty glob
		}
		for _, file := range files {
			if err := p.addZoneFile(file); err != nil {
				return err
			}
		}
	}
	for i, s := range cfg.LocalData {
		rr, err := dns.NewRR(s)
		if err == nil && rr != nil {
			err = checkRdata(rr)
		}
		if err != nil || rr == nil {
			return fmt.Errorf("local_data[%d]: %q: %v", i, s, err)
		}
		p.zoneForData(rr.Header().Name).add(rr)
	}
	return nil
}

// zoneForData returns the local zone owner falls under, creating a transparent zone at owner if
// there is none.
func (p *Policy) zoneForData(owner string) *zone {
	owner = dns.CanonicalName(owner)
	if z := p.zoneFor(wireName(owner)); z != nil {
		return z
	}
	z := newZone(owner, transparent)
	p.zones[string(z.apex)] = z
	return z
}

func (p *Policy) addZoneFile(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("local_data_files: %w", err)
	}
	defer f.Close()
	return p.addZone(f, file)
}

// addZone reads one zone file's records from r; file names it in errors.
func (p *Policy) addZone(r io.Reader, file string) error {
	zp := dns.NewZoneParser(r, "", file)
	var rrs []dns.RR
	var apex string
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if err := checkRdata(rr); err != nil {
			return fmt.Errorf("local_data_files: %s: %s: %w", file, rr.Header().Name, err)
		}
		if rr.Header().Rrtype == dns.TypeSOA && apex == "" {
			apex = dns.CanonicalName(rr.Header().Name)
		}
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return fmt.Errorf("local_data_files: %w", err) // names file and line
	}
	if apex == "" {
		return fmt.Errorf("local_data_files: %s: no SOA record, so no zone apex", file)
	}
	// A zone declared in local_zones keeps its type and the file fills it; a built-in zone of the
	// same name is replaced; another file's zone of the same apex is merged into.
	z, exists := p.zones[string(wireName(apex))]
	if !exists || z.builtin {
		z = newZone(apex, static)
	}
	for _, rr := range rrs {
		if !dns.IsSubDomain(apex, dns.CanonicalName(rr.Header().Name)) {
			return fmt.Errorf("local_data_files: %s: %s is outside the zone %s", file, rr.Header().Name, apex)
		}
		z.add(rr)
	}
	p.zones[string(z.apex)] = z
	return nil
}

// answer applies the zone's type to q; Pass means resolve normally.
func (z *zone) answer(q *Question) Verdict {
	if z.typ == alwaysNXDomain {
		return negative(q, dns.RcodeNameError, z.soa, ReasonLocalNXDomain)
	}
	name := q.Name
	if z.typ == redirect {
		name = z.apex
	}
	types := z.data[string(name)]
	if rrs := types[q.Type]; len(rrs) > 0 {
		m := reply(q)
		for _, rr := range rrs {
			rr = dns.Copy(rr)
			rr.Header().Name = m.Question[0].Name
			m.Answer = append(m.Answer, rr)
		}
		return Verdict{Action: Answer, Msg: m, Reason: ReasonLocalData}
	}
	if cnames := types[dns.TypeCNAME]; len(cnames) > 0 && q.Type != dns.TypeCNAME {
		m := reply(q)
		c := dns.Copy(cnames[0]).(*dns.CNAME)
		c.Hdr.Name = m.Question[0].Name
		m.Answer = append(m.Answer, c)
		return Verdict{Action: Chase, Msg: m, Target: dns.CanonicalName(c.Target), Reason: ReasonLocalData}
	}
	switch z.typ {
	case refuse:
		return Verdict{Action: Refuse, Reason: ReasonLocalRefuse}
	case transparent:
		if len(types) == 0 {
			return Verdict{}
		}
		return negative(q, dns.RcodeSuccess, z.soa, ReasonLocalNoData)
	case typetransparent:
		return Verdict{}
	}
	if z.typ == redirect || z.names[string(name)] {
		return negative(q, dns.RcodeSuccess, z.soa, ReasonLocalNoData)
	}
	return negative(q, dns.RcodeNameError, z.soa, ReasonLocalNXDomain)
}

// builtinZones are the locally served names of RFC 6761 section 6.3 and their reverse zones,
// with the records unbound serves for them by default.
func builtinZones() []*zone {
	const soa = "10800 IN SOA localhost. nobody.invalid. 1 3600 1200 604800 10800"
	v6loop := "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa."
	zones := []struct {
		apex    string
		typ     zoneType
		records []string
	}{
		{"localhost.", redirect, []string{"localhost. " + soa, "localhost. 10800 IN NS localhost.",
			"localhost. 10800 IN A 127.0.0.1", "localhost. 10800 IN AAAA ::1"}},
		{"127.in-addr.arpa.", static, []string{"127.in-addr.arpa. " + soa, "127.in-addr.arpa. 10800 IN NS localhost.",
			"1.0.0.127.in-addr.arpa. 10800 IN PTR localhost."}},
		{v6loop, static, []string{v6loop + " " + soa, v6loop + " 10800 IN NS localhost.", v6loop + " 10800 IN PTR localhost."}},
	}
	var out []*zone
	for _, zz := range zones {
		z := newZone(zz.apex, zz.typ)
		z.builtin = true
		for _, s := range zz.records {
			rr, err := dns.NewRR(s)
			if err != nil {
				panic("builtin record " + s + ": " + err.Error()) // a programming error here
			}
			z.add(rr)
		}
		out = append(out, z)
	}
	return out
}

func wireName(name string) []byte {
	buf := make([]byte, 256)
	n, err := dns.PackDomainName(dns.Fqdn(strings.ToLower(name)), buf, 0, nil, false)
	if err != nil {
		return []byte{0} // names here come from parsed records or validated config
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
