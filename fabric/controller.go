package fabric

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// ControllerConfig sets how the node leaves the anycast path.
type ControllerConfig struct {
	// GracefulWithdraw: on health loss, first re-announce with GRACEFUL_SHUTDOWN for this long
	// so that routers move traffic away before the route disappears; 0 withdraws at once.
	GracefulWithdraw time.Duration
	// Drain: on a planned shutdown, keep answering this long after leaving the path.
	Drain time.Duration
	// ShutdownGraceful: leave the path on shutdown by re-announcing with GRACEFUL_SHUTDOWN
	// (routers that honour 65535:0 prefer other nodes at once); otherwise by withdrawing.
	ShutdownGraceful bool
}

// Controller turns the health verdict and a planned shutdown into announcements: a node
// attracts traffic only while it answers correctly.
type Controller struct {
	cfg ControllerConfig
	ann Announcer
	log *slog.Logger

	mu        sync.Mutex
	healthy   bool
	announced bool
	graceful  bool
	reason    string
	stopping  bool
	timer     *time.Timer
	retry     *time.Timer // set while an announce or withdraw the announcer refused waits to be retried
}

// retryEvery is how soon an announce or withdraw that failed is tried again. The health checker
// calls SetHealthy only when its verdict changes, so without a retry a node whose first announce
// failed (a speaker not ready yet) would stay withdrawn while healthy.
const retryEvery = time.Second

// NewController builds a controller; nothing is announced until SetHealthy(true).
func NewController(cfg ControllerConfig, ann Announcer, log *slog.Logger) *Controller {
	return &Controller{cfg: cfg, ann: ann, log: log, reason: "waiting for the first healthy checks"}
}

// Status says whether the prefixes are announced, and why (not).
func (c *Controller) Status() (announced, graceful bool, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.announced, c.graceful, c.reason
}

// SetHealthy is the health checker's verdict.
func (c *Controller) SetHealthy(ctx context.Context, healthy bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.healthy = healthy
	if c.stopping {
		return
	}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	if healthy {
		c.announce(ctx, false, "healthy")
		return
	}
	if c.cfg.GracefulWithdraw > 0 && c.announced {
		c.announce(ctx, true, "unhealthy: graceful shutdown community before withdrawing")
		c.timer = time.AfterFunc(c.cfg.GracefulWithdraw, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.timer = nil
			if !c.healthy && !c.stopping {
				c.withdraw(ctx, "unhealthy")
			}
		})
		return
	}
	c.withdraw(ctx, "unhealthy")
}

// Shutdown takes the node out of the path, keeps it answering for the drain period, then
// withdraws. The caller stops the BGP sessions and the listeners afterwards.
func (c *Controller) Shutdown(ctx context.Context) {
	c.mu.Lock()
	c.stopping = true
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.retry != nil {
		c.retry.Stop()
	}
	was := c.announced
	if was {
		if c.cfg.ShutdownGraceful {
			c.announce(ctx, true, "shutting down: graceful shutdown community, draining")
		} else {
			c.withdraw(ctx, "shutting down: withdrawn, draining")
		}
	}
	c.mu.Unlock()
	if was && c.cfg.Drain > 0 {
		select {
		case <-time.After(c.cfg.Drain):
		case <-ctx.Done():
		}
	}
	c.mu.Lock()
	c.withdraw(ctx, "shut down")
	c.mu.Unlock()
}

// announce and withdraw run with c.mu held, so that transitions apply in order.
func (c *Controller) announce(ctx context.Context, graceful bool, reason string) {
	if c.announced && c.graceful == graceful {
		c.reason = reason
		return
	}
	if err := c.ann.Announce(ctx, graceful); err != nil {
		c.log.Error("announce", "err", err, "retry_in", retryEvery)
		c.reason = "announce failed: " + err.Error()
		c.retryLater(ctx)
		return
	}
	c.announced, c.graceful, c.reason = true, graceful, reason
	c.log.Info("announced", "graceful_shutdown", graceful, "reason", reason)
}

// retryLater schedules one more try of what the verdict asks for, after an announcer error.
// Called with c.mu held.
func (c *Controller) retryLater(ctx context.Context) {
	if c.retry != nil || c.stopping {
		return
	}
	c.retry = time.AfterFunc(retryEvery, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.retry = nil
		switch {
		case c.stopping || ctx.Err() != nil:
		case c.healthy && (!c.announced || c.graceful):
			c.announce(ctx, false, "healthy")
		case !c.healthy && c.announced && c.timer == nil:
			c.withdraw(ctx, "unhealthy")
		}
	})
}

func (c *Controller) withdraw(ctx context.Context, reason string) {
	c.reason = reason
	if !c.announced {
		return
	}
	if err := c.ann.Withdraw(ctx); err != nil {
		c.log.Error("withdraw", "err", err, "retry_in", retryEvery)
		c.reason = "withdraw failed: " + err.Error()
		c.retryLater(ctx)
		return
	}
	c.announced, c.graceful = false, false
	c.log.Info("withdrawn", "reason", reason)
}
