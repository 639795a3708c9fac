package resolver

import (
	"encoding/binary"
	"errors"

	"github.com/fleetdns/fleetdns/cache"
	"github.com/fleetdns/fleetdns/policy"
	"github.com/miekg/dns"
)

// query is a client's query, parsed just far enough to answer it: header, question and OPT.
// Parsing does not allocate; name points into the packet.
type query struct {
	id       uint16
	opcode   int
	rd, cd   bool
	ad       bool
	name     []byte // the question name as sent (0x20 case kept)
	lower    [255]byte
	qtype    uint16
	qclass   uint16
	edns     bool
	do       bool
	version  uint8
	udpSize  uint16
	nsid     bool // the client asked for the name server ID (RFC 5001)
	lowerLen int
}

var (
	// errDrop marks a packet not worth an answer: too short to echo, or itself a response.
	errDrop = errors.New("drop")
	// errFormat marks a query answered with FORMERR.
	errFormat = errors.New("malformed query")
	// errNotImpl marks a query answered with NOTIMP (an opcode other than QUERY).
	errNotImpl = errors.New("opcode not implemented")
)

// parseQuery parses pkt into q. It accepts exactly one question and at most one additional
// record, which must be OPT; anything else is FORMERR.
func parseQuery(pkt []byte, q *query) error {
	if len(pkt) < 12 || pkt[2]&0x80 != 0 {
		return errDrop
	}
	q.id = binary.BigEndian.Uint16(pkt)
	q.opcode = int(pkt[2]>>3) & 0xf
	q.rd = pkt[2]&0x01 != 0
	q.ad = pkt[3]&0x20 != 0
	q.cd = pkt[3]&0x10 != 0
	q.name = nil
	q.edns, q.do, q.nsid, q.version, q.udpSize = false, false, false, 0, 0
	if q.opcode != dns.OpcodeQuery {
		return errNotImpl
	}
	qd, an, ns, ar := binary.BigEndian.Uint16(pkt[4:]), binary.BigEndian.Uint16(pkt[6:]),
		binary.BigEndian.Uint16(pkt[8:]), binary.BigEndian.Uint16(pkt[10:])
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return errFormat
	}
	off := 12
	n := 0
	for {
		if off >= len(pkt) {
			return errFormat
		}
		l := int(pkt[off])
		if l&0xc0 != 0 || n+l+1 > len(q.lower) || off+l+1 > len(pkt) {
			return errFormat // compression in a question, a bad label type, or too long
		}
		q.lower[n] = byte(l)
		for i := 1; i <= l; i++ {
			c := pkt[off+i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			q.lower[n+i] = c
		}
		n += l + 1
		off += l + 1
		if l == 0 {
			break
		}
	}
	q.name = pkt[12:off]
	q.lowerLen = n
	if off+4 > len(pkt) {
		return errFormat
	}
	q.qtype = binary.BigEndian.Uint16(pkt[off:])
	q.qclass = binary.BigEndian.Uint16(pkt[off+2:])
	off += 4
	if ar == 1 {
		return parseOPT(pkt[off:], q)
	}
	return nil
}

// parseOPT parses the one additional record, which must be an OPT RR (RFC 6891).
func parseOPT(b []byte, q *query) error {
	if len(b) < 11 || b[0] != 0 || binary.BigEndian.Uint16(b[1:]) != dns.TypeOPT {
		return errFormat
	}
	q.edns = true
	q.udpSize = binary.BigEndian.Uint16(b[3:])
	q.version = b[6]
	q.do = b[7]&0x80 != 0
	rdlen := int(binary.BigEndian.Uint16(b[9:]))
	opts := b[11:]
	if rdlen > len(opts) {
		return errFormat
	}
	opts = opts[:rdlen]
	for len(opts) > 0 {
		if len(opts) < 4 {
			return errFormat
		}
		code, l := binary.BigEndian.Uint16(opts), int(binary.BigEndian.Uint16(opts[2:]))
		if 4+l > len(opts) {
			return errFormat
		}
		if code == dns.EDNS0NSID {
			q.nsid = true
		}
		opts = opts[4+l:]
	}
	return nil
}

func (q *query) lowerName() []byte { return q.lower[:q.lowerLen] }

func (q *query) cacheQuestion() cache.Question {
	return cache.Question{Name: q.lowerName(), Type: q.qtype, Class: q.qclass, DO: q.do, CD: q.cd}
}

func (q *query) policyQuestion() policy.Question {
	return policy.Question{Name: q.lowerName(), Type: q.qtype, Class: q.qclass}
}

// reply describes how a stored answer is patched for this client.
func (q *query) reply(tcp bool) cache.Reply {
	r := cache.Reply{ID: q.id, Name: q.name, RD: q.rd, CD: q.cd, AD: q.ad || q.do, EDNS: q.edns, DO: q.do}
	if !tcp {
		r.MaxSize = 512
		if q.edns {
			r.MaxSize = int(min(max(q.udpSize, 512), cache.EDNSBufferSize))
		}
	}
	return r
}

// appendError appends a header-only reply with rcode, echoing ID, opcode and RD: used where the
// question itself cannot be trusted (FORMERR, NOTIMP). RA is set only in replies to QUERY: RFC
// 1035 defines it for queries, and a NOTIMP to a NOTIFY, UPDATE or STATUS that claimed recursion
// would tell a primary or an updater something about a service it never asked for.
func appendError(dst []byte, pkt []byte, rcode int) []byte {
	var ra byte
	if int(pkt[2]>>3)&0xf == dns.OpcodeQuery {
		ra = 0x80
	}
	return append(dst, pkt[0], pkt[1], 0x80|pkt[2]&0x79, ra|byte(rcode), 0, 0, 0, 0, 0, 0, 0, 0)
}

// question returns the question in presentation form, for the slow path.
func (q *query) question() dns.Question {
	name, _, err := dns.UnpackDomainName(q.lowerName(), 0)
	if err != nil {
		name = "."
	}
	return dns.Question{Name: name, Qtype: q.qtype, Qclass: q.qclass}
}
