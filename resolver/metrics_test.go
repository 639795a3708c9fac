package resolver

import (
	"testing"

	"github.com/miekg/dns"
)

func TestCacheBytesMetric(t *testing.T) {
	up := startFault(t, "192.0.2.1", 300)
	s := startServer(t, Config{Forward: forwardTo(up)}, testCacheConfig())
	if got := metric(t, s, "fleetdns_cache_bytes"); got != 0 {
		t.Fatalf("fleetdns_cache_bytes of an empty cache = %v, want 0", got)
	}
	ask(t, s, "udp", "www.example.test", dns.TypeA)
	ask(t, s, "udp", "mail.example.test", dns.TypeA)
	want := s.cache.Bytes()
	if got := metric(t, s, "fleetdns_cache_bytes"); got != float64(want) || want == 0 {
		t.Errorf("fleetdns_cache_bytes = %v, want Cache.Bytes() %d, above 0", got, want)
	}
}
