package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/fleetdns/fleetdns/cache"
	"github.com/miekg/dns"
)

// serveUDPSimple is one socket's read loop, a packet per system call: hits are answered
// inline, misses leave the loop. Platforms without the batched loop use it.
func (s *Server) serveUDPSimple(c *net.UDPConn) {
	buf := make([]byte, 65535)
	out := make([]byte, 0, 65535)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := s.now()
		if n > maxUDPQuery { // the batched loop cannot read more; the same rule everywhere
			if resp := s.oversize(buf[:maxUDPQuery], from, out[:0], now); resp != nil {
				c.WriteToUDPAddrPort(resp, from)
			}
			continue
		}
		resp, miss := s.answer(buf[:n], from, false, out[:0], now)
		if miss != nil {
			s.missUDP(c, miss, from)
			continue
		}
		if resp != nil {
			c.WriteToUDPAddrPort(resp, from)
		}
	}
}

// missUDP resolves a query off the read loop and sends the reply from the same socket. A miss
// over its client's share of the slots, or with none free, is dropped: the client retries, and
// a flood with forged sources gets nothing back.
func (s *Server) missUDP(c *net.UDPConn, m *miss, from netip.AddrPort) {
	m.own() // the read buffer is reused at once
	s.offLoopFor(from.Addr(), func() {
		if resp := s.resolveMiss(s.ctx, m, from, false); resp != nil {
			c.WriteToUDPAddrPort(resp, from)
		}
	})
}

// serveTCP accepts connections (RFC 7766): queries on one connection may be answered out of
// order, so a miss does not hold up the hits behind it. A client outside access control, or
// over its share of the connections, is closed at once, before it holds anything.
func (s *Server) serveTCP(ctx context.Context, l *net.TCPListener) {
	defer s.tcpConns.closeAll()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			continue
		}
		from, err := netipAddrPort(c.RemoteAddr())
		if err != nil {
			c.Close()
			continue
		}
		if !s.policy.Load().Allowed(from.Addr()) {
			s.reject(c, limitTCPAccess)
			continue
		}
		if lim, ok := s.tcpConns.admit(c, clientKey(from.Addr()), s.cfg.TCP); !ok {
			s.reject(c, lim)
			continue
		}
		s.wg.Go(func() {
			defer func() { s.tcpConns.remove(c); c.Close() }()
			s.serveConn(c, from)
		})
	}
}

// reject closes a connection at accept with a reset, which frees it on both sides at once.
func (s *Server) reject(c net.Conn, l limit) {
	s.hit(l)
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// serveConn reads queries until the client closes, goes idle, or the connection reaches its
// lifetime or its cap of queries; the queries already read are answered before it returns.
// Misses run off the loop, at most Pipeline at once: at the cap the loop stops reading, and
// the client's queries wait in its own buffers, not in our slots.
func (s *Server) serveConn(c net.Conn, from netip.AddrPort) {
	lim := s.cfg.TCP
	w := &tcpWriter{c: c, timeout: lim.WriteTimeout, s: s}
	end := time.Now().Add(lim.Lifetime)
	pipeline := make(chan struct{}, lim.Pipeline)
	var pending sync.WaitGroup
	defer pending.Wait()
	out := make([]byte, 0, 65535)
	for n := 0; ; n++ {
		if n == lim.MaxQueries {
			s.hit(limitTCPMaxQueries)
			return
		}
		if !time.Now().Before(end) {
			s.hit(limitTCPLifetime)
			return
		}
		pkt, err := readQuery(c, earlier(time.Now().Add(lim.IdleTimeout), end))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !time.Now().Before(end) {
				s.hit(limitTCPLifetime)
			}
			return
		}
		now := s.now()
		resp, miss := s.answer(pkt, from, true, out[:0], now)
		if miss != nil { // pkt is this query's own: readQuery allocates each
			select {
			case pipeline <- struct{}{}:
			default:
				s.hit(limitTCPPipeline)
				pipeline <- struct{}{} // the misses in flight end within ResolveTimeout
			}
			pending.Add(1)
			if !s.offLoopFor(from.Addr(), func() {
				defer func() { <-pipeline; pending.Done() }()
				if resp := s.resolveMiss(s.ctx, miss, from, true); resp != nil {
					w.write(resp)
				}
			}) {
				<-pipeline
				pending.Done()
				// Over TCP the client is not retrying a lost datagram: tell it now.
				if resp := s.refuseMiss(miss, from); resp != nil && !w.write(resp) {
					return
				}
			}
			continue
		}
		if resp == nil {
			continue
		}
		if !w.write(resp) {
			return
		}
		if len(resp) >= 4 && resp[3]&0xf == dns.RcodeRefused && !s.policy.Load().Allowed(from.Addr()) {
			// The policy changed while the client was connected: it holds no slot from now.
			s.hit(limitTCPAccess)
			return
		}
	}
}

