package resolver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/faultdns"
	"github.com/fleetdns/fleetdns/policy"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// The tests here play an attacker from one loopback address (127.0.0.2) and an ordinary client
// from another (127.0.0.3): per-client limits tell them apart by address.
const (
	attackerIP = "127.0.0.2"
	victimIP   = "127.0.0.3"
)

// slowZones forwards "slow.test." to an upstream that never answers, so each miss there holds
// its slot until ResolveTimeout, and everything else to one that answers at once.
func slowZones(t *testing.T) []ZoneConfig {
	t.Helper()
	good := startFault(t, "192.0.2.1", 300)
	dead := startFault(t, "192.0.2.2", 300)
	dead.Set(faultdns.Drop, 0)
	return []ZoneConfig{
		{Zone: ".", Upstreams: []netip.AddrPort{good.Addr}},
		{Zone: "slow.test.", Upstreams: []netip.AddrPort{dead.Addr}},
	}
}

// metric reads one value of the server's collector, as a scrape would.
func metric(t *testing.T, s *Server, name string, labels ...string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s%v", name, labels)
	return 0
}

func limitHits(t *testing.T, s *Server, l string) float64 {
	t.Helper()
	return metric(t, s, "fleetdns_limit_hits_total", "limit", l)
}

// waitFor polls cond until it holds or d passes; the machine may be busy with other tests.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dialFrom opens a TCP connection to s from the loopback address ip. rcvbuf > 0 shrinks the
// socket's receive buffer, so that a client that does not read blocks the server's writes soon.
func dialFrom(t *testing.T, s *Server, ip string, rcvbuf int) *net.TCPConn {
	t.Helper()
	c, err := tryDialFrom(t, s, ip, rcvbuf)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tryDialFrom is dialFrom for a connection the server may reset before the dial returns.
func tryDialFrom(t *testing.T, s *Server, ip string, rcvbuf int) (*net.TCPConn, error) {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 3 * time.Second}
	if rcvbuf > 0 {
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
			})
			return errors.Join(err, serr)
		}
	}
	c, err := d.Dial("tcp", s.Addrs()[0].String())
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn), nil
}

// frames packs one framed TCP query (RFC 1035 4.2.2) for A per name, IDs counting from 1.
func frames(t *testing.T, names ...string) []byte {
	t.Helper()
	return framesOf(t, dns.TypeA, names)
}

func framesOf(t *testing.T, qtype uint16, names []string) []byte {
	t.Helper()
	var out []byte
	for i, name := range names {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		m.Id = uint16(i + 1)
		b, err := m.Pack()
		if err != nil {
			t.Fatal(err)
		}
		out = binary.BigEndian.AppendUint16(out, uint16(len(b)))
		out = append(out, b...)
	}
	return out
}

// readFrame reads one framed reply.
func readFrame(c net.Conn, timeout time.Duration) (*dns.Msg, error) {
	c.SetReadDeadline(time.Now().Add(timeout))
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	m := new(dns.Msg)
	return m, m.Unpack(b)
}

// closedByServer reports whether the server closed c: a read ends with EOF or a reset, not a
// timeout.
func closedByServer(c net.Conn, timeout time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 512)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // replies still in the buffer
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// askFrom sends one query from the loopback address ip over net.
func askFrom(s *Server, ip, netw, name string) (*dns.Msg, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	if netw == "tcp" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(ip)}
	} else {
		d.LocalAddr = &net.UDPAddr{IP: net.ParseIP(ip)}
	}
	c := &dns.Client{Net: netw, Timeout: 2 * time.Second, Dialer: d}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	if netw == "udp" {
		// A query that arrives while a flood fills the socket's receive buffer is dropped by
		// the kernel, before fleetdns sees it; a stub client retries (resolv.conf attempts).
		c.Timeout = 650 * time.Millisecond
		var err error
		for range 3 {
			var r *dns.Msg
			if r, _, err = c.Exchange(m, s.Addrs()[0].String()); err == nil {
				return r, nil
			}
		}
		return nil, err
	}
	r, _, err := c.Exchange(m, s.Addrs()[0].String())
	return r, err
}

