package cache

import (
	"fmt"
	"runtime"
	"strings"
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

// txtAnswer is a response to name TXT whose records hold about size bytes of text.
func txtAnswer(t testing.TB, name string, size int) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	m.Response = true
	for size > 0 {
		n := min(size, 255)
		rr := &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
			Txt: []string{strings.Repeat("x", n)}}
		m.Answer = append(m.Answer, rr)
		size -= n + 13 // text, its length byte, a compressed owner and the fixed fields
	}
	return m
}

// TestEntryOverhead measures the live heap a stored answer costs beyond its data allocation
// (Entry.Size counts cap(data)), for answers from about 100 bytes to 60 KB, and checks that
// EntryOverhead covers it without overstating it by more than a quarter.
func TestEntryOverhead(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates about 100 MB")
	}
	for _, size := range []int{100, 1000, 8000, 60000} {
		n := min(20000, max(1000, 40_000_000/size))
		qs := make([]Question, n)
		for i := range qs {
			qs[i] = question(t, fmt.Sprintf("m%d.size.test.", i), dns.TypeTXT)
		}
		c := testCache(t, func(c *Config) { c.Size = 64 * n; c.MaxBytes = 1 << 40 })
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range qs {
			e, err := c.Build(&qs[i], txtAnswer(t, q2s(qs[i]), size), t0)
			if err != nil {
				t.Fatal(err)
			}
			c.Put(e)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(qs)
		var data int
		c.Range(func(_ Question, e *Entry) bool { data += cap(e.data); return true })
		heap := float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
		over := heap - float64(data)/float64(n)
		t.Logf("answer ~%d B: heap %.0f B, data %.0f B, overhead %.0f B per entry", size, heap, float64(data)/float64(n), over)
		if over > EntryOverhead || over < EntryOverhead*3/4 {
			t.Errorf("answer ~%d B: overhead %.0f B per entry, EntryOverhead = %d", size, over, EntryOverhead)
		}
		if got, want := c.Bytes(), int64(data+c.Len()*EntryOverhead); got != want || c.Len() != n {
			t.Errorf("Bytes() = %d with %d entries, want %d with %d", got, c.Len(), want, n)
		}
		runtime.KeepAlive(c)
	}
}
