package cache

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func testCache(t testing.TB, mod func(*Config)) *Cache {
	t.Helper()
	cfg := Config{Size: 1000, MaxNegativeTTL: 60 * time.Second, Prefetch: true, ServeStale: true, StaleTTL: time.Hour}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func question(t testing.TB, name string, qtype uint16) Question {
	t.Helper()
	q, err := NewQuestion(name, qtype, dns.ClassINET, false, false)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func response(t testing.TB, name string, qtype uint16, rcode int, rrs ...string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.Response = true
	m.Rcode = rcode
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		if rr.Header().Rrtype == dns.TypeSOA {
			m.Ns = append(m.Ns, rr)
		} else {
			m.Answer = append(m.Answer, rr)
		}
	}
	return m
}

func store(t testing.TB, c *Cache, q Question, m *dns.Msg, now time.Time) *Entry {
	t.Helper()
	e, err := c.Build(&q, m, now)
	if err != nil {
		t.Fatal(err)
	}
	c.Put(e)
	return e
}

// serve runs the hit path and unpacks what a client would receive.
func serve(t testing.TB, e *Entry, r Reply, now time.Time) *dns.Msg {
	t.Helper()
	if r.Name == nil {
		r.Name = e.key()[:e.nameLen]
	}
	out := new(dns.Msg)
	if err := out.Unpack(e.AppendAnswer(nil, &r, now)); err != nil {
		t.Fatalf("unpack served answer: %v", err)
	}
	return out
}

func TestTTLCountsDown(t *testing.T) {
	c := testCache(t, func(c *Config) { c.Prefetch = false })
	q := question(t, "www.example.test", dns.TypeA)
	store(t, c, q, response(t, "www.example.test", dns.TypeA, 0, "www.example.test. 300 IN A 192.0.2.10"), t0)
	for _, tc := range []struct {
		after time.Duration
		want  uint32
	}{{0, 300}, {100 * time.Second, 200}, {299*time.Second + 999*time.Millisecond, 1}} {
		e, st := c.Get(&q, t0.Add(tc.after))
		if st != Fresh {
			t.Fatalf("Get after %s = %s, want fresh", tc.after, st)
		}
		got := serve(t, e, Reply{ID: 7}, t0.Add(tc.after))
		if ttl := got.Answer[0].Header().Ttl; ttl != tc.want {
			t.Errorf("TTL after %s = %d, want %d", tc.after, ttl, tc.want)
		}
		if got.Id != 7 || !got.Response || !got.RecursionAvailable {
			t.Errorf("header = id %d qr %v ra %v, want id 7 qr ra", got.Id, got.Response, got.RecursionAvailable)
		}
	}
	if _, st := c.Get(&q, t0.Add(300*time.Second)); st != Stale {
		t.Errorf("Get at expiry = %s, want stale", st)
	}
}

func TestTTLClamp(t *testing.T) {
	c := testCache(t, func(c *Config) { c.MinTTL = 60 * time.Second; c.MaxTTL = time.Hour })
	for _, tc := range []struct {
		ttl, want uint32
	}{{5, 60}, {600, 600}, {86400, 3600}} {
		q := question(t, fmt.Sprintf("t%d.example.test", tc.ttl), dns.TypeA)
		m := response(t, q2s(q), dns.TypeA, 0, fmt.Sprintf("%s %d IN A 192.0.2.1", q2s(q), tc.ttl))
		e := store(t, c, q, m, t0)
		if e.TTL() != time.Duration(tc.want)*time.Second {
			t.Errorf("TTL %d stored as %s, want %ds", tc.ttl, e.TTL(), tc.want)
		}
	}
}

func q2s(q Question) string {
	n, _, _ := dns.UnpackDomainName(q.Name, 0)
	return n
}

func TestNegativeCaching(t *testing.T) {
	const soa = "example.test. 3600 IN SOA ns1.example.test. h.example.test. 1 3600 900 604800 %d"
	for _, tc := range []struct {
		name    string
		rcode   int
		minimum uint32
		maxNeg  time.Duration
		rrs     bool
		want    time.Duration
	}{
		{"nxdomain capped by max_negative_ttl", dns.RcodeNameError, 120, 60 * time.Second, true, 60 * time.Second},
		{"nxdomain uses SOA MINIMUM", dns.RcodeNameError, 30, 60 * time.Second, true, 30 * time.Second},
		{"nodata uses SOA MINIMUM", dns.RcodeSuccess, 120, 300 * time.Second, true, 120 * time.Second},
		{"nxdomain without SOA is not cached", dns.RcodeNameError, 0, 60 * time.Second, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testCache(t, func(c *Config) { c.MaxNegativeTTL = tc.maxNeg })
			q := question(t, "nope.example.test", dns.TypeA)
			var rrs []string
			if tc.rrs {
				rrs = append(rrs, fmt.Sprintf(soa, tc.minimum))
			}
			e := store(t, c, q, response(t, "nope.example.test", dns.TypeA, tc.rcode, rrs...), t0)
			if e.TTL() != tc.want {
				t.Fatalf("negative TTL = %s, want %s", e.TTL(), tc.want)
			}
			e, st := c.Get(&q, t0.Add(time.Second))
			if tc.want == 0 {
				if st != Miss {
					t.Fatalf("Get = %s, want miss", st)
				}
				return
			}
			got := serve(t, e, Reply{}, t0.Add(time.Second))
			if got.Rcode != tc.rcode || len(got.Ns) != 1 || got.Ns[0].Header().Rrtype != dns.TypeSOA {
				t.Fatalf("served rcode %d authority %v, want rcode %d with the SOA", got.Rcode, got.Ns, tc.rcode)
			}
			if ttl := got.Ns[0].Header().Ttl; ttl != uint32(tc.want/time.Second)-1 {
				t.Errorf("SOA TTL = %d, want %d", ttl, uint32(tc.want/time.Second)-1)
			}
		})
	}
}