// victimAnswered sends n cache misses over UDP and n over TCP from victimIP, at once, and fails
// the test for each that does not get the upstream's answer.
func victimAnswered(t *testing.T, s *Server, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, 2*n)
	for _, netw := range []string{"udp", "tcp"} {
		for i := range n {
			name := fmt.Sprintf("victim-%s-%d.example.test", netw, i)
			wg.Go(func() {
				r, err := askFrom(s, victimIP, netw, name)
				switch {
				case err != nil:
					errs <- fmt.Errorf("%s over %s: %w", name, netw, err)
				case firstA(r) != "192.0.2.1":
					errs <- fmt.Errorf("%s over %s: rcode %s, answer %v", name, netw, dns.RcodeToString[r.Rcode], r.Answer)
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("client beside the attacker: %v", err)
	}
}

// slowNames are n distinct names under slow.test, long so that their replies fill buffers fast.
func slowNames(prefix string, n int) []string {
	pad := strings.Repeat("x", 60)
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d.%s.%s.%s.slow.test", prefix, i, pad, pad, pad)
	}
	return out
}

// One client cannot take every in-flight slot, whether it pipelines slow misses over TCP
// connections it never reads or floods them over UDP: a client at another address still gets
// its misses answered over both, and the per-client share is what stopped the attacker.
func TestNoClientTakesEverySlot(t *testing.T) {
	for _, tc := range []struct {
		name   string
		attack func(t *testing.T, s *Server)
	}{
		{"tcp, pipelining and never reading", func(t *testing.T, s *Server) {
			for i := range 3 {
				c := dialFrom(t, s, attackerIP, 4096)
				c.SetWriteDeadline(time.Now().Add(2 * time.Second))
				if _, err := c.Write(frames(t, slowNames(fmt.Sprintf("tcp%d", i), 100)...)); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"udp flood", func(t *testing.T, s *Server) {
			c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(attackerIP)}, net.UDPAddrFromAddrPort(s.Addrs()[0]))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			for _, name := range slowNames("udp", 300) {
				m := new(dns.Msg)
				m.SetQuestion(dns.Fqdn(name), dns.TypeA)
				b, _ := m.Pack()
				c.Write(b)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, Config{Forward: slowZones(t), MaxInflight: 64, ResolveTimeout: 3 * time.Second}, testCacheConfig())
			tc.attack(t, s)
			// The attacker has taken what it can once the slots are full or its share is.
			waitFor(t, 3*time.Second, "the attack neither filled the slots nor hit a limit", func() bool {
				return len(s.slots) == cap(s.slots) || s.Stats.Limits[limitInflightPerClient].Load() > 0
			})
			victimAnswered(t, s, 3)
			if got, max := len(s.slots), s.cfg.MaxInflightPerClient+6; got > max {
				t.Errorf("%d misses in flight, want at most the attacker's share and the victim's, %d", got, max)
			}
			if n := limitHits(t, s, "inflight_per_client"); n == 0 {
				t.Errorf("fleetdns_limit_hits_total{limit=inflight_per_client} = 0, want the attacker's misses over its share counted")
			}
		})
	}
}

// The share is one for UDP and TCP together: a client holding its share over UDP gets its TCP
// misses REFUSED at once.
func TestInflightShareAcrossTransports(t *testing.T) {
	s := startServer(t, Config{Forward: slowZones(t), MaxInflight: 128, ResolveTimeout: 3 * time.Second}, testCacheConfig())
	share := s.cfg.MaxInflightPerClient
	if share != 16 {
		t.Fatalf("MaxInflightPerClient = %d, want the default 128/8 = 16", share)
	}
	u, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(attackerIP)}, net.UDPAddrFromAddrPort(s.Addrs()[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	for _, name := range slowNames("udp", 40) {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		b, _ := m.Pack()
		u.Write(b)
	}
	waitFor(t, 3*time.Second, "the UDP misses over the share were not counted", func() bool {
		return s.Stats.Limits[limitInflightPerClient].Load() == uint64(40-share)
	})
	c := dialFrom(t, s, attackerIP, 0)
	c.Write(frames(t, slowNames("tcp", 10)...))
	for i := range 10 {
		r, err := readFrame(c, 2*time.Second)
		if err != nil {
			t.Fatalf("TCP reply %d: %v", i, err)
		}
		if r.Rcode != dns.RcodeRefused {
			t.Errorf("TCP miss %d with the share taken over UDP: rcode %s, want REFUSED", r.Id, dns.RcodeToString[r.Rcode])
		}
	}
	if n := limitHits(t, s, "inflight_per_client"); n != float64(40-share+10) {
		t.Errorf("fleetdns_limit_hits_total{limit=inflight_per_client} = %v, want %d", n, 40-share+10)
	}
}

// A connection stops being read at its cap of misses in flight, and is read again as they are
// answered.
func TestTCPPipelineCap(t *testing.T) {
	s := startServer(t, Config{Forward: slowZones(t), MaxInflightPerClient: 1000, ResolveTimeout: time.Second}, testCacheConfig())
	c := dialFrom(t, s, attackerIP, 0)
	const n = 100
	c.Write(frames(t, slowNames("p", n)...))
	waitFor(t, 3*time.Second, "the connection's misses never reached the cap", func() bool {
		return len(s.slots) >= defaultTCPPipeline
	})
	most := 0
	for i := range n {
		most = max(most, len(s.slots))
		if _, err := readFrame(c, 5*time.Second); err != nil {
			t.Fatalf("reply %d of %d: %v", i+1, n, err)
		}
	}
	if most > defaultTCPPipeline {
		t.Errorf("%d misses of one connection in flight, want at most %d", most, defaultTCPPipeline)
	}
	if hits := limitHits(t, s, "tcp_pipeline"); hits == 0 {
		t.Errorf("fleetdns_limit_hits_total{limit=tcp_pipeline} = 0, want the pause counted")
	}
}

// A client that pipelines queries and never reads its answers is closed when a write times out,
// and the slots its blocked replies held are free again.
func TestTCPWriteTimeout(t *testing.T) {
	s := startServer(t, Config{Forward: slowZones(t), ResolveTimeout: time.Second,
		TCP: TCPLimits{WriteTimeout: 300 * time.Millisecond, MaxQueries: 10000}}, testCacheConfig())
	// A 4 kB local answer: a thousand of them fill the socket buffers of loopback, whose
	// MSS of 64 kB lets the kernel queue megabytes for a client that does not read.
	txt := "big.example.test. 300 IN TXT" + strings.Repeat(" \""+strings.Repeat("t", 250)+"\"", 16)
	setPolicy(t, s, policy.Config{LocalData: []string{txt}})
	c := dialFrom(t, s, attackerIP, 4096)
	// First slow misses, whose SERVFAIL replies come after a second, when the buffers are
	// full; then the big answers that fill them.
	big := make([]string, 1000)
	for i := range big {
		big[i] = "big.example.test"
	}
	q := append(frames(t, slowNames("w", 50)...), framesOf(t, dns.TypeTXT, big)...)
	go func() {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		c.Write(q)
	}()
	waitFor(t, 5*time.Second, "the connection was never closed for a write timeout", func() bool {
		return s.Stats.Limits[limitTCPWriteTimeout].Load() > 0
	})
	waitFor(t, 3*time.Second, fmt.Sprintf("%d slots still held after the connection was closed", len(s.slots)), func() bool {
		return len(s.slots) == 0 && s.tcpConns.open() == 0
	})
	if n := limitHits(t, s, "tcp_write_timeout"); n != 1 {
		t.Errorf("fleetdns_limit_hits_total{limit=tcp_write_timeout} = %v, want 1", n)
	}
	if n := metric(t, s, "fleetdns_tcp_connections"); n != 0 {
		t.Errorf("fleetdns_tcp_connections = %v, want 0", n)
	}
}

// One client cannot hold all the TCP connections: over its share it is closed at accept while
// another client still gets in.
func TestTCPConnsPerClient(t *testing.T) {
	s := startServer(t, Config{Forward: slowZones(t), TCP: TCPLimits{MaxConns: 16, MaxConnsPerClient: 4}}, testCacheConfig())
	var conns []*net.TCPConn
	for range 16 {
		c, err := tryDialFrom(t, s, attackerIP, 0)
		if err != nil {
			continue // reset at accept before the dial returned
		}
		c.Write(frames(t, "www.example.test"))
		conns = append(conns, c)
	}
	served := 0
	for _, c := range conns {
		if _, err := readFrame(c, 2*time.Second); err == nil {
			served++
		}
	}
	if served != 4 {
		t.Errorf("attacker served on %d of 16 connections, want its share, 4", served)
	}
	for i := range 5 {
		if _, err := askFrom(s, victimIP, "tcp", fmt.Sprintf("v%d.example.test", i)); err != nil {
			t.Errorf("client beside the attacker, query %d over TCP: %v", i, err)
		}
	}
	if n := limitHits(t, s, "tcp_conns_per_client"); n != 12 {
		t.Errorf("fleetdns_limit_hits_total{limit=tcp_conns_per_client} = %v, want 12", n)
	}
}

// A client outside access control never holds a TCP slot: refused at accept, or closed after
// its REFUSED answer when the policy changes while it is connected.
func TestTCPRefusedClientClosed(t *testing.T) {
	s := startServer(t, Config{Forward: slowZones(t), TCP: TCPLimits{MaxConns: 8, MaxConnsPerClient: 8}}, testCacheConfig())
	t.Run("at accept", func(t *testing.T) {
		setPolicy(t, s, policy.Config{AccessControl: []netip.Prefix{netip.MustParsePrefix(victimIP + "/32")}})
		for i := range 16 {
			c, err := tryDialFrom(t, s, attackerIP, 0)
			if err != nil {
				continue // reset at accept before the dial returned
			}
			if !closedByServer(c, 2*time.Second) {
				t.Fatalf("refused client's connection %d still open", i)
			}
		}
		for i := range 5 {
			if _, err := askFrom(s, victimIP, "tcp", fmt.Sprintf("acl%d.example.test", i)); err != nil {
				t.Errorf("allowed client, query %d over TCP: %v", i, err)
			}
		}
		if n := limitHits(t, s, "tcp_access_control"); n != 16 {
			t.Errorf("fleetdns_limit_hits_total{limit=tcp_access_control} = %v, want 16", n)
		}
	})
	t.Run("after its REFUSED answer", func(t *testing.T) {
		setPolicy(t, s, policy.Config{})
		c := dialFrom(t, s, victimIP, 0)
		c.Write(frames(t, "www.example.test"))
		if _, err := readFrame(c, 2*time.Second); err != nil {
			t.Fatal(err)
		}
		before := s.Stats.Limits[limitTCPAccess].Load()
		setPolicy(t, s, policy.Config{AccessControl: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}})
		c.Write(frames(t, "www.example.test"))
		r, err := readFrame(c, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if r.Rcode != dns.RcodeRefused {
			t.Errorf("rcode %s, want REFUSED", dns.RcodeToString[r.Rcode])
		}
		if !closedByServer(c, 2*time.Second) {
			t.Errorf("connection still open after REFUSED")
		}
		if got := s.Stats.Limits[limitTCPAccess].Load() - before; got != 1 {
			t.Errorf("tcp_access_control counted %d more, want 1", got)
		}
	})
}

// A busy connection does not live forever: the idle timer restarts with each query, the
// lifetime and the query cap do not.
func TestTCPConnectionLifetime(t *testing.T) {
	t.Run("lifetime", func(t *testing.T) {
		s := startServer(t, Config{Forward: slowZones(t), TCP: TCPLimits{Lifetime: 500 * time.Millisecond}}, testCacheConfig())
		c := dialFrom(t, s, victimIP, 0)
		start := time.Now()
		answered := 0
		for time.Since(start) < 3*time.Second {
			c.Write(frames(t, "www.example.test"))
			if _, err := readFrame(c, time.Second); err != nil {
				break
			}
			answered++
			time.Sleep(50 * time.Millisecond)
		}
		if d := time.Since(start); d >= 3*time.Second {
			t.Fatalf("connection querying every 50ms still open after %v, want it closed at its 500ms lifetime", d)
		}
		if answered < 2 {
			t.Errorf("%d answers before the close, want the connection used until its lifetime", answered)
		}
		if n := limitHits(t, s, "tcp_lifetime"); n != 1 {
			t.Errorf("fleetdns_limit_hits_total{limit=tcp_lifetime} = %v, want 1", n)
		}
	})
	t.Run("queries per connection", func(t *testing.T) {
		s := startServer(t, Config{Forward: slowZones(t), TCP: TCPLimits{MaxQueries: 5}}, testCacheConfig())
		ask(t, s, "udp", "www.example.test", dns.TypeA)
		c := dialFrom(t, s, victimIP, 0)
		names := make([]string, 10)
		for i := range names {
			names[i] = "www.example.test"
		}
		c.Write(frames(t, names...))
		answered := 0
		for {
			if _, err := readFrame(c, 2*time.Second); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					t.Fatalf("connection still open after %d answers, want it closed after 5", answered)
				}
				break
			}
			answered++
		}
		if answered != 5 {
			t.Errorf("%d answers on one connection, want 5", answered)
		}
		if n := limitHits(t, s, "tcp_queries_per_conn"); n != 1 {
			t.Errorf("fleetdns_limit_hits_total{limit=tcp_queries_per_conn} = %v, want 1", n)
		}
	})
}

// A UDP query too large to read whole is answered FORMERR, not dropped; one that fits is
// answered as usual.
func TestUDPQuerySize(t *testing.T) {
	s := startServer(t, Config{Forward: slowZones(t)}, testCacheConfig())
	c, err := net.Dial("udp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i, tc := range []struct {
		size  int
		rcode int
	}{
		{512, dns.RcodeSuccess},
		{maxUDPQuery, dns.RcodeSuccess},
		{maxUDPQuery + 1, dns.RcodeFormatError},
		{9000, dns.RcodeFormatError},
	} {
		t.Run(fmt.Sprint(tc.size), func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("www.example.test.", dns.TypeA)
			m.Id = uint16(100 + i)
			m.SetEdns0(1232, false)
			base := m.Len() + 4 // with an empty padding option
			opt := m.IsEdns0()
			opt.Option = append(opt.Option, &dns.EDNS0_PADDING{Padding: make([]byte, tc.size-base)})
			b, err := m.Pack()
			if err != nil || len(b) != tc.size {
				t.Fatalf("packed %d bytes (%v), want %d", len(b), err, tc.size)
			}
			c.Write(b)
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 1500)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("%d-byte query: no answer: %v", tc.size, err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(buf[:n]); err != nil {
				t.Fatal(err)
			}
			if r.Id != m.Id || r.Rcode != tc.rcode {
				t.Errorf("%d-byte query: ID %d rcode %s, want ID %d rcode %s", tc.size, r.Id,
					dns.RcodeToString[r.Rcode], m.Id, dns.RcodeToString[tc.rcode])
			}
		})
	}
	if n := limitHits(t, s, "udp_query_size"); n != 2 {
		t.Errorf("fleetdns_limit_hits_total{limit=udp_query_size} = %v, want 2", n)
	}
}

