package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
)

// Load is one run of the load generator against one server.
type Load struct {
	Target   netip.AddrPort
	Queries  [][]byte // packed queries; bytes 0-1 (the ID) are overwritten per send
	Cycle    bool     // start over at the end of Queries; otherwise stop there (misses must not repeat)
	Duration time.Duration
	Rate     int           // open loop: queries per second on a fixed schedule; 0: closed loop
	Window   int           // closed loop: queries outstanding at once (dnsperf -q); default 200
	Sockets  int           // UDP sockets, each its own source port (dnsperf -c); default 10
	Timeout  time.Duration // a query unanswered this long is lost; default 1s
	Record   bool          // keep a QueryFate per query, for results over time (the chaos lab)
}

// LoadResult is what one run measured. Latencies are exact and sorted; they include every
// answer, whatever its response code.
type LoadResult struct {
	Sent, Answered, Lost int
	Rcodes               [16]int   // answers by response code (the header's 4 bits: no EDNS extension)
	Start                time.Time // when the first query could go; QueryFate.At counts from here
	Duration             time.Duration
	Latencies            []time.Duration
	Fates                []QueryFate // with Load.Record: one per query sent, in no particular order
}

// QueryFate is what became of one query.
type QueryFate struct {
	At      time.Duration // when it was sent, from LoadResult.Start
	Latency time.Duration // until its answer; Lost if none came within the timeout
	Rcode   uint8         // the answer's response code (meaningless when lost)
}

// Lost is QueryFate.Latency of a query that got no answer.
const Lost time.Duration = -1

const batch = 32

// RunLoad drives l until its duration is over (or its queries run out, or ctx ends), then waits
// up to the loss timeout for the last answers.
func RunLoad(ctx context.Context, l Load) (LoadResult, error) {
	if len(l.Queries) == 0 {
		return LoadResult{}, errors.New("load: no queries")
	}
	if l.Window == 0 {
		l.Window = 200
	}
	if l.Sockets == 0 {
		l.Sockets = 10
	}
	if l.Timeout == 0 {
		l.Timeout = time.Second
	}
	l.Sockets = min(l.Sockets, len(l.Queries))
	socks := make([]*loadSocket, l.Sockets)
	for i := range socks {
		c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(l.Target))
		if err != nil {
			for _, s := range socks[:i] {
				s.conn.Close()
			}
			return LoadResult{}, err
		}
		c.SetReadBuffer(4 << 20)
		c.SetWriteBuffer(4 << 20)
		socks[i] = &loadSocket{conn: c, pc: ipv4.NewPacketConn(c), load: &l}
	}
	start := time.Now()
	// Socket i sends queries i, i+S, i+2S, ...: together they walk the list in order.
	for i, s := range socks {
		s.next, s.stride, s.start = i, l.Sockets, start.UnixNano()
	}
	stop := start.Add(l.Duration)
	var wg sync.WaitGroup
	for _, s := range socks {
		if l.Rate > 0 {
			s.rate = float64(l.Rate) / float64(l.Sockets)
			wg.Go(func() { s.openLoop(ctx, start, stop) })
		} else {
			s.window = max(1, l.Window/l.Sockets)
			wg.Go(func() { s.closedLoop(ctx, stop) })
		}
	}
	wg.Wait()
	r := LoadResult{Start: start}
	r.Duration = time.Since(start)
	for _, s := range socks {
		s.conn.Close()
		r.Sent += s.sent
		r.Answered += s.answered
		r.Lost += s.lost
		r.Latencies = append(r.Latencies, s.latencies...)
		r.Fates = append(r.Fates, s.fates...)
		for i, n := range s.rcodes {
			r.Rcodes[i] += n
		}
	}
	// A closed loop's wall time ends with its last answer, not the loss wait after it.
	if l.Rate == 0 {
		r.Duration = min(r.Duration, l.Duration)
		if last := lastAnswer(socks); !last.IsZero() && last.Sub(start) < r.Duration {
			r.Duration = last.Sub(start)
		}
	}
	slices.Sort(r.Latencies)
	return r, nil
}