func TestServfailIsNotCached(t *testing.T) {
	c := testCache(t, nil)
	q := question(t, "www.example.test", dns.TypeA)
	store(t, c, q, response(t, "www.example.test", dns.TypeA, dns.RcodeServerFailure), t0)
	if _, st := c.Get(&q, t0); st != Miss {
		t.Errorf("Get after SERVFAIL = %s, want miss", st)
	}
}

func TestPrefetchTrigger(t *testing.T) {
	c := testCache(t, nil)
	q := question(t, "www.example.test", dns.TypeA)
	store(t, c, q, response(t, "www.example.test", dns.TypeA, 0, "www.example.test. 100 IN A 192.0.2.10"), t0)
	for _, tc := range []struct {
		at   time.Duration
		want State
	}{
		{89 * time.Second, Fresh},    // 11% left
		{91 * time.Second, Prefetch}, // 9% left: this hit starts the one refresh
		{92 * time.Second, Fresh},    // the refresh is already running
		{99 * time.Second, Fresh},    // and no second one starts
		{100 * time.Second, Stale},   // expired
		{3701 * time.Second, Miss},   // past the stale window
		{3702 * time.Second, Miss},   // and gone
	} {
		if _, st := c.Get(&q, t0.Add(tc.at)); st != tc.want {
			t.Errorf("Get at %s = %s, want %s", tc.at, st, tc.want)
		}
	}
}

// A short TTL gets a prefetch window of a second (half the TTL at most), not 10% of it.
func TestPrefetchWindowShortTTL(t *testing.T) {
	for _, tc := range []struct {
		ttl      int
		fresh    time.Duration // the last hit that does not start a refresh
		prefetch time.Duration // the first that does
	}{
		{4, 2900 * time.Millisecond, 3100 * time.Millisecond},
		{1, 400 * time.Millisecond, 600 * time.Millisecond},
		{20, 17900 * time.Millisecond, 18100 * time.Millisecond}, // 10% is 2 s: unbound's rule
	} {
		c := testCache(t, nil)
		q := question(t, "www.example.test", dns.TypeA)
		store(t, c, q, response(t, "www.example.test", dns.TypeA, 0, fmt.Sprintf("www.example.test. %d IN A 192.0.2.10", tc.ttl)), t0)
		if _, st := c.Get(&q, t0.Add(tc.fresh)); st != Fresh {
			t.Errorf("TTL %ds, hit at %s = %s, want fresh", tc.ttl, tc.fresh, st)
		}
		if _, st := c.Get(&q, t0.Add(tc.prefetch)); st != Prefetch {
			t.Errorf("TTL %ds, hit at %s = %s, want prefetch", tc.ttl, tc.prefetch, st)
		}
	}
}

