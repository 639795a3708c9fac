package resolver

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/faultdns"
	"github.com/fleetdns/fleetdns/resolver/upstream"
	"github.com/miekg/dns"
)

func startLossy(t *testing.T, up *faultdns.Server, loss float64) *faultdns.Lossy {
	t.Helper()
	l, err := faultdns.StartLossy(up.Addr, loss)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	return l
}

func forwardToAddrs(addrs ...netip.AddrPort) []ZoneConfig {
	return []ZoneConfig{{Zone: ".", Upstreams: addrs}}
}

// askMany sends n distinct names, conc at a time, and returns the rcodes seen and the latencies.
func askMany(t *testing.T, s *Server, prefix string, n, conc int) (map[int]int, []time.Duration) {
	t.Helper()
	var mu sync.Mutex
	rcodes := map[int]int{}
	var lat []time.Duration
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				start := time.Now()
				r, err := exchange(s, "udp", fmt.Sprintf("%s%d.example.test", prefix, i), dns.TypeA, nil)
				d := time.Since(start)
				mu.Lock()
				if err != nil {
					rcodes[-1]++
				} else {
					rcodes[r.Rcode]++
				}
				lat = append(lat, d)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(lat)
	return rcodes, lat
}

func pct(lat []time.Duration, p float64) time.Duration { return lat[int(float64(len(lat)-1)*p)] }

// At 30% loss each way a packet's exchange fails about half the time. Every name must still
// resolve, within the deadline, and the upstream's RTT estimate must stay that of the path:
// losses are the query's business, not the estimate's.
func TestLossEveryNameResolves(t *testing.T) {
	up := startFault(t, "192.0.2.30", 300)
	lossy := startLossy(t, up, 0.3)
	s := startServer(t, Config{Forward: forwardToAddrs(lossy.Addr)}, testCacheConfig())
	rcodes, lat := askMany(t, s, "loss", 400, 8)
	if rcodes[dns.RcodeSuccess] != 400 {
		t.Errorf("rcodes %v (-1: no answer), want all 400 NOERROR", rcodes)
	}
	st := s.Forwarder().Pools()[0].Upstreams[0].Status()
	t.Logf("p50 %s p99 %s max %s, retransmits %d, packets dropped %d of %d, srtt %s",
		pct(lat, .5), pct(lat, .99), lat[len(lat)-1], s.Forwarder().Retransmits(), lossy.Dropped(),
		lossy.Dropped()+lossy.Passed(), st.SRTT)
	if st.SRTT > 20*time.Millisecond {
		t.Errorf("srtt %s after loss on a loopback path, want the path's (< 20ms): losses must not inflate it", st.SRTT)
	}
	if !st.Healthy {
		t.Errorf("upstream marked down under loss while it answers most queries")
	}
	if s.Forwarder().Retransmits() == 0 || lossy.Dropped() == 0 {
		t.Errorf("no retransmission or no loss: the test shows nothing")
	}
	if p99 := pct(lat, .99); p99 > 500*time.Millisecond {
		t.Errorf("p99 %s under 30%% loss, want well under the 4s deadline (< 500ms)", p99)
	}
}

// A retransmission does not throw away the first packet: an answer that was only late is taken.
func TestLateAnswerTaken(t *testing.T) {
	up := startFault(t, "192.0.2.31", 300)
	s := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
	for i := range 5 { // measure the path: fast, so the RTO falls to its floor
		ask(t, s, "udp", fmt.Sprintf("warm%d.example.test", i), dns.TypeA)
	}
	up.Set(faultdns.Delay, 150*time.Millisecond)
	start := time.Now()
	r := ask(t, s, "udp", "late.example.test", dns.TypeA)
	d := time.Since(start)
	if firstA(r) != "192.0.2.31" {
		t.Fatalf("answer %v", r.Answer)
	}
	// Every packet is answered after 150ms; the first one's answer must end the query then,
	// not the last retransmission's.
	if d > 280*time.Millisecond {
		t.Errorf("answer after %s, want about 150ms: the first packet's late answer must count", d)
	}
	if s.Forwarder().Retransmits() == 0 {
		t.Errorf("no retransmission before the 150ms answer: the test shows nothing")
	}
}

