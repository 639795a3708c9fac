package cache

import (
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// StaleTTL is the TTL of records in a stale answer (RFC 8767 section 4 suggests 30 seconds).
const StaleTTL = 30

// Header bits, in the two flag bytes of the DNS header.
const (
	flagQR = 0x80 // byte 2
	flagAA = 0x04 // byte 2
	flagTC = 0x02 // byte 2
	flagRD = 0x01 // byte 2
	flagRA = 0x80 // byte 3
	flagAD = 0x20 // byte 3
	flagCD = 0x10 // byte 3
)

// EDNSBufferSize is the UDP payload size fleetdns advertises and accepts (DNS flag day 2020).
const EDNSBufferSize = 1232

// Entry is one whole answer to one question, stored packed so that a cache hit is a copy and a
// few patches rather than an unpack and a pack.
type Entry struct {
	key     []byte    // lowercased wire name, type, class, flag byte: guards against hash collisions
	msg     []byte    // packed answer without OPT, ID 0, question name lowercased
	nameLen int       // length of the question name in msg, starting at offset 12
	ttls    []ttlSlot // every TTL field in msg, with the TTL it had when stored
	rrsets  []rrset   // address RRsets that round-robin rotates
	rdata   []uint16  // offsets of the rdata of the records in rrsets
	stored  time.Time
	ttl     uint32 // lifetime in seconds: the smallest TTL of the stored records
	flags2  byte   // AA as stored
	flags3  byte   // AD and RCODE as stored
	rcode   int

	prefetching atomic.Bool   // set by the one hit that starts a prefetch
	lastRetry   atomic.Int64  // unix nanos of the last stale refresh attempt
	rotation    atomic.Uint32 // round-robin position
}

type ttlSlot struct {
	off uint16
	ttl uint32
}

type rrset struct {
	first, count uint16 // indexes into Entry.rdata
	size         uint16 // rdata length, equal for every record of an address RRset
}

// Rcode is the response code of the stored answer.
func (e *Entry) Rcode() int { return e.rcode }

// TTL is the lifetime the entry was stored with.
func (e *Entry) TTL() time.Duration { return time.Duration(e.ttl) * time.Second }

// Stored is when the answer was stored.
func (e *Entry) Stored() time.Time { return e.stored }

// Negative reports whether the entry is an NXDOMAIN or NODATA answer.
func (e *Entry) Negative() bool {
	return e.rcode == dns.RcodeNameError || (e.rcode == dns.RcodeSuccess && binary.BigEndian.Uint16(e.msg[6:]) == 0)
}

// Msg unpacks the stored answer, for slow paths such as cache dumps and tests.
func (e *Entry) Msg() (*dns.Msg, error) {
	m := new(dns.Msg)
	return m, m.Unpack(e.msg)
}

// ClaimRetry reports whether a stale refresh may start now: at most one per interval, so that a
// dead upstream is not asked again for every client query that gets the stale answer.
func (e *Entry) ClaimRetry(now time.Time, interval time.Duration) bool {
	last := e.lastRetry.Load()
	if last != 0 && now.UnixNano()-last < int64(interval) {
		return false
	}
	return e.lastRetry.CompareAndSwap(last, now.UnixNano())
}

// Reply describes the client's query, whose details the stored answer is patched with.
type Reply struct {
	ID      uint16
	Name    []byte // the question name exactly as the client sent it (0x20 case preserved)
	RD, CD  bool
	AD      bool // the client asked for AD (or DO), so it may be passed on
	EDNS    bool // the client sent OPT, so the reply carries one
	DO      bool
	MaxSize int // largest reply the transport carries; 0 means no limit (TCP)
	Stale   bool
	Rotate  bool // rotate address RRsets (rrset_roundrobin)
}

// AppendAnswer appends the stored answer, patched for the client's query, to dst. It does not
// allocate when dst has room.
func (e *Entry) AppendAnswer(dst []byte, r *Reply, now time.Time) []byte {
	start := len(dst)
	dst = append(dst, e.msg...)
	out := dst[start:]
	binary.BigEndian.PutUint16(out, r.ID)
	f2 := byte(flagQR) | e.flags2&flagAA
	if r.RD {
		f2 |= flagRD
	}
	f3 := byte(flagRA) | e.flags3&0x0f
	if r.AD {
		f3 |= e.flags3 & flagAD
	}
	if r.CD {
		f3 |= flagCD
	}
	out[2], out[3] = f2, f3
	if len(r.Name) == e.nameLen {
		copy(out[12:], r.Name)
	}

	age := uint32(0)
	if d := now.Sub(e.stored); d > 0 {
		age = uint32(d / time.Second)
	}
	for _, s := range e.ttls {
		ttl := uint32(StaleTTL)
		if !r.Stale {
			ttl = 0
			if s.ttl > age {
				ttl = s.ttl - age
			}
		}
		binary.BigEndian.PutUint32(out[s.off:], ttl)
	}
	if r.Rotate && len(e.rrsets) > 0 {
		e.rotate(out)
	}

	if r.MaxSize > 0 {
		limit := r.MaxSize
		if r.EDNS {
			limit -= optLen(r.Stale)
		}
		if len(out) > limit {
			// Too big for this transport: header and question with TC, and the client retries
			// over TCP (RFC 1035 section 4.2.1, RFC 7766).
			dst = dst[:start+12+e.nameLen+4]
			out = dst[start:]
			out[2] |= flagTC
			clear(out[6:12])
		}
	}
	if r.EDNS {
		dst = appendOPT(dst, r.DO, r.Stale)
		out = dst[start:]
		binary.BigEndian.PutUint16(out[10:], binary.BigEndian.Uint16(out[10:])+1)
	}
	return dst
}

// rotate moves each address RRset's rdata by one position per answer. Only rdata moves, never
// names, so compression pointers stay valid.
func (e *Entry) rotate(out []byte) {
	k := e.rotation.Add(1)
	for _, set := range e.rrsets {
		n := uint32(set.count)
		for i := uint32(0); i < n; i++ {
			from := e.rdata[uint32(set.first)+(i+k)%n]
			to := e.rdata[uint32(set.first)+i]
			copy(out[to:to+set.size], e.msg[from:from+set.size])
		}
	}
}

func optLen(stale bool) int {
	if stale {
		return 11 + 6
	}
	return 11
}

// appendOPT appends an OPT RR (RFC 6891) and, for a stale answer, Extended DNS Error 3
// "Stale Answer" (RFC 8914).
func appendOPT(dst []byte, do, stale bool) []byte {
	var flags byte
	if do {
		flags = 0x80
	}
	dst = append(dst, 0, 0, 41, EDNSBufferSize>>8, EDNSBufferSize&0xff, 0, 0, flags, 0)
	if !stale {
		return append(dst, 0, 0)
	}
	return append(dst, 0, 6, 0, 15, 0, 2, 0, 3)
}

var errShort = errors.New("truncated message")

// index walks a packed message and records where every TTL field is, and the rdata offsets of
// address RRsets in the answer section.
func (e *Entry) index() error {
	msg := e.msg
	if len(msg) < 12 {
		return errShort
	}
	qd := int(binary.BigEndian.Uint16(msg[4:]))
	counts := [3]int{
		int(binary.BigEndian.Uint16(msg[6:])),
		int(binary.BigEndian.Uint16(msg[8:])),
		int(binary.BigEndian.Uint16(msg[10:])),
	}
	off := 12
	for i := 0; i < qd; i++ {
		end, err := skipName(msg, off)
		if err != nil {
			return err
		}
		if i == 0 {
			e.nameLen = end - off
		}
		off = end + 4
	}
	for section, n := range counts {
		var prevType uint16
		var prevName int = -1
		for i := 0; i < n; i++ {
			nameOff := off
			end, err := skipName(msg, off)
			if err != nil {
				return err
			}
			if end+10 > len(msg) {
				return errShort
			}
			typ := binary.BigEndian.Uint16(msg[end:])
			ttlOff := end + 4
			rdlen := int(binary.BigEndian.Uint16(msg[end+8:]))
			rdOff := end + 10
			if rdOff+rdlen > len(msg) || rdOff > 0xffff {
				return errShort
			}
			e.ttls = append(e.ttls, ttlSlot{off: uint16(ttlOff), ttl: binary.BigEndian.Uint32(msg[ttlOff:])})
			if section == 0 && (typ == dns.TypeA || typ == dns.TypeAAAA) {
				same := prevType == typ && prevName >= 0 && sameName(msg, prevName, nameOff)
				if same {
					e.rrsets[len(e.rrsets)-1].count++
				} else {
					e.rrsets = append(e.rrsets, rrset{first: uint16(len(e.rdata)), count: 1, size: uint16(rdlen)})
				}
				e.rdata = append(e.rdata, uint16(rdOff))
				prevType, prevName = typ, nameOff
			} else {
				prevType, prevName = 0, -1
			}
			off = rdOff + rdlen
		}
	}
	// Single-record sets need no rotation.
	sets := e.rrsets[:0]
	for _, s := range e.rrsets {
		if s.count > 1 {
			sets = append(sets, s)
		}
	}
	e.rrsets = sets
	return nil
}

// skipName returns the offset just past the (possibly compressed) name at off.
func skipName(msg []byte, off int) (int, error) {
	for {
		if off >= len(msg) {
			return 0, errShort
		}
		c := int(msg[off])
		switch {
		case c == 0:
			return off + 1, nil
		case c&0xc0 == 0xc0:
			if off+2 > len(msg) {
				return 0, errShort
			}
			return off + 2, nil
		case c&0xc0 != 0:
			return 0, errors.New("bad label type")
		default:
			off += c + 1
		}
	}
}

// sameName compares two names in msg, following compression pointers, case-insensitively.
func sameName(msg []byte, a, b int) bool {
	for hops := 0; hops < 64; hops++ {
		a, b = follow(msg, a), follow(msg, b)
		if a < 0 || b < 0 || a >= len(msg) || b >= len(msg) {
			return false
		}
		if a == b {
			return true
		}
		la, lb := int(msg[a]), int(msg[b])
		if la != lb || a+1+la > len(msg) || b+1+lb > len(msg) {
			return false
		}
		if la == 0 {
			return true
		}
		if !equalFold(msg[a+1:a+1+la], msg[b+1:b+1+lb]) {
			return false
		}
		a, b = a+1+la, b+1+lb
	}
	return false
}

func follow(msg []byte, off int) int {
	for hops := 0; off+1 < len(msg) && msg[off]&0xc0 == 0xc0; hops++ {
		if hops > 16 {
			return -1
		}
		off = int(binary.BigEndian.Uint16(msg[off:]) & 0x3fff)
	}
	return off
}

func equalFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