func TestPrefetchOff(t *testing.T) {
	c := testCache(t, func(c *Config) { c.Prefetch = false })
	q := question(t, "www.example.test", dns.TypeA)
	store(t, c, q, response(t, "www.example.test", dns.TypeA, 0, "www.example.test. 100 IN A 192.0.2.10"), t0)
	if _, st := c.Get(&q, t0.Add(95*time.Second)); st != Fresh {
		t.Errorf("Get in the prefetch window with prefetch off = %s, want fresh", st)
	}
}

func TestStaleAnswer(t *testing.T) {
	c := testCache(t, nil)
	q := question(t, "www.example.test", dns.TypeA)
	store(t, c, q, response(t, "www.example.test", dns.TypeA, 0, "www.example.test. 60 IN A 192.0.2.10"), t0)
	now := t0.Add(10 * time.Minute)
	e, st := c.Get(&q, now)
	if st != Stale {
		t.Fatalf("Get 10m after a 60s TTL = %s, want stale", st)
	}
	got := serve(t, e, Reply{EDNS: true, Stale: true}, now)
	if ttl := got.Answer[0].Header().Ttl; ttl != StaleTTL {
		t.Errorf("stale TTL = %d, want %d", ttl, StaleTTL)
	}
	opt := got.IsEdns0()
	if opt == nil || len(opt.Option) != 1 {
		t.Fatalf("stale answer OPT = %v, want one EDE option", opt)
	}
	if ede, ok := opt.Option[0].(*dns.EDNS0_EDE); !ok || ede.InfoCode != dns.ExtendedErrorCodeStaleAnswer {
		t.Errorf("option = %v, want EDE 3 (Stale Answer)", opt.Option[0])
	}

	off := testCache(t, func(c *Config) { c.ServeStale = false })
	store(t, off, q, response(t, "www.example.test", dns.TypeA, 0, "www.example.test. 60 IN A 192.0.2.10"), t0)
	if _, st := off.Get(&q, t0.Add(61*time.Second)); st != Miss {
		t.Errorf("Get after expiry with serve_stale off = %s, want miss", st)
	}
}

func TestEviction(t *testing.T) {
	c := testCache(t, func(c *Config) { c.Size = 4 })
	var qs []Question
	for i := range 5 {
		q := question(t, fmt.Sprintf("h%d.example.test", i), dns.TypeA)
		qs = append(qs, q)
		store(t, c, q, response(t, q2s(q), dns.TypeA, 0, q2s(q)+" 300 IN A 192.0.2.1"), t0)
	}
	if c.Len() != 4 || c.Evictions() != 1 {
		t.Errorf("Len = %d, Evictions = %d, want 4 and 1", c.Len(), c.Evictions())
	}
	if _, st := c.Get(&qs[0], t0); st != Miss {
		t.Errorf("oldest entry = %s, want evicted (miss)", st)
	}
	if _, st := c.Get(&qs[4], t0); st != Fresh {
		t.Errorf("newest entry = %s, want fresh", st)
	}
}

func TestKeyIncludesTypeAndBits(t *testing.T) {
	c := testCache(t, nil)
	q := question(t, "www.example.test", dns.TypeA)
	store(t, c, q, response(t, "www.example.test", dns.TypeA, 0, "www.example.test. 300 IN A 192.0.2.10"), t0)
	upper := question(t, "WWW.Example.TEST", dns.TypeA)
	for _, tc := range []struct {
		name string
		q    Question
		want State
	}{
		{"same", q, Fresh},
		{"case-insensitive", upper, Fresh},
		{"other type", question(t, "www.example.test", dns.TypeAAAA), Miss},
		{"DO bit", Question{Name: q.Name, Type: q.Type, Class: q.Class, DO: true}, Miss},
		{"CD bit", Question{Name: q.Name, Type: q.Type, Class: q.Class, CD: true}, Miss},
		{"other class", Question{Name: q.Name, Type: q.Type, Class: dns.ClassCHAOS}, Miss},
	} {
		if _, st := c.Get(&tc.q, t0); st != tc.want {
			t.Errorf("%s: Get = %s, want %s", tc.name, st, tc.want)
		}
	}
}

