package resolver

import (
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Limits that keep one client, or a few, from taking what every client shares: the slots for
// misses in flight (Config.MaxInflight) and the TCP connections. Each limit counts its hits in
// Stats.Limits, exported as fleetdns_limit_hits_total{limit=...}.

// TCPLimits bound what TCP clients (RFC 7766) may hold. Zero fields take the defaults.
type TCPLimits struct {
	MaxConns          int           // open connections, all clients together (default 1024)
	MaxConnsPerClient int           // open connections of one client (default 64, MaxConns/16)
	IdleTimeout       time.Duration // a connection with no query for this long is closed (default 10s)
	// Lifetime caps a connection's age, however busy: the idle timer restarts with every query,
	// so without it a client that sends one query every few seconds keeps its slots forever
	// (default 2m). The queries already read are answered before it closes.
	Lifetime     time.Duration
	MaxQueries   int           // queries read from one connection before it is closed (default 1000)
	WriteTimeout time.Duration // a reply not written in this long closes the connection (default 3s)
	// Pipeline caps the misses one connection has in flight; at the cap the server stops
	// reading from it until one is answered (default 64).
	Pipeline int
}

// The defaults. A legitimate client, even a forwarder in front of us, rarely has more than a
// handful of connections or a few dozen queries outstanding on one; the caps are an order of
// magnitude above that and an order below what the whole server holds.
const (
	defaultTCPConns        = 1024
	defaultTCPIdle         = 10 * time.Second
	defaultTCPLifetime     = 2 * time.Minute
	defaultTCPMaxQueries   = 1000
	defaultTCPWriteTimeout = 3 * time.Second
	defaultTCPPipeline     = 64

	// maxUDPQuery is the largest UDP query read whole; a larger one is answered FORMERR. Our
	// own EDNS buffer size is 1232, so no client has a reason to send more than this.
	maxUDPQuery = 4096
)

func (l TCPLimits) validate() error {
	if l.MaxConns < 0 || l.MaxConnsPerClient < 0 || l.MaxQueries < 0 || l.Pipeline < 0 {
		return errors.New("limits must not be negative")
	}
	if l.IdleTimeout < 0 || l.Lifetime < 0 || l.WriteTimeout < 0 {
		return errors.New("timeouts must not be negative")
	}
	return nil
}

func (l TCPLimits) withDefaults() TCPLimits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.MaxConns, defaultTCPConns)
	def(&l.MaxConnsPerClient, max(l.MaxConns/16, 1))
	def(&l.MaxQueries, defaultTCPMaxQueries)
	def(&l.Pipeline, defaultTCPPipeline)
	defDur(&l.IdleTimeout, defaultTCPIdle)
	defDur(&l.Lifetime, defaultTCPLifetime)
	defDur(&l.WriteTimeout, defaultTCPWriteTimeout)
	return l
}

// limit names one limit, for its counter.
type limit int

const (
	limitInflightPerClient limit = iota // a miss over its client's share of MaxInflight
	limitTCPConns                       // a connection closed at accept: MaxConns were open
	limitTCPConnsPerClient              // a connection closed at accept: its client had MaxConnsPerClient
	limitTCPAccess                      // a connection from a client outside access control closed
	limitTCPPipeline                    // a connection reached Pipeline misses in flight; reading paused
	limitTCPWriteTimeout                // a connection closed because a reply could not be written
	limitTCPLifetime                    // a connection closed at its Lifetime
	limitTCPMaxQueries                  // a connection closed after MaxQueries queries
	limitUDPQuerySize                   // a UDP query over maxUDPQuery bytes answered FORMERR
	limitRRLDropped                     // a UDP answer over its prefix's RateLimit, dropped
	limitRRLSlipped                     // a UDP answer over its prefix's RateLimit, sent truncated
	numLimits
)

func (l limit) String() string {
	return [...]string{"inflight_per_client", "tcp_conns", "tcp_conns_per_client", "tcp_access_control",
		"tcp_pipeline", "tcp_write_timeout", "tcp_lifetime", "tcp_queries_per_conn", "udp_query_size", "rrl_dropped", "rrl_slipped"}[l]
}

func (s *Server) hit(l limit) { s.Stats.Limits[l].Add(1) }

// clientKey is what per-client limits count by: an IPv4 address, or an IPv6 /64, which one
// host can fill with addresses of its own.
func clientKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.Addr()
	}
	return a
}

// perClient counts what each client holds. Only clients holding something have an entry, so
// the map stays as small as the number of clients active at once.
type perClient struct {
	mu sync.Mutex
	n  map[netip.Addr]int
}

// acquire takes one for k unless k already holds max.
func (p *perClient) acquire(k netip.Addr, max int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[k] >= max {
		return false
	}
	if p.n == nil {
		p.n = make(map[netip.Addr]int)
	}
	p.n[k]++
	return true
}

func (p *perClient) release(k netip.Addr) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.n[k] <= 1 {
		delete(p.n, k)
		return
	}
	p.n[k]--
}

// offLoopFor is offLoop for a client's miss: it also holds one of the client's share of the
// slots while fn runs. false means the miss was not started, and the caller drops or refuses it.
func (s *Server) offLoopFor(client netip.Addr, fn func()) bool {
	k := clientKey(client)
	if !s.inflight.acquire(k, s.cfg.MaxInflightPerClient) {
		s.hit(limitInflightPerClient)
		return false
	}
	if !s.offLoop(func() { defer s.inflight.release(k); fn() }) {
		s.inflight.release(k)
		return false
	}
	return true
}

// refuseMiss answers a TCP miss that could not be started (its client's share of the slots, or
// all of them, taken) with REFUSED.
func (s *Server) refuseMiss(m *miss, from netip.AddrPort) []byte {
	defer m.release()
	resp := s.respond(nil, &m.q, true, dns.RcodeRefused, nil, m.start)
	s.count(resp, srcRefused)
	if s.cfg.QueryLog {
		s.logQuery(&m.found, from, srcRefused, resp, m.start)
	}
	return resp
}

// oversize answers a UDP query cut at maxUDPQuery bytes with FORMERR, the header echoed: the
// rest was never read, so the question cannot be trusted. A cut response gets nothing.
func (s *Server) oversize(pkt []byte, from netip.AddrPort, dst []byte, start time.Time) []byte {
	s.hit(limitUDPQuerySize)
	if len(pkt) < 12 || pkt[2]&0x80 != 0 {
		return nil
	}
	s.Stats.Formerr.Add(1)
	resp := appendError(dst, pkt, dns.RcodeFormatError)
	s.count(resp, srcError)
	if s.cfg.QueryLog {
		var f found // a cold path: parsed here only for the log line
		f.parsed = parseQuery(pkt, &f.q) == nil
		s.logQuery(&f, from, srcError, resp, start)
	}
	return resp
}
