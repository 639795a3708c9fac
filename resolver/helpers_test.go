package resolver

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/faultdns"
	"github.com/fleetdns/fleetdns/cache"
	"github.com/fleetdns/fleetdns/policy"
	"github.com/miekg/dns"
)

// requireTool fails in CI (FLEETDNS_REQUIRE_TOOLS=1, set by the test script) and skips
// elsewhere when an external program a test needs is missing.
func requireTool(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("FLEETDNS_REQUIRE_TOOLS") != "" {
		t.Fatal(err)
	}
	t.Skip(err)
}

func testCacheConfig() cache.Config {
	return cache.Config{Size: 10000, MaxNegativeTTL: 60 * time.Second, Prefetch: true, ServeStale: true, StaleTTL: time.Hour}
}

// startServer runs a resolver on a free loopback port until the test ends.
func startServer(t *testing.T, cfg Config, cc cache.Config) *Server {
	t.Helper()
	return startServerLog(t, cfg, cc, slog.New(slog.DiscardHandler))
}

func startServerLog(t *testing.T, cfg Config, cc cache.Config, log *slog.Logger) *Server {
	t.Helper()
	if len(cfg.Listen) == 0 {
		cfg.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	}
	if cfg.SocketsPerListener == 0 {
		cfg.SocketsPerListener = 2
	}
	c, err := cache.New(cc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.New(policy.Config{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, c, p, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

func forwardTo(ups ...*faultdns.Server) []ZoneConfig {
	z := ZoneConfig{Zone: "."}
	for _, u := range ups {
		z.Upstreams = append(z.Upstreams, u.Addr)
	}
	return []ZoneConfig{z}
}

func startFault(t *testing.T, ip string, ttl uint32) *faultdns.Server {
	t.Helper()
	s, err := faultdns.Start("127.0.0.1:0", netip.MustParseAddr(ip), ttl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// ask sends one query over net ("udp" or "tcp") and fails the test if no answer comes.
func ask(t *testing.T, s *Server, net, name string, qtype uint16) *dns.Msg {
	t.Helper()
	r, err := exchange(s, net, name, qtype, nil)
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], net, err)
	}
	return r
}

func exchange(s *Server, net, name string, qtype uint16, mod func(*dns.Msg)) (*dns.Msg, error) {
	c := &dns.Client{Net: net, Timeout: 6 * time.Second, UDPSize: 1232}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	if mod != nil {
		mod(m)
	}
	r, _, err := c.Exchange(m, s.Addrs()[0].String())
	return r, err
}

func firstA(m *dns.Msg) string {
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

// clock is a Config.Clock a test advances instead of sleeping through TTLs.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