// A dead upstream is marked down and then never tried first: only probes go to it, and they
// go beside a live upstream, so no client waits for it (issue: 1 in 20 misses took 1.5s more).
func TestDeadUpstreamNotTriedFirst(t *testing.T) {
	dead := startFault(t, "192.0.2.32", 300)
	good := startFault(t, "192.0.2.33", 300)
	dead.Set(faultdns.Drop, 0)
	s := startServer(t, Config{Forward: forwardTo(dead, good)}, testCacheConfig())
	// Learn that it is dead: with the live one faster, only exploration (one query in 20) asks
	// it, and it takes three unanswered packets; 100 queries gave fewer one time in ten.
	for i := 0; s.Forwarder().Pools()[0].Upstreams[0].Status().Healthy; i++ {
		if i == 400 {
			t.Fatal("the dead upstream is still marked healthy after 400 queries")
		}
		ask(t, s, "udp", fmt.Sprintf("learn%d.example.test", i), dns.TypeA)
		time.Sleep(20 * time.Millisecond)
	}
	before := dead.Queries()
	start := time.Now()
	rcodes, lat := askMany(t, s, "dead", 2000, 4)
	took := time.Since(start)
	if rcodes[dns.RcodeSuccess] != 2000 {
		t.Fatalf("rcodes %v, want 2000 NOERROR", rcodes)
	}
	slow := 0
	for _, d := range lat {
		if d > 100*time.Millisecond {
			slow++
		}
	}
	probes := dead.Queries() - before
	t.Logf("2000 misses in %s: %d slower than 100ms, %d packets to the dead upstream, p99 %s", took, slow, probes, pct(lat, .99))
	if slow > 0 {
		t.Errorf("%d of 2000 misses took over 100ms with one live upstream, want 0", slow)
	}
	// Probes: at most one per probe interval (1s first), each up to maxSends packets.
	if max := int64(took/upstream.FirstProbe+2) * upstream.MaxSends; probes > max {
		t.Errorf("%d packets to the dead upstream in %s, want at most %d (probes only)", probes, took, max)
	}
}