func TestAnswerKeepsClientCase(t *testing.T) {
	c := testCache(t, nil)
	q := question(t, "www.example.test", dns.TypeA)
	e := store(t, c, q, response(t, "www.example.test", dns.TypeA, 0, "www.example.test. 300 IN A 192.0.2.10"), t0)
	wire := make([]byte, 256)
	n, _ := dns.PackDomainName("wWw.ExAmPlE.tEsT.", wire, 0, nil, false)
	got := serve(t, e, Reply{Name: wire[:n]}, t0)
	if got.Question[0].Name != "wWw.ExAmPlE.tEsT." || got.Answer[0].Header().Name != "wWw.ExAmPlE.tEsT." {
		t.Errorf("question %q answer owner %q, want the client's 0x20 case", got.Question[0].Name, got.Answer[0].Header().Name)
	}
}

func TestTruncatesForUDP(t *testing.T) {
	c := testCache(t, nil)
	q := question(t, "big.example.test", dns.TypeA)
	var rrs []string
	for i := range 60 {
		rrs = append(rrs, fmt.Sprintf("big.example.test. 300 IN A 192.0.2.%d", i))
	}
	e := store(t, c, q, response(t, "big.example.test", dns.TypeA, 0, rrs...), t0)
	got := serve(t, e, Reply{MaxSize: 512}, t0)
	if !got.Truncated || len(got.Answer) != 0 || len(got.Question) != 1 {
		t.Errorf("512-byte reply: TC %v, %d answers, want TC with the question only", got.Truncated, len(got.Answer))
	}
	got = serve(t, e, Reply{MaxSize: 1232, EDNS: true}, t0)
	if got.Truncated || len(got.Answer) != 60 || got.IsEdns0() == nil {
		t.Errorf("1232-byte EDNS reply: TC %v, %d answers, want all 60 with OPT", got.Truncated, len(got.Answer))
	}
}

