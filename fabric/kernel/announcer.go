// Package kernel is the only importer of netlink: it announces the anycast prefixes by adding
// them to the host, for a routing daemon on the node (BIRD, FRR) to export. Depending on
// Config.Table they go on a device as addresses or into a routing table of their own as
// routes; either way the daemon only has to export what it sees.
//
// Fate sharing. A BGP session dies with the process that holds it, so a crashed node stops
// attracting traffic by itself; an address left on lo would not, and a SIGKILLed fleetdns
// would keep the anycast prefix announced with nothing answering behind it. So by default
// the prefixes go on a TUN device that this process creates non-persistent and keeps open:
// the kernel deletes such a device, with its addresses and routes, when the last file
// descriptor attached to it closes, which happens however the process ends.
//
// It works on Linux only; elsewhere Start fails.
package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/fleetdns/fleetdns/fabric"
)

var _ fabric.Announcer = (*Announcer)(nil)

// ErrNotStarted is returned by Announce and Withdraw before Start or after Stop.
var ErrNotStarted = errors.New("kernel announcer not started")

// Status is the announcer as `fleetdns ctl` shows it.
type Status struct {
	Device    string
	Table     int  // 0: the prefixes are addresses on Device
	Created   bool // fleetdns created Device, and it disappears when fleetdns exits
	Announced bool
	Prefixes  []string
}

// Announcer adds the configured prefixes to the host while announced and removes them when
// withdrawn.
type Announcer struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex // serializes Start, Announce, Withdraw and Stop; guards the fields below
	host      *host      // nil before Start and after Stop
	announced bool
}

// New checks cfg and returns an announcer that touches nothing until Start.
func New(cfg Config, log *slog.Logger) (*Announcer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("kernel config: %w", err)
	}
	if log == nil {
		return nil, errors.New("kernel: nil logger")
	}
	return &Announcer{cfg: cfg.withDefaults(), log: log}, nil
}

// Start finds Device or creates it as a non-persistent TUN device, and removes whatever a
// previous run left of the configured prefixes, so that the node starts withdrawn. A device
// that exists already (lo, a dummy made by the operator) is used as it is and outlives the
// process.
func (a *Announcer) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.host != nil {
		return errors.New("kernel announcer already started")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	h, err := openHost(ctx, a.cfg, a.log)
	if err != nil {
		return err
	}
	// A created device is empty; an existing one may hold what a killed run left behind.
	for _, p := range a.cfg.Prefixes {
		removed, err := h.remove(p)
		if err != nil {
			h.close()
			return fmt.Errorf("%w (removing what an earlier run left)", err)
		}
		if removed {
			a.log.LogAttrs(ctx, slog.LevelInfo, "kernel: removed a prefix left by an earlier run",
				slog.String("prefix", p.String()), slog.String("device", a.cfg.Device), slog.Int("table", a.cfg.Table))
		}
	}
	a.host = h
	a.log.LogAttrs(ctx, slog.LevelInfo, "kernel announcer started",
		slog.String("device", a.cfg.Device), slog.Bool("created", h.created()),
		slog.Int("table", a.cfg.Table), slog.Int("prefixes", len(a.cfg.Prefixes)))
	return nil
}

// Announce adds every prefix; those already there are left alone. If it fails from the
// withdrawn state it removes what it added, so that a caller who saw the error and believes
// the node withdrawn is right.
//
// graceful asks routers to prefer other paths before the prefixes go (BGP's
// GRACEFUL_SHUTDOWN community, RFC 8326). An address or a kernel route has nothing to
// carry that mark, and the routing daemon exports what it sees as it is. The softest exit
// left is to remove the prefixes now: the caller keeps the listeners answering through its
// drain period, so queries already on their way, and those from routers that have not
// converged yet, still get answers while the routers move away.
func (a *Announcer) Announce(ctx context.Context, graceful bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.host == nil {
		return ErrNotStarted
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if graceful {
		return a.withdraw(ctx, "kernel prefixes withdrawn for a graceful exit (the kernel has no GRACEFUL_SHUTDOWN)")
	}
	for i, p := range a.cfg.Prefixes {
		if err := a.host.add(p); err != nil {
			if !a.announced {
				for _, q := range a.cfg.Prefixes[:i] {
					_, _ = a.host.remove(q) // best effort; the error to report is err
				}
			}
			return err
		}
	}
	a.announced = true
	a.log.LogAttrs(ctx, slog.LevelInfo, "kernel prefixes announced",
		slog.String("device", a.cfg.Device), slog.Int("table", a.cfg.Table))
	return nil
}

// Withdraw removes every prefix; those already gone are no error.
func (a *Announcer) Withdraw(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.host == nil {
		return ErrNotStarted
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return a.withdraw(ctx, "kernel prefixes withdrawn")
}

// withdraw tries every prefix even after an error, so that one failure leaves as little
// announced as possible. It runs with a.mu held.
func (a *Announcer) withdraw(ctx context.Context, msg string) error {
	var errs []error
	for _, p := range a.cfg.Prefixes {
		if _, err := a.host.remove(p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if a.announced {
		a.log.LogAttrs(ctx, slog.LevelInfo, msg, slog.String("device", a.cfg.Device), slog.Int("table", a.cfg.Table))
	}
	a.announced = false
	return nil
}

// Stop withdraws the prefixes and lets go of the device; one that Start created disappears,
// and takes along any prefix the withdrawal failed to remove. Stop goes on when ctx ends:
// prefixes left announced would be worse than a late return.
func (a *Announcer) Stop(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.host == nil {
		return nil
	}
	err := a.withdraw(ctx, "kernel prefixes withdrawn")
	created := a.host.created()
	a.host.close()
	a.host, a.announced = nil, false
	a.log.LogAttrs(ctx, slog.LevelInfo, "kernel announcer stopped",
		slog.String("device", a.cfg.Device), slog.Bool("device_deleted", created))
	return err
}

// Status reports the configuration and whether the prefixes are announced.
func (a *Announcer) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{
		Device:    a.cfg.Device,
		Table:     a.cfg.Table,
		Created:   a.host != nil && a.host.created(),
		Announced: a.announced,
		Prefixes:  make([]string, len(a.cfg.Prefixes)),
	}
	for i, p := range a.cfg.Prefixes {
		s.Prefixes[i] = p.String()
	}
	return s
}

// where names the place the prefixes go, for errors.
func where(cfg Config) string {
	if cfg.Table == 0 {
		return cfg.Device
	}
	return fmt.Sprintf("table %d (dev %s)", cfg.Table, cfg.Device)
}