// When every upstream is down, uncached names fail fast; when the upstream comes back, a probe
// notices within the probe interval.
func TestUpstreamDownFailsFastAndRecovers(t *testing.T) {
	up := startFault(t, "192.0.2.34", 300)
	lossy := startLossy(t, up, 0)
	s := startServer(t, Config{Forward: forwardToAddrs(lossy.Addr), ResolveTimeout: time.Second}, testCacheConfig())
	ask(t, s, "udp", "warm.example.test", dns.TypeA)
	lossy.SetLoss(1) // blackhole
	for i := range 3 {
		if r := ask(t, s, "udp", fmt.Sprintf("first%d.example.test", i), dns.TypeA); r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
		}
	}
	if s.Forwarder().Pools()[0].Upstreams[0].Status().Healthy {
		t.Fatalf("upstream still healthy after three failed queries and a second of silence")
	}
	var slowest time.Duration
	for i := range 20 {
		start := time.Now()
		r := ask(t, s, "udp", fmt.Sprintf("fast%d.example.test", i), dns.TypeA)
		d := time.Since(start)
		if r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
		}
		if d > slowest && d < 900*time.Millisecond {
			slowest = d
		}
	}
	if slowest > 50*time.Millisecond {
		t.Errorf("SERVFAIL took up to %s with the upstream known down, want at once", slowest)
	}
	lossy.SetLoss(0)
	back := time.Now()
	for i := 0; ; i++ {
		r := ask(t, s, "udp", fmt.Sprintf("back%d.example.test", i), dns.TypeA)
		if r.Rcode == dns.RcodeSuccess {
			break
		}
		if time.Since(back) > upstream.MaxProbe+2*time.Second {
			t.Fatalf("still failing %s after the upstream came back", time.Since(back))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("answered again %s after the upstream came back", time.Since(back))
}

// A stale answer goes out as soon as its refresh is known to go badly, not after the whole
// client timer; later clients get it at once while the refresh still runs.
func TestStaleAtOnceWhileRefreshFails(t *testing.T) {
	up := startFault(t, "192.0.2.35", 1)
	s := startServer(t, Config{Forward: forwardTo(up), StaleClientTimeout: 1500 * time.Millisecond}, testCacheConfig())
	for i := range 3 {
		ask(t, s, "udp", fmt.Sprintf("warm%d.example.test", i), dns.TypeA)
	}
	ask(t, s, "udp", "st.example.test", dns.TypeA)
	up.Set(faultdns.Drop, 0)
	time.Sleep(1100 * time.Millisecond)
	for i := range 5 {
		start := time.Now()
		r := ask(t, s, "udp", "st.example.test", dns.TypeA)
		d := time.Since(start)
		if firstA(r) != "192.0.2.35" {
			t.Fatalf("query %d: answer %v, want the stale one", i, r.Answer)
		}
		limit := 10 * time.Millisecond
		if i == 0 {
			limit = 100 * time.Millisecond // what an answer normally takes (2ms here), with room for a loaded machine
		}
		if d > limit {
			t.Errorf("query %d: stale answer after %s, want under %s", i, d, limit)
		}
	}
}

// NSD answers REFUSED without a question for a class it does not serve. ID, address and port
// match, so that is the upstream's answer, passed on at once, not a forgery to wait out.
func TestQuestionlessErrorReply(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n < 12 {
				continue
			}
			// Header only: the query's ID, QR, opcode and RD kept, RCODE REFUSED, no question.
			pc.WriteTo([]byte{buf[0], buf[1], 0x80 | buf[2]&0x79, dns.RcodeRefused, 0, 0, 0, 0, 0, 0, 0, 0}, from)
		}
	}()
	addr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	s := startServer(t, Config{Forward: forwardToAddrs(addr)}, testCacheConfig())
	start := time.Now()
	r := ask(t, s, "udp", "refused.example.test", dns.TypeA)
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("answer after %s, want at once", d)
	}
	if r.Rcode != dns.RcodeRefused {
		t.Errorf("rcode %s, want the upstream's REFUSED passed on", dns.RcodeToString[r.Rcode])
	}
	if n := s.Forwarder().Mismatched(); n != 0 {
		t.Errorf("mismatched = %d, want 0: the reply matched address, port and ID", n)
	}
}

// Retransmissions are bounded by the pool's budget: a slow upstream under many distinct misses
// gets about one packet per miss, not a multiple (issue: 6 000 misses, 18 288 queries).
func TestRetransmitBudget(t *testing.T) {
	up := startFault(t, "192.0.2.36", 300)
	up.Set(faultdns.Delay, 700*time.Millisecond) // slow, but answering within the second of silence that marks an upstream down
	s := startServer(t, Config{Forward: forwardTo(up), ResolveTimeout: 3 * time.Second}, testCacheConfig())
	const n = 300
	rcodes, _ := askMany(t, s, "slow", n, 150)
	if rcodes[dns.RcodeSuccess] != n {
		t.Errorf("rcodes %v, want %d NOERROR", rcodes, n)
	}
	sent := up.Queries()
	f := s.Forwarder()
	t.Logf("%d misses: %d upstream queries, %d retransmits, %d denied by the budget", n, sent, f.Retransmits(), f.BudgetDenied())
	// The budget's cap, then two retransmissions per answer at most: under 2 packets per miss
	// here, where without a budget every miss would send several.
	if sent >= 2*n {
		t.Errorf("%d upstream queries for %d misses, want fewer than %d", sent, n, 2*n)
	}
	if f.BudgetDenied() == 0 {
		t.Errorf("the budget never stopped a retransmission: the test shows nothing")
	}
	if got := metric(t, s, "fleetdns_upstream_retransmits_denied_total"); got != float64(f.BudgetDenied()) {
		t.Errorf("fleetdns_upstream_retransmits_denied_total = %v, want %d", got, f.BudgetDenied())
	}
	if got := metric(t, s, "fleetdns_upstream_retransmits_total"); got != float64(f.Retransmits()) || got == 0 {
		t.Errorf("fleetdns_upstream_retransmits_total = %v, want %d (> 0)", got, f.Retransmits())
	}
}

