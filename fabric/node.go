package fabric

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Speaker is an Announcer with a lifecycle: the node starts it before its first health check
// and stops it last, after the drain (fabric/bgp's sessions, fabric/kernel's device).
type Speaker interface {
	Announcer
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// Silent is the Speaker of a node that announces nothing (announce: none): GET /health is its
// only signal.
type Silent struct{}

func (Silent) Announce(context.Context, bool) error { return nil }
func (Silent) Withdraw(context.Context) error       { return nil }
func (Silent) Start(context.Context) error          { return nil }
func (Silent) Stop(context.Context) error           { return nil }

// NodeConfig is server mode's control loops.
type NodeConfig struct {
	Health     HealthConfig
	Controller ControllerConfig
}

// NodeDeps are what the node runs: its speaker, its health probes, optionally the datacenter
// failover and the listener of GET /health, and where it logs and registers its metrics.
type NodeDeps struct {
	Speaker    Speaker
	Probes     Probes
	Failover   *Failover    // nil: none
	Endpoint   net.Listener // GET /health; nil: none
	Log        *slog.Logger
	Registerer prometheus.Registerer
	// Started, if set, is called once the speaker runs and the loops are started (sd_notify
	// READY=1 in cmd).
	Started func()
}

// Node is server mode's lifecycle: it starts the speaker, runs the health checks that drive
// the announce controller, the failover and GET /health, and on shutdown leaves the path in
// order: /health answers 503 "draining", the health checks stop (nothing re-announces), the
// controller leaves the path (GRACEFUL_SHUTDOWN or withdraw), drains, withdraws, and the
// speaker stops (BGP sessions closed). The listeners that answer DNS are the caller's: they
// outlive Run, so that the node answers through the drain.
type Node struct {
	cfg      NodeConfig
	deps     NodeDeps
	health   *HealthChecker
	ctl      *Controller
	endpoint *Endpoint
	failover *Failover
}

// NewNode checks the config and builds the node and its metrics; nothing runs until Run.
func NewNode(cfg NodeConfig, deps NodeDeps) (*Node, error) {
	if deps.Speaker == nil || deps.Log == nil || deps.Registerer == nil {
		return nil, errors.New("node: speaker, logger and registerer are required")
	}
	n := &Node{cfg: cfg, deps: deps, failover: deps.Failover}
	n.ctl = NewController(cfg.Controller, deps.Speaker, deps.Log.With("component", "announce"))
	// The checker reports changes of verdict from its own goroutine; the controller applies
	// them in order under its own lock.
	h, err := NewNodeHealthChecker(cfg.Health, deps.Probes, func(healthy bool) {
		n.ctl.SetHealthy(context.Background(), healthy)
	}, deps.Log.With("component", "health"))
	if err != nil {
		return nil, err
	}
	n.health = h
	if deps.Endpoint != nil {
		n.endpoint = NewEndpoint(h)
	}
	if err := n.register(deps.Registerer); err != nil {
		return nil, err
	}
	if n.failover != nil {
		if err := n.failover.Register(deps.Registerer); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// Health is the node's health checker, for status.
func (n *Node) Health() *HealthChecker { return n.health }

// Controller is the node's announce controller, for status.
func (n *Node) Controller() *Controller { return n.ctl }

// Failover is the node's failover controller, nil without one.
func (n *Node) Failover() *Failover { return n.failover }

// Run starts the speaker and the loops, and when ctx ends performs the shutdown order. It
// returns only when every goroutine it started has exited.
func (n *Node) Run(ctx context.Context) error {
	// The loops and the speaker outlive ctx: they stop in order below.
	life := context.WithoutCancel(ctx)
	if err := n.deps.Speaker.Start(life); err != nil {
		return fmt.Errorf("start speaker: %w", err)
	}
	var wg sync.WaitGroup
	healthCtx, stopHealth := context.WithCancel(life)
	defer stopHealth()
	healthDone := make(chan struct{})
	wg.Go(func() { n.health.Run(healthCtx); close(healthDone) })
	loops, stopLoops := context.WithCancel(life)
	defer stopLoops()
	var errs []error
	var errsMu sync.Mutex
	keep := func(err error) {
		if err != nil {
			errsMu.Lock()
			errs = append(errs, err)
			errsMu.Unlock()
		}
	}
	if n.failover != nil {
		wg.Go(func() { keep(n.failover.Run(loops)) })
	}
	if n.endpoint != nil {
		n.deps.Log.Info("health endpoint", "listen", n.deps.Endpoint.Addr().String())
		wg.Go(func() { keep(n.endpoint.Serve(loops, n.deps.Endpoint)) })
	}
	if n.deps.Started != nil {
		n.deps.Started()
	}

	<-ctx.Done()
	n.deps.Log.Info("shutting down: leaving the anycast path first")
	if n.endpoint != nil {
		n.endpoint.Drain() // load balancers see 503 "draining" before anything else changes
	}
	stopHealth()
	<-healthDone // no verdict re-announces what the shutdown withdraws
	sctx, cancel := context.WithTimeout(life, n.cfg.Controller.Drain+15*time.Second)
	defer cancel()
	Leave(sctx, n.endpoint, n.ctl)
	if err := n.deps.Speaker.Stop(sctx); err != nil {
		keep(fmt.Errorf("stop speaker: %w", err))
	}
	stopLoops()
	wg.Wait()
	return errors.Join(errs...)
}

// register adds the node's metrics: whether it is announced, and its health checks.
func (n *Node) register(reg prometheus.Registerer) error {
	h, c := n.health, n.ctl
	gauge := func(name, help string, f func() bool) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			if f() {
				return 1
			}
			return 0
		})
	}
	counter := func(name, help string, f func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	for _, m := range []prometheus.Collector{
		gauge("fleetdns_bgp_prefixes_announced", "1 while the node announces its prefixes, 0 while withdrawn.",
			func() bool { a, _, _ := c.Status(); return a }),
		counter("fleetdns_health_checks_total", "Health checks run.", func() uint64 { return h.Status().Checks }),
		counter("fleetdns_health_check_failures_total", "Health checks that failed.", func() uint64 { return h.Status().Failures }),
		counter("fleetdns_health_transitions_total", "Changes between healthy and unhealthy.", func() uint64 { return h.Status().Transitions }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fleetdns_health_check_last_duration_seconds", Help: "How long the last health check took.",
		}, func() float64 { return h.Status().LastLatency.Seconds() }),
		gauge("fleetdns_healthy", "1 while the health checker considers the node healthy.", func() bool { return h.Status().Healthy }),
		gauge("fleetdns_health_shared_fault", "1 while a shared upstream failure (every sibling fails too) keeps the node announced, serving cache and stale.",
			func() bool { return h.Status().SharedFault }),
	} {
		if err := reg.Register(m); err != nil {
			return fmt.Errorf("register node metrics: %w", err)
		}
	}
	return nil
}
