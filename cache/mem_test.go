package cache

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkMemoryPerAnswer reports the live heap one cached single-A answer costs, entry and
// LRU bookkeeping together (the harness measures resident size, which adds GC headroom).
func BenchmarkMemoryPerAnswer(b *testing.B) {
	const n = 100000
	qs := make([]Question, n)
	ms := make([]*dns.Msg, n)
	for i := range qs {
		name := fmt.Sprintf("m%d.r1-fleetdns.miss.bench.test.", i)
		qs[i] = question(b, name, dns.TypeA)
		ms[i] = response(b, name, dns.TypeA, 0, name+" 86400 IN A 192.0.2.2")
	}
	for b.Loop() {
		c := testCache(b, func(c *Config) { c.Size = n + 1 })
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range qs {
			e, err := c.Build(&qs[i], ms[i], t0)
			if err != nil {
				b.Fatal(err)
			}
			c.Put(e)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/answer")
		runtime.KeepAlive(c)
	}
}
