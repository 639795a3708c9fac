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