func lastAnswer(socks []*loadSocket) time.Time {
	var t time.Time
	for _, s := range socks {
		if s.lastAnswer.After(t) {
			t = s.lastAnswer
		}
	}
	return t
}

// loadSocket is one UDP socket of the generator, with its own ID space: sentAt[id] is when the
// query with that ID went out (0: not outstanding).
type loadSocket struct {
	conn   *net.UDPConn
	pc     *ipv4.PacketConn
	load   *Load
	next   int // index into Queries of the next query to send
	stride int
	window int
	rate   float64

	mu         sync.Mutex // open loop: sender and receiver share the ID table
	sentAt     [65536]int64
	order      []uint16 // IDs in send order, for finding lost queries
	orderHead  int
	id         uint16
	sent       int
	answered   int
	lost       int
	latencies  []time.Duration
	lastAnswer time.Time
	exhausted  bool
	start      int64 // UnixNano of the run's start, for QueryFate.At
	rcodes     [16]int
	fates      []QueryFate
}

// take copies the next query into dst with a fresh ID written in, or returns nil when none is
// left.
func (s *loadSocket) take(dst []byte, now int64) []byte {
	qs := s.load.Queries
	if s.next >= len(qs) {
		if !s.load.Cycle {
			s.exhausted = true
			return nil
		}
		s.next %= len(qs)
	}
	q := qs[s.next]
	s.next += s.stride
	for s.sentAt[s.id] != 0 { // skip IDs still outstanding (only after 65536 sends in a timeout)
		s.id++
	}
	out := append(dst[:0], q...)
	binary.BigEndian.PutUint16(out, s.id)
	s.sentAt[s.id] = now
	s.order = append(s.order, s.id)
	s.id++
	s.sent++
	return out
}

// received records an answer; late or duplicate answers (ID not outstanding) are ignored.
func (s *loadSocket) received(b []byte, now time.Time) {
	if len(b) < 12 || b[2]&0x80 == 0 {
		return
	}
	id := binary.BigEndian.Uint16(b)
	at := s.sentAt[id]
	if at == 0 {
		return
	}
	s.sentAt[id] = 0
	s.answered++
	rcode := b[3] & 0x0f
	s.rcodes[rcode]++
	lat := time.Duration(now.UnixNano() - at)
	s.latencies = append(s.latencies, lat)
	if s.load.Record {
		s.fates = append(s.fates, QueryFate{At: time.Duration(at - s.start), Latency: lat, Rcode: rcode})
	}
	s.lastAnswer = now
}

// lose counts the outstanding query sent at at as lost.
func (s *loadSocket) lose(at int64) {
	s.lost++
	if s.load.Record {
		s.fates = append(s.fates, QueryFate{At: time.Duration(at - s.start), Latency: Lost})
	}
}

// expire counts queries older than the timeout as lost and returns how many it freed.
func (s *loadSocket) expire(now int64) int {
	limit := now - int64(s.load.Timeout)
	n := 0
	for s.orderHead < len(s.order) {
		id := s.order[s.orderHead]
		at := s.sentAt[id]
		if at != 0 && at > limit {
			break
		}
		if at != 0 {
			s.sentAt[id] = 0
			s.lose(at)
			n++
		}
		s.orderHead++
	}
	if s.orderHead > 4096 && s.orderHead*2 > len(s.order) { // keep the queue from growing forever
		s.order = append(s.order[:0], s.order[s.orderHead:]...)
		s.orderHead = 0
	}
	return n
}

func (s *loadSocket) outstanding() int {
	n := 0
	for _, id := range s.order[s.orderHead:] {
		if s.sentAt[id] != 0 {
			n++
		}
	}
	return n
}

// loseOutstanding counts every query still outstanding as lost, at the end of a run.
func (s *loadSocket) loseOutstanding() {
	for _, id := range s.order[s.orderHead:] {
		if at := s.sentAt[id]; at != 0 {
			s.sentAt[id] = 0
			s.lose(at)
		}
	}
}

