// Package bgp is the anycast node's BGP speaker: it announces the configured prefixes to the
// routers and withdraws them on demand, adapting an embedded gobgp server to
// fabric.Announcer. It is the only importer of gobgp, so that client mode never links it.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/fleetdns/fleetdns/fabric"
)

var _ fabric.Announcer = (*Speaker)(nil)

// connectRetry is the pause between dials to an active peer. gobgp's default is 120s, far
// too long for a node that must get its route back quickly after a router restarts.
const connectRetry = 1 // seconds

// idlePoll is how often Stop checks whether the peers have gone idle.
const idlePoll = 20 * time.Millisecond

// ErrNotStarted is returned by Announce and Withdraw before Start or after Stop.
var ErrNotStarted = errors.New("bgp speaker not running")

// PeerStatus is one peer as the speaker sees it.
type PeerStatus struct {
	Address netip.Addr
	ASN     uint32
	State   string        // "idle", "connect", "active", "opensent", "openconfirm", "established"
	Uptime  time.Duration // time since the session was established; 0 unless established
}

// Speaker announces the configured prefixes through an embedded gobgp server.
type Speaker struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex // serializes Start, Announce, Withdraw and Stop; guards the fields below
	srv       *server.BgpServer
	announced bool
}

// New checks cfg and returns a speaker that does nothing until Start.
func New(cfg Config, log *slog.Logger) (*Speaker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("bgp config: %w", err)
	}
	if log == nil {
		return nil, errors.New("bgp: nil logger")
	}
	return &Speaker{cfg: cfg.withDefaults(), log: log}, nil
}

// Start starts the embedded BGP server and its peers. Nothing is announced until Announce.
//
// gobgp's event loop (BgpServer.Serve) has no way to end: after Stop it stays parked on its
// channels, one idle goroutine per Speaker ever started.
func (s *Speaker) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("bgp speaker already started")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	srv := server.NewBgpServer(server.LoggerOption(newGobgpLogger(s.log)))
	go srv.Serve()
	if err := s.configure(ctx, srv); err != nil {
		srv.Stop()
		return err
	}
	s.srv = srv
	s.log.LogAttrs(ctx, slog.LevelInfo, "bgp speaker started",
		slog.Uint64("asn", uint64(s.cfg.ASN)), slog.String("router_id", s.cfg.RouterID.String()),
		slog.Int("peers", len(s.cfg.Peers)), slog.Int("prefixes", len(s.cfg.Prefixes)))
	return nil
}

func (s *Speaker) configure(ctx context.Context, srv *server.BgpServer) error {
	// ListenPort -1: no listener at all (0 would mean port 179 on every address, the
	// anycast one included). Passive peers need one, bound to their local addresses only.
	global := &api.Global{Asn: s.cfg.ASN, RouterId: s.cfg.RouterID.String(), ListenPort: -1}
	for _, p := range s.cfg.Peers {
		if p.Passive {
			global.ListenPort = 179
			a := p.LocalAddress.String()
			if !slices.Contains(global.ListenAddresses, a) {
				global.ListenAddresses = append(global.ListenAddresses, a)
			}
		}
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: global}); err != nil {
		return fmt.Errorf("start bgp: %w", err)
	}

	// Policies go in after StartBgp (which resets them) and before the first peer.
	sets, pols, assigns := policies(s.cfg)
	for _, d := range sets {
		if err := srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: d}); err != nil {
			return fmt.Errorf("add defined set %s: %w", d.Name, err)
		}
	}
	for _, p := range pols {
		if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: p}); err != nil {
			return fmt.Errorf("add policy %s: %w", p.Name, err)
		}
	}
	for _, a := range assigns {
		if err := srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: a}); err != nil {
			return fmt.Errorf("assign policy %s %s: %w", a.Name, a.Direction, err)
		}
	}

	for _, p := range s.cfg.Peers {
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p)}); err != nil {
			return fmt.Errorf("add peer %v: %w", p.Address, err)
		}
	}
	return nil
}

func apiPeer(p Peer) *api.Peer {
	hold := uint64(p.HoldTime / time.Second)
	out := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			AuthPassword:    p.Password,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			ConnectRetry:      connectRetry,
			HoldTime:          hold,
			KeepaliveInterval: max(hold/3, 1),
		}},
		Transport: &api.Transport{
			LocalAddress: p.LocalAddress.String(),
			PassiveMode:  p.Passive,
		},
		// Off on purpose: graceful restart would keep a dead node's routes alive.
		GracefulRestart: &api.GracefulRestart{Enabled: false},
		// One family per session, the session's own: an IPv6 prefix over an IPv4 session
		// would have no usable next hop.
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: family(p.Address), Enabled: true}}},
	}
	if p.Multihop > 0 {
		out.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.Multihop)}
	}
	return out
}

