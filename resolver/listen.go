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
)

const (
	tcpIdleTimeout = 10 * time.Second
	maxTCPConns    = 1024
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
		now := time.Now()
		resp, miss := s.answer(buf[:n], from, false, out[:0], now)
		if miss {
			s.missUDP(c, buf[:n], from, now)
			continue
		}
		if resp != nil {
			c.WriteToUDPAddrPort(resp, from)
		}
	}
}

// missUDP resolves a query off the read loop and sends the reply from the same socket.
func (s *Server) missUDP(c *net.UDPConn, pkt []byte, from netip.AddrPort, start time.Time) {
	pkt = append([]byte(nil), pkt...) // the read buffer is reused at once
	s.offLoop(func() {
		if resp := s.resolveSlow(s.ctx, pkt, from, false, start); resp != nil {
			c.WriteToUDPAddrPort(resp, from)
		}
	})
}

// serveTCP accepts connections (RFC 7766): queries on one connection may be answered out of
// order, so a miss does not hold up the hits behind it.
func (s *Server) serveTCP(ctx context.Context, l *net.TCPListener) {
	conns := make(chan struct{}, maxTCPConns)
	var open sync.Map
	defer func() {
		open.Range(func(k, _ any) bool { k.(net.Conn).Close(); return true })
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || ctx.Err() != nil {
				return
			}
			continue
		}
		select {
		case conns <- struct{}{}:
		default:
			c.Close()
			continue
		}
		open.Store(c, nil)
		s.wg.Go(func() {
			defer func() { <-conns; open.Delete(c); c.Close() }()
			s.serveConn(c)
		})
	}
}

func (s *Server) serveConn(c net.Conn) {
	from, err := netipAddrPort(c.RemoteAddr())
	if err != nil {
		return
	}
	var wmu sync.Mutex
	write := func(resp []byte) {
		wmu.Lock()
		defer wmu.Unlock()
		frame := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(resp)), uint16(len(resp)))
		c.Write(append(frame, resp...))
	}
	var pending sync.WaitGroup
	defer pending.Wait()
	out := make([]byte, 0, 65535)
	for {
		c.SetReadDeadline(time.Now().Add(tcpIdleTimeout))
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		pkt := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, pkt); err != nil {
			return
		}
		now := time.Now()
		resp, miss := s.answer(pkt, from, true, out[:0], now)
		if miss {
			pending.Add(1)
			if !s.offLoop(func() {
				defer pending.Done()
				if resp := s.resolveSlow(s.ctx, pkt, from, true, now); resp != nil {
					write(resp)
				}
			}) {
				pending.Done()
			}
			continue
		}
		if resp != nil {
			write(resp)
		}
	}
}
