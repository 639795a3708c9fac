package resolver

import (
	"errors"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/nsd"
	"github.com/fleetdns/fleetdns/policy"
	"github.com/miekg/dns"
)

// startNSD serves testdata/example.test.zone from a real NSD.
func startNSD(t *testing.T) *nsd.Server {
	t.Helper()
	n, err := nsd.Start(t.TempDir(), netip.MustParseAddr("127.0.0.1"),
		nsd.Zone{Name: "example.test.", File: "testdata/example.test.zone"})
	if errors.Is(err, nsd.ErrNotInstalled) {
		requireTool(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

func stubForNSD(t *testing.T, n *nsd.Server, mod func(*Config)) *Server {
	cfg := Config{Forward: []ZoneConfig{{Zone: ".", Upstreams: []netip.AddrPort{n.Addr}}}, RoundRobin: true}
	if mod != nil {
		mod(&cfg)
	}
	return startServer(t, cfg, testCacheConfig())
}

func TestAgainstNSD(t *testing.T) {
	n := startNSD(t)
	s := stubForNSD(t, n, nil)
	for _, tc := range []struct {
		name   string
		qtype  uint16
		rcode  int
		answer []string // expected records, in presentation, TTL left out
		soa    bool     // SOA expected in the authority section
	}{
		{"www.example.test", dns.TypeA, dns.RcodeSuccess, []string{"www.example.test.\tA\t192.0.2.10"}, false},
		{"v6.example.test", dns.TypeAAAA, dns.RcodeSuccess, []string{"v6.example.test.\tAAAA\t2001:db8::10"}, false},
		{"alias.example.test", dns.TypeA, dns.RcodeSuccess,
			[]string{"alias.example.test.\tCNAME\twww.example.test.", "www.example.test.\tA\t192.0.2.10"}, false},
		{"nope.example.test", dns.TypeA, dns.RcodeNameError, nil, true},
		{"www.example.test", dns.TypeMX, dns.RcodeSuccess, nil, true},
	} {
		t.Run(tc.name+"/"+dns.TypeToString[tc.qtype], func(t *testing.T) {
			for _, pass := range []string{"miss", "hit"} {
				r := ask(t, s, "udp", tc.name, tc.qtype)
				if r.Rcode != tc.rcode {
					t.Fatalf("%s: rcode %s, want %s", pass, dns.RcodeToString[r.Rcode], dns.RcodeToString[tc.rcode])
				}
				if got := withoutTTL(r.Answer); strings.Join(got, "|") != strings.Join(tc.answer, "|") {
					t.Errorf("%s: answer %q, want %q", pass, got, tc.answer)
				}
				if hasSOA := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA; hasSOA != tc.soa {
					t.Errorf("%s: authority %v, want SOA: %v", pass, r.Ns, tc.soa)
				}
				if tc.soa && r.Ns[0].Header().Ttl > 60 {
					t.Errorf("%s: SOA TTL %d, want at most max_negative_ttl 60", pass, r.Ns[0].Header().Ttl)
				}
				if !r.RecursionAvailable || r.Authoritative {
					t.Errorf("%s: RA %v AA %v, want RA and no AA on a forwarded answer", pass, r.RecursionAvailable, r.Authoritative)
				}
			}
		})
	}
	if hits := s.Stats.Hits(); hits != 5 {
		t.Errorf("cache hits = %d, want 5 (each second query)", hits)
	}
}

func withoutTTL(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		f := strings.Split(rr.String(), "\t")
		// owner, TTL, class, type, rdata
		out = append(out, strings.Join([]string{f[0], f[3], strings.Join(f[4:], "\t")}, "\t"))
	}
	return out
}

func TestLargeAnswerNeedsTCP(t *testing.T) {
	n := startNSD(t)
	s := stubForNSD(t, n, nil)
	r := ask(t, s, "udp", "big.example.test", dns.TypeTXT)
	if !r.Truncated || len(r.Answer) != 0 {
		t.Fatalf("UDP: TC %v with %d records, want TC and none", r.Truncated, len(r.Answer))
	}
	r = ask(t, s, "tcp", "big.example.test", dns.TypeTXT)
	if r.Truncated || len(r.Answer) != 6 {
		t.Fatalf("TCP: TC %v with %d records, want all 6", r.Truncated, len(r.Answer))
	}
}

func TestLocalhostAnswers(t *testing.T) {
	// No upstream at all: these must never leave the host (RFC 6761).
	s := startServer(t, Config{Forward: []ZoneConfig{{Zone: ".", Upstreams: []netip.AddrPort{
		netip.MustParseAddrPort("127.0.0.1:9")}}}, ResolveTimeout: 200 * time.Millisecond}, testCacheConfig())
	for _, tc := range []struct {
		name   string
		qtype  uint16
		rcode  int
		answer string
	}{
		{"localhost", dns.TypeA, dns.RcodeSuccess, "127.0.0.1"},
		{"app.localhost", dns.TypeAAAA, dns.RcodeSuccess, "::1"},
		{"1.0.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, "localhost."},
		{"2.0.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeNameError, ""},
		{"localhost", dns.TypeMX, dns.RcodeSuccess, ""},
	} {
		r := ask(t, s, "udp", tc.name, tc.qtype)
		var got string
		if len(r.Answer) == 1 {
			f := strings.Split(r.Answer[0].String(), "\t")
			got = f[len(f)-1]
		}
		if r.Rcode != tc.rcode || got != tc.answer {
			t.Errorf("%s %s = %s %q, want %s %q", tc.name, dns.TypeToString[tc.qtype],
				dns.RcodeToString[r.Rcode], got, dns.RcodeToString[tc.rcode], tc.answer)
		}
		if !r.Response || !r.Authoritative || !r.RecursionAvailable {
			t.Errorf("%s: QR %v AA %v RA %v, want all set on a local answer", tc.name, r.Response, r.Authoritative, r.RecursionAvailable)
		}
		if len(r.Answer) == 0 && (len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA) {
			t.Errorf("%s: negative local answer without the zone's SOA: %v", tc.name, r.Ns)
		}
	}
}

func TestAccessControl(t *testing.T) {
	n := startNSD(t)
	s := stubForNSD(t, n, nil)
	p, err := policy.New(policy.Config{AccessControl: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
	if err != nil {
		t.Fatal(err)
	}
	s.SetPolicy(p)
	r := ask(t, s, "udp", "www.example.test", dns.TypeA)
	if r.Rcode != dns.RcodeRefused || len(r.Answer) != 0 {
		t.Errorf("client outside access_control: rcode %s with %d answers, want REFUSED and none",
			dns.RcodeToString[r.Rcode], len(r.Answer))
	}
}

func TestRoundRobinThroughStub(t *testing.T) {
	n := startNSD(t)
	s := stubForNSD(t, n, nil)
	firsts := map[string]bool{}
	for range 8 {
		r := ask(t, s, "udp", "multi.example.test", dns.TypeA)
		if len(r.Answer) != 4 {
			t.Fatalf("%d records, want 4", len(r.Answer))
		}
		firsts[firstA(r)] = true
	}
	if len(firsts) != 4 {
		t.Errorf("first addresses over 8 answers: %v, want all 4", firsts)
	}
}

func TestMalformedQueries(t *testing.T) {
	n := startNSD(t)
	s := stubForNSD(t, n, nil)
	c, err := net.Dial("udp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range []struct {
		name  string
		pkt   []byte
		rcode int // -1: no answer
	}{
		{"too short", []byte{1, 2, 3}, -1},
		{"a response", []byte{0, 1, 0x80, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1}, -1},
		{"no question", []byte{0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}, dns.RcodeFormatError},
		{"name runs past the end", []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 7, 'e', 'x'}, dns.RcodeFormatError},
		{"compression pointer in question", []byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}, dns.RcodeFormatError},
		{"opcode notify", []byte{0, 1, 0x20, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 6, 0, 1}, dns.RcodeNotImplemented},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.Write(tc.pkt)
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			buf := make([]byte, 512)
			n, err := c.Read(buf)
			if tc.rcode < 0 {
				if err == nil {
					t.Fatalf("got a %d-byte answer, want none", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if n < 12 || int(buf[3]&0xf) != tc.rcode || buf[0] != tc.pkt[0] || buf[1] != tc.pkt[1] || buf[2]&0x80 == 0 {
				t.Errorf("answer % x, want a response with ID %x%x and rcode %s", buf[:n], tc.pkt[0], tc.pkt[1], dns.RcodeToString[tc.rcode])
			}
		})
	}
	// The stub still answers after all that.
	if r := ask(t, s, "udp", "www.example.test", dns.TypeA); firstA(r) != "192.0.2.10" {
		t.Errorf("after malformed queries: %v", r.Answer)
	}
}

func TestBadEDNSVersion(t *testing.T) {
	n := startNSD(t)
	s := stubForNSD(t, n, nil)
	r, err := exchange(s, "udp", "www.example.test", dns.TypeA, func(m *dns.Msg) {
		m.SetEdns0(1232, false)
		m.IsEdns0().SetVersion(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.Rcode != dns.RcodeBadVers {
		t.Errorf("EDNS version 1: rcode %s, want BADVERS", dns.RcodeToString[r.Rcode])
	}
}

func TestDig(t *testing.T) {
	dig, err := exec.LookPath("dig")
	requireTool(t, err)
	n := startNSD(t)
	s := stubForNSD(t, n, nil)
	addr := s.Addrs()[0]
	port := addr.Port()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"www.example.test", "A", "+short"}, "192.0.2.10"},
		{[]string{"alias.example.test", "A", "+short"}, "www.example.test.\n192.0.2.10"},
		{[]string{"big.example.test", "TXT", "+short", "+tcp"}, "\"5123456789"},
		{[]string{"big.example.test", "TXT", "+short", "+ignore", "+noedns"}, ""},
		{[]string{"localhost", "A", "+short"}, "127.0.0.1"},
	} {
		args := append([]string{"@" + addr.Addr().String(), "-p", strconv.Itoa(int(port)), "+time=3", "+tries=1"}, tc.args...)
		out, err := exec.Command(dig, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		got := strings.TrimSpace(string(out))
		if (tc.want == "" && got != "") || !strings.Contains(got, tc.want) {
			t.Errorf("dig %v = %q, want %q", tc.args, got, tc.want)
		}
	}
}
