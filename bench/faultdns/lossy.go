package faultdns

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// Lossy is a UDP relay that drops a share of the packets each way: in front of an upstream it
// stands for a lossy path, for tests that must run without root (the chaos lab uses nftables
// in network namespaces instead). Each client address gets its own socket towards the
// upstream, so the upstream sees the client's ports as distinct, as on a real path.
type Lossy struct {
	Addr netip.AddrPort

	targets  []netip.AddrPort
	permille atomic.Int32
	conn     *net.UDPConn
	mu       sync.Mutex
	peers    map[netip.AddrPort]*net.UDPConn
	wg       sync.WaitGroup
	dropped  atomic.Int64
	passed   atomic.Int64
}

// StartLossy relays UDP from a fresh loopback port to target, dropping loss (0 to 1) of the
// packets in each direction.
func StartLossy(target netip.AddrPort, loss float64) (*Lossy, error) {
	return StartECMP(loss, target)
}

// StartECMP is StartLossy in front of several targets, as a router with ECMP in front of the
// nodes of an anycast address: each client address and port keeps to one target, chosen by
// the port, so only a new source port can reach another.
func StartECMP(loss float64, targets ...netip.AddrPort) (*Lossy, error) {
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		return nil, err
	}
	l := &Lossy{Addr: c.LocalAddr().(*net.UDPAddr).AddrPort(), targets: targets, conn: c,
		peers: map[netip.AddrPort]*net.UDPConn{}}
	l.SetLoss(loss)
	l.wg.Go(l.serve)
	return l, nil
}

// SetLoss changes the share of packets dropped each way (1 is a blackhole).
func (l *Lossy) SetLoss(loss float64) { l.permille.Store(int32(loss * 1000)) }

// Dropped and Passed count packets, both directions together.
func (l *Lossy) Dropped() int64 { return l.dropped.Load() }
func (l *Lossy) Passed() int64  { return l.passed.Load() }

func (l *Lossy) drop() bool {
	if rand.Int32N(1000) < l.permille.Load() {
		l.dropped.Add(1)
		return true
	}
	l.passed.Add(1)
	return false
}

func (l *Lossy) serve() {
	buf := make([]byte, 65535)
	for {
		n, from, err := l.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if l.drop() {
			continue
		}
		up, err := l.peer(from)
		if err != nil {
			continue
		}
		up.Write(buf[:n])
	}
}

// peer returns the socket that relays from's packets, starting its return path if new.
func (l *Lossy) peer(from netip.AddrPort) (*net.UDPConn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if c, ok := l.peers[from]; ok {
		return c, nil
	}
	h := uint64(from.Port()) * 0x9e3779b97f4a7c15 // a router hashes the flow; any good mix will do
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	target := l.targets[h%uint64(len(l.targets))]
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		return nil, err
	}
	l.peers[from] = c
	l.wg.Go(func() {
		buf := make([]byte, 65535)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if !l.drop() {
				l.conn.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	})
	return c, nil
}

// Close stops the relay and waits for its goroutines.
func (l *Lossy) Close() {
	l.conn.Close()
	l.mu.Lock()
	for _, c := range l.peers {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
