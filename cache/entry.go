package cache

import (
	"encoding/binary"
	"errors"
	"slices"
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

// MaxMessageSize is the largest DNS message: over TCP its length is a 2-byte prefix.
const MaxMessageSize = 0xffff

// EDNSBufferSize is the UDP payload size fleetdns advertises and accepts (DNS flag day 2020).
const EDNSBufferSize = 1232

// Entry is one whole answer to one question, stored packed so that a cache hit is a copy and a
// few patches rather than an unpack and a pack. Everything variable lives in one byte slice, so
// an entry costs two heap objects and the garbage collector follows one pointer:
//
//	data = key | msg | TTL slots | rrsets | rdata offsets
//
// key is the lowercased wire name, type, class and flag byte (it guards against hash
// collisions, and its name is the stored question name); msg is the packed answer without OPT,
// ID 0 and without the question name, which is written from the client's query on the way out;
// a TTL slot is the offset of a TTL field in the answer as sent (big-endian uint16) and the TTL
// stored there (uint32); an rrset is first, count and rdata size (uint16 each) of an address
// RRset that round-robin rotates; rdata offsets are positions in the answer as sent.
type Entry struct {
	data    []byte
	stored  int64 // nanoseconds since epoch (monotonic)
	ttl     uint32
	keyLen  uint16
	msgLen  uint16
	nTTL    uint16
	nSets   uint16
	nRdata  uint16
	nameLen uint8

	prefetching atomic.Bool   // set by the one hit that starts a prefetch
	lastRetry   atomic.Int64  // when the last stale refresh started, as stored
	rotation    atomic.Uint32 // round-robin position
}

// EntryOverhead is what a stored answer costs beyond its data allocation, for the MaxBytes
// bound: the Entry struct (80-byte size class), its element in the shard's LRU list (80) and
// its map slot (16 bytes at a load of 7/16 to 7/8: 18 to 37). TestEntryOverhead measures it
// as live heap per stored answer minus the data's capacity (runtime.MemStats, 20 000 answers
// of about 100 B, 1 KB and 8 KB, 1000 of 60 KB): 188 to 192 bytes at every size.
const EntryOverhead = 200

// Size is what the answer counts for against the cache's byte bound: its data allocation (the
// packed answer and its index, rounded up to the allocator's size class as the heap holds it)
// plus EntryOverhead.
func (e *Entry) Size() int { return cap(e.data) + EntryOverhead }

// epoch is the base of Entry times: differences of time.Now() values use the monotonic clock,
// so a wall-clock step does not expire or revive the whole cache.
var epoch = time.Now()

func since(t time.Time) int64 { return int64(t.Sub(epoch)) }

const (
	ttlSlotSize = 6
	rrsetSize   = 6
)

func (e *Entry) key() []byte { return e.data[:e.keyLen] }
func (e *Entry) msg() []byte { return e.data[e.keyLen : int(e.keyLen)+int(e.msgLen)] }

func (e *Entry) slots() []byte {
	off := int(e.keyLen) + int(e.msgLen)
	return e.data[off : off+int(e.nTTL)*ttlSlotSize]
}

func (e *Entry) sets() []byte {
	off := int(e.keyLen) + int(e.msgLen) + int(e.nTTL)*ttlSlotSize
	return e.data[off : off+int(e.nSets)*rrsetSize]
}

func (e *Entry) rdataOff(i int) int {
	off := int(e.keyLen) + int(e.msgLen) + int(e.nTTL)*ttlSlotSize + int(e.nSets)*rrsetSize + 2*i
	return int(binary.BigEndian.Uint16(e.data[off:]))
}

// Rcode is the response code of the stored answer.
func (e *Entry) Rcode() int { return int(e.data[e.keyLen+3] & 0xf) }

// TTL is the lifetime the entry was stored with.
func (e *Entry) TTL() time.Duration { return time.Duration(e.ttl) * time.Second }

// Stored is when the answer was stored.
func (e *Entry) Stored() time.Time { return epoch.Add(time.Duration(e.stored)) }

// Negative reports whether the entry is an NXDOMAIN or NODATA answer.
func (e *Entry) Negative() bool {
	m := e.msg()
	return e.Rcode() == dns.RcodeNameError || (e.Rcode() == dns.RcodeSuccess && binary.BigEndian.Uint16(m[6:]) == 0)
}

// wire is the answer as stored, with the lowercased question name put back.
func (e *Entry) wire() []byte {
	m := e.msg()
	out := make([]byte, 0, len(m)+int(e.nameLen))
	out = append(out, m[:12]...)
	out = append(out, e.key()[:e.nameLen]...)
	return append(out, m[12:]...)
}

// Msg unpacks the stored answer, for slow paths such as cache dumps and tests.
func (e *Entry) Msg() (*dns.Msg, error) {
	m := new(dns.Msg)
	return m, m.Unpack(e.wire())
}

// ClaimRetry reports whether a stale refresh may start now: at most one per interval, so that a
// dead upstream is not asked again for every client query that gets the stale answer.
func (e *Entry) ClaimRetry(now time.Time, interval time.Duration) bool {
	last, t := e.lastRetry.Load(), since(now)
	if last != 0 && t-last < int64(interval) {
		return false
	}
	return e.lastRetry.CompareAndSwap(last, t)
}

// RetryDue reports, without claiming it, whether ClaimRetry would let a refresh start now. No:
// one runs or ran moments ago, and the stale answer can go out at once.
func (e *Entry) RetryDue(now time.Time, interval time.Duration) bool {
	last := e.lastRetry.Load()
	return last == 0 || since(now)-last >= int64(interval)
}

// Reply describes the client's query, whose details the stored answer is patched with.
type Reply struct {
	ID      uint16
	Name    []byte // the question name exactly as the client sent it (0x20 case preserved)
	RD, CD  bool
	AD      bool // the client asked for AD (or DO), so it may be passed on
	EDNS    bool // the client sent OPT, so the reply carries one
	DO      bool
	MaxSize int // largest reply the transport carries; 0 (TCP) means MaxMessageSize
	Stale   bool
	Rotate  bool   // rotate address RRsets (rrset_roundrobin)
	NSID    []byte // the node's identifier, for a client that asked for it (RFC 5001)
}

// PrefetchFailed lets a later hit start the refresh of e again: the one a hit started failed
// (lost under packet loss, or no slot free), and without another the answer would expire.
func (e *Entry) PrefetchFailed() { e.prefetching.Store(false) }

// AppendAnswer appends the stored answer, patched for the client's query, to dst. It does not
// allocate when dst has room.
func (e *Entry) AppendAnswer(dst []byte, r *Reply, now time.Time) []byte {
	m := e.msg()
	name := r.Name
	if len(name) != int(e.nameLen) {
		name = e.key()[:e.nameLen] // not the question this entry answers; never on the query path
	}
	start := len(dst)
	dst = append(dst, m[:12]...)
	dst = append(dst, name...)
	dst = append(dst, m[12:]...)
	out := dst[start:]
	binary.BigEndian.PutUint16(out, r.ID)
	f2 := byte(flagQR) | m[2]&flagAA
	if r.RD {
		f2 |= flagRD
	}
	f3 := byte(flagRA) | m[3]&0x0f
	if r.AD {
		f3 |= m[3] & flagAD
	}
	if r.CD {
		f3 |= flagCD
	}
	out[2], out[3] = f2, f3

	age := uint32(0)
	if d := since(now) - e.stored; d > 0 {
		age = uint32(d / int64(time.Second))
	}
	slots := e.slots()
	for i := 0; i < len(slots); i += ttlSlotSize {
		off := binary.BigEndian.Uint16(slots[i:])
		stored := binary.BigEndian.Uint32(slots[i+2:])
		ttl := uint32(StaleTTL)
		if !r.Stale {
			ttl = 0
			if stored > age {
				ttl = stored - age
			}
		}
		binary.BigEndian.PutUint32(out[off:], ttl)
	}
	if r.Rotate && e.nSets > 0 {
		e.rotate(out)
	}

	// Every transport has a limit: the client's UDP size, or over TCP the 65 535 bytes of the
	// length prefix (RFC 1035 section 4.2.2). The EDNS options (EDE, NSID) are informational
	// and go first; then the records: header and question with TC, and a UDP client retries
	// over TCP (RFC 1035 section 4.2.1, RFC 7766).
	limit := MaxMessageSize
	if r.MaxSize > 0 && r.MaxSize < limit {
		limit = r.MaxSize
	}
	opts := true
	if r.EDNS {
		if len(out)+optLen(r, true) > limit && len(out)+optLen(r, false) <= limit {
			opts = false
		}
		limit -= optLen(r, opts)
	}
	if len(out) > limit {
		dst = dst[:start+12+int(e.nameLen)+4]
		out = dst[start:]
		out[2] |= flagTC
		clear(out[6:12])
	}
	if r.EDNS {
		dst = appendOPT(dst, r, opts)
		out = dst[start:]
		binary.BigEndian.PutUint16(out[10:], binary.BigEndian.Uint16(out[10:])+1)
	}
	return dst
}

// rotate moves each address RRset's rdata by one position per answer. Only rdata moves, never
// names, so compression pointers stay valid. out already holds the records in stored order.
func (e *Entry) rotate(out []byte) {
	k := e.rotation.Add(1)
	m := e.msg()
	shift := int(e.nameLen) // stored msg offsets lack the question name
	sets := e.sets()
	for s := 0; s < len(sets); s += rrsetSize {
		first := uint32(binary.BigEndian.Uint16(sets[s:]))
		n := uint32(binary.BigEndian.Uint16(sets[s+2:]))
		size := int(binary.BigEndian.Uint16(sets[s+4:]))
		for i := uint32(0); i < n; i++ {
			from := e.rdataOff(int(first+(i+k)%n)) - shift
			to := e.rdataOff(int(first + i))
			copy(out[to:to+size], m[from:from+size])
		}
	}
}

// optLen is the size of the OPT RR appendOPT writes, with or without its options.
func optLen(r *Reply, opts bool) int {
	n := 11
	if !opts {
		return n
	}
	if r.Stale {
		n += 6
	}
	if len(r.NSID) > 0 {
		n += 4 + len(r.NSID)
	}
	return n
}

// appendOPT appends an OPT RR (RFC 6891) with, if opts, for a stale answer, Extended DNS Error
// 3 "Stale Answer" (RFC 8914) and, when asked for, the name server identifier (RFC 5001).
func appendOPT(dst []byte, r *Reply, opts bool) []byte {
	var flags byte
	if r.DO {
		flags = 0x80
	}
	rdlen := optLen(r, opts) - 11
	dst = append(dst, 0, 0, 41, EDNSBufferSize>>8, EDNSBufferSize&0xff, 0, 0, flags, 0, byte(rdlen>>8), byte(rdlen))
	if !opts {
		return dst
	}
	if r.Stale {
		dst = append(dst, 0, 15, 0, 2, 0, 3)
	}
	if len(r.NSID) > 0 {
		dst = append(dst, 0, 3, byte(len(r.NSID)>>8), byte(len(r.NSID)))
		dst = append(dst, r.NSID...)
	}
	return dst
}

var errShort = errors.New("truncated message")

// newEntry indexes a packed answer (with its question) and lays it out as an Entry: every TTL
// field, and the rdata offsets of address RRsets in the answer section.
func newEntry(key, wire []byte, stored time.Time, ttl uint32) (*Entry, error) {
	if len(wire) < 12 {
		return nil, errShort
	}
	qd := int(binary.BigEndian.Uint16(wire[4:]))
	if qd != 1 {
		return nil, errors.New("answer must have one question")
	}
	counts := [3]int{
		int(binary.BigEndian.Uint16(wire[6:])),
		int(binary.BigEndian.Uint16(wire[8:])),
		int(binary.BigEndian.Uint16(wire[10:])),
	}
	nameEnd, err := skipName(wire, 12)
	if err != nil {
		return nil, err
	}
	nameLen := nameEnd - 12
	if nameLen > 255 || len(wire) > 0xffff || nameEnd+4 > len(wire) {
		return nil, errShort
	}
	var slots, sets, rdata []byte
	type span struct{ first, count, size int }
	var cur []span
	off := nameEnd + 4
	for section, n := range counts {
		var prevType uint16
		prevName := -1
		for i := 0; i < n; i++ {
			nameOff := off
			end, err := skipName(wire, off)
			if err != nil {
				return nil, err
			}
			if end+10 > len(wire) {
				return nil, errShort
			}
			typ := binary.BigEndian.Uint16(wire[end:])
			ttlOff := end + 4
			rdlen := int(binary.BigEndian.Uint16(wire[end+8:]))
			rdOff := end + 10
			if rdOff+rdlen > len(wire) {
				return nil, errShort
			}
			slots = binary.BigEndian.AppendUint16(slots, uint16(ttlOff))
			slots = append(slots, wire[ttlOff:ttlOff+4]...)
			if section == 0 && (typ == dns.TypeA || typ == dns.TypeAAAA) {
				if prevType == typ && prevName >= 0 && sameName(wire, prevName, nameOff) {
					cur[len(cur)-1].count++
				} else {
					cur = append(cur, span{first: len(rdata) / 2, count: 1, size: rdlen})
				}
				rdata = binary.BigEndian.AppendUint16(rdata, uint16(rdOff))
				prevType, prevName = typ, nameOff
			} else {
				prevType, prevName = 0, -1
			}
			off = rdOff + rdlen
		}
	}
	for _, sp := range cur { // single-record sets need no rotation
		if sp.count > 1 {
			sets = binary.BigEndian.AppendUint16(sets, uint16(sp.first))
			sets = binary.BigEndian.AppendUint16(sets, uint16(sp.count))
			sets = binary.BigEndian.AppendUint16(sets, uint16(sp.size))
		}
	}
	if len(sets) == 0 {
		rdata = nil
	}
	msgLen := len(wire) - nameLen
	// slices.Grow rounds the capacity up to the allocator's size class, so that Size counts
	// the bytes the heap really holds (a 60 000-byte answer takes 8 pages, 65 536 bytes).
	data := slices.Grow([]byte(nil), len(key)+msgLen+len(slots)+len(sets)+len(rdata))
	data = append(data, key...)
	data = append(data, wire[:12]...)
	data = append(data, wire[nameEnd:]...)
	data = append(data, slots...)
	data = append(data, sets...)
	data = append(data, rdata...)
	return &Entry{
		data: data, stored: since(stored), ttl: ttl,
		keyLen: uint16(len(key)), msgLen: uint16(msgLen), nameLen: uint8(nameLen),
		nTTL: uint16(len(slots) / ttlSlotSize), nSets: uint16(len(sets) / rrsetSize), nRdata: uint16(len(rdata) / 2),
	}, nil
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