// Per-client limits count an IPv6 client by its /64, which one host can fill with addresses.
func TestClientKey(t *testing.T) {
	for _, tc := range []struct{ addr, want string }{
		{"192.0.2.7", "192.0.2.7"},
		{"::ffff:192.0.2.7", "192.0.2.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::"},
		{"2001:db8:1:2:ffff::9", "2001:db8:1:2::"},
		{"::1", "::"},
	} {
		if got := clientKey(netip.MustParseAddr(tc.addr)); got.String() != tc.want {
			t.Errorf("clientKey(%s) = %s, want %s", tc.addr, got, tc.want)
		}
	}
}

// All clients together hold at most MaxConns connections; one over is closed at accept.
func TestTCPConns(t *testing.T) {
	s := startServer(t, Config{Forward: slowZones(t), TCP: TCPLimits{MaxConns: 2, MaxConnsPerClient: 2}}, testCacheConfig())
	for i, ip := range []string{"127.0.0.4", "127.0.0.5"} {
		c := dialFrom(t, s, ip, 0)
		c.Write(frames(t, "www.example.test"))
		if _, err := readFrame(c, 2*time.Second); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	if _, err := askFrom(s, victimIP, "tcp", "www.example.test"); err == nil {
		t.Errorf("third connection answered, want it closed at accept with 2 open")
	}
	if n := limitHits(t, s, "tcp_conns"); n != 1 {
		t.Errorf("fleetdns_limit_hits_total{limit=tcp_conns} = %v, want 1", n)
	}
	if n := metric(t, s, "fleetdns_tcp_connections"); n != 2 {
		t.Errorf("fleetdns_tcp_connections = %v, want 2", n)
	}
}

// The global cap on misses in flight (MaxInflight) drops UDP misses beyond it, whoever sends
// them, and says so in fleetdns_dropped_queries_total; fleetdns_inflight_queries shows the
// slots taken. Here each client's share is the whole cap, so the second client meets the cap.
func TestInflightCap(t *testing.T) {
	s := startServer(t, Config{Forward: slowZones(t), MaxInflight: 8, MaxInflightPerClient: 8, ResolveTimeout: 2 * time.Second}, testCacheConfig())
	for i, ip := range []string{attackerIP, victimIP} {
		c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(ip)}, net.UDPAddrFromAddrPort(s.Addrs()[0]))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, name := range slowNames(fmt.Sprintf("cap%d", i), 10) {
			m := new(dns.Msg)
			m.SetQuestion(dns.Fqdn(name), dns.TypeA)
			b, _ := m.Pack()
			c.Write(b)
		}
		if i == 0 {
			waitFor(t, 2*time.Second, "the first client's misses never filled the slots", func() bool { return len(s.slots) == 8 })
		}
	}
	waitFor(t, 2*time.Second, "the cap never dropped the second client's misses", func() bool { return s.Stats.Dropped.Load() >= 10 })
	if got := metric(t, s, "fleetdns_dropped_queries_total"); got < 10 {
		t.Errorf("fleetdns_dropped_queries_total = %v, want the second client's 10 misses beyond the cap of 8", got)
	}
	if got := metric(t, s, "fleetdns_inflight_queries"); got != 8 {
		t.Errorf("fleetdns_inflight_queries = %v, want 8 (the cap)", got)
	}
}