// Announce sends every configured prefix to every peer (those not up yet get them when their
// session comes up). With graceful, each carries GRACEFUL_SHUTDOWN (65535:0); announcing again
// without it replaces the marked routes.
func (s *Speaker) Announce(ctx context.Context, graceful bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return ErrNotStarted
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, p := range s.cfg.Prefixes {
		ap, err := path(p, s.cfg.SecondaryLocalPref, graceful)
		if err != nil {
			return fmt.Errorf("announce %v: %w", p.Prefix, err)
		}
		if _, err := s.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: ap}); err != nil {
			return fmt.Errorf("announce %v: %w", p.Prefix, err)
		}
		// Some prefixes may be out even if a later one fails; Withdraw takes back all.
		s.announced = true
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "bgp prefixes announced", slog.Bool("graceful_shutdown", graceful))
	return nil
}

// Withdraw takes every prefix back from every peer.
func (s *Speaker) Withdraw(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return ErrNotStarted
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.withdraw(ctx, s.srv)
}

func (s *Speaker) withdraw(ctx context.Context, srv *server.BgpServer) error {
	// Neither a family nor a path: gobgp deletes every locally originated path, which is
	// exactly the set we announced (learned routes never enter the RIB).
	if err := srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL}); err != nil {
		return fmt.Errorf("withdraw: %w", err)
	}
	if s.announced {
		s.log.LogAttrs(ctx, slog.LevelInfo, "bgp prefixes withdrawn")
	}
	s.announced = false
	return nil
}

// Stop withdraws the prefixes, closes every session with a Cease (administrative shutdown),
// waits until every peer is idle or ctx ends, then stops the BGP server. gobgp sends the
// Cease asynchronously; stopping the server before the peers are idle could replace it with
// a "peer de-configured" Cease or cut the connection before the message leaves.
func (s *Speaker) Stop(ctx context.Context) error {
	s.mu.Lock()
	srv := s.srv
	if srv == nil {
		s.mu.Unlock()
		return nil
	}
	s.srv = nil // from here on Announce and Withdraw fail with ErrNotStarted
	var errs []error
	if err := s.withdraw(ctx, srv); err != nil {
		errs = append(errs, err)
	}
	// The wait below can take until ctx ends; Peers and Announced must not block on it.
	s.mu.Unlock()
	defer srv.Stop()

	// DisablePeer rather than ShutdownPeer: both send Cease/Administrative Shutdown, but a
	// disabled peer stays idle instead of reconnecting after its idle hold timer.
	for _, p := range s.cfg.Peers {
		err := srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: p.Address.String(), Communication: "fleetdns stopping"})
		if err != nil {
			errs = append(errs, fmt.Errorf("shut down peer %v: %w", p.Address, err))
		}
	}
	if err := waitIdle(ctx, srv); err != nil {
		errs = append(errs, err)
	}
	s.log.LogAttrs(ctx, slog.LevelInfo, "bgp speaker stopped")
	return errors.Join(errs...)
}

// waitIdle polls until every peer is idle and administratively down.
func waitIdle(ctx context.Context, srv *server.BgpServer) error {
	t := time.NewTicker(idlePoll)
	defer t.Stop()
	for {
		var busy []string
		// Not ctx: once it is done, ListPeer silently skips every peer, which would read as
		// "all idle".
		err := srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
			st := p.GetState()
			if st.GetSessionState() != api.PeerState_IDLE || st.GetAdminState() != api.PeerState_DOWN {
				busy = append(busy, st.GetNeighborAddress()+" "+stateName(st.GetSessionState()))
			}
		})
		if err != nil {
			return fmt.Errorf("list peers: %w", err)
		}
		if len(busy) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("peers not idle (%s): %w", strings.Join(busy, ", "), ctx.Err())
		case <-t.C:
		}
	}
}

// Register adds the speaker's metrics to reg: the sessions that are established.
func (s *Speaker) Register(reg prometheus.Registerer) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fleetdns_bgp_peers_established", Help: "BGP sessions in the Established state.",
	}, func() float64 {
		n := 0
		for _, p := range s.Peers() {
			if p.State == "established" {
				n++
			}
		}
		return float64(n)
	}))
}

// Peers reports every configured peer, in configuration order.
func (s *Speaker) Peers() []PeerStatus {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()

	out := make([]PeerStatus, len(s.cfg.Peers))
	index := make(map[netip.Addr]int, len(s.cfg.Peers))
	for i, p := range s.cfg.Peers {
		out[i] = PeerStatus{Address: p.Address, ASN: p.ASN, State: "idle"}
		index[p.Address] = i
	}
	if srv == nil {
		return out
	}
	now := time.Now()
	_ = srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		a, err := netip.ParseAddr(p.GetState().GetNeighborAddress())
		i, ok := index[a.Unmap()]
		if err != nil || !ok {
			return
		}
		st := p.GetState().GetSessionState()
		out[i].State = stateName(st)
		if up := p.GetTimers().GetState().GetUptime(); st == api.PeerState_ESTABLISHED && up != nil {
			out[i].Uptime = now.Sub(up.AsTime()).Truncate(time.Second)
		}
	})
	return out
}

// Announced reports whether the prefixes are currently announced (graceful or not).
func (s *Speaker) Announced() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.announced
}

func stateName(st api.PeerState_SessionState) string {
	if st == api.PeerState_UNKNOWN {
		return "unknown"
	}
	return strings.ToLower(st.String())
}
