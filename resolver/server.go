// Package resolver serves DNS queries end to end: UDP and TCP listeners, the query pipeline
// (access control, policy, cache, forwarder), upstream pools with RTT-based selection,
// coalescing of identical misses, prefetch and serve-stale refreshes.
package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fleetdns/fleetdns/cache"
	"github.com/fleetdns/fleetdns/field"
	"github.com/fleetdns/fleetdns/policy"
	"github.com/fleetdns/fleetdns/resolver/upstream"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// Config is the resolver's part of the configuration. Resolution order for a query: access
// control, policy (local answers), cache (fresh: answer; in the prefetch window: answer and
// refresh; stale: refresh, and answer stale if the refresh fails or is slower than
// StaleClientTimeout), forwarder (longest forward zone, best upstream first), store, answer.
type Config struct {
	Listen             []netip.AddrPort
	Forward            []ZoneConfig
	RoundRobin         bool          // rotate address RRsets per answer
	QueryLog           bool          // log every query: client, name, type, rcode, latency, source
	NodeID             string        // server mode: answered as NSID (RFC 5001) and for id.server. / hostname.bind. CH TXT
	StaleClientTimeout time.Duration // how long a client waits for a refresh before getting a stale answer
	StaleRetry         time.Duration // at most one refresh of a stale answer per this interval (default 5s)
	ResolveTimeout     time.Duration // one resolution across all upstreams (default 4s)
	MaxInflight        int           // concurrent misses; more are dropped (default 4096)
	// MaxInflightPerClient bounds the misses one client (an IPv4 address, an IPv6 /64) has in
	// flight over UDP and TCP together, so one client cannot take every slot (default
	// MaxInflight/8). Over it, its UDP misses are dropped and its TCP misses REFUSED.
	MaxInflightPerClient int
	TCP                  TCPLimits // connections, their lifetime, pipelining and write timeout
	// RateLimit limits UDP answers per client prefix, after access control (off when zero).
	RateLimit          RateLimit
	SocketsPerListener int // UDP sockets with SO_REUSEPORT per address (default GOMAXPROCS)
	// OptionalListen lists addresses whose bind failure (no such address here) is logged, not
	// fatal: the embedded defaults include [::1]:53, which a host without IPv6 lacks.
	OptionalListen []netip.AddrPort
	// Clock is the time the pipeline answers by (cache expiry, prefetch, serve-stale, failure
	// backoff); nil is time.Now. Tests advance their own instead of sleeping through TTLs.
	// Sockets, timers and upstream RTTs always run on the real clock.
	Clock func() time.Time
	// FreeBind lists prefixes whose listen addresses are bound even while the host does not
	// have them (IP_FREEBIND): in server mode with announce: kernel the anycast address is on
	// the host only while the node is healthy, and the listener must be there before that.
	FreeBind []netip.Prefix
}

// DefaultStaleClientTimeout is how long a client holding a stale answer waits for its refresh
// unless the config says otherwise (RFC 8767 suggests 1.8 s).
const DefaultStaleClientTimeout = 1800 * time.Millisecond

// Validate reports a config New would reject.
func (c Config) Validate() error {
	if len(c.Listen) == 0 {
		return errors.New("listen: at least one address is needed")
	}
	for _, a := range c.Listen {
		if !a.IsValid() {
			return fmt.Errorf("listen: invalid address %v", a)
		}
	}
	if len(c.Forward) == 0 {
		return errors.New("forward: at least one zone is needed")
	}
	if err := upstream.ValidateZones(c.Forward); err != nil {
		return field.Under("forward", err)
	}
	if c.StaleClientTimeout < 0 || c.ResolveTimeout < 0 || c.StaleRetry < 0 {
		return errors.New("timeouts must not be negative")
	}
	if c.MaxInflight < 0 || c.MaxInflightPerClient < 0 {
		return errors.New("in-flight limits must not be negative")
	}
	if err := c.TCP.validate(); err != nil {
		return fmt.Errorf("tcp: %w", err)
	}
	if err := c.RateLimit.validate(); err != nil {
		return fmt.Errorf("rate_limit: %w", err)
	}
	return nil
}

