package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/fleetdns/fleetdns/fabric"
	"github.com/fleetdns/fleetdns/fabric/bgp"
	"github.com/fleetdns/fleetdns/fabric/kernel"
	"github.com/fleetdns/fleetdns/resolver"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	_ announcer = (*bgp.Speaker)(nil)
	_ announcer = (*kernel.Announcer)(nil)
	_ announcer = nothing{}
)

// announcer is a way for the node to draw traffic while healthy, with its lifecycle: the
// embedded BGP speaker, the host's kernel (for a routing daemon on the node), or nothing (GET
// /health alone tells load balancers).
type announcer interface {
	fabric.Announcer
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
}

// nothing is announce: none: the health endpoint is the node's only signal.
type nothing struct{}

func (nothing) Announce(context.Context, bool) error { return nil }
func (nothing) Withdraw(context.Context) error       { return nil }
func (nothing) Start(context.Context) error          { return nil }
func (nothing) Stop(context.Context) error           { return nil }

// newAnnouncer builds the announcer that cfg.Announce names.
func newAnnouncer(cfg serverConfig, log *slog.Logger) (announcer, error) {
	switch cfg.Announce {
	case "bgp":
		return bgp.New(cfg.BGP, log.With("component", "bgp"))
	case "kernel":
		return kernel.New(cfg.Kernel, log.With("component", "kernel"))
	default:
		return nothing{}, nil
	}
}