// An upstream of one forward zone answers a CNAME into another zone and adds a forged address
// for the target. The target belongs to the other zone's upstreams: they answer for it.
func TestCNAMEIntoAnotherZone(t *testing.T) {
	victim := startFault(t, "192.0.2.40", 300)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	attacker := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		cname, _ := dns.NewRR(req.Question[0].Name + " 300 IN CNAME www.victim.example.")
		forged, _ := dns.NewRR("www.victim.example. 300 IN A " + faultdns.SpoofIP.String())
		m.Answer = []dns.RR{cname, forged}
		w.WriteMsg(m)
	})}
	go attacker.ActivateAndServe()
	t.Cleanup(func() { attacker.Shutdown() })
	s := startServer(t, Config{Forward: []ZoneConfig{
		{Zone: "attacker.example", Upstreams: []netip.AddrPort{pc.LocalAddr().(*net.UDPAddr).AddrPort()}},
		{Zone: "victim.example", Upstreams: []netip.AddrPort{victim.Addr}},
	}}, testCacheConfig())
	for range 2 { // the second answer comes from the cache
		r := ask(t, s, "udp", "www.attacker.example", dns.TypeA)
		if len(r.Answer) != 2 || r.Answer[0].Header().Rrtype != dns.TypeCNAME || firstA(r) != "192.0.2.40" {
			t.Fatalf("answer %v, want the CNAME and the victim zone's own 192.0.2.40 (never the forged %s)", r.Answer, faultdns.SpoofIP)
		}
	}
	if victim.Queries() != 1 {
		t.Errorf("victim zone's upstream asked %d times, want 1", victim.Queries())
	}
}

// Behind an anycast address, a router's ECMP keeps each source port on one node. When that
// node is frozen, retransmissions from the query's first port would all reach it; the second
// copy of each retransmission goes out from a new port, another draw of the hash, so the query
// is answered by the live node well before the deadline.
func TestRetransmitFromNewPortPassesFrozenNode(t *testing.T) {
	frozen := startFault(t, "192.0.2.37", 300)
	live := startFault(t, "192.0.2.38", 300)
	router, err := faultdns.StartECMP(0, frozen.Addr, live.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(router.Close)
	s := startServer(t, Config{Forward: forwardToAddrs(router.Addr)}, testCacheConfig())
	for i := range 10 { // measure the path while both nodes answer
		ask(t, s, "udp", fmt.Sprintf("warm%d.example.test", i), dns.TypeA)
	}
	frozen.Set(faultdns.Drop, 0)
	rcodes, lat := askMany(t, s, "frozen", 200, 4)
	t.Logf("200 misses with one of two nodes frozen: rcodes %v, p50 %s p99 %s max %s, frozen node got %d queries",
		rcodes, pct(lat, .5), pct(lat, .99), lat[len(lat)-1], frozen.Queries())
	t.Logf("retransmits %d, denied %d, live node %d queries", s.Forwarder().Retransmits(), s.Forwarder().BudgetDenied(), live.Queries())
	// From one port, every query whose port hashed to the frozen node (half of them) would
	// fail. With eight more ports one in 512 still draws the frozen node every time.
	if failed := 200 - rcodes[dns.RcodeSuccess]; failed > 2 {
		t.Errorf("rcodes %v, want at most 2 of 200 failed", rcodes)
	}
	if p95 := pct(lat, .95); p95 > 500*time.Millisecond {
		t.Errorf("p95 %s, want the live node's answer well before the 4s deadline (< 500ms)", p95)
	}
	if frozen.Queries() < 20 {
		t.Errorf("the frozen node got %d queries: the hash never chose it, the test shows nothing", frozen.Queries())
	}
}
