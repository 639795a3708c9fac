package fabric

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/miekg/dns"
)

// recursors is a Prober whose recursors are up or down as the test says.
type recursors struct {
	mu   sync.Mutex
	down map[netip.AddrPort]bool
}

func (r *recursors) set(a netip.AddrPort, down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down[a] = down
}

func (r *recursors) Probe(_ context.Context, a netip.AddrPort, name string, _ uint16) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down[a] {
		return nil, errors.New("timeout")
	}
	return []string{name + " 60 IN A 192.0.2.99"}, nil
}

// pools records what the root zone was set to.
type pools struct {
	mu  sync.Mutex
	log []string
}

func (p *pools) SetUpstreams(zone string, ups []netip.AddrPort, note string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, fmt.Sprintf("%s=%v", zone, ups))
	return nil
}

func (p *pools) got() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.log, " ")
}

func TestFailoverStates(t *testing.T) {
	l1, r1 := netip.MustParseAddrPort("192.0.2.120:53"), netip.MustParseAddrPort("203.0.113.120:53")
	synctest.Test(t, func(t *testing.T) {
		rec := &recursors{down: map[netip.AddrPort]bool{}}
		p := &pools{}
		f, err := NewFailover(FailoverConfig{Interval: time.Second, Name: "canary.example.net.", Type: dns.TypeA,
			Expect: "192.0.2.99", Local: []netip.AddrPort{l1}, Remote: []netip.AddrPort{r1}}, rec, p, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { f.Run(ctx); close(done) }()
		step := func(d time.Duration) { time.Sleep(d); synctest.Wait() }
		step(time.Millisecond)
		local := "=[192.0.2.120:53]"
		both := "=[192.0.2.120:53 203.0.113.120:53]"
		if got := p.got(); got != "."+local {
			t.Fatalf("at start %q, want the local recursors only", got)
		}
		rec.set(l1, true)
		step(time.Second) // one bad round: no change (hysteresis)
		if f.Status().State != LocalOnly {
			t.Fatalf("after one bad round: %s, want local", f.Status().State)
		}
		step(time.Second) // second bad round: fail over
		if st := f.Status(); st.State != FailedOver || !strings.Contains(st.Evidence, "local 192.0.2.120:53 failed") {
			t.Fatalf("after two bad rounds: %+v, want failed-over with the evidence", st)
		}
		rec.set(r1, true)
		step(2 * time.Second) // remote dies too: keep everything
		if f.Status().State != BothFailed {
			t.Fatalf("both down: %s, want both-failing", f.Status().State)
		}
		rec.set(l1, false)
		rec.set(r1, false)
		step(time.Second)
		if f.Status().State != BothFailed {
			t.Fatalf("after one good round: %s, want no change yet", f.Status().State)
		}
		step(time.Second)
		if f.Status().State != LocalOnly {
			t.Fatalf("after two good rounds: %s, want back to local", f.Status().State)
		}
		cancel()
		<-done
		want := "." + local + " ." + both + " ." + both + " ." + local
		if got := p.got(); got != want {
			t.Errorf("root zone upstreams over time = %q, want %q", got, want)
		}
		if n := f.Status().Transitions; n != 3 {
			t.Errorf("transitions = %d, want 3", n)
		}
	})
}

func TestFailoverExpect(t *testing.T) {
	l1, r1 := netip.MustParseAddrPort("192.0.2.120:53"), netip.MustParseAddrPort("203.0.113.120:53")
	synctest.Test(t, func(t *testing.T) {
		rec := &recursors{down: map[netip.AddrPort]bool{}}
		p := &pools{}
		// Every recursor answers, but not with the expected address: a hijacked or broken answer
		// counts as a failure.
		f, _ := NewFailover(FailoverConfig{Interval: time.Second, Name: "canary.example.net.", Type: dns.TypeA,
			Expect: "192.0.2.98", Local: []netip.AddrPort{l1}, Remote: []netip.AddrPort{r1}, Fall: 1}, rec, p, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithCancel(t.Context())
		go f.Run(ctx)
		time.Sleep(10 * time.Millisecond)
		synctest.Wait()
		if st := f.Status(); st.State != BothFailed || !strings.Contains(st.Evidence, "lacks 192.0.2.98") {
			t.Errorf("status %+v, want both-failing because the answers lack the expected address", st)
		}
		cancel()
	})
}

// answers is a Prober every recursor of which gives the same answer section.
type answers []string

func (a answers) Probe(context.Context, netip.AddrPort, string, uint16) ([]string, error) {
	return a, nil
}

// TestFailoverExpectRecords: the canary passes on a record of the canary's type whose rdata is
// the expected one, never on text that merely contains it (192.0.2.9 in 192.0.2.99) and never
// on a record of another type (the CNAME that leads to the address).
func TestFailoverExpectRecords(t *testing.T) {
	const (
		cname = "canary.example.net. 60 IN CNAME edge.example.net."
		a9    = "edge.example.net. 60 IN A 192.0.2.9"
		a99   = "canary.example.net. 60 IN A 192.0.2.99"
		aaaa  = "canary.example.net. 60 IN AAAA 2001:db8::9"
	)
	for _, tc := range []struct {
		name    string
		qtype   uint16
		expect  string
		answers answers
		pass    bool
	}{
		{"A equal", dns.TypeA, "192.0.2.99", answers{a99}, true},
		{"A prefix of the answer's text", dns.TypeA, "192.0.2.9", answers{a99}, false},
		{"A behind a CNAME", dns.TypeA, "192.0.2.9", answers{cname, a9}, true},
		{"A among others", dns.TypeA, "192.0.2.9", answers{cname, a99, a9}, true},
		{"CNAME wanted, only an A given", dns.TypeCNAME, "edge.example.net.", answers{a9}, false},
		{"A text of another record", dns.TypeA, "192.0.2.9", answers{`canary.example.net. 60 IN TXT "192.0.2.9"`}, false},
		{"AAAA equal in another spelling", dns.TypeAAAA, "2001:db8:0::9", answers{aaaa}, true},
		{"AAAA prefix", dns.TypeAAAA, "2001:db8::", answers{aaaa}, false},
		{"CNAME exact", dns.TypeCNAME, "edge.example.net.", answers{cname, a9}, true},
		{"CNAME in another case", dns.TypeCNAME, "Edge.Example.NET.", answers{cname}, true},
		{"CNAME a suffix", dns.TypeCNAME, "example.net.", answers{cname}, false},
		{"TXT exact", dns.TypeTXT, `"v=ok"`, answers{`canary.example.net. 60 IN TXT "v=ok"`}, true},
		{"TXT unquoted", dns.TypeTXT, "v=ok", answers{`canary.example.net. 60 IN TXT "v=ok"`}, true},
		{"TXT longer", dns.TypeTXT, "v=ok", answers{`canary.example.net. 60 IN TXT "v=okay"`}, false},
		{"unparsable answer", dns.TypeA, "192.0.2.9", answers{"192.0.2.9"}, false},
		{"no answer", dns.TypeA, "192.0.2.9", answers{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l1, r1 := netip.MustParseAddrPort("192.0.2.120:53"), netip.MustParseAddrPort("203.0.113.120:53")
			f, err := NewFailover(FailoverConfig{Interval: time.Second, Name: "canary.example.net.", Type: tc.qtype,
				Expect: tc.expect, Local: []netip.AddrPort{l1}, Remote: []netip.AddrPort{r1}}, tc.answers, &pools{}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			local, remote, evidence := f.canaries(t.Context())
			if local != tc.pass || remote != tc.pass {
				t.Errorf("expect %s %q on %q: local %v remote %v (%s), want %v", dns.TypeToString[tc.qtype], tc.expect, tc.answers, local, remote, evidence, tc.pass)
			}
			if !tc.pass && !strings.Contains(evidence, "lacks "+tc.expect) {
				t.Errorf("evidence %q does not say what was missing", evidence)
			}
		})
	}
}

func TestFailoverExpectValidate(t *testing.T) {
	base := FailoverConfig{Interval: time.Second, Name: "canary.example.net.",
		Local: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.120:53")}, Remote: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.120:53")}}
	for _, tc := range []struct {
		qtype  uint16
		expect string
		ok     bool
	}{
		{dns.TypeA, "192.0.2.9", true},
		{dns.TypeA, "2001:db8::9", false},
		{dns.TypeA, "192.0.2", false},
		{dns.TypeAAAA, "2001:db8::9", true},
		{dns.TypeAAAA, "192.0.2.9", false},
		{dns.TypeCNAME, "edge.example.net.", true},
		{dns.TypeMX, "mail.example.net.", false}, // MX rdata has a preference
		{dns.TypeMX, "10 mail.example.net.", true},
		{dns.TypeTXT, "", true},
	} {
		c := base
		c.Type, c.Expect = tc.qtype, tc.expect
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("Validate(%s %q) = %v, want ok %v", dns.TypeToString[tc.qtype], tc.expect, err, tc.ok)
		}
	}
}
