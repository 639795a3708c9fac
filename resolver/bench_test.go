package resolver

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/faultdns"
	"github.com/fleetdns/fleetdns/cache"
	"github.com/fleetdns/fleetdns/resolver/upstream"
	"github.com/miekg/dns"
)

// BenchmarkAnswerHit is the whole hot path of a cache hit as the UDP loop runs it: parse,
// access control, policy, cache lookup, copy and patch. It must not allocate.
func BenchmarkAnswerHit(b *testing.B) {
	benchHit(b, newOfflineServer(b))
}

// BenchmarkAnswerHitRateLimited is BenchmarkAnswerHit with server mode's response rate limit
// checked on every answer (at a rate the loop never reaches, so every query is a hit).
func BenchmarkAnswerHitRateLimited(b *testing.B) {
	s := newOfflineServer(b)
	s.rrl = newRateLimiter(RateLimit{ResponsesPerSecond: 1e9})
	benchHit(b, s)
}

func benchHit(b *testing.B, s *Server) {
	q, _ := cache.NewQuestion("www.example.test.", dns.TypeA, dns.ClassINET, true, false)
	m := new(dns.Msg)
	m.SetQuestion("www.example.test.", dns.TypeA)
	rr, _ := dns.NewRR("www.example.test. 300 IN A 192.0.2.10")
	m.Answer = []dns.RR{rr}
	e, err := s.cache.Build(&q, m, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	s.cache.Put(e)
	pkt := packQuery(b, "www.Example.test.", dns.TypeA, true)
	from := netip.MustParseAddrPort("127.0.0.1:40000")
	buf := make([]byte, 0, 65535)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		out, miss := s.answer(pkt, from, false, buf[:0], now)
		if miss != nil || len(out) == 0 {
			b.Fatal("not a hit")
		}
	}
}

// BenchmarkMiss is one cache miss end to end as the read loop and its worker see it: the fast
// path finds the miss, the worker continues from it (flight, upstream exchange over a fresh UDP
// socket to a real (Go) upstream on loopback, scrub, store, answer).
func BenchmarkMiss(b *testing.B) {
	up, err := faultdns.Start("127.0.0.1:0", netip.MustParseAddr("192.0.2.1"), 300)
	if err != nil {
		b.Fatal(err)
	}
	defer up.Close()
	s := newOfflineServer(b)
	fwd, err := upstream.NewForwarder(forwardTo(up), 4*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	s.fwd.Store(fwd)
	from := netip.MustParseAddrPort("127.0.0.1:40000")
	out := make([]byte, 0, 4096)
	i := 0
	b.ReportAllocs()
	for b.Loop() {
		i++
		pkt := packQuery(b, fmt.Sprintf("m%d.miss.bench.test.", i), dns.TypeA, true)
		_, miss := s.answer(pkt, from, false, out[:0], time.Now())
		if miss == nil {
			b.Fatal("not a miss")
		}
		if resp := s.resolveMiss(context.Background(), miss, from, false); len(resp) == 0 {
			b.Fatal("no answer")
		}
	}
}

func TestTypeSlot(t *testing.T) {
	for i, typ := range typeSlots {
		if got := typeSlot(typ); got != i {
			t.Errorf("typeSlot(%s) = %d, want %d", dns.TypeToString[typ], got, i)
		}
	}
	if got := typeSlot(dns.TypeNAPTR); got != len(typeSlots) {
		t.Errorf("typeSlot(NAPTR) = %d, want %d (other)", got, len(typeSlots))
	}
	if len(typeSlots)+1 != numTypeSlots {
		t.Errorf("numTypeSlots = %d, want %d", numTypeSlots, len(typeSlots)+1)
	}
}
