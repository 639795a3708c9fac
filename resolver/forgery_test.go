package resolver

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/fleetdns/fleetdns/bench/faultdns"
	"github.com/fleetdns/fleetdns/cache"
	"github.com/miekg/dns"
)

// rawUpstream is a test upstream on a bare UDP socket, so that a test controls every packet it
// sends: handle gets each query and the stub's query socket it came from, and decides what goes
// back (nil: the true answer). It plays the attacker's accomplice where an attack needs to know
// the stub's port or ID; the stub must hold up even so.
type rawUpstream struct {
	conn    *net.UDPConn
	Addr    netip.AddrPort
	ip      net.IP // the A record of every true answer
	handle  func(u *rawUpstream, req *dns.Msg, stub netip.AddrPort)
	queries atomic.Int64
}

func startRaw(t *testing.T, ip string, handle func(u *rawUpstream, req *dns.Msg, stub netip.AddrPort)) *rawUpstream {
	t.Helper()
	c := listenAt(t, "127.0.0.1:0")
	u := &rawUpstream{conn: c, Addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), ip: net.ParseIP(ip), handle: handle}
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if err != nil {
				return // closed
			}
			req := new(dns.Msg)
			if req.Unpack(buf[:n]) != nil || len(req.Question) != 1 {
				continue
			}
			u.queries.Add(1)
			if u.handle == nil {
				u.send(t, c, u.answer(req), from)
			} else {
				u.handle(u, req, from)
			}
		}
	})
	t.Cleanup(func() { c.Close(); wg.Wait() })
	return u
}

// listenAt opens a UDP socket on addr for the duration of the test.
func listenAt(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// answer is the true answer to req: A ip for an A query, NODATA otherwise.
func (u *rawUpstream) answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	q := req.Question[0]
	if q.Qtype == dns.TypeA {
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: u.ip}}
	}
	return m
}

// send packs m and sends it from c to the stub's socket. Errors go to t.Error: this runs off the
// test goroutine.
func (u *rawUpstream) send(t *testing.T, c *net.UDPConn, m *dns.Msg, to netip.AddrPort) {
	b, err := m.Pack()
	if err != nil {
		t.Errorf("pack %v: %v", m, err)
		return
	}
	sendRaw(t, c, b, to)
}

func sendRaw(t *testing.T, c *net.UDPConn, b []byte, to netip.AddrPort) {
	if _, err := c.WriteToUDPAddrPort(b, to); err != nil {
		t.Errorf("send to %s: %v", to, err)
	}
}

// forged is what every attack wants believed: the answer to req, with the attacker's address.
func forged(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	q := req.Question[0]
	m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 86400},
		A: net.IP(faultdns.SpoofIP.AsSlice())}}
	return m
}

// cachedRecords returns every record the cache holds, in all three sections, as text: what
// ctl cache-dump shows, and the additional section too.
func cachedRecords(t *testing.T, s *Server) []string {
	t.Helper()
	var out []string
	s.Cache().Range(func(q cache.Question, e *cache.Entry) bool {
		m, err := e.Msg()
		if err != nil {
			t.Errorf("cached answer to %s does not unpack: %v", wireToString(q.Name), err)
			return true
		}
		for _, rr := range append(append(m.Answer, m.Ns...), m.Extra...) {
			out = append(out, rr.String())
		}
		return true
	})
	return out
}

// assertClean fails if any answer given or any record cached carries a forged string.
func assertClean(t *testing.T, s *Server, replies []*dns.Msg, forgeries ...string) {
	t.Helper()
	for _, r := range replies {
		for _, rr := range append(append(r.Answer, r.Ns...), r.Extra...) {
			for _, f := range forgeries {
				if strings.Contains(strings.ToLower(rr.String()), f) {
					t.Errorf("reply to %s carries forged %s", r.Question[0].Name, rr)
				}
			}
		}
	}
	for _, rr := range cachedRecords(t, s) {
		for _, f := range forgeries {
			if strings.Contains(strings.ToLower(rr), f) {
				t.Errorf("cache holds forged %s", rr)
			}
		}
	}
}

