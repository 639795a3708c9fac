package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fleetdns/fleetdns/cache"
	"github.com/fleetdns/fleetdns/resolver"
	"github.com/fsnotify/fsnotify"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// reloader swaps in a new configuration while the server runs. A new config or zone file is
// parsed and checked completely first; if anything is wrong the old one keeps serving, the
// error (file, line, problem) is logged and the failure counted. The cache survives: only the
// answers a change affects are dropped.
type reloader struct {
	path string // "" on embedded defaults: nothing to reload
	srv  *resolver.Server
	log  *slog.Logger

	mu      sync.Mutex // one reload at a time
	current config
	reloads *prometheus.CounterVec
}

func newReloader(path string, cfg config, srv *resolver.Server, log *slog.Logger, reg prometheus.Registerer) *reloader {
	r := &reloader{path: path, srv: srv, log: log, current: cfg,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fleetdns_config_reloads_total",
			Help: "Config reloads, by result (success, failure).",
		}, []string{"result"})}
	r.reloads.WithLabelValues("success")
	r.reloads.WithLabelValues("failure")
	reg.MustRegister(r.reloads)
	return r
}

// reload re-reads the config file and applies it; it returns a summary of what changed.
func (r *reloader) reload() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.path == "" {
		return "", fmt.Errorf("running on embedded defaults: no config file to reload")
	}
	cfg, p, err := loadConfigPolicy(r.path) // checked completely, zone files included
	if err == nil {
		var changed []string
		if changed, err = r.srv.SetForward(cfg.Resolver.Forward); err == nil {
			dropped := r.srv.SetPolicy(p)
			summary := r.apply(cfg, changed, dropped)
			r.current = cfg
			r.reloads.WithLabelValues("success").Inc()
			r.log.Info("config reloaded", "file", r.path, "changes", summary)
			return summary, nil
		}
	}
	r.reloads.WithLabelValues("failure").Inc()
	r.log.Error("config reload failed; the old config keeps serving", "file", r.path, "err", err)
	return "", err
}

// apply drops the cached answers of changed forward zones and says what changed; dropped is
// what the policy swap dropped.
func (r *reloader) apply(cfg config, changedZones []string, dropped []string) string {
	var notes []string
	flushed := 0
	for _, z := range changedZones {
		flushed += r.srv.Cache().RemoveIf(under(z))
	}
	if len(changedZones) > 0 {
		notes = append(notes, fmt.Sprintf("forward zones changed: %s (%d cached answers dropped)",
			strings.Join(changedZones, " "), flushed))
	}
	notes = append(notes, dropped...) // what the new policy made wrong (resolver.SetPolicy)
	old := r.current
	if fmt.Sprint(old.Resolver.Listen) != fmt.Sprint(cfg.Resolver.Listen) || old.Cache != cfg.Cache ||
		old.Resolver.RoundRobin != cfg.Resolver.RoundRobin || old.Log != cfg.Log ||
		old.Resolver.StaleClientTimeout != cfg.Resolver.StaleClientTimeout || old.Ops != cfg.Ops ||
		old.Resolver.RateLimit != cfg.Resolver.RateLimit {
		notes = append(notes, "listen, cache, rrset_roundrobin, rate_limit, log, metrics and control changes take effect at the next restart")
		r.log.Warn("some changes need a restart", "keys", "listen, cache, rrset_roundrobin, rate_limit, log, metrics, control")
	}
	if len(notes) == 0 {
		return "policy and forward zones reloaded"
	}
	return "policy and forward zones reloaded; " + strings.Join(notes, "; ")
}

func under(zone string) func(cache.Question) bool {
	zone = dns.CanonicalName(zone)
	return func(q cache.Question) bool {
		name, _, err := dns.UnpackDomainName(q.Name, 0)
		return err == nil && dns.IsSubDomain(zone, name)
	}
}

// watchDebounce lets an editor finish writing (or a deploy tool finish renaming) before a reload.
const watchDebounce = 300 * time.Millisecond

// watch reloads when the config file or a file matching local_data_files changes. It watches
// the directories, not the files: editors and deploy tools write a new file and rename it over
// the old one, which replaces the inode a file watch would follow.
func (r *reloader) watch(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	patterns := r.watchSet(w)
	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if !matches(patterns, ev.Name) || ev.Op == fsnotify.Chmod {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(watchDebounce)
			} else {
				timer.Reset(watchDebounce)
			}
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			r.log.Warn("watching config files", "err", err)
		case <-fire:
			fire = nil
			r.reload()
			patterns = r.watchSet(w) // zone file patterns may have changed
		}
	}
}

// watchSet watches the directories of the config file and of every local_data_files pattern
// and returns the patterns an event's file must match.
func (r *reloader) watchSet(w *fsnotify.Watcher) []string {
	r.mu.Lock()
	patterns := append([]string{r.path}, r.current.Policy.LocalDataFiles...)
	r.mu.Unlock()
	for i, p := range patterns {
		if abs, err := filepath.Abs(p); err == nil {
			patterns[i] = abs
		}
		dir := filepath.Dir(patterns[i])
		if !slices.Contains(w.WatchList(), dir) {
			if err := w.Add(dir); err != nil {
				r.log.Warn("cannot watch", "dir", dir, "err", err)
			}
		}
	}
	return patterns
}

func matches(patterns []string, name string) bool {
	abs, err := filepath.Abs(name)
	if err != nil {
		return false
	}
	for _, p := range patterns {
		if ok, _ := filepath.Match(p, abs); ok {
			return true
		}
	}
	return false
}
