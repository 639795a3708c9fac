package fabric

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Endpoint serves GET /health for load balancers and probes: 200 with "ok" (or the reason,
// during a shared fault) while the node should be announced, 503 with the reason when not,
// and 503 "draining" from the moment a shutdown begins.
type Endpoint struct {
	h        *HealthChecker
	draining atomic.Bool
}

// NewEndpoint serves h's verdict.
func NewEndpoint(h *HealthChecker) *Endpoint { return &Endpoint{h: h} }

// Drain makes /health answer 503 "draining" from now on.
func (e *Endpoint) Drain() { e.draining.Store(true) }

// State is what /health answers: whether the node should be announced, and why.
func (e *Endpoint) State() (ok bool, reason string) {
	if e.draining.Load() {
		return false, "draining"
	}
	st := e.h.Status()
	switch {
	case st.Healthy && st.Reason != "":
		return true, st.Reason
	case st.Healthy:
		return true, "ok"
	case st.Checks == 0:
		return false, "waiting for the first checks"
	case st.Reason == "" || st.Reason == "ok":
		return false, "not yet healthy: waiting for rise consecutive passes"
	}
	return false, st.Reason
}

func (e *Endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/health" {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	ok, reason := e.State()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if ok {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	w.Write([]byte(reason + "\n"))
}

// Serve answers on ln until ctx ends, then closes the listener and waits for open requests
// (at most a second).
func (e *Endpoint) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Leave is a planned shutdown's first step for every way of leaving the path: the endpoint
// (if any) answers 503 "draining" first, then the controller (if any) leaves the anycast path,
// keeps answering for its drain period and withdraws.
func Leave(ctx context.Context, e *Endpoint, c *Controller) {
	if e != nil {
		e.Drain()
	}
	if c != nil {
		c.Shutdown(ctx)
	}
}
