package fabric

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// orderSpeaker records the node's calls, each with what GET /health answered at that moment.
type orderSpeaker struct {
	url   string
	mu    sync.Mutex
	calls []string
}

func (s *orderSpeaker) add(call string) error {
	code := 0
	if r, err := (&http.Client{Timeout: time.Second}).Get(s.url); err == nil {
		code = r.StatusCode
		r.Body.Close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, call+"/"+http.StatusText(code))
	return nil
}

func (s *orderSpeaker) Start(context.Context) error { return s.add("start") }
func (s *orderSpeaker) Stop(context.Context) error  { return s.add("stop") }
func (s *orderSpeaker) Withdraw(context.Context) error {
	return s.add("withdraw")
}
func (s *orderSpeaker) Announce(_ context.Context, graceful bool) error {
	if graceful {
		return s.add("announce-graceful")
	}
	return s.add("announce")
}

func (s *orderSpeaker) got() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.calls, " ")
}

// TestNodeShutdownOrder: the node announces once healthy, and on shutdown GET /health answers
// 503 before the path is left, the path is left (GRACEFUL_SHUTDOWN) before the drain, the
// withdrawal comes after the drain, the speaker stops last, and Run returns only after every
// loop it started has stopped (no health check runs after it).
func TestNodeShutdownOrder(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sp := &orderSpeaker{url: "http://" + ln.Addr().String() + "/health"}
	var checks sync.Mutex
	ran := 0
	probe := func(context.Context) error {
		checks.Lock()
		defer checks.Unlock()
		ran++
		return nil
	}
	const drain = 300 * time.Millisecond
	started := make(chan struct{})
	n, err := NewNode(NodeConfig{
		Health:     HealthConfig{Interval: 50 * time.Millisecond, Timeout: 40 * time.Millisecond, Rise: 2, Fall: 2},
		Controller: ControllerConfig{Drain: drain, ShutdownGraceful: true},
	}, NodeDeps{Speaker: sp, Probes: Probes{Local: probe, Upstream: probe}, Endpoint: ln,
		Log: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry(), Started: func() { close(started) }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	<-started
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(sp.got(), "announce/"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not announced 5 s after start: %q", sp.got())
		}
	}
	cancel()
	leaving := time.Now()
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
	took := time.Since(leaving)
	checks.Lock()
	after := ran
	checks.Unlock()
	time.Sleep(150 * time.Millisecond)
	checks.Lock()
	if ran != after {
		t.Errorf("health checks ran %d more times after Run returned", ran-after)
	}
	checks.Unlock()
	// The announce happened while the node was healthy (/health 200); at the graceful announce
	// /health already said 503; the speaker stopped last.
	// (At start the endpoint does not serve yet: no status.)
	want := "start/ announce/OK announce-graceful/Service Unavailable withdraw/Service Unavailable stop/Service Unavailable"
	if got := sp.got(); got != want {
		t.Errorf("speaker calls = %q, want %q", got, want)
	}
	if took < drain {
		t.Errorf("Run returned %s after the signal, want after the %s drain", took, drain)
	}
}