// readQuery reads one length-prefixed message (RFC 1035 4.2.2) by deadline.
func readQuery(c net.Conn, deadline time.Time) ([]byte, error) {
	c.SetReadDeadline(deadline)
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, err
	}
	pkt := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, pkt); err != nil {
		return nil, err
	}
	return pkt, nil
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// tcpWriter writes replies to one connection, from its read loop and from the misses off it.
// A reply not written by the deadline closes the connection: the client is not reading, and
// every reply waiting behind the blocked one would hold its slot until the client left.
type tcpWriter struct {
	c       net.Conn
	timeout time.Duration
	s       *Server
	mu      sync.Mutex
	dead    bool
}

// write sends one reply; false means the connection is closed. A reply longer than the
// 2-byte length prefix can say would desynchronise the stream: it goes out as SERVFAIL with
// TC, header only. The cache's writer keeps every reply within the limit; this is the backstop
// for any other.
func (w *tcpWriter) write(resp []byte) bool {
	if len(resp) > cache.MaxMessageSize {
		resp = tooBig(resp)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.dead {
		return false
	}
	frame := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(resp)), uint16(len(resp)))
	w.c.SetWriteDeadline(time.Now().Add(w.timeout))
	if _, err := w.c.Write(append(frame, resp...)); err != nil {
		w.dead = true
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			w.s.hit(limitTCPWriteTimeout)
		}
		w.c.Close() // ends the read loop at once; replies still pending fail fast
		return false
	}
	return true
}

// tooBig is the header-only reply to the query that resp answers: SERVFAIL, TC set.
func tooBig(resp []byte) []byte {
	return []byte{resp[0], resp[1], resp[2] | 0x82, 0x80 | dns.RcodeServerFailure, 0, 0, 0, 0, 0, 0, 0, 0}
}

// tcpConns is the table of open client connections, all listeners together, with each
// client's count for MaxConnsPerClient.
type tcpConns struct {
	mu    sync.Mutex
	conns map[net.Conn]netip.Addr
	per   map[netip.Addr]int
}

// admit records c for client k, or says which limit keeps it out.
func (t *tcpConns) admit(c net.Conn, k netip.Addr, l TCPLimits) (limit, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case len(t.conns) >= l.MaxConns:
		return limitTCPConns, false
	case t.per[k] >= l.MaxConnsPerClient:
		return limitTCPConnsPerClient, false
	}
	if t.conns == nil {
		t.conns = make(map[net.Conn]netip.Addr)
		t.per = make(map[netip.Addr]int)
	}
	t.conns[c] = k
	t.per[k]++
	return 0, true
}

func (t *tcpConns) remove(c net.Conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k, ok := t.conns[c]
	if !ok {
		return
	}
	delete(t.conns, c)
	if t.per[k]--; t.per[k] <= 0 {
		delete(t.per, k)
	}
}

func (t *tcpConns) open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// closeAll closes every open connection, at shutdown; their goroutines remove them.
func (t *tcpConns) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		c.Close()
	}
}
