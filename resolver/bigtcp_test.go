package resolver

import (
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/cache"
	"github.com/miekg/dns"
)

// startBigTXT runs a TCP upstream answering every TXT query with records that pack to between
// lo and hi bytes, or with SERVFAIL while fail is set.
func startBigTXT(t *testing.T, lo, hi int, fail *atomic.Bool) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	srv := &dns.Server{Listener: l, NotifyStartedFunc: func() { close(started) },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(req)
			if fail.Load() {
				m.Rcode = dns.RcodeServerFailure
				w.WriteMsg(m)
				return
			}
			m.Compress = true
			name := req.Question[0].Name
			txt := func(n int) dns.RR {
				return &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
					Txt: []string{strings.Repeat("t", n)}}
			}
			// A record is 13 bytes (compressed owner, fixed fields, text length) plus its text.
			for lo-m.Len() > 2*(13+255) {
				m.Answer = append(m.Answer, txt(255))
			}
			r := lo - m.Len()
			m.Answer = append(m.Answer, txt(r/2-13), txt(r-r/2-13))
			if m.Len() < lo || m.Len() > hi {
				t.Errorf("upstream answer of %d bytes, want %d to %d", m.Len(), lo, hi)
			}
			w.WriteMsg(m)
		})}
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return netip.MustParseAddrPort(l.Addr().String())
}

// tcpQuery writes one framed query for name TXT with EDNS on c and reads one framed reply,
// failing the test on a reply that does not parse.
func tcpQuery(t *testing.T, c net.Conn, id uint16, name string) (*dns.Msg, int) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	m.Id = id
	m.SetEdns0(1232, false)
	pkt, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(pkt))), pkt...)); err != nil {
		t.Fatalf("write query %d: %v", id, err)
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		t.Fatalf("read length of reply %d: %v", id, err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read reply %d (%d bytes): %v", id, len(buf), err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(buf); err != nil {
		t.Fatalf("reply %d of %d bytes does not parse: %v", id, len(buf), err)
	}
	if r.Id != id {
		t.Fatalf("reply ID %d, want %d: the stream is out of step", r.Id, id)
	}
	return r, len(buf)
}

// A TCP reply never exceeds the 65 535 bytes its length prefix can say: a stale answer near that
// size, with its EDE option (RFC 8914) and OPT added, once went out as 65 537 bytes behind a
// prefix of 1 and left the rest of the connection unreadable.
func TestTCPAnswerFitsLengthPrefix(t *testing.T) {
	for _, tc := range []struct {
		name   string
		lo, hi int  // the upstream answer's size
		full   bool // whether the stale reply still carries every record
	}{
		{"room for OPT without EDE", 65520, 65524, true},
		{"no room for OPT", 65525, 65535, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var fail atomic.Bool
			up := startBigTXT(t, tc.lo, tc.hi, &fail)
			s := startServer(t, Config{Forward: []ZoneConfig{{Zone: ".", Upstreams: []netip.AddrPort{up}, Protocol: "tcp"}}},
				testCacheConfig())
			c, err := net.Dial("tcp", s.Addrs()[0].String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const name = "big.example.test."
			fresh, n := tcpQuery(t, c, 1, name)
			if n > 65535 || fresh.Rcode != dns.RcodeSuccess {
				t.Fatalf("fresh reply: %d bytes, rcode %s, want at most 65535, NOERROR", n, dns.RcodeToString[fresh.Rcode])
			}
			records := len(fresh.Answer)

			// Age the cached answer into the stale window and fail the upstream.
			q, e := cachedTXT(t, s, name)
			m, err := e.Msg()
			if err != nil {
				t.Fatal(err)
			}
			old, err := s.cache.Build(&q, m, time.Now().Add(-10*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			s.cache.Put(old)
			fail.Store(true)

			stale, n := tcpQuery(t, c, 2, name)
			if stale.Rcode != dns.RcodeSuccess || n > 65535 {
				t.Fatalf("stale reply: rcode %s, %d bytes, want NOERROR in at most 65535", dns.RcodeToString[stale.Rcode], n)
			}
			if stale.IsEdns0() == nil {
				t.Errorf("stale reply has no OPT; the query had one")
			}
			if tc.full && (stale.Truncated || len(stale.Answer) != records) {
				t.Errorf("stale reply: TC %v with %d records, want all %d", stale.Truncated, len(stale.Answer), records)
			}
			if !tc.full && !stale.Truncated {
				t.Errorf("stale reply of %d bytes without room for its records: TC not set", n)
			}
			if fresh.IsEdns0() == nil && tc.full {
				t.Errorf("fresh reply has no OPT; the query had one")
			}
			// The stream is still in step: the next query on the connection is answered.
			if _, n := tcpQuery(t, c, 3, "other.example.test."); n > 65535 {
				t.Errorf("third reply: %d bytes", n)
			}
		})
	}
}

func cachedTXT(t *testing.T, s *Server, name string) (cache.Question, *cache.Entry) {
	t.Helper()
	q, err := cache.NewQuestion(name, dns.TypeTXT, dns.ClassINET, false, false)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := s.cache.Get(&q, time.Now())
	if e == nil {
		t.Fatalf("%s TXT not cached", name)
	}
	return q, e
}

// The TCP writer never frames a reply its 2-byte length prefix cannot say.
func TestTCPWriterOversizeReply(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	w := &tcpWriter{c: a, timeout: 5 * time.Second}
	resp := make([]byte, 70000)
	resp[0], resp[1], resp[2], resp[3] = 0x12, 0x34, 0x81, 0x80 // ID 0x1234, QR RD, RA
	done := make(chan bool, 1)
	go func() { done <- w.write(resp) }()
	b.SetReadDeadline(time.Now().Add(5 * time.Second))
	var l [2]byte
	if _, err := io.ReadFull(b, l[:]); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(b, buf); err != nil {
		t.Fatal(err)
	}
	if !<-done {
		t.Fatal("write = false, want the connection kept")
	}
	m := new(dns.Msg)
	if err := m.Unpack(buf); err != nil {
		t.Fatalf("reply does not parse: %v", err)
	}
	if m.Id != 0x1234 || !m.Truncated || m.Rcode != dns.RcodeServerFailure || !m.RecursionDesired {
		t.Errorf("oversize reply went out as id %#x TC %v rcode %s RD %v, want 0x1234, TC, SERVFAIL, RD",
			m.Id, m.Truncated, dns.RcodeToString[m.Rcode], m.RecursionDesired)
	}
}