// Forged answers race the true one: each attack sends its packets at the stub's query socket
// before the upstream answers, getting everything right but one thing, which the stub must
// check. The attacker is told the stub's port and, where it says so, the query's ID and
// question: more than an off-path attacker knows, so each check is shown to hold on its own.
// Every forged packet is read before the true answer and must be counted as mismatched.
func TestForgedAnswersRace(t *testing.T) {
	// An attacker on another address of the upstream's host, same port.
	other := func(t *testing.T, up *rawUpstream) *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.0.2"), Port: int(up.Addr.Port())})
		if err != nil {
			t.Skipf("no second loopback address: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, up *rawUpstream) *net.UDPConn // the attacker's socket; nil: the upstream's own (a spoofed source)
		attack  func(t *testing.T, up *rawUpstream, c *net.UDPConn, req *dns.Msg, stub netip.AddrPort)
		want    uint64 // mismatched packets
	}{
		{
			name:    "right ID and question from another address (127.0.0.2), same port",
			prepare: other,
			attack: func(t *testing.T, up *rawUpstream, c *net.UDPConn, req *dns.Msg, stub netip.AddrPort) {
				up.send(t, c, forged(req), stub)
			},
			want: 1,
		},
		{
			name:    "right ID and question from the upstream's address, another port",
			prepare: func(t *testing.T, up *rawUpstream) *net.UDPConn { return listenAt(t, "127.0.0.1:0") },
			attack: func(t *testing.T, up *rawUpstream, c *net.UDPConn, req *dns.Msg, stub netip.AddrPort) {
				up.send(t, c, forged(req), stub)
			},
			want: 1,
		},
		{
			name: "a flood of guessed IDs, every one wrong",
			attack: func(t *testing.T, up *rawUpstream, c *net.UDPConn, req *dns.Msg, stub netip.AddrPort) {
				m := forged(req)
				for i := range 32 {
					m.Id = req.Id + 1 + uint16(i)*2039 // never req.Id: 2039*31 < 65535
					up.send(t, c, m, stub)
				}
			},
			want: 32,
		},
		{
			name: "right ID, another name",
			attack: func(t *testing.T, up *rawUpstream, c *net.UDPConn, req *dns.Msg, stub netip.AddrPort) {
				m := forged(req)
				m.Question[0].Name = "spoofed." + m.Question[0].Name
				up.send(t, c, m, stub)
			},
			want: 1,
		},
		{
			name: "right ID, another type",
			attack: func(t *testing.T, up *rawUpstream, c *net.UDPConn, req *dns.Msg, stub netip.AddrPort) {
				m := forged(req)
				m.Question[0].Qtype = dns.TypeAAAA
				up.send(t, c, m, stub)
			},
			want: 1,
		},
		{
			name: "right ID, another class",
			attack: func(t *testing.T, up *rawUpstream, c *net.UDPConn, req *dns.Msg, stub netip.AddrPort) {
				m := forged(req)
				m.Question[0].Qclass = dns.ClassCHAOS
				up.send(t, c, m, stub)
			},
			want: 1,
		},
		{
			name: "right ID, the question asked and another one",
			attack: func(t *testing.T, up *rawUpstream, c *net.UDPConn, req *dns.Msg, stub netip.AddrPort) {
				m := forged(req)
				m.Question = append(m.Question, dns.Question{Name: "victim.example.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
				up.send(t, c, m, stub)
			},
			want: 1,
		},
		{
			name: "right ID, no question, NOERROR with records",
			attack: func(t *testing.T, up *rawUpstream, c *net.UDPConn, req *dns.Msg, stub netip.AddrPort) {
				m := forged(req)
				m.Question = nil
				up.send(t, c, m, stub)
			},
			want: 1,
		},
		{
			name: "right ID and question, but a query (QR clear)",
			attack: func(t *testing.T, up *rawUpstream, c *net.UDPConn, req *dns.Msg, stub netip.AddrPort) {
				m := forged(req)
				m.Response = false
				up.send(t, c, m, stub)
			},
			want: 1,
		},
		{
			name: "right ID, shorter than a header, and right ID with garbage after the header",
			attack: func(t *testing.T, up *rawUpstream, c *net.UDPConn, req *dns.Msg, stub netip.AddrPort) {
				b, _ := forged(req).Pack()
				sendRaw(t, c, b[:11], stub)
				bad := append([]byte(nil), b[:12]...)
				bad[5] = 1 // one question, and then nothing
				sendRaw(t, c, append(bad, 0xc0), stub)
			},
			want: 2,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var attacker atomic.Pointer[net.UDPConn] // set once the upstream's port is known
			up := startRaw(t, "192.0.2.70", func(u *rawUpstream, req *dns.Msg, stub netip.AddrPort) {
				tc.attack(t, u, attacker.Load(), req, stub)
				u.send(t, u.conn, u.answer(req), stub)
			})
			attacker.Store(up.conn)
			if tc.prepare != nil {
				attacker.Store(tc.prepare(t, up))
			}
			s := startServer(t, Config{Forward: forwardToAddrs(up.Addr)}, testCacheConfig())
			var replies []*dns.Msg
			for range 2 { // the second answer comes from the cache
				r := ask(t, s, "udp", "www.example.test", dns.TypeA)
				if got := firstA(r); got != "192.0.2.70" {
					t.Fatalf("answer %q, want the upstream's 192.0.2.70 (%s is forged)", got, faultdns.SpoofIP)
				}
				replies = append(replies, r)
			}
			assertClean(t, s, replies, faultdns.SpoofIP.String())
			if n := s.Forwarder().Mismatched(); n != tc.want {
				t.Errorf("Mismatched() = %d, want %d", n, tc.want)
			}
			if n := up.queries.Load(); n != 1 {
				t.Errorf("upstream asked %d times, want 1", n)
			}
		})
	}
}

// An ID is good only from the upstream it was sent to: with two upstreams, the first one
// silent, the second sends the ID of the packet the first one got before its true answer.
func TestForgedIDOfAnotherUpstream(t *testing.T) {
	var mu sync.Mutex
	var firstID uint16
	var first *rawUpstream
	handle := func(u *rawUpstream, req *dns.Msg, stub netip.AddrPort) {
		mu.Lock()
		defer mu.Unlock()
		if first == nil || first == u {
			first, firstID = u, req.Id // the first upstream asked never answers
			return
		}
		m := forged(req)
		m.Id = firstID
		u.send(t, u.conn, m, stub)
		u.send(t, u.conn, u.answer(req), stub)
	}
	a := startRaw(t, "192.0.2.71", handle)
	b := startRaw(t, "192.0.2.71", handle)
	s := startServer(t, Config{Forward: forwardToAddrs(a.Addr, b.Addr)}, testCacheConfig())
	r := ask(t, s, "udp", "www.example.test", dns.TypeA)
	if got := firstA(r); got != "192.0.2.71" {
		t.Fatalf("answer %q, want 192.0.2.71 (%s is forged)", got, faultdns.SpoofIP)
	}
	assertClean(t, s, []*dns.Msg{r}, faultdns.SpoofIP.String())
	if n := s.Forwarder().Mismatched(); n != 1 {
		t.Errorf("Mismatched() = %d, want 1", n)
	}
}

// The other transports: over TCP (protocol tcp) and the connected UDP socket of the failover
// canary (AskUpstream) the upstream first sends a wrong ID, then the right ID with a wrong
// question (faultdns's Spoof), then the truth.
func TestForgedAnswersOtherTransports(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		up := startFault(t, "192.0.2.72", 300)
		up.Set(faultdns.Spoof, 0)
		s := startServer(t, Config{Forward: []ZoneConfig{{Zone: ".", Upstreams: []netip.AddrPort{up.Addr}, Protocol: "tcp"}}},
			testCacheConfig())
		r := ask(t, s, "udp", "www.example.test", dns.TypeA)
		if got := firstA(r); got != "192.0.2.72" {
			t.Fatalf("answer %q, want 192.0.2.72 (%s is forged)", got, faultdns.SpoofIP)
		}
		assertClean(t, s, []*dns.Msg{r}, faultdns.SpoofIP.String())
		if n := s.Forwarder().Mismatched(); n != 2 {
			t.Errorf("Mismatched() = %d, want 2", n)
		}
	})
	t.Run("canary", func(t *testing.T) {
		up := startFault(t, "192.0.2.73", 300)
		up.Set(faultdns.Spoof, 0)
		s := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
		got, err := s.AskUpstream(t.Context(), up.Addr, "www.example.test", dns.TypeA)
		if err != nil || len(got) != 1 || !strings.HasSuffix(got[0], "192.0.2.73") {
			t.Fatalf("AskUpstream = %q, %v, want the A record 192.0.2.73", got, err)
		}
		if n := s.Forwarder().Mismatched(); n != 2 {
			t.Errorf("Mismatched() = %d, want 2", n)
		}
	})
}