// runServer runs an anycast node: the client's pipeline, answering on the anycast address,
// plus a BGP speaker that announces the node's prefixes only while its health check passes.
// On SIGTERM it leaves the path first (graceful shutdown community or withdraw), keeps
// answering through the drain period, withdraws, closes the BGP sessions, and only then
// closes the listeners.
func runServer(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "fleetdns server: -config FILE is required")
		return 2
	}
	cfg, pol, err := loadConfigPolicy(*path)
	if err == nil && !cfg.Server.present {
		err = fmt.Errorf("%s: node: server mode needs a bgp block, or announce: kernel with a kernel block, or announce: none with health.listen; and node.id", *path)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log := newLogger(stderr, cfg.Log).With("node", cfg.Server.NodeID)
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w)
	}
	cfg.Resolver.QueryLog = cfg.Log.Queries
	cfg.Resolver.NodeID = cfg.Server.NodeID
	srv, err := build(cfg, pol, log)
	if err == nil {
		err = srv.Listen()
	}
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	speaker, err := newAnnouncer(cfg.Server, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	// The listeners, the speaker and the health loop outlive the signal: they stop in order.
	srvCtx, stopSrv := context.WithCancel(context.Background())
	defer stopSrv()
	served := make(chan error, 1)
	go func() { served <- srv.Run(srvCtx) }()
	if err := speaker.Start(srvCtx); err != nil {
		log.Error("announce", "via", cfg.Server.Announce, "err", err)
		stopSrv()
		<-served
		return 1
	}
	ctl := fabric.NewController(cfg.Server.Controller, speaker, log.With("component", "announce"))
	health, err := fabric.NewNodeHealthChecker(cfg.Server.Health, healthProbes(cfg, srv),
		func(healthy bool) { ctl.SetHealthy(srvCtx, healthy) }, log.With("component", "health"))
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	healthCtx, stopHealth := context.WithCancel(srvCtx)
	defer stopHealth()
	healthDone := make(chan struct{})
	go func() { health.Run(healthCtx); close(healthDone) }()
	var endpoint *fabric.Endpoint
	endpointDone := make(chan error, 1)
	if cfg.Server.HealthListen != "" {
		ln, err := net.Listen("tcp", cfg.Server.HealthListen)
		if err != nil {
			log.Error("start", "health.listen", cfg.Server.HealthListen, "err", err)
			stopHealth()
			speaker.Stop(context.Background())
			stopSrv()
			<-served
			return 1
		}
		endpoint = fabric.NewEndpoint(health)
		go func() { endpointDone <- endpoint.Serve(srvCtx, ln) }()
		log.Info("health endpoint", "listen", ln.Addr().String())
	} else {
		endpointDone <- nil
	}

	var o ops
	extra, err := startFailover(srvCtx, cfg.Failover, srv, log, &o)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	rl, err := o.start(srvCtx, cfg, *path, srv, log, extra.merge(opsExtra{
		collectors: fabricCollectors(speaker, ctl, health),
		verbs:      map[string]func() any{"bgp": func() any { return bgpStatus(speaker, ctl, health, cfg.Server) }},
	}))
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	sdNotify("READY=1")
	o.reloadOnSIGHUP(srvCtx, rl)

	select {
	case <-ctx.Done():
	case err := <-served:
		log.Error("run", "err", err)
		stopHealth()
		speaker.Stop(context.Background())
		return 1
	}
	log.Info("shutting down: leaving the anycast path first")
	sdNotify("STOPPING=1")
	if endpoint != nil {
		endpoint.Drain() // load balancers see 503 "draining" before anything else changes
	}
	stopHealth()
	<-healthDone
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.Controller.Drain+15*time.Second)
	defer cancel()
	fabric.Leave(sctx, endpoint, ctl) // GET /health answers 503 "draining" first
	if err := speaker.Stop(sctx); err != nil {
		log.Warn("announce stop", "via", cfg.Server.Announce, "err", err)
	}
	stopSrv()
	err = <-served
	if eerr := <-endpointDone; eerr != nil {
		log.Warn("health endpoint", "err", eerr)
	}
	o.wait()
	if err != nil {
		log.Error("run", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// healthProbes are a node's health probes as cmd wires them: the local probe asks the node's
// own listener for id.server. CH TXT (listener and pipeline, no upstream); the upstream probe
// resolves the health name through the pipeline with the cache bypassed; each sibling is asked
// the health name at its unicast address.
func healthProbes(cfg config, srv *resolver.Server) fabric.Probes {
	name, qtype := cfg.Server.HealthName, cfg.Server.HealthType
	local := fabric.LocalProbe(selfAddr(cfg.Resolver.Listen, cfg.Resolver.FreeBind), cfg.Server.NodeID)
	p := fabric.Probes{
		Local: func(ctx context.Context) error {
			sdNotify("WATCHDOG=1") // the loop runs: a wedged process stops kicking and is killed
			return local(ctx)
		},
		Upstream: func(ctx context.Context) error { return srv.Probe(ctx, name, qtype) },
	}
	for _, a := range cfg.Server.Siblings {
		p.Siblings = append(p.Siblings, fabric.Sibling{Name: a.String(), Check: fabric.SiblingProbe(a, name, qtype)})
	}
	return p
}

// selfAddr is the listen address the local probe asks: a loopback one if there is one, else
// the first that is always on the host (not in a prefix that announce: kernel adds only while
// healthy: the probe would fail until the node is healthy, and it never would be), a wildcard
// one asked on loopback.
func selfAddr(listen []netip.AddrPort, whileHealthy []netip.Prefix) netip.AddrPort {
	for _, a := range listen {
		if a.Addr().Unmap().IsLoopback() {
			return a
		}
	}
	if len(listen) == 0 {
		return netip.AddrPortFrom(netip.IPv6Loopback(), 53)
	}
	a := listen[0]
	for _, l := range listen {
		if !slices.ContainsFunc(whileHealthy, func(p netip.Prefix) bool { return p.Contains(l.Addr().Unmap()) }) {
			a = l
			break
		}
	}
	if a.Addr().Unmap().IsUnspecified() {
		lo := netip.MustParseAddr("127.0.0.1")
		if a.Addr().Is6() && !a.Addr().Is4In6() {
			lo = netip.IPv6Loopback()
		}
		return netip.AddrPortFrom(lo, a.Port())
	}
	return a
}

// healthStatus is the health part of `fleetdns ctl bgp`.
func healthStatus(h *fabric.HealthChecker) map[string]any {
	st := h.Status()
	return map[string]any{"healthy": st.Healthy, "reason": st.Reason, "shared_fault": st.SharedFault,
		"local": st.Local, "upstream": st.Upstream, "siblings": st.Siblings,
		"checks": st.Checks, "failures": st.Failures, "last_error": st.LastError,
		"streak": st.Streak, "need": st.Need, "last_check": st.LastCheck, "next_check": st.NextCheck}
}

// bgpStatus is what `fleetdns ctl bgp` shows: the peers (bgp), the prefixes with how they are
// announced and why, and the health verdict.
func bgpStatus(a announcer, c *fabric.Controller, h *fabric.HealthChecker, cfg serverConfig) any {
	announced, graceful, reason := c.Status()
	out := map[string]any{"via": cfg.Announce, "health": healthStatus(h)}
	var prefixes []map[string]any
	add := func(p netip.Prefix, prio string) {
		prefixes = append(prefixes, map[string]any{"prefix": p.String(), "priority": prio,
			"announced": announced, "graceful_shutdown": graceful, "reason": reason})
	}
	switch a := a.(type) {
	case *bgp.Speaker:
		out["peers"] = a.Peers()
		for _, p := range cfg.BGP.Prefixes {
			prio := "primary"
			if p.Secondary {
				prio = "secondary"
			}
			add(p.Prefix, prio)
		}
	case *kernel.Announcer:
		out["kernel"] = a.Status()
		for _, p := range cfg.Kernel.Prefixes {
			add(p, "kernel")
		}
	}
	out["prefixes"] = prefixes
	return out
}

// fabricCollectors exposes the speaker's sessions, the announcement and the health checks.
func fabricCollectors(a announcer, c *fabric.Controller, h *fabric.HealthChecker) []prometheus.Collector {
	announced := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fleetdns_bgp_prefixes_announced", Help: "1 while the node announces its prefixes, 0 while withdrawn.",
	}, func() float64 {
		if a, _, _ := c.Status(); a {
			return 1
		}
		return 0
	})
	peersUp := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fleetdns_bgp_peers_established", Help: "BGP sessions in the Established state.",
	}, func() float64 {
		s, ok := a.(*bgp.Speaker)
		if !ok {
			return 0
		}
		n := 0
		for _, p := range s.Peers() {
			if p.State == "established" {
				n++
			}
		}
		return float64(n)
	})
	checks := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "fleetdns_health_checks_total", Help: "Health checks run.",
	}, func() float64 { return float64(h.Status().Checks) })
	failures := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "fleetdns_health_check_failures_total", Help: "Health checks that failed.",
	}, func() float64 { return float64(h.Status().Failures) })
	transitions := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "fleetdns_health_transitions_total", Help: "Changes between healthy and unhealthy.",
	}, func() float64 { return float64(h.Status().Transitions) })
	latency := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fleetdns_health_check_last_duration_seconds", Help: "How long the last health check took.",
	}, func() float64 { return h.Status().LastLatency.Seconds() })
	healthy := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fleetdns_healthy", Help: "1 while the health checker considers the node healthy.",
	}, func() float64 {
		if h.Status().Healthy {
			return 1
		}
		return 0
	})
	shared := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fleetdns_health_shared_fault", Help: "1 while a shared upstream failure (every sibling fails too) keeps the node announced, serving cache and stale.",
	}, func() float64 {
		if h.Status().SharedFault {
			return 1
		}
		return 0
	})
	return []prometheus.Collector{announced, peersUp, checks, failures, transitions, latency, healthy, shared}
}