// Stats counts what the pipeline did. Counts by where answers came from (hits, stale, local,
// refused, servfail) are derived from Answers, so each reply pays for one increment, not two.
type Stats struct {
	Queries, Misses, Prefetches, Formerr, Dropped atomic.Uint64

	Policy   [policy.NumReasons]atomic.Uint64 // decisions by the rule that made them
	Requests [numTypeSlots][16]atomic.Uint64  // replies by query type and rcode
	Answers  [numSources]atomic.Uint64        // replies by where they came from
	Limits   [numLimits]atomic.Uint64         // times each limit was hit
}

// Server answers queries on its listeners.
type Server struct {
	now      func() time.Time // cfg.Clock, or time.Now
	cfg      Config
	log      *slog.Logger
	cache    *cache.Cache
	policy   atomic.Pointer[policy.Policy]
	fwd      atomic.Pointer[upstream.Forwarder]
	fwdMu    sync.Mutex           // serializes forwarder rebuilds
	zones    []ZoneConfig         // the config's forward zones
	owned    map[string]ownedZone // zones whose upstreams a controller sets
	flights  flights
	fails    *failures
	slots    chan struct{} // bounds goroutines off the read loop
	inflight perClient     // each client's part of slots
	tcpConns tcpConns      // open TCP connections, all listeners together
	rrl      *rateLimiter  // nil when RateLimit is off
	nodeID   []byte        // NodeID, nil when unset
	Stats    Stats

	udp []*net.UDPConn
	tcp []*net.TCPListener
	wg  sync.WaitGroup // every goroutine the server starts
	ctx context.Context
}

// New builds a Server; it binds nothing until Listen or Run.
func New(cfg Config, c *cache.Cache, p *policy.Policy, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if c == nil || p == nil || log == nil {
		return nil, errors.New("resolver: cache, policy and logger are required")
	}
	if cfg.StaleClientTimeout == 0 {
		cfg.StaleClientTimeout = DefaultStaleClientTimeout
	}
	if cfg.StaleRetry == 0 {
		cfg.StaleRetry = 5 * time.Second
	}
	if cfg.ResolveTimeout == 0 {
		cfg.ResolveTimeout = 4 * time.Second
	}
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = 4096
	}
	if cfg.MaxInflightPerClient == 0 {
		cfg.MaxInflightPerClient = max(cfg.MaxInflight/8, 1)
	}
	if cfg.SocketsPerListener == 0 {
		cfg.SocketsPerListener = runtime.GOMAXPROCS(0)
	}
	cfg.TCP = cfg.TCP.withDefaults()
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	fwd, err := upstream.NewForwarder(cfg.Forward, cfg.ResolveTimeout)
	if err != nil {
		return nil, err
	}
	s := &Server{now: cfg.Clock, cfg: cfg, log: log, cache: c, fails: newFailures(10000),
		slots: make(chan struct{}, cfg.MaxInflight), ctx: context.Background()}
	s.flights.m = make(map[string]*flight)
	if cfg.NodeID != "" {
		s.nodeID = []byte(cfg.NodeID)
	}
	if cfg.RateLimit.ResponsesPerSecond > 0 {
		cfg.RateLimit = cfg.RateLimit.withDefaults()
		s.cfg.RateLimit = cfg.RateLimit
		s.rrl = newRateLimiter(cfg.RateLimit)
	}
	s.policy.Store(p)
	s.fwd.Store(fwd)
	s.zones = cfg.Forward
	return s, nil
}

// SetPolicy swaps the policy; queries already running keep the one they started with. It drops
// the cached answers the new policy makes wrong (policy.Invalidates) and says what it dropped.
func (s *Server) SetPolicy(p *policy.Policy) []string {
	old := s.policy.Swap(p)
	var notes []string
	for _, inv := range p.Invalidates(old) {
		n := s.cache.RemoveIf(func(q cache.Question) bool { return inv.Match(q.Name, q.Type) })
		notes = append(notes, fmt.Sprintf("%s (%d %s dropped)", inv.Reason, n, inv.What))
	}
	return notes
}

