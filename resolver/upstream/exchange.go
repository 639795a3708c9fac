package upstream

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

var errTruncated = errors.New("truncated response")

// udpBufs holds read buffers for upstream answers: a fresh 64 KiB buffer per miss costs more
// to clear than the rest of the exchange. Unpack copies what it keeps, so a buffer is free
// again when exchangeUDP returns.
var udpBufs = sync.Pool{New: func() any { b := make([]byte, 65535); return &b }}

// exchange asks one upstream once, for the failover controller's canary; queries from clients
// go through resolveUDP, which retransmits. Over UDP it uses a fresh socket, so a fresh random source
// port, and a random ID, and accepts only a response from the upstream's address and port (the
// socket is connected) with the same ID and question (RFC 5452); anything else is ignored and
// counted. A truncated UDP answer is retried over TCP.
func (f *Forwarder) exchange(ctx context.Context, u *Upstream, q dns.Question, do, cd bool) (*dns.Msg, error) {
	m := upstreamQuery(q, do, cd)
	if !u.TCP {
		resp, err := f.exchangeUDP(ctx, u, m)
		if !errors.Is(err, errTruncated) {
			return resp, err
		}
		m.Id = uint16(rand.Uint32())
	}
	return f.exchangeTCP(ctx, u, m)
}

func (f *Forwarder) exchangeUDP(ctx context.Context, u *Upstream, m *dns.Msg) (*dns.Msg, error) {
	wire, err := m.Pack()
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", u.Addr.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write(wire); err != nil {
		return nil, err
	}
	bp := udpBufs.Get().(*[]byte)
	defer udpBufs.Put(bp)
	buf := *bp
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		resp, ok := f.match(m, buf[:n])
		if !ok {
			continue
		}
		if resp.Truncated {
			return nil, errTruncated
		}
		return resp, nil
	}
}

func (f *Forwarder) exchangeTCP(ctx context.Context, u *Upstream, m *dns.Msg) (*dns.Msg, error) {
	wire, err := m.Pack()
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", u.Addr.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := c.Write(binary.BigEndian.AppendUint16(nil, uint16(len(wire)))); err != nil {
		return nil, err
	}
	if _, err := c.Write(wire); err != nil {
		return nil, err
	}
	for {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return nil, err
		}
		buf := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, buf); err != nil {
			return nil, err
		}
		if resp, ok := f.match(m, buf); ok {
			return resp, nil
		}
	}
}

// upstreamQuery is the query sent upstream for q: a random ID, RD, the client's CD and DO bits,
// EDNS0 with a 1232-byte buffer.
func upstreamQuery(q dns.Question, do, cd bool) *dns.Msg {
	m := new(dns.Msg)
	m.Id = uint16(rand.Uint32())
	m.RecursionDesired = true
	m.CheckingDisabled = cd
	m.Question = []dns.Question{q}
	m.SetEdns0(1232, do)
	return m
}

// match accepts a response only for the query we sent: same ID and same question.
func (f *Forwarder) match(m *dns.Msg, b []byte) (*dns.Msg, bool) {
	if len(b) < 12 || binary.BigEndian.Uint16(b) != m.Id {
		f.mismatched.Add(1)
		return nil, false
	}
	resp := new(dns.Msg)
	if err := resp.Unpack(b); err != nil || !resp.Response || len(resp.Question) != 1 {
		f.mismatched.Add(1)
		return nil, false
	}
	if !sameQuestion(resp.Question[0], m.Question[0]) {
		f.mismatched.Add(1)
		return nil, false
	}
	return resp, true
}

func sameQuestion(got, want dns.Question) bool {
	return got.Qtype == want.Qtype && got.Qclass == want.Qclass && strings.EqualFold(got.Name, want.Name)
}

// exchangeError names the upstream an error came from.
func exchangeError(u *Upstream, err error) error {
	return fmt.Errorf("forward to %s: %w", u.Addr, err)
}
