package upstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

const (
	// maxSends bounds the packets one query sends over UDP, retransmissions and probes included.
	maxSends = 20
	// copiesPerRetransmit: after a timeout, which on a path that answers other queries is most
	// likely a lost packet, the query sends two copies (to two upstreams where there are two),
	// so one more loss does not cost another timer: a hedge that only costs while loss lasts.
	copiesPerRetransmit = 2
	// maxExtraSockets: retransmissions go out from new sockets, so from new source ports: behind
	// an anycast address with ECMP a frozen node keeps every packet of one port, and another
	// port is another draw of the hash (with two nodes, eight new ports all reach the frozen one
	// once in 512 queries). A few per query at most, and only for queries that retransmit.
	maxExtraSockets = 8
)

var (
	// ErrUpstreamsDown means every upstream of the zone is marked down and none is due for a
	// probe: the query fails at once instead of waiting for a timeout it knows will come.
	ErrUpstreamsDown = errors.New("every upstream of the zone is down")
	longAgo          = time.Unix(1, 0)
)

// RcodeError is a resolution that ended because every upstream asked answered with Rcode
// (SERVFAIL or REFUSED).
type RcodeError struct {
	Rcode int
	Last  error
}

func (e *RcodeError) Error() string { return e.Last.Error() }
func (e *RcodeError) Unwrap() error { return e.Last }

// sent is one packet of a query: to whom, with which ID, when.
type sent struct {
	u        *Upstream
	id       uint16
	sock     int // which of the query's sockets sent it: 0 the first, then the extra ones
	at       time.Time
	answered bool
	timedOut bool // counted as unanswered when its query's timer ran out
}

// udpQuery is one resolution over UDP. It sends from one socket of its own, unconnected, so
// one random source port (from the kernel) for all its packets, each packet with its own random
// ID. An answer is accepted only from an address and port the query sent to, with the ID of a
// packet sent there, and the question asked (RFC 5452). Every packet stays answerable until the
// query ends, so a retransmission never throws away an answer that was merely late, and since
// each answer belongs to exactly one packet its RTT is exact.
type udpQuery struct {
	f    *Forwarder
	p    *Pool
	q    dns.Question
	do   bool
	cd   bool
	conn *net.UDPConn
	wire []byte // the packed query; bytes 0-1 are each packet's ID
	sent []sent
	bad  []*Upstream // answered SERVFAIL or REFUSED

	// Extra sockets are read by a goroutine each, which hands what it reads to the query's
	// loop through inbox and wakes it by moving conn's read deadline to the past.
	extra   []*net.UDPConn
	inbox   chan packet
	readers sync.WaitGroup
}

// packet is an answer read from one of the extra sockets.
type packet struct {
	sock int
	from netip.AddrPort
	data []byte
}