// Over TCP (MaxSize 0) a reply fits the 2-byte length prefix: the EDNS options go first, then
// the records (TC). Over UDP the same order saves a stale answer a retry over TCP.
func TestReplyFitsLimit(t *testing.T) {
	c := testCache(t, nil)
	for _, tc := range []struct {
		name     string
		size     int // of the stored answer
		r        Reply
		records  bool // all records served
		wantOpts int  // EDNS options in the OPT
	}{
		{"tcp, room for everything", 60000, Reply{EDNS: true, Stale: true}, true, 1},
		{"tcp, room for OPT without EDE", 65522, Reply{EDNS: true, Stale: true}, true, 0},
		{"tcp, room for the records only", 65530, Reply{EDNS: true, Stale: true}, false, 1},
		{"tcp without EDNS", 65530, Reply{Stale: true}, true, -1},
		{"udp, room for OPT without EDE", 1232 - 11, Reply{EDNS: true, Stale: true, MaxSize: 1232}, true, 0},
		{"udp, room for everything", 1232 - 17, Reply{EDNS: true, Stale: true, MaxSize: 1232}, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := "fit.example.test."
			q := question(t, name, dns.TypeTXT)
			m := txtAnswer(t, name, 0)
			m.Compress = true
			txt := func(n int) dns.RR {
				return &dns.TXT{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 300},
					Txt: []string{strings.Repeat("x", n)}}
			}
			// A record is 13 bytes (compressed owner, fixed fields, text length) plus its text.
			for tc.size-m.Len() > 2*(13+255) {
				m.Answer = append(m.Answer, txt(255))
			}
			rest := tc.size - m.Len()
			m.Answer = append(m.Answer, txt(rest/2-13), txt(rest-rest/2-13))
			if m.Len() != tc.size {
				t.Fatalf("test answer of %d bytes, want %d", m.Len(), tc.size)
			}
			e := store(t, c, q, m, t0)
			r := tc.r
			r.Name = q.Name
			wire := e.AppendAnswer(nil, &r, t0)
			limit := r.MaxSize
			if limit == 0 {
				limit = MaxMessageSize
			}
			if len(wire) > limit {
				t.Fatalf("reply of %d bytes, above the limit %d", len(wire), limit)
			}
			got := new(dns.Msg)
			if err := got.Unpack(wire); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if full := !got.Truncated && len(got.Answer) == len(m.Answer); full != tc.records {
				t.Errorf("TC %v with %d of %d records, want all served = %v", got.Truncated, len(got.Answer), len(m.Answer), tc.records)
			}
			opts := -1
			if opt := got.IsEdns0(); opt != nil {
				opts = len(opt.Option)
			}
			if opts != tc.wantOpts {
				t.Errorf("EDNS options = %d, want %d (-1: no OPT)", opts, tc.wantOpts)
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	c := testCache(t, nil)
	q := question(t, "multi.example.test", dns.TypeA)
	var rrs []string
	for i := 1; i <= 4; i++ {
		rrs = append(rrs, fmt.Sprintf("multi.example.test. 300 IN A 192.0.2.%d", i))
	}
	e := store(t, c, q, response(t, "multi.example.test", dns.TypeA, 0, rrs...), t0)
	firsts := map[string]bool{}
	for range 4 {
		got := serve(t, e, Reply{Rotate: true}, t0)
		if len(got.Answer) != 4 {
			t.Fatalf("%d answers, want 4", len(got.Answer))
		}
		firsts[got.Answer[0].(*dns.A).A.String()] = true
	}
	if len(firsts) != 4 {
		t.Errorf("first records over 4 answers = %v, want all 4 addresses", firsts)
	}
	if got := serve(t, e, Reply{}, t0); got.Answer[0].(*dns.A).A.String() != "192.0.2.1" {
		t.Errorf("without rotation first = %s, want the stored order", got.Answer[0])
	}
}

func BenchmarkHit(b *testing.B) {
	c := testCache(b, nil)
	q := question(b, "www.example.test", dns.TypeA)
	store(b, c, q, response(b, "www.example.test", dns.TypeA, 0, "www.example.test. 300 IN A 192.0.2.10"), t0)
	buf := make([]byte, 0, 4096)
	r := Reply{ID: 1, Name: q.Name, RD: true, EDNS: true, MaxSize: 1232}
	now := t0.Add(time.Second)
	b.ReportAllocs()
	for b.Loop() {
		e, st := c.Get(&q, now)
		if st != Fresh {
			b.Fatal(st)
		}
		buf = e.AppendAnswer(buf[:0], &r, now)
	}
}

func ExampleCache() {
	c, _ := New(Config{Size: 100, ServeStale: true, StaleTTL: time.Hour})
	q, _ := NewQuestion("www.example.test.", dns.TypeA, dns.ClassINET, false, false)
	m := new(dns.Msg)
	m.SetQuestion("www.example.test.", dns.TypeA)
	rr, _ := dns.NewRR("www.example.test. 60 IN A 192.0.2.10")
	m.Answer = []dns.RR{rr}
	e, _ := c.Build(&q, m, t0)
	c.Put(e)

	for _, after := range []time.Duration{30 * time.Second, 2 * time.Minute, 2 * time.Hour} {
		_, st := c.Get(&q, t0.Add(after))
		fmt.Println(after, st)
	}
	// Output:
	// 30s fresh
	// 2m0s stale
	// 2h0m0s miss
}

// An SOA that came without rdata unpacks as a zero-value SOA, which packs as rdata no one can
// parse (FuzzUpstreamAnswer found it). Such an answer is refused, not stored and served.
func TestBuildRefusesWhatDoesNotUnpack(t *testing.T) {
	c := testCache(t, nil)
	q := question(t, "nx.example.test", dns.TypeA)
	m := response(t, "nx.example.test", dns.TypeA, dns.RcodeNameError)
	m.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.test.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60}}}
	if e, err := c.Build(&q, m, t0); err == nil {
		t.Fatalf("Build(answer with an empty SOA) = entry %v, want an error", e)
	}
}

// bigAnswer stores an answer of about size bytes to name i under zone and returns its question.
func bigAnswer(t testing.TB, c *Cache, i, size int, now time.Time) Question {
	t.Helper()
	name := fmt.Sprintf("b%d.big.test.", i)
	q := question(t, name, dns.TypeTXT)
	store(t, c, q, txtAnswer(t, name, size), now)
	return q
}

