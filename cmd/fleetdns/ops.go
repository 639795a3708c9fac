package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/fleetdns/fleetdns/resolver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ops runs what operators reach a running process through: the Prometheus endpoint, the
// control socket and the config watcher. Each runs until ctx ends; wait returns once all have.
type ops struct {
	wg sync.WaitGroup
}

// start binds the metrics listener (an error there is fatal: the operator asked for it) and
// starts everything. reg holds what the other parts registered (the node's and the failover's
// metrics); verbs are their ctl verbs.
func (o *ops) start(ctx context.Context, cfg config, path string, srv *resolver.Server, log *slog.Logger, reg *prometheus.Registry, verbs map[string]func() any) (*reloader, error) {
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "fleetdns_build_info", Help: "Always 1; the labels say which build runs.",
	}, []string{"version", "goversion"})
	build.WithLabelValues(versionString(), runtime.Version()).Set(1)
	reg.MustRegister(srv.Collector(), build, collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	rl := newReloader(path, cfg, srv, log, reg)

	if cfg.Ops.MetricsListen != "" {
		l, err := net.Listen("tcp", cfg.Ops.MetricsListen)
		if err != nil {
			return nil, err
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		o.wg.Go(func() { hs.Serve(l) })
		o.wg.Go(func() {
			<-ctx.Done()
			sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			hs.Shutdown(sctx)
		})
		log.Info("metrics", "listen", l.Addr().String())
	}
	if cfg.Ops.ControlSocket != "" {
		c := &resolver.Control{Path: cfg.Ops.ControlSocket, Server: srv, Reload: rl.reload, Status: verbs}
		o.wg.Go(func() {
			if err := c.Run(ctx); err != nil {
				log.Warn("no control socket", "err", err)
			}
		})
	}
	if path != "" {
		o.wg.Go(func() {
			if err := rl.watch(ctx); err != nil && !errors.Is(err, context.Canceled) {
				log.Warn("config files are not watched", "err", err)
			}
		})
	}
	return rl, nil
}

func (o *ops) wait() { o.wg.Wait() }

// reloadOnSIGHUP reloads the config on every SIGHUP until ctx ends.
func (o *ops) reloadOnSIGHUP(ctx context.Context, rl *reloader) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	o.wg.Go(func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-hup:
				rl.reload()
			case <-ctx.Done():
				return
			}
		}
	})
}