// answered sums the replies from the given sources.
func (st *Stats) answered(srcs ...source) uint64 {
	var n uint64
	for _, src := range srcs {
		n += st.Answers[src].Load()
	}
	return n
}

// Hits counts answers from fresh cache entries (those that started a prefetch included).
func (st *Stats) Hits() uint64 { return st.answered(srcCache, srcPrefetch) }

// Forwarder gives access to the upstream pools, for status.
func (s *Server) Forwarder() *upstream.Forwarder { return s.fwd.Load() }

// SetForward replaces the forward zones; resolutions already running finish with the old ones.
// Upstreams that stay keep their RTT and health. It returns the zones whose upstreams changed,
// whose cached answers the caller may want to drop.
func (s *Server) SetForward(zones []ZoneConfig) ([]string, error) {
	s.fwdMu.Lock()
	defer s.fwdMu.Unlock()
	s.zones = zones
	return s.rebuild()
}

// SetUpstreams gives zone the upstreams a controller chose (the failover controller owns "."),
// overriding the config's until the process ends; note says why, for ctl forwards. Upstreams
// that stay keep their RTT and health.
func (s *Server) SetUpstreams(zone string, ups []netip.AddrPort, note string) error {
	s.fwdMu.Lock()
	defer s.fwdMu.Unlock()
	if s.owned == nil {
		s.owned = map[string]ownedZone{}
	}
	s.owned[dns.CanonicalName(zone)] = ownedZone{ups: ups, note: note}
	_, err := s.rebuild()
	return err
}

type ownedZone struct {
	ups  []netip.AddrPort
	note string
}

// rebuild makes the forwarder from the config's zones and the owned overrides; s.fwdMu is held.
func (s *Server) rebuild() ([]string, error) {
	zones := slices.Clone(s.zones)
	for name, o := range s.owned {
		i := slices.IndexFunc(zones, func(z ZoneConfig) bool { return dns.CanonicalName(z.Zone) == name })
		if i < 0 {
			zones = append(zones, ZoneConfig{Zone: name, Protocol: "udp"})
			i = len(zones) - 1
		}
		zones[i].Upstreams = o.ups
	}
	fwd, err := upstream.NewForwarder(zones, s.cfg.ResolveTimeout)
	if err != nil {
		return nil, err
	}
	for name, o := range s.owned {
		fwd.SetNote(name, o.note)
	}
	changed := fwd.Adopt(s.fwd.Load())
	s.fwd.Store(fwd)
	return changed, nil
}

// Cache is the server's answer cache.
func (s *Server) Cache() *cache.Cache { return s.cache }

// Listen binds every listen address: SocketsPerListener UDP sockets sharing the port with
// SO_REUSEPORT, and one TCP listener. A port of 0 picks one free port for both.
func (s *Server) Listen() error {
	for _, a := range s.cfg.Listen {
		err := s.listen(a)
		if err != nil && isOptional(s.cfg.OptionalListen, a) && errors.Is(err, syscall.EADDRNOTAVAIL) {
			s.log.Warn("listen address not available here, skipped", "addr", a.String(), "err", err)
			continue
		}
		if err != nil {
			s.closeListeners()
			return err
		}
	}
	if len(s.udp) == 0 {
		return errors.New("listen: no address could be bound")
	}
	return nil
}

func isOptional(list []netip.AddrPort, a netip.AddrPort) bool {
	for _, o := range list {
		if o == a {
			return true
		}
	}
	return false
}

