package fabric

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestDecide(t *testing.T) {
	bad := errors.New("timeout")
	names := []string{"192.0.2.2:53", "192.0.2.3:53"}
	for _, tc := range []struct {
		name   string
		r      Round
		ok     bool
		shared bool
		reason string
	}{
		{"all pass", Round{Siblings: []error{nil, nil}}, true, false, "ok"},
		{"local fails", Round{Local: bad, Siblings: []error{nil, nil}}, false, false, "local probe failed: timeout"},
		{"local fails in a shared fault too", Round{Local: bad, Upstream: bad, Siblings: []error{bad, bad}}, false, false, "local probe failed"},
		{"own path cut: a sibling passes", Round{Upstream: bad, Siblings: []error{bad, nil}}, false, false,
			"upstream probe failed here while 192.0.2.3:53 passes: this node's path is cut: timeout"},
		{"shared: every sibling fails", Round{Upstream: bad, Siblings: []error{bad, bad}}, true, true, ReasonShared},
		{"no siblings: withdraw as before", Round{Upstream: bad}, false, false, "no siblings configured"},
		{"upstream ok, siblings fail: theirs is their business", Round{Siblings: []error{bad, bad}}, true, false, "ok"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := names[:len(tc.r.Siblings)]
			v := Decide(tc.r, n)
			if v.OK != tc.ok || v.Shared != tc.shared || !strings.Contains(v.Reason, tc.reason) {
				t.Errorf("Decide = %+v, want ok %v shared %v reason containing %q", v, tc.ok, tc.shared, tc.reason)
			}
		})
	}
}

// fakeNode is a node's probes whose results the test sets between rounds.
type fakeNode struct {
	mu                  sync.Mutex
	local, upstream     error
	sibling             []error
	localCalls, upCalls int
}

func (f *fakeNode) set(local, upstream error, sibling ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.local, f.upstream, f.sibling = local, upstream, sibling
}

func (f *fakeNode) probes(n int) Probes {
	p := Probes{
		Local:    func(context.Context) error { f.mu.Lock(); defer f.mu.Unlock(); f.localCalls++; return f.local },
		Upstream: func(context.Context) error { f.mu.Lock(); defer f.mu.Unlock(); f.upCalls++; return f.upstream },
	}
	for i := range n {
		p.Siblings = append(p.Siblings, Sibling{Name: "sib" + string(rune('0'+i)), Check: func(context.Context) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			return f.sibling[i]
		}})
	}
	return p
}

// TestNodeHealthShared drives a node through its own faults and a shared one, one round per
// second, rise 2 and fall 2: a shared upstream failure never withdraws it, a cut of its own
// path does, and hysteresis applies to the verdict.
func TestNodeHealthShared(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bad := errors.New("i/o timeout")
		f := &fakeNode{}
		f.set(nil, nil, nil, nil)
		var mu sync.Mutex
		var got []bool
		h, err := NewNodeHealthChecker(HealthConfig{Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 2},
			f.probes(2), func(healthy bool) { mu.Lock(); got = append(got, healthy); mu.Unlock() }, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { h.Run(ctx); close(done) }()
		step := func(rounds int) HealthStatus { // let rounds more rounds run, then look
			time.Sleep(time.Duration(rounds) * time.Second)
			synctest.Wait()
			return h.Status()
		}
		synctest.Wait() // round at 0s
		if st := step(1); !st.Healthy || st.Reason != "ok" || st.SharedFault {
			t.Fatalf("after rise: %+v, want healthy, ok", st)
		}
		// The upstream fails for every node: the node stays announced through it.
		f.set(nil, bad, bad, bad)
		for range 5 {
			st := step(1)
			if !st.Healthy || !st.SharedFault || st.Reason != ReasonShared || st.Upstream != "i/o timeout" || st.Local != "ok" {
				t.Fatalf("shared fault: %+v, want healthy with the shared reason", st)
			}
			if len(st.Siblings) != 2 || st.Siblings[0].Result != "i/o timeout" {
				t.Fatalf("siblings %+v", st.Siblings)
			}
		}
		// One sibling recovers while this node's upstream stays cut: its own path is cut.
		f.set(nil, bad, bad, nil)
		if st := step(1); !st.Healthy || st.SharedFault {
			t.Fatalf("one failing round: %+v, want still healthy (fall 2), no shared fault", st)
		}
		if st := step(1); st.Healthy || !strings.Contains(st.Reason, "sib1 passes") {
			t.Fatalf("own path cut: %+v, want unhealthy naming the passing sibling", st)
		}
		// Upstream back: healthy after rise.
		f.set(nil, nil, nil, nil)
		step(1)
		if st := step(1); !st.Healthy || st.Reason != "ok" {
			t.Fatalf("recovered: %+v", st)
		}
		// The local probe fails during a shared fault: withdraw all the same.
		f.set(bad, bad, bad, bad)
		step(1)
		if st := step(1); st.Healthy || !strings.HasPrefix(st.Reason, "local probe failed") || st.SharedFault {
			t.Fatalf("local failure: %+v, want unhealthy", st)
		}
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		if want := []bool{true, false, true, false}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] || got[3] != want[3] {
			t.Errorf("transitions %v, want %v", got, want)
		}
	})
}

func TestNodeHealthNoSiblings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNode{}
		f.set(nil, errors.New("dead"))
		h, err := NewNodeHealthChecker(HealthConfig{Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 1, Fall: 1},
			f.probes(0), func(bool) {}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { h.Run(ctx); close(done) }()
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		st := h.Status()
		cancel()
		<-done
		if st.Healthy || st.SharedFault || !strings.Contains(st.Reason, "no siblings configured") {
			t.Errorf("%+v, want unhealthy without siblings", st)
		}
	})
}
