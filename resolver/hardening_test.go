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