// An upstream for a.example answers truthfully about its own names but adds records for
// victim.example and names outside both zones: in the answer, as a DNAME, as delegation and
// glue. None of it may reach a client or the cache; the victim's names are answered by the
// victim zone's own upstream. These are answers to the query sent, so nothing is mismatched.
func TestOutOfBailiwickRecordsDropped(t *testing.T) {
	victim := startFault(t, "192.0.2.80", 300)
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	evil := startRaw(t, "192.0.2.81", func(u *rawUpstream, req *dns.Msg, stub netip.AddrPort) {
		m := u.answer(req)
		spoof := faultdns.SpoofIP.String()
		if req.Question[0].Name == "nx.a.example." {
			m.Answer = nil
			m.Rcode = dns.RcodeNameError
			m.Ns = append(m.Ns, rr("victim.example. 300 IN SOA ns.evil.example. h.evil.example. 1 2 3 4 86400"),
				rr("a.example. 300 IN SOA ns.a.example. h.a.example. 1 2 3 4 60"))
		} else {
			m.Answer = append(m.Answer, rr("www.victim.example. 86400 IN A "+spoof),
				rr("victim.example. 86400 IN DNAME evil.example."))
			m.Ns = append(m.Ns, rr("a.example. 300 IN NS ns.a.example."),
				rr("victim.example. 86400 IN NS ns.evil.example."), rr(". 86400 IN NS ns.evil.example."))
		}
		m.Extra = append(m.Extra, rr("ns.a.example. 300 IN A 192.0.2.82"),
			rr("ns.evil.example. 86400 IN A "+spoof), rr("www.victim.example. 86400 IN A "+spoof),
			rr("ns.victim.example. 86400 IN AAAA 2001:db8::66"))
		u.send(t, u.conn, m, stub)
	})
	s := startServer(t, Config{Forward: []ZoneConfig{
		{Zone: "a.example", Upstreams: []netip.AddrPort{evil.Addr}},
		{Zone: ".", Upstreams: []netip.AddrPort{victim.Addr}},
	}}, testCacheConfig())

	var replies []*dns.Msg
	r := ask(t, s, "udp", "www.a.example", dns.TypeA)
	if len(r.Answer) != 1 || firstA(r) != "192.0.2.81" {
		t.Errorf("www.a.example: answer %v, want only A 192.0.2.81", r.Answer)
	}
	replies = append(replies, r)
	r = ask(t, s, "udp", "nx.a.example", dns.TypeA)
	if r.Rcode != dns.RcodeNameError || len(r.Ns) != 1 || r.Ns[0].Header().Name != "a.example." {
		t.Errorf("nx.a.example: %s with authority %v, want NXDOMAIN with a.example's SOA only", dns.RcodeToString[r.Rcode], r.Ns)
	}
	replies = append(replies, r)
	r = ask(t, s, "udp", "victim.example", dns.TypeNS)
	if len(r.Answer) != 0 {
		t.Errorf("victim.example NS: answer %v, want none (the victim upstream has no NS)", r.Answer)
	}
	replies = append(replies, r)
	// The victim's names, asked after the forgeries were offered (twice: the cache answers
	// the second time), come from the victim's upstream.
	for range 2 {
		for _, name := range []string{"www.victim.example", "ns.evil.example", "x.www.victim.example"} {
			r := ask(t, s, "udp", name, dns.TypeA)
			if got := firstA(r); got != "192.0.2.80" || len(r.Answer) != 1 {
				t.Errorf("%s: answer %v, want only the victim upstream's A 192.0.2.80", name, r.Answer)
			}
			replies = append(replies, r)
		}
	}
	// Every forged record names the attacker's address or server, or has the TTL of a day that
	// no true one here has.
	assertClean(t, s, replies, faultdns.SpoofIP.String(), "\tns.evil.example.", "\tevil.example.", "2001:db8::66", "\t86400\t")
	if n := victim.Queries(); n != 4 {
		t.Errorf("victim upstream asked %d times, want 4 (once per name: then the cache answers)", n)
	}
	if n := s.Forwarder().Mismatched(); n != 0 {
		t.Errorf("Mismatched() = %d, want 0: scrubbing is not mismatching", n)
	}
}
