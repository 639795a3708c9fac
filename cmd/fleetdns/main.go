// Command fleetdns is a caching DNS stub for every server of a fleet (client mode) and, in
// server mode, an anycast resolver node. This file is the composition root: it turns the config
// into each package's Config, wires them, and runs them until a signal.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/fleetdns/fleetdns/cache"
	"github.com/fleetdns/fleetdns/policy"
	"github.com/fleetdns/fleetdns/resolver"
	"github.com/prometheus/client_golang/prometheus"
)

// version is set at build time with -ldflags "-X main.version=..."; otherwise the module's.
var version = ""

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  fleetdns client [-config FILE]   run the caching stub (embedded defaults without -config)
  fleetdns server -config FILE     run an anycast node: the same pipeline plus BGP
  fleetdns check [-mode client|server] -config FILE   validate a config file
  fleetdns ctl [-socket PATH] [-user NAME] [-json] stats | flush NAME | flush-zone ZONE | cache-dump | forwards | reload
  fleetdns version                 print the version
`

// run is main without the process: it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "client":
		return runClient(ctx, args[1:], stderr)
	case "check":
		return runCheck(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "fleetdns", versionString())
		return 0
	case "ctl":
		return runCtl(args[1:], stdout, stderr)
	case "server":
		return runServer(ctx, args[1:], stderr)
	case "install", "uninstall":
		fmt.Fprintf(stderr, "fleetdns %s: not built yet in this version\n", args[0])
		return 2
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "fleetdns: unknown command %q\n%s", args[0], usage)
		return 2
	}
}

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file to check (or give it as the argument)")
	mode := fs.String("mode", "client", "the mode the config is for: client or server (server mode's needs are checked too)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := configArg(fs, path); err != nil {
		fmt.Fprintln(stderr, "fleetdns check:", err)
		return 2
	}
	if *mode != "client" && *mode != "server" {
		fmt.Fprintf(stderr, "fleetdns check: -mode %q is not one of client, server\n", *mode)
		return 2
	}
	if *path == "" {
		fmt.Fprintln(stderr, "fleetdns check: -config FILE is required")
		return 2
	}
	cfg, err := loadConfig(*path)
	if err == nil && *mode == "server" {
		err = serverReady(cfg, *path)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning: "+w)
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}

// configArg takes a positional argument as the config file (`fleetdns client FILE`), unless
// -config gave one too or there are more: a file named twice, or an argument that would
// otherwise be ignored, is an error, never a silent start on the embedded defaults.
func configArg(fs *flag.FlagSet, path *string) error {
	switch rest := fs.Args(); {
	case len(rest) == 0:
		return nil
	case len(rest) > 1:
		return fmt.Errorf("unexpected arguments %q: give one config file", rest)
	case *path != "":
		return fmt.Errorf("config file given twice: -config %s and %s", *path, rest[0])
	default:
		*path = rest[0]
		return nil
	}
}

// serverReady reports a config that lacks what server mode needs.
func serverReady(cfg config, path string) error {
	if !cfg.Server.present() {
		return fmt.Errorf("%s: node: server mode needs a bgp block, or announce: kernel with a kernel block, or announce: none with health.listen; and node.id", path)
	}
	return nil
}

// defaultGCPercent replaces Go's GOGC=100 unless the environment sets GOGC: the cache is most
// of the heap, and collecting at 50% growth keeps the resident memory per cached answer below
// unbound's at a small CPU cost on misses (hits allocate nothing, so they never trigger a GC).
const defaultGCPercent = 50

func runClient(ctx context.Context, args []string, stderr io.Writer) int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file, or give it as the argument (default: embedded defaults, upstreams from /etc/resolv.conf)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := configArg(fs, path); err != nil {
		fmt.Fprintln(stderr, "fleetdns client:", err)
		return 2
	}
	cfg := defaultConfig()
	var err error
	var pol *policy.Policy // nil on embedded defaults: build makes it
	if *path != "" {
		cfg, pol, err = loadConfigPolicy(*path)
	} else {
		cfg.Resolver.Forward, err = resolvConfForward(resolvConfPath, cfg.Resolver.Listen)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	log := newLogger(stderr, cfg.Log)
	if *path != "" {
		if data, err := os.ReadFile(*path); err == nil {
			if ignored := serverBlocks(data); len(ignored) > 0 {
				log.Warn("config: server mode's blocks are ignored by fleetdns client", "file", *path, "blocks", ignored)
			}
		}
	}
	cfg.Resolver.QueryLog = cfg.Log.Queries
	if path := os.Getenv("FLEETDNS_CPUPROFILE"); path != "" {
		// For benchmarks: "where fleetdns loses" comes with a profile. %p becomes the PID, so
		// that each process a harness starts writes its own.
		stopProfile, err := startCPUProfile(strings.ReplaceAll(path, "%p", strconv.Itoa(os.Getpid())))
		if err != nil {
			log.Error("cpu profile", "err", err)
			return 1
		}
		defer stopProfile()
	}
	srv, err := build(cfg, pol, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	if err := srv.Listen(); err != nil {
		log.Error("start", "err", err)
		return 1
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var o ops
	reg := prometheus.NewRegistry()
	verbs := map[string]func() any{}
	f, err := newFailover(cfg.Failover, srv, log)
	if err == nil && f != nil {
		err = f.Register(reg)
		verbs["failover"] = func() any { return failoverStatus(f) }
		o.wg.Go(func() {
			if err := f.Run(ctx); err != nil {
				log.Error("failover", "err", err)
			}
		})
	}
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	rl, err := o.start(ctx, cfg, *path, srv, log, reg, verbs)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	sdNotify("READY=1")
	o.reloadOnSIGHUP(ctx, rl)
	err = srv.Run(ctx)
	cancel()
	o.wait()
	if err != nil {
		log.Error("run", "err", err)
		return 1
	}
	log.Info("stopped")
	return 0
}

// build wires the packages of the query pipeline from a config; p is the policy that loading
// the config built, or nil to build it here.
func build(cfg config, p *policy.Policy, log *slog.Logger) (*resolver.Server, error) {
	c, err := cache.New(cfg.Cache)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	if p == nil {
		if p, err = policy.New(cfg.Policy); err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
	}
	srv, err := resolver.New(cfg.Resolver, c, p, log)
	if err != nil {
		return nil, errors.Join(errors.New("resolver"), err)
	}
	// Never an open resolver by accident: without access_control only loopback clients are
	// answered, and the log says whom this process answers.
	log.Info("answering clients of access_control, REFUSED to others", "access_control", fmt.Sprint(cfg.Policy.AccessControl))
	return srv, nil
}

func newLogger(w io.Writer, l logConfig) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.Level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
