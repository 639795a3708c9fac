package fabric

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// waitFor polls /health until it answers code with a body containing want.
func waitFor(t *testing.T, url string, code int, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, body := get(t, url)
		if c == code && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /health = %d %q, want %d %q", c, body, code, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEndpoint runs the node health checker, the controller and the endpoint on a real
// listener as cmd wires them, and asks with a real HTTP client: 503 before rise, 200 ok while
// healthy, 200 with the reason through a shared fault, 503 with the reason when the node's own
// path is cut, and at shutdown 503 "draining" at once, while the controller still drains.
func TestEndpoint(t *testing.T) {
	bad := errors.New("i/o timeout")
	f := &fakeNode{}
	f.set(nil, nil, nil)
	r := &recorder{start: time.Now()}
	ctl := NewController(ControllerConfig{Drain: 700 * time.Millisecond, ShutdownGraceful: true}, r, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	h, err := NewNodeHealthChecker(HealthConfig{Interval: 20 * time.Millisecond, Timeout: 10 * time.Millisecond, Rise: 2, Fall: 2},
		f.probes(1), func(healthy bool) { ctl.SetHealthy(ctx, healthy) }, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ep := NewEndpoint(h)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String() + "/health"
	served := make(chan error, 1)
	go func() { served <- ep.Serve(ctx, ln) }()
	if c, body := get(t, url); c != http.StatusServiceUnavailable {
		t.Errorf("before any check: %d %q, want 503", c, body)
	}
	hctx, stopHealth := context.WithCancel(ctx)
	healthDone := make(chan struct{})
	go func() { h.Run(hctx); close(healthDone) }()
	waitFor(t, url, http.StatusOK, "ok")

	f.set(nil, bad, bad)
	waitFor(t, url, http.StatusOK, ReasonShared)
	if announced, _, _ := ctl.Status(); !announced {
		t.Errorf("shared fault withdrew the node")
	}
	f.set(nil, bad, nil)
	waitFor(t, url, http.StatusServiceUnavailable, "this node's path is cut")
	f.set(nil, nil, nil)
	waitFor(t, url, http.StatusOK, "ok")
	if c, _ := get(t, "http://"+ln.Addr().String()+"/other"); c != http.StatusNotFound {
		t.Errorf("GET /other = %d, want 404", c)
	}

	// Shutdown as runServer does it: stop the health loop, then Leave.
	stopHealth()
	<-healthDone
	left := make(chan struct{})
	start := time.Now()
	go func() { Leave(context.Background(), ep, ctl); close(left) }()
	waitFor(t, url, http.StatusServiceUnavailable, "draining")
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Errorf("503 draining came after %s, want before the 700ms drain ends", d)
	}
	select {
	case <-left:
		t.Errorf("Leave returned before the drain period")
	default:
	}
	if announced, graceful, _ := ctl.Status(); !announced || !graceful {
		t.Errorf("during the drain: announced %v graceful %v, want the graceful re-announcement", announced, graceful)
	}
	<-left
	if announced, _, _ := ctl.Status(); announced {
		t.Errorf("announced after Leave")
	}
	waitFor(t, url, http.StatusServiceUnavailable, "draining")
	cancel()
	if err := <-served; err != nil {
		t.Errorf("Serve = %v", err)
	}
}

// dnsServer answers on a loopback UDP port with handler.
func dnsServer(t *testing.T, handler dns.HandlerFunc) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dns.Server{PacketConn: pc, Handler: handler}
	var once sync.Once
	started := make(chan struct{})
	s.NotifyStartedFunc = func() { once.Do(func() { close(started) }) }
	go s.ActivateAndServe()
	<-started
	t.Cleanup(func() { s.Shutdown() })
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func TestSiblingProbe(t *testing.T) {
	for _, tc := range []struct {
		name  string
		reply func(r *dns.Msg) *dns.Msg
		want  string // "" passes
	}{
		{"answer", func(r *dns.Msg) *dns.Msg {
			m := new(dns.Msg).SetReply(r)
			rr, _ := dns.NewRR("health.fleetdns. 0 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
			return m
		}, ""},
		{"servfail", func(r *dns.Msg) *dns.Msg { return new(dns.Msg).SetRcode(r, dns.RcodeServerFailure) }, "SERVFAIL"},
		{"nodata", func(r *dns.Msg) *dns.Msg { return new(dns.Msg).SetReply(r) }, "no A record"},
		{"stale", func(r *dns.Msg) *dns.Msg {
			m := new(dns.Msg).SetReply(r)
			rr, _ := dns.NewRR("health.fleetdns. 30 IN A 192.0.2.1")
			m.Answer = append(m.Answer, rr)
			m.SetEdns0(1232, false)
			o := m.IsEdns0()
			o.Option = append(o.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeStaleAnswer})
			return m
		}, "stale"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := dnsServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
				if !r.RecursionDesired || r.IsEdns0() == nil {
					w.WriteMsg(new(dns.Msg).SetRcode(r, dns.RcodeFormatError))
					return
				}
				w.WriteMsg(tc.reply(r))
			})
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			err := SiblingProbe(addr, "health.fleetdns.", dns.TypeA)(ctx)
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Errorf("SiblingProbe = %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("silent", func(t *testing.T) {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
		defer cancel()
		if err := SiblingProbe(netip.MustParseAddrPort(pc.LocalAddr().String()), "health.fleetdns.", dns.TypeA)(ctx); err == nil {
			t.Errorf("a silent sibling passed")
		}
	})
}

func TestLocalProbe(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rcode int
		txt   string
		ok    bool
	}{
		{"own id", dns.RcodeSuccess, "n1", true},
		{"another id", dns.RcodeSuccess, "n2", false},
		{"refused by access control", dns.RcodeRefused, "", true},
		{"servfail", dns.RcodeServerFailure, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := dnsServer(t, func(w dns.ResponseWriter, r *dns.Msg) {
				m := new(dns.Msg).SetRcode(r, tc.rcode)
				if q := r.Question[0]; tc.txt != "" && q.Qclass == dns.ClassCHAOS && q.Name == "id.server." {
					m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassCHAOS}, Txt: []string{tc.txt}})
				}
				w.WriteMsg(m)
			})
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			defer cancel()
			if err := LocalProbe(addr, "n1")(ctx); (err == nil) != tc.ok {
				t.Errorf("LocalProbe = %v, want ok %v", err, tc.ok)
			}
		})
	}
}
