//go:build linux && (amd64 || arm64)

package resolver

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The batched UDP loop: recvmmsg reads up to batchSize queries in one system call, the hits are
// answered in place, and sendmmsg writes all their replies in one more. Under load this halves
// the system calls and the trips through Go's network poller, which dominate the cost of a
// cache hit. x/net's ReadBatch does the same but allocates an address per message; this loop
// reuses the kernel's sockaddr of each query as the destination of its reply.

const (
	batchSize  = 32
	queryBuf   = maxUDPQuery // a UDP query larger than this is cut, flagged by the kernel, and answered FORMERR
	replyBuf   = 4096        // larger replies grow their buffer once
	sockaddrSz = unix.SizeofSockaddrInet6
)

// mmsghdr is struct mmsghdr of <sys/socket.h> on 64-bit Linux.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

type udpBatch struct {
	recv  [batchSize]mmsghdr
	riov  [batchSize]unix.Iovec
	names [batchSize][sockaddrSz]byte
	bufs  [batchSize][]byte
	send  [batchSize]mmsghdr
	siov  [batchSize]unix.Iovec
	outs  [batchSize][]byte
}

func newUDPBatch() *udpBatch {
	b := new(udpBatch)
	for i := range b.recv {
		b.bufs[i] = make([]byte, queryBuf)
		b.outs[i] = make([]byte, 0, replyBuf)
		b.riov[i].Base = &b.bufs[i][0]
		b.riov[i].SetLen(queryBuf)
		b.recv[i].hdr.Name = &b.names[i][0]
		b.recv[i].hdr.Iov = &b.riov[i]
		b.recv[i].hdr.SetIovlen(1)
		b.send[i].hdr.Iov = &b.siov[i]
		b.send[i].hdr.SetIovlen(1)
	}
	return b
}

// serveUDP is one socket's read loop.
func (s *Server) serveUDP(c *net.UDPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		s.serveUDPSimple(c)
		return
	}
	b := newUDPBatch()
	var n int
	var rerr error
	read := func(fd uintptr) bool {
		for i := range b.recv {
			b.recv[i].hdr.Namelen = sockaddrSz
			b.recv[i].hdr.Flags = 0
		}
		r, _, e := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.recv[0])), batchSize,
			unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false // not ready: park in the poller
		}
		n, rerr = int(r), nil
		if e != 0 {
			n, rerr = 0, e
		}
		return true
	}
	var m, sent int
	write := func(fd uintptr) bool {
		r, _, e := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.send[sent])), uintptr(m-sent),
			unix.MSG_DONTWAIT, 0, 0)
		if e == unix.EAGAIN || e == unix.EINTR {
			return false
		}
		if e != 0 {
			sent++ // skip the message the kernel refused (e.g. an unreachable client) and go on
		} else {
			sent += int(r)
		}
		return sent >= m
	}
	for {
		if err := rc.Read(read); err != nil {
			return // closed
		}
		if rerr != nil {
			continue
		}
		now := s.now()
		m = 0
		for i := 0; i < n; i++ {
			h := &b.recv[i]
			from, ok := sockaddrAddrPort(b.names[i][:h.hdr.Namelen])
			if !ok {
				continue
			}
			pkt := b.bufs[i][:h.len]
			var resp []byte
			if h.hdr.Flags&unix.MSG_TRUNC != 0 {
				resp = s.oversize(pkt, from, b.outs[i][:0], now)
			} else {
				var miss *miss
				resp, miss = s.answer(pkt, from, false, b.outs[i][:0], now)
				if miss != nil {
					s.missUDP(c, miss, from)
					continue
				}
			}
			if len(resp) == 0 {
				continue
			}
			b.outs[i] = resp[:0] // keep a buffer that had to grow
			o := &b.send[m]
			o.hdr.Name = h.hdr.Name
			o.hdr.Namelen = h.hdr.Namelen
			b.siov[m].Base = &resp[0]
			b.siov[m].SetLen(len(resp))
			m++
		}
		if m > 0 {
			sent = 0
			if err := rc.Write(write); err != nil && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("sendmmsg", "err", err)
			}
		}
	}
}

// sockaddrAddrPort decodes a struct sockaddr_in or sockaddr_in6 without allocating.
func sockaddrAddrPort(sa []byte) (netip.AddrPort, bool) {
	if len(sa) < 2 {
		return netip.AddrPort{}, false
	}
	family := *(*uint16)(unsafe.Pointer(&sa[0])) // host byte order
	switch {
	case family == unix.AF_INET && len(sa) >= unix.SizeofSockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(sa[4:8])), binary.BigEndian.Uint16(sa[2:])), true
	case family == unix.AF_INET6 && len(sa) >= unix.SizeofSockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(sa[8:24])), binary.BigEndian.Uint16(sa[2:])), true
	}
	return netip.AddrPort{}, false
}