// resolveUDP asks the pool's upstreams for q over UDP. The first packet goes to the best live
// upstream (and, in parallel, to any down upstream whose probe is due); when the query's timer
// runs out it sends again, to the next upstreams in turn, with the timer backed off for this
// query only. slow, if set, is called once when no answer came in the time one normally takes
// (the upstream's srtt + 4·rttvar): a client holding a stale answer need not wait longer.
func (f *Forwarder) resolveUDP(ctx context.Context, p *Pool, q dns.Question, do, cd bool, slow func(), probeAll bool) (*dns.Msg, error) {
	live, probes := p.plan(time.Now(), probeAll)
	onProbe := len(live) == 0 // no live upstream: this query only carries probes of down ones
	if onProbe {
		if len(probes) == 0 {
			return nil, ErrUpstreamsDown
		}
		if !probeAll {
			// A client never waits for a probe of a down upstream: its timer is the upstream's
			// RTO, which an early slow answer (a first packet waiting for ARP) can hold at a
			// quarter second long after. The probe goes out in the background, and the client
			// gets the same fast failure as every other query while the upstreams are down.
			go f.probeDown(p, q, do, cd)
			return nil, ErrUpstreamsDown
		}
		live, probes = probes[:1], probes[1:]
	}
	m := upstreamQuery(q, do, cd)
	wire, err := m.Pack()
	if err != nil {
		return nil, err
	}
	conn, err := listenUDP(append(live, probes...))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(longAgo) })
	defer stop()

	uq := &udpQuery{f: f, p: p, q: q, do: do, cd: cd, conn: conn, wire: wire,
		sent: make([]sent, 0, maxSends)}
	defer uq.finish()
	uq.send(live[0])
	for _, u := range probes { // each one due gets its packet now, beside the first
		uq.send(u)
	}
	deadline, _ := ctx.Deadline()
	wait, expected := live[0].timers()
	start := time.Now()
	next := start.Add(wait)
	slowAt := start.Add(min(wait, expected))
	turn := 1 // live[turn % len] gets the next retransmission
	var lastErr error

	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	buf := *bp
	for {
		if len(uq.sent) >= maxSends || (!deadline.IsZero() && next.After(deadline)) {
			next = deadline // nothing more to send: wait for what was sent
		}
		readUntil := next
		if slow != nil && slowAt.Before(next) {
			readUntil = slowAt
		}
		conn.SetReadDeadline(readUntil)
		sock, pkt, from, err := uq.read(buf)
		now := time.Now()
		if err == errWoken {
			continue // an extra socket's reader woke the loop; its packet is taken next time
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, errors.Join(lastErr, ctx.Err())
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				return nil, errors.Join(lastErr, err)
			}
			if now.Before(readUntil) {
				continue // woken for a packet already taken: not the timer
			}
			if !deadline.IsZero() && !now.Before(deadline) {
				return nil, errors.Join(lastErr, context.DeadlineExceeded)
			}
			if slow != nil {
				// Later than an answer normally takes: whoever holds a stale answer need
				// not wait on. Retransmission still waits for the RTO.
				slow()
				slow = nil
				if now.Before(next) {
					continue
				}
			}
			// What went unanswered until now tells the upstreams' health at once, so that a
			// dead one is marked down after its second of silence, not after the deadline.
			uq.timedOut(now)
			// A query that only carries probes does not wait past their first timer: its
			// client gets the fast failure the others get, and the next probe is a second away.
			if onProbe || allDown(live) {
				return nil, errors.Join(lastErr, ErrUpstreamsDown)
			}
			for c := range copiesPerRetransmit {
				u := uq.nextLive(live, &turn)
				if u == nil || len(uq.sent) >= maxSends {
					break
				}
				if !p.budget.spend() {
					f.budgetDenied.Add(1)
					break
				}
				f.retransmits.Add(1)
				if c == 0 && len(uq.extra) == maxExtraSockets {
					uq.send(u) // ports enough: one copy from the first again
				} else {
					uq.sendFromNewPort(u)
				}
			}
			wait = wait * 3 / 2
			next = now.Add(min(wait, maxRTO))
			continue
		}
		s, resp := uq.match(sock, from, pkt)
		if s == nil {
			continue
		}
		s.answered = true
		rtt := now.Sub(s.at)
		s.u.answered(now, rtt)
		p.budget.earn()
		if resp.Truncated {
			s.u.record(ResultOK, rtt)
			m.Id = uint16(rand.Uint32())
			tresp, err := f.exchangeTCP(ctx, s.u, m)
			if err == nil {
				return tresp, nil
			}
			lastErr = exchangeError(s.u, err)
			uq.bad = append(uq.bad, s.u)
		} else if err := s.u.judge(resp, rtt); err != nil {
			lastErr = err
			uq.bad = append(uq.bad, s.u)
		} else {
			return resp, nil
		}
		// That upstream will not help: ask the next one now, without waiting for the timer.
		u := uq.nextLive(live, &turn)
		if u == nil {
			if !uq.waiting() {
				return nil, lastErr
			}
			continue
		}
		if len(uq.sent) < maxSends {
			uq.send(u)
		}
	}
}

// probeDown sends q to the pool's down upstreams as a probe, for no client: an answer marks
// its upstream up (resolveUDP records it), and the answer itself is dropped. It gives up at the
// probe's first timer, and at the forwarder's deadline in any case.
func (f *Forwarder) probeDown(p *Pool, q dns.Question, do, cd bool) {
	ctx, cancel := context.WithTimeout(context.Background(), f.deadline)
	defer cancel()
	f.resolveUDP(ctx, p, q, do, cd, nil, true)
}

// listenUDP opens the query's socket, of the family its upstreams need.
func listenUDP(ups []*Upstream) (*net.UDPConn, error) {
	network := "udp4"
	for _, u := range ups {
		if !u.Addr.Addr().Unmap().Is4() {
			network = "udp"
		}
	}
	return net.ListenUDP(network, nil)
}

// send sends the query to u with a fresh ID from the query's first socket. A send that fails
// (no route) counts as lost.
func (uq *udpQuery) send(u *Upstream) { uq.sendOn(u, 0, uq.conn) }

func (uq *udpQuery) sendOn(u *Upstream, sock int, c *net.UDPConn) {
	id := uint16(rand.Uint32())
	binary.BigEndian.PutUint16(uq.wire, id)
	uq.sent = append(uq.sent, sent{u: u, id: id, sock: sock, at: time.Now()})
	if _, err := c.WriteToUDPAddrPort(uq.wire, u.Addr); err != nil {
		u.record(ResultError, 0)
	}
}

// sendFromNewPort sends the query to u from a new socket (the last one once the query has
// maxExtraSockets), read by a goroutine of its own until the query ends.
func (uq *udpQuery) sendFromNewPort(u *Upstream) {
	if len(uq.extra) < maxExtraSockets {
		c, err := listenUDP([]*Upstream{u})
		if err != nil {
			uq.send(u)
			return
		}
		if uq.inbox == nil {
			uq.inbox = make(chan packet, maxSends)
		}
		uq.extra = append(uq.extra, c)
		sock := len(uq.extra)
		uq.readers.Go(func() { uq.readExtra(sock, c) })
	}
	uq.sendOn(u, len(uq.extra), uq.extra[len(uq.extra)-1])
}

