package resolver

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestRateLimiter runs the limiter on a made-up clock: a burst of one second's answers, then
// one per interval; slip every second limited answer; prefixes told apart at /24 and /56.
func TestRateLimiter(t *testing.T) {
	l := newRateLimiter(RateLimit{ResponsesPerSecond: 10})
	t0 := time.Now()
	a := netip.MustParseAddr("192.0.2.1")
	var got []verdict
	for range 14 {
		got = append(got, l.decide(a, t0))
	}
	want := []verdict{rrlSend, rrlSend, rrlSend, rrlSend, rrlSend, rrlSend, rrlSend, rrlSend, rrlSend, rrlSend,
		rrlDrop, rrlSlip, rrlDrop, rrlSlip}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("decide #%d at one instant = %v, want %v (all: %v)", i, got[i], want[i], got)
		}
	}
	if v := l.decide(netip.MustParseAddr("192.0.2.200"), t0); v == rrlSend {
		t.Errorf("decide(192.0.2.200) = send, want limited: same /24")
	}
	if v := l.decide(netip.MustParseAddr("192.0.3.1"), t0); v != rrlSend {
		t.Errorf("decide(192.0.3.1) = %v, want send: another /24", v)
	}
	if v := l.decide(a, t0.Add(100*time.Millisecond)); v != rrlSend {
		t.Errorf("decide one interval later = %v, want send", v)
	}
	if v := l.decide(a, t0.Add(100*time.Millisecond)); v == rrlSend {
		t.Errorf("decide twice one interval later = send, want limited")
	}
	if v := l.decide(a, t0.Add(2*time.Second)); v != rrlSend {
		t.Errorf("decide after a quiet second = %v, want send", v)
	}
	v6 := newRateLimiter(RateLimit{ResponsesPerSecond: 1, Slip: -1})
	if v6.decide(netip.MustParseAddr("2001:db8:0:1::1"), t0) != rrlSend ||
		v6.decide(netip.MustParseAddr("2001:db8:0:ff::2"), t0) != rrlDrop {
		t.Errorf("2001:db8:0:1::1 and 2001:db8:0:ff::2 are one /56: the second, over the rate with slip off, is dropped")
	}
	if v6.decide(netip.MustParseAddr("2001:db8:0:100::1"), t0) != rrlSend {
		t.Errorf("2001:db8:0:100::1 is another /56: want send")
	}
	// The table stays its size however many prefixes come and go.
	small := newRateLimiter(RateLimit{ResponsesPerSecond: 1, Prefixes: 64})
	for i := range 10000 {
		small.decide(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 1}), t0)
	}
	if n := len(small.sets) * rrlWays; n != 64 {
		t.Errorf("table holds %d prefixes, want 64", n)
	}
}

// TestRateLimitFlood floods a cached name over UDP from 127.0.1.1 at about a hundred times its
// prefix's rate: what is answered matches the rate (a second's burst plus the rate over the
// flood's length), every second answer over it comes back truncated and the others not at all,
// and the counters say so. 127.0.2.1, another /24, asking meanwhile is answered every time, and
// the flooder itself still is over TCP.
func TestRateLimitFlood(t *testing.T) {
	const rate, total = 50, 2000
	up := startFault(t, "192.0.2.1", 300)
	s := startServer(t, Config{Forward: forwardTo(up), RateLimit: RateLimit{ResponsesPerSecond: rate}}, testCacheConfig())
	if r, err := askFrom(s, "127.0.3.1", "udp", "www.example.test"); err != nil || firstA(r) != "192.0.2.1" {
		t.Fatalf("priming the cache: %v %v", r, err)
	}
	hits0 := s.Stats.Hits()

	c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP("127.0.1.1")}, net.UDPAddrFromAddrPort(s.Addrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadBuffer(4 << 20)
	var answered, truncated int
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			c.SetReadDeadline(time.Now().Add(time.Second))
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			r := new(dns.Msg)
			if r.Unpack(buf[:n]) != nil {
				continue
			}
			switch {
			case r.Truncated && len(r.Answer) == 0:
				truncated++
			case firstA(r) == "192.0.2.1":
				answered++
			}
		}
	}()

	// The other prefix asks while the flood runs.
	var wg sync.WaitGroup
	var otherErrs []string
	wg.Go(func() {
		time.Sleep(50 * time.Millisecond) // the flood has used up its burst by now
		for range 20 {
			r, err := askFrom(s, "127.0.2.1", "udp", "www.example.test")
			if err != nil || r.Truncated || firstA(r) != "192.0.2.1" {
				otherErrs = append(otherErrs, errString(r, err))
			}
		}
	})

	m := new(dns.Msg)
	m.SetQuestion("www.example.test.", dns.TypeA)
	start := time.Now()
	for i := range total {
		m.Id = uint16(i)
		pkt, _ := m.Pack()
		if _, err := c.Write(pkt); err != nil {
			if errors.Is(err, syscall.ENOBUFS) {
				time.Sleep(time.Millisecond)
				continue
			}
			t.Fatal(err)
		}
		if i%20 == 19 {
			time.Sleep(4 * time.Millisecond) // about 5000 a second: 100 times the rate, and no more than the kernel buffers
		}
	}
	elapsed := time.Since(start)
	wg.Wait()
	<-done

	dropped, slipped := limitHits(t, s, "rrl_dropped"), limitHits(t, s, "rrl_slipped")
	served := int(s.Stats.Hits()-hits0) - 20 // less the other prefix's
	seen := served + int(dropped) + int(slipped)
	t.Logf("flood of %d in %s: server saw %d, answered %d, slipped %v, dropped %v; client got %d answers, %d truncated",
		total, elapsed.Round(time.Millisecond), seen, served, slipped, dropped, answered, truncated)
	if seen < total*9/10 {
		t.Fatalf("the server saw %d of %d queries; the test cannot judge the limit", seen, total)
	}
	maxServed := rate + int(float64(rate)*elapsed.Seconds()) + 2
	if served < rate || served > maxServed {
		t.Errorf("answered %d, want %d (a second's burst) to %d (plus %d/s over %s)", served, rate, maxServed, rate, elapsed)
	}
	limited := seen - served
	if d := int(slipped) - limited/2; d < -1 || d > 1 {
		t.Errorf("slipped %v of %d over the rate, want half (slip 2)", slipped, limited)
	}
	if answered != served || truncated != int(slipped) {
		t.Errorf("client got %d answers and %d truncated, want %d and %v", answered, truncated, served, slipped)
	}
	if len(otherErrs) > 0 {
		t.Errorf("127.0.2.1 (another /24): %d of 20 not answered: %v", len(otherErrs), otherErrs)
	}
	if got := metric(t, s, "fleetdns_answers_total", "source", "rate_limited"); got != slipped {
		t.Errorf("fleetdns_answers_total{source=rate_limited} = %v, want %v", got, slipped)
	}
	if r, err := askFrom(s, "127.0.1.1", "tcp", "www.example.test"); err != nil || firstA(r) != "192.0.2.1" {
		t.Errorf("the flooder over TCP: %v, want the answer (TCP is never limited)", errString(r, err))
	}
}

func errString(r *dns.Msg, err error) string {
	if err != nil {
		return err.Error()
	}
	if r.Truncated {
		return "truncated"
	}
	return r.String()
}