// closedLoop keeps window queries outstanding: each answer (or loss) lets the next one go.
func (s *loadSocket) closedLoop(ctx context.Context, stop time.Time) {
	msgs := make([]ipv4.Message, batch)
	rbufs := make([][]byte, batch)
	for i := range msgs {
		rbufs[i] = make([]byte, 4096)
		msgs[i].Buffers = [][]byte{rbufs[i]}
	}
	out, sbufs := sendBuffers()
	inflight := 0
	for {
		now := time.Now()
		sending := now.Before(stop) && ctx.Err() == nil && !s.exhausted
		out = out[:0]
		for sending && inflight < s.window && len(out) < batch {
			q := s.take(sbufs[len(out)], now.UnixNano())
			if q == nil {
				break
			}
			sbufs[len(out)] = q
			out = append(out, ipv4.Message{Buffers: [][]byte{q}})
			inflight++
		}
		for len(out) > 0 {
			n, err := s.pc.WriteBatch(out, 0)
			if err != nil {
				break
			}
			out = out[n:]
		}
		if !sending && inflight == 0 {
			return
		}
		s.conn.SetReadDeadline(now.Add(20 * time.Millisecond))
		n, err := s.pc.ReadBatch(msgs, 0)
		now = time.Now()
		for i := 0; i < n; i++ {
			before := s.answered
			s.received(rbufs[i][:msgs[i].N], now)
			inflight -= s.answered - before
		}
		inflight -= s.expire(now.UnixNano())
		if err != nil && errors.Is(err, net.ErrClosed) {
			return
		}
		if !sending && now.After(stop.Add(s.load.Timeout+100*time.Millisecond)) {
			s.loseOutstanding()
			return
		}
	}
}

// sendBuffers makes a batch of messages and the query buffers they point at, reused per batch
// (WriteBatch is done with them when it returns).
func sendBuffers() ([]ipv4.Message, [][]byte) {
	bufs := make([][]byte, batch)
	for i := range bufs {
		bufs[i] = make([]byte, 0, 512)
	}
	return make([]ipv4.Message, 0, batch), bufs
}

// openLoop sends on a fixed schedule whatever the answers do, so a slow server shows up as
// latency rather than as fewer queries sent (no coordinated omission); a second goroutine reads.
func (s *loadSocket) openLoop(ctx context.Context, start, stop time.Time) {
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() { s.receive(done) })
	out, sbufs := sendBuffers()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for now := time.Now(); now.Before(stop) && ctx.Err() == nil; now = <-tick.C {
		due := int(s.rate*now.Sub(start).Seconds()) - s.sent
		for due > 0 {
			out = out[:0]
			s.mu.Lock()
			for len(out) < min(due, batch) {
				q := s.take(sbufs[len(out)], time.Now().UnixNano())
				if q == nil {
					break
				}
				sbufs[len(out)] = q
				out = append(out, ipv4.Message{Buffers: [][]byte{q}})
			}
			s.expire(time.Now().UnixNano())
			s.mu.Unlock()
			if len(out) == 0 {
				break
			}
			due -= len(out)
			for len(out) > 0 {
				n, err := s.pc.WriteBatch(out, 0)
				if err != nil {
					break
				}
				out = out[n:]
			}
		}
	}
	// Let the last answers arrive, then count the rest as lost.
	deadline := time.Now().Add(s.load.Timeout)
	for time.Now().Before(deadline) {
		s.mu.Lock()
		n := s.outstanding()
		s.mu.Unlock()
		if n == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(done)
	s.conn.SetReadDeadline(time.Now())
	wg.Wait()
	s.mu.Lock()
	s.loseOutstanding()
	s.mu.Unlock()
}

func (s *loadSocket) receive(done <-chan struct{}) {
	msgs := make([]ipv4.Message, batch)
	rbufs := make([][]byte, batch)
	for i := range msgs {
		rbufs[i] = make([]byte, 4096)
		msgs[i].Buffers = [][]byte{rbufs[i]}
	}
	for {
		select {
		case <-done:
			return
		default:
		}
		s.conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, _ := s.pc.ReadBatch(msgs, 0)
		now := time.Now()
		s.mu.Lock()
		for i := 0; i < n; i++ {
			s.received(rbufs[i][:msgs[i].N], now)
		}
		s.mu.Unlock()
	}
}
