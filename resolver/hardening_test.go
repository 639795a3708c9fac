package resolver

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// rawExchange sends pkt over UDP to the server and returns the reply, or nil if none comes
// within timeout.
func rawExchange(t *testing.T, s *Server, pkt []byte, timeout time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// TestNotImplementedWithoutRA sends each opcode other than QUERY over a real socket: the reply
// is NOTIMP with ID, opcode and RD echoed and, RA being defined for QUERY only, RA clear. A
// malformed QUERY still gets FORMERR with RA set.
func TestNotImplementedWithoutRA(t *testing.T) {
	s := startServer(t, Config{Forward: forwardTo(startFault(t, "192.0.2.1", 300))}, testCacheConfig())
	for _, tc := range []struct {
		name   string
		opcode int
		rcode  int
		ra     bool
	}{
		{"iquery", dns.OpcodeIQuery, dns.RcodeNotImplemented, false},
		{"status", dns.OpcodeStatus, dns.RcodeNotImplemented, false},
		{"notify", dns.OpcodeNotify, dns.RcodeNotImplemented, false},
		{"update", dns.OpcodeUpdate, dns.RcodeNotImplemented, false},
		{"unassigned opcode 15", 15, dns.RcodeNotImplemented, false},
		{"query without a question", dns.OpcodeQuery, dns.RcodeFormatError, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.Id = 0x4242
			m.Opcode = tc.opcode
			m.RecursionDesired = true
			if tc.opcode != dns.OpcodeQuery {
				m.Question = []dns.Question{{Name: "example.test.", Qtype: dns.TypeSOA, Qclass: dns.ClassINET}}
			}
			pkt, err := m.Pack()
			if err != nil {
				t.Fatal(err)
			}
			resp := rawExchange(t, s, pkt, 2*time.Second)
			if len(resp) < 12 {
				t.Fatalf("reply % x, want a header", resp)
			}
			r := new(dns.Msg)
			if err := r.Unpack(resp); err != nil {
				t.Fatalf("unpack % x: %v", resp, err)
			}
			if r.Id != m.Id || !r.Response || r.Opcode != tc.opcode || !r.RecursionDesired {
				t.Errorf("ID %x QR %v opcode %d RD %v, want ID %x, QR, opcode %d and RD echoed",
					r.Id, r.Response, r.Opcode, r.RecursionDesired, m.Id, tc.opcode)
			}
			if r.Rcode != tc.rcode || r.RecursionAvailable != tc.ra {
				t.Errorf("rcode %s RA %v, want %s RA %v",
					dns.RcodeToString[r.Rcode], r.RecursionAvailable, dns.RcodeToString[tc.rcode], tc.ra)
			}
		})
	}
}

// TestOtherClassesAnsweredLocally asks in class NONE, ANY, HS and an unassigned class, over UDP
// and TCP: each is REFUSED at once and the upstream never sees it. CHAOS names other than the
// identity ones still go upstream.
func TestOtherClassesAnsweredLocally(t *testing.T) {
	up := startFault(t, "192.0.2.1", 300)
	s := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
	for _, tc := range []struct {
		name  string
		class uint16
	}{
		{"none", dns.ClassNONE},
		{"any", dns.ClassANY},
		{"hesiod", dns.ClassHESIOD},
		{"unassigned 42", 42},
	} {
		for _, netw := range []string{"udp", "tcp"} {
			t.Run(tc.name+"/"+netw, func(t *testing.T) {
				start := time.Now()
				r, err := exchange(s, netw, "www.example.test", dns.TypeA, func(m *dns.Msg) {
					m.Question[0].Qclass = tc.class
				})
				if err != nil {
					t.Fatal(err)
				}
				if d := time.Since(start); d > time.Second {
					t.Errorf("answered after %s, want at once", d)
				}
				if r.Rcode != dns.RcodeRefused || len(r.Question) != 1 || r.Question[0].Qclass != tc.class {
					t.Errorf("rcode %s question %v, want REFUSED to the question asked", dns.RcodeToString[r.Rcode], r.Question)
				}
			})
		}
	}
	if n := up.Queries(); n != 0 {
		t.Errorf("upstream got %d queries, want none", n)
	}
	// CHAOS is not forwarded either (TestChaosNotForwarded): the upstream's version.bind
	// would name its software.
}

// TestMinimalANY asks ANY over UDP and TCP, with and without DO: the answer is one HINFO
// "RFC8482" "" record (RFC 8482 section 4.2) made locally, no upstream is asked, and repeats
// are cache hits.
func TestMinimalANY(t *testing.T) {
	up := startFault(t, "192.0.2.1", 300)
	s := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
	for _, tc := range []struct {
		name string
		netw string
		do   bool
	}{
		{"udp", "udp", false},
		{"udp again", "udp", false},
		{"tcp", "tcp", false},
		{"udp with DO", "udp", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := exchange(s, tc.netw, "Www.Example.test", dns.TypeANY, func(m *dns.Msg) {
				if tc.do {
					m.SetEdns0(1232, true)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if r.Rcode != dns.RcodeSuccess || !r.RecursionAvailable || r.AuthenticatedData || len(r.Answer) != 1 {
				t.Fatalf("rcode %s RA %v AD %v answer %v, want NOERROR, RA, no AD and one record",
					dns.RcodeToString[r.Rcode], r.RecursionAvailable, r.AuthenticatedData, r.Answer)
			}
			h, ok := r.Answer[0].(*dns.HINFO)
			if !ok || h.Cpu != "RFC8482" || h.Os != "" || h.Hdr.Name != "Www.Example.test." ||
				h.Hdr.Ttl > anyTTL || h.Hdr.Ttl < anyTTL-60 {
				t.Errorf("answer %v, want Www.Example.test. %d IN HINFO \"RFC8482\" \"\"", r.Answer[0], anyTTL)
			}
		})
	}
	if n := up.Queries(); n != 0 {
		t.Errorf("upstream got %d queries, want none", n)
	}
	// The first query of each DO setting made the answer; the others were hits.
	if got := s.Stats.Hits(); got != 2 {
		t.Errorf("cache hits %d, want 2", got)
	}
}