func (s *Server) listen(a netip.AddrPort) error {
	// SO_REUSEPORT would let a second fleetdns bind the same address and split the queries
	// between two caches; a plain bind first tells whether anyone holds the port.
	freebind := false
	for _, p := range s.cfg.FreeBind {
		freebind = freebind || p.Contains(a.Addr().Unmap())
	}
	ctx := context.Background()
	if a.Port() != 0 {
		plain := sockopts(false, freebind)
		probe, err := plain.ListenPacket(ctx, "udp", a.String())
		if err != nil {
			return fmt.Errorf("listen udp %s: %w", a, err)
		}
		probe.Close()
	}
	lc := sockopts(true, freebind)
	for try := 0; ; try++ {
		bound := a
		var udp []*net.UDPConn
		var err error
		for i := 0; i < s.cfg.SocketsPerListener && err == nil; i++ {
			var pc net.PacketConn
			if pc, err = lc.ListenPacket(ctx, "udp", bound.String()); err == nil {
				c := pc.(*net.UDPConn)
				udp = append(udp, c)
				if bound.Port() == 0 { // the others join the port the kernel chose
					bound = netip.AddrPortFrom(bound.Addr(), uint16(c.LocalAddr().(*net.UDPAddr).Port))
				}
			}
		}
		if err != nil {
			closeAll(udp)
			return fmt.Errorf("listen udp %s: %w", bound, err)
		}
		l, err := lc.Listen(ctx, "tcp", bound.String())
		if err == nil {
			s.udp = append(s.udp, udp...)
			s.tcp = append(s.tcp, l.(*net.TCPListener))
			return nil
		}
		closeAll(udp)
		// A port the kernel picked free for UDP may be taken for TCP: with port 0, pick again.
		if a.Port() != 0 || !errors.Is(err, syscall.EADDRINUSE) || try == 10 {
			return fmt.Errorf("listen tcp %s: %w", bound, err)
		}
	}
}

// sockopts sets SO_REUSEPORT (reuse) and IP_FREEBIND / IPV6_FREEBIND (freebind) on the
// sockets a listener opens.
func sockopts(reuse, freebind bool) net.ListenConfig {
	return net.ListenConfig{Control: func(network, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if reuse {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}
			if freebind && serr == nil {
				if strings.HasSuffix(network, "6") {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_FREEBIND, 1)
				} else {
					serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_FREEBIND, 1)
				}
			}
		})
		return errors.Join(err, serr)
	}}
}

func closeAll(cs []*net.UDPConn) {
	for _, c := range cs {
		c.Close()
	}
}

// Addrs returns the bound UDP addresses, one per listen address (TCP uses the same ports).
func (s *Server) Addrs() []netip.AddrPort {
	var out []netip.AddrPort
	seen := map[netip.AddrPort]bool{}
	for _, c := range s.udp {
		a := c.LocalAddr().(*net.UDPAddr).AddrPort()
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

func (s *Server) closeListeners() {
	for _, c := range s.udp {
		c.Close()
	}
	for _, l := range s.tcp {
		l.Close()
	}
}

// Run serves until ctx is done, then closes the listeners and returns once every goroutine it
// started has exited. It binds first if Listen was not called.
func (s *Server) Run(ctx context.Context) error {
	if len(s.udp) == 0 {
		if err := s.Listen(); err != nil {
			return err
		}
	}
	s.ctx = ctx
	for _, c := range s.udp {
		s.wg.Go(func() { s.serveUDP(c) })
	}
	for _, l := range s.tcp {
		s.wg.Go(func() { s.serveTCP(ctx, l) })
	}
	s.log.Info("serving", "listen", fmt.Sprint(s.Addrs()))
	<-ctx.Done()
	s.closeListeners()
	s.wg.Wait()
	return nil
}

// offLoop runs fn in a goroutine, bounded by MaxInflight; when all slots are taken the query is
// dropped, and the client retries, rather than letting a dead upstream pile up goroutines.
func (s *Server) offLoop(fn func()) bool {
	select {
	case s.slots <- struct{}{}:
	default:
		s.Stats.Dropped.Add(1)
		return false
	}
	s.wg.Go(func() {
		defer func() { <-s.slots }()
		fn()
	})
	return true
}

// AskUpstream sends one query for name/qtype straight to upstream, past the cache and the
// policy: the failover controller's canary.
func (s *Server) AskUpstream(ctx context.Context, upstream netip.AddrPort, name string, qtype uint16) ([]string, error) {
	return s.Forwarder().Ask(ctx, upstream, name, qtype)
}
