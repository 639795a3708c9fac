// Package faultdns is a DNS server that misbehaves on purpose: it drops, delays, truncates,
// spoofs or fails answers, so tests and the chaos lab can show how fleetdns copes. Every name
// gets an A record with the server's IP, so a test can tell which upstream answered.
package faultdns

import (
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Fault is how the server misbehaves.
type Fault int32

const (
	None     Fault = iota // answer correctly
	Drop                  // never answer
	Delay                 // answer after the configured delay
	Truncate              // over UDP answer with TC and no records; over TCP answer fully
	Spoof                 // first send answers with a wrong ID and a wrong question, then the right one
	ServFail              // answer SERVFAIL
	Refuse                // answer REFUSED
	NXDomain              // answer NXDOMAIN with an SOA
)

// SpoofIP is the address in spoofed answers; a resolver that accepts one is broken.
var SpoofIP = netip.MustParseAddr("203.0.113.66")

// Server answers on one UDP and one TCP socket of the same loopback port.
type Server struct {
	Addr netip.AddrPort
	IP   netip.Addr // the A record every name gets
	TTL  uint32

	fault   atomic.Int32
	delay   atomic.Int64
	queries atomic.Int64
	tcp     atomic.Int64
	udpSrv  *dns.Server
	tcpSrv  *dns.Server
}

// Start listens on addr (port 0 picks one) and answers every name with A ip.
func Start(addr string, ip netip.Addr, ttl uint32) (*Server, error) {
	pc, l, err := listenBoth(addr)
	if err != nil {
		return nil, err
	}
	ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	s := &Server{Addr: ap, IP: ip, TTL: ttl}
	started := make(chan struct{}, 2)
	s.udpSrv = &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: func() { started <- struct{}{} }}
	s.tcpSrv = &dns.Server{Listener: l, Handler: s, NotifyStartedFunc: func() { started <- struct{}{} }}
	go s.udpSrv.ActivateAndServe()
	go s.tcpSrv.ActivateAndServe()
	<-started
	<-started
	return s, nil
}

// listenBoth binds UDP and TCP on one port. A port the kernel picked free for UDP may be taken
// for TCP; with port 0 another one is tried.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, err
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		if ap, perr := netip.ParseAddrPort(addr); perr != nil || ap.Port() != 0 || try == 10 {
			return nil, nil, err
		}
	}
}

// Set changes the fault; delay applies to Delay.
func (s *Server) Set(f Fault, delay time.Duration) {
	s.delay.Store(int64(delay))
	s.fault.Store(int32(f))
}

// Queries counts queries received over both transports; TCPQueries over TCP only.
func (s *Server) Queries() int64    { return s.queries.Load() }
func (s *Server) TCPQueries() int64 { return s.tcp.Load() }

// Close stops both listeners.
func (s *Server) Close() {
	s.udpSrv.Shutdown()
	s.tcpSrv.Shutdown()
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	_, isTCP := w.RemoteAddr().(*net.TCPAddr)
	if isTCP {
		s.tcp.Add(1)
	}
	if len(req.Question) != 1 {
		return
	}
	m := s.answer(req)
	switch Fault(s.fault.Load()) {
	case Drop:
		return
	case Delay:
		time.Sleep(time.Duration(s.delay.Load()))
	case Truncate:
		if !isTCP {
			m.Answer = nil
			m.Truncated = true
		}
	case Spoof:
		bad := s.answer(req)
		bad.Answer[0].(*dns.A).A = net.IP(SpoofIP.AsSlice())
		bad.Id = req.Id + 1
		w.WriteMsg(bad)
		bad.Id = req.Id
		bad.Question[0].Name = "spoofed." + req.Question[0].Name
		w.WriteMsg(bad)
		time.Sleep(5 * time.Millisecond)
	case ServFail:
		m.Answer = nil
		m.Rcode = dns.RcodeServerFailure
	case Refuse:
		m.Answer = nil
		m.Rcode = dns.RcodeRefused
	case NXDomain:
		m.Answer = nil
		m.Rcode = dns.RcodeNameError
		soa, _ := dns.NewRR(". 3600 IN SOA ns.invalid. hostmaster.invalid. 1 3600 900 604800 60")
		m.Ns = []dns.RR{soa}
	}
	w.WriteMsg(m)
}

func (s *Server) answer(req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	q := req.Question[0]
	if q.Qtype == dns.TypeA {
		m.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: s.TTL},
			A:   net.IP(s.IP.AsSlice()),
		}}
	}
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(1232, o.Do())
	}
	return m
}