func (uq *udpQuery) readExtra(sock int, c *net.UDPConn) {
	buf := make([]byte, 65535)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		select {
		case uq.inbox <- packet{sock: sock, from: from, data: append([]byte(nil), buf[:n]...)}:
			uq.conn.SetReadDeadline(longAgo) // wake the query's loop
		default: // more answers than the query sent packets: not ours to keep
		}
	}
}

// errWoken: the query's loop was woken to take a packet from an extra socket.
var errWoken = errors.New("woken")

// read returns the next answer on any of the query's sockets. The caller has set the first
// socket's read deadline; an extra socket's reader moves it to the past once its packet is in
// the inbox, so checking the inbox after the deadline was set loses no wake-up.
func (uq *udpQuery) read(buf []byte) (int, []byte, netip.AddrPort, error) {
	select {
	case p := <-uq.inbox:
		return p.sock, p.data, p.from, nil
	default:
	}
	n, from, err := uq.conn.ReadFromUDPAddrPort(buf)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && len(uq.inbox) > 0 {
			return 0, nil, netip.AddrPort{}, errWoken
		}
		return 0, nil, from, err
	}
	return 0, buf[:n], from, nil
}

// nextLive returns the next live upstream in turn that has not already answered SERVFAIL or
// REFUSED to this query, or nil.
func (uq *udpQuery) nextLive(live []*Upstream, turn *int) *Upstream {
	for range live {
		u := live[*turn%len(live)]
		*turn++
		if !uq.isBad(u) {
			return u
		}
	}
	return nil
}

func (uq *udpQuery) isBad(u *Upstream) bool {
	for _, b := range uq.bad {
		if b == u {
			return true
		}
	}
	return false
}

// waiting reports whether a packet to an upstream that has not failed this query is still
// unanswered (a probe's, say).
func (uq *udpQuery) waiting() bool {
	for _, s := range uq.sent {
		if !s.answered && !uq.isBad(s.u) {
			return true
		}
	}
	return false
}

// match returns the packet b answers and the parsed answer, or nil when b answers none of
// them (counted as mismatched). A reply without a question is accepted when it is an error
// (NSD refuses a class it does not serve that way): address, port and ID already match.
func (uq *udpQuery) match(sock int, from netip.AddrPort, b []byte) (*sent, *dns.Msg) {
	if len(b) < 12 {
		uq.f.mismatched.Add(1)
		return nil, nil
	}
	id := binary.BigEndian.Uint16(b)
	from = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	var s *sent
	for i := range uq.sent {
		c := &uq.sent[i]
		if c.id == id && c.sock == sock && c.u.Addr.Port() == from.Port() && c.u.Addr.Addr().Unmap() == from.Addr() {
			s = c
			break
		}
	}
	if s == nil {
		uq.f.mismatched.Add(1)
		return nil, nil
	}
	if s.answered {
		return nil, nil // a duplicate of an answer already taken
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(b); err != nil || !resp.Response {
		uq.f.mismatched.Add(1)
		return nil, nil
	}
	if len(resp.Question) == 0 && isErrorRcode(resp.Rcode) {
		resp.Question = []dns.Question{uq.q}
		return s, resp
	}
	if len(resp.Question) != 1 || !sameQuestion(resp.Question[0], uq.q) {
		uq.f.mismatched.Add(1)
		return nil, nil
	}
	return s, resp
}

func isErrorRcode(rc int) bool {
	return rc == dns.RcodeServerFailure || rc == dns.RcodeRefused || rc == dns.RcodeFormatError ||
		rc == dns.RcodeNotImplemented
}

// timedOut records the packets still unanswered when the query's timer ran out: they tell the
// upstream's health, never its RTT estimate. Each counts once.
func (uq *udpQuery) timedOut(now time.Time) {
	for i := range uq.sent {
		s := &uq.sent[i]
		if !s.answered && !s.timedOut {
			s.timedOut = true
			s.u.unanswered(now, s.at)
		}
	}
}

// finish records the packets that got no answer while the query waited, and closes the extra
// sockets once their readers are done.
func (uq *udpQuery) finish() {
	for _, c := range uq.extra {
		c.Close()
	}
	uq.readers.Wait()
	uq.timedOut(time.Now())
	for _, s := range uq.sent {
		if !s.answered {
			s.u.record(ResultTimeout, 0)
		}
	}
}

func allDown(ups []*Upstream) bool {
	for _, u := range ups {
		if !u.isDown() {
			return false
		}
	}
	return true
}

// judge counts an answer of u and returns the error that SERVFAIL or REFUSED makes of it:
// that upstream will not help this query.
func (u *Upstream) judge(resp *dns.Msg, rtt time.Duration) error {
	r := ResultOK
	switch resp.Rcode {
	case dns.RcodeServerFailure:
		r = ResultServfail
	case dns.RcodeRefused:
		r = ResultRefused
	}
	u.record(r, rtt)
	if r == ResultOK {
		return nil
	}
	return &RcodeError{Rcode: resp.Rcode, Last: exchangeError(u, fmt.Errorf("answered %s", dns.RcodeToString[resp.Rcode]))}
}