func TestByteBound(t *testing.T) {
	one := func(t *testing.T) int64 {
		c := testCache(t, nil)
		bigAnswer(t, c, 0, 8000, t0)
		return c.Bytes()
	}(t)
	if one < 8000+EntryOverhead {
		t.Fatalf("Bytes() of one 8 KB answer = %d, want at least %d", one, 8000+EntryOverhead)
	}
	c := testCache(t, func(c *Config) { c.MaxBytes = 4*one + one/2 })
	var qs []Question
	for i := range 10 {
		qs = append(qs, bigAnswer(t, c, i, 8000, t0))
		if c.Bytes() > c.Config().MaxBytes {
			t.Fatalf("after %d answers Bytes() = %d, above MaxBytes %d", i+1, c.Bytes(), c.Config().MaxBytes)
		}
	}
	if c.Len() != 4 || c.Bytes() != 4*one || c.Evictions() != 6 {
		t.Errorf("Len, Bytes, Evictions = %d, %d, %d, want 4, %d, 6", c.Len(), c.Bytes(), c.Evictions(), 4*one)
	}
	if _, st := c.Get(&qs[5], t0); st != Miss {
		t.Errorf("least recently used answer = %s, want evicted (miss)", st)
	}
	if _, st := c.Get(&qs[6], t0); st != Fresh {
		t.Errorf("oldest of the last four = %s, want fresh", st)
	}
	bigAnswer(t, c, 10, 8000, t0) // evicts 7: 6 was just used
	if _, st := c.Get(&qs[6], t0); st != Fresh {
		t.Errorf("recently used answer = %s, want kept", st)
	}

	// Replacing, removing and expiring keep the count exact.
	bigAnswer(t, c, 6, 8000, t0)
	if c.Len() != 4 || c.Bytes() != 4*one {
		t.Errorf("after a replacement Len, Bytes = %d, %d, want 4, %d", c.Len(), c.Bytes(), 4*one)
	}
	c.Remove(&qs[6])
	if c.Len() != 3 || c.Bytes() != 3*one {
		t.Errorf("after Remove Len, Bytes = %d, %d, want 3, %d", c.Len(), c.Bytes(), 3*one)
	}
	if _, st := c.Get(&qs[8], t0.Add(300*time.Second+time.Hour)); st != Miss {
		t.Errorf("Get past the stale window = %s, want miss", st)
	}
	if c.Len() != 2 || c.Bytes() != 2*one || c.Evictions() != 7 {
		t.Errorf("after expiry Len, Bytes, Evictions = %d, %d, %d, want 2, %d, 7", c.Len(), c.Bytes(), c.Evictions(), 2*one)
	}

	// An answer larger than the whole bound is not kept, nor the one it replaces.
	tiny := testCache(t, func(c *Config) { c.MaxBytes = one / 2 })
	q := bigAnswer(t, tiny, 0, 100, t0)
	bigAnswer(t, tiny, 0, 8000, t0)
	if _, st := tiny.Get(&q, t0); st != Miss || tiny.Bytes() != 0 {
		t.Errorf("answer above MaxBytes: Get = %s, Bytes() = %d, want miss and 0", st, tiny.Bytes())
	}
}

// Each shard keeps its share of MaxBytes, so the sum never exceeds it, however the answers
// hash.
func TestByteBoundSharded(t *testing.T) {
	const maxBytes = 8 << 20
	c := testCache(t, func(c *Config) { c.Size = 100000; c.MaxBytes = maxBytes })
	if len(c.shards) != shardCount {
		t.Fatalf("%d shards, want %d", len(c.shards), shardCount)
	}
	for i := range 400 { // 26 MB of answers
		bigAnswer(t, c, i, 60000, t0)
	}
	for i, s := range c.shards {
		if _, b, _ := s.stats(); b > maxBytes/shardCount {
			t.Errorf("shard %d holds %d bytes, above its share %d", i, b, maxBytes/shardCount)
		}
	}
	if b := c.Bytes(); b > maxBytes || b < maxBytes/2 {
		t.Errorf("Bytes() = %d, want at most %d and not far below", b, maxBytes)
	}
	if c.Evictions() == 0 || c.Len() >= 400 {
		t.Errorf("Len, Evictions = %d, %d, want answers evicted for bytes", c.Len(), c.Evictions())
	}
}

func TestMaxBytesDefault(t *testing.T) {
	c := testCache(t, nil)
	if got := c.Config().MaxBytes; got != DefaultMaxBytes {
		t.Errorf("MaxBytes 0 runs as %d, want DefaultMaxBytes %d", got, DefaultMaxBytes)
	}
	if err := (Config{Size: 1, MaxBytes: -1}).Validate(); err == nil {
		t.Error("Validate(MaxBytes -1) = nil, want an error")
	}
}
