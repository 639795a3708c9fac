package resolver

import (
	"encoding/binary"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/cache"
	"github.com/fleetdns/fleetdns/policy"
	"github.com/miekg/dns"
)

// newOfflineServer builds a Server that is never started: enough for the fast path.
func newOfflineServer(t testing.TB) *Server {
	t.Helper()
	c, err := cache.New(testCacheConfig())
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.New(policy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{
		Listen:  []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")},
		Forward: []ZoneConfig{{Zone: ".", Upstreams: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}}},
	}, c, p, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func packQuery(t testing.TB, name string, qtype uint16, edns bool) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	if edns {
		m.SetEdns0(1232, true)
	}
	b, err := m.Pack()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzAnswer feeds arbitrary packets to the packet path: it must never panic, and whatever it
// sends back must be a well-formed response to the same ID.
func FuzzAnswer(f *testing.F) {
	s := newOfflineServer(f)
	// A cached answer, so the hit path with its patching is reached too.
	q, _ := cache.NewQuestion("www.example.test.", dns.TypeA, dns.ClassINET, false, false)
	m := new(dns.Msg)
	m.SetQuestion("www.example.test.", dns.TypeA)
	rr, _ := dns.NewRR("www.example.test. 300 IN A 192.0.2.10")
	m.Answer = []dns.RR{rr, rr}
	e, err := s.cache.Build(&q, m, time.Now())
	if err != nil {
		f.Fatal(err)
	}
	s.cache.Put(e)

	f.Add(packQuery(f, "www.example.test.", dns.TypeA, false))
	f.Add(packQuery(f, "WWW.example.TEST.", dns.TypeA, true))
	f.Add(packQuery(f, "localhost.", dns.TypeAAAA, true))
	f.Add(packQuery(f, "1.0.0.127.in-addr.arpa.", dns.TypePTR, false))
	f.Add([]byte{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 41, 4, 0, 0, 0, 0, 0, 0, 8, 0, 3, 0, 0})
	// Named regression inputs: testdata/FuzzAnswer/*.bin, replayed as seeds.
	files, _ := filepath.Glob("testdata/FuzzAnswer/*.bin")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	from := netip.MustParseAddrPort("127.0.0.1:5353")
	f.Fuzz(func(t *testing.T, pkt []byte) {
		for _, tcp := range []bool{false, true} {
			out, _ := s.answer(pkt, from, tcp, nil, time.Now())
			if out == nil {
				continue
			}
			if len(out) < 12 || out[2]&0x80 == 0 || binary.BigEndian.Uint16(out) != binary.BigEndian.Uint16(pkt) {
				t.Fatalf("reply % x to % x: want a response with the query's ID", out, pkt)
			}
			if !tcp && len(out) > 1232 {
				t.Fatalf("UDP reply of %d bytes, more than the 1232 we allow", len(out))
			}
			var r dns.Msg
			if err := r.Unpack(out); err != nil {
				t.Fatalf("reply % x does not parse: %v", out, err)
			}
		}
	})
}
