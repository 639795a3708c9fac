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

	"github.com/fleetdns/fleetdns/fabric"
	"github.com/fleetdns/fleetdns/fabric/bgp"
	"github.com/fleetdns/fleetdns/fabric/kernel"
	"github.com/fleetdns/fleetdns/resolver"
	"github.com/prometheus/client_golang/prometheus"
)

var (
	_ fabric.Speaker = (*bgp.Speaker)(nil)
	_ fabric.Speaker = (*kernel.Announcer)(nil)
)

// newSpeaker builds the speaker that cfg.Announce names, with its metrics in reg.
func newSpeaker(cfg serverConfig, log *slog.Logger, reg prometheus.Registerer) (fabric.Speaker, error) {
	switch cfg.Announce {
	case "bgp":
		s, err := bgp.New(cfg.BGP, log.With("component", "bgp"))
		if err != nil {
			return nil, err
		}
		return s, s.Register(reg)
	case "kernel":
		return kernel.New(cfg.Kernel, log.With("component", "kernel"))
	default:
		return fabric.Silent{}, nil
	}
}

// runServer runs an anycast node: the client's pipeline, answering on the anycast address,
// and a fabric.Node that announces the node's prefixes only while its health check passes.
// On SIGTERM the node leaves the path first (GET /health 503, graceful shutdown community or
// withdraw), keeps answering through the drain period, withdraws and stops its speaker; only
// then are the listeners closed.
func runServer(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (required; or give it as the argument)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := configArg(fs, path); err != nil {
		fmt.Fprintln(stderr, "fleetdns server:", err)
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "fleetdns server: -config FILE is required")
		return 2
	}
	cfg, pol, err := loadConfigPolicy(*path)
	if err == nil {
		err = serverReady(cfg, *path)
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
	node, err := newNode(cfg, srv, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}

	// The listeners outlive the signal: they close after the node has left the path.
	srvCtx, stopSrv := context.WithCancel(context.Background())
	defer stopSrv()
	served := make(chan error, 1)
	go func() { served <- srv.Run(srvCtx) }()
	nodeCtx, stopNode := context.WithCancel(ctx)
	defer stopNode()
	nodeDone := make(chan error, 1)
	go func() { nodeDone <- node.Run(nodeCtx) }()
	var o ops
	// stop ends what runs, in order: the node (if it still runs) leaves the path, then the
	// listeners close, then ops.
	nodeRunning := true
	stop := func(code int) int {
		stopNode()
		if nodeRunning {
			if err := <-nodeDone; err != nil {
				log.Warn("node", "err", err)
			}
		}
		stopSrv()
		if err := <-served; err != nil && code == 0 {
			log.Error("run", "err", err)
			code = 1
		}
		o.wait()
		return code
	}
	select {
	case <-node.started:
	case err := <-nodeDone:
		nodeRunning = false
		log.Error("start", "err", err)
		return stop(1)
	}
	verbs := map[string]func() any{"bgp": func() any { return bgpStatus(node.speaker, node.Node, cfg.Server) }}
	if f := node.Failover(); f != nil {
		verbs["failover"] = func() any { return failoverStatus(f) }
	}
	rl, err := o.start(srvCtx, cfg, *path, srv, log, node.reg, verbs)
	if err != nil {
		log.Error("start", "err", err)
		return stop(1)
	}
	sdNotify("READY=1")
	o.reloadOnSIGHUP(srvCtx, rl)

	select {
	case <-ctx.Done():
		sdNotify("STOPPING=1") // the node leaves the path, drains, withdraws, stops its speaker
	case err := <-served:
		log.Error("run", "err", err)
		served <- nil
		return stop(1)
	}
	if code := stop(0); code != 0 {
		return code
	}
	log.Info("stopped")
	return 0
}

// serverNode is the fabric.Node as cmd wires it, with what status and ops need.
type serverNode struct {
	*fabric.Node
	speaker fabric.Speaker
	reg     *prometheus.Registry
	started chan struct{}
}

// newNode builds the node: its speaker, its probes, the failover if configured and the
// listener of GET /health, with their metrics in a new registry that ops serves.
func newNode(cfg config, srv *resolver.Server, log *slog.Logger) (*serverNode, error) {
	n := &serverNode{reg: prometheus.NewRegistry(), started: make(chan struct{})}
	speaker, err := newSpeaker(cfg.Server, log, n.reg)
	if err != nil {
		return nil, err
	}
	n.speaker = speaker
	fo, err := newFailover(cfg.Failover, srv, log)
	if err != nil {
		return nil, err
	}
	var ln net.Listener
	if cfg.Server.HealthListen != "" {
		if ln, err = net.Listen("tcp", cfg.Server.HealthListen); err != nil {
			return nil, fmt.Errorf("health.listen %s: %w", cfg.Server.HealthListen, err)
		}
	}
	n.Node, err = fabric.NewNode(fabric.NodeConfig{Health: cfg.Server.Health, Controller: cfg.Server.Controller},
		fabric.NodeDeps{Speaker: speaker, Probes: healthProbes(cfg, srv), Failover: fo, Endpoint: ln,
			Log: log, Registerer: n.reg, Started: func() { close(n.started) }})
	if err != nil && ln != nil {
		ln.Close()
	}
	return n, err
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
func bgpStatus(a fabric.Speaker, n *fabric.Node, cfg serverConfig) any {
	announced, graceful, reason := n.Controller().Status()
	out := map[string]any{"via": cfg.Announce, "health": healthStatus(n.Health())}
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
