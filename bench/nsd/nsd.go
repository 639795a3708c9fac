// Package nsd starts NSD, the authoritative server from NLnet Labs, on a loopback port with
// zone files given by the caller: the real upstream for tests and benchmarks.
package nsd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Zone is one zone NSD serves.
type Zone struct {
	Name string // e.g. "example.test."
	File string // path of an RFC 1035 zone file
}

// Server is a running NSD.
type Server struct {
	Addr netip.AddrPort
	cmd  *exec.Cmd
	done chan error
	dir  string
}

// WriteConfig writes dir/nsd.conf for an NSD that answers on addr with its state in dir, and
// returns its path. Start uses it; a test that runs NSD elsewhere (in a network namespace) can
// too.
func WriteConfig(dir string, addr netip.AddrPort, zones ...Zone) (string, error) {
	var conf strings.Builder
	fmt.Fprintf(&conf, `server:
  ip-address: %s@%d
  port: %d
  zonesdir: %q
  pidfile: %q
  database: ""
  zonelistfile: %q
  xfrdfile: %q
  xfrdir: %q
  username: ""
  logfile: %q
  server-count: 1
  verbosity: 1
  hide-version: yes
  do-ip4: %s
  do-ip6: %s
  tcp-count: 100
  # Response rate limiting would truncate or drop a load test's answers (every query comes
  # from 127.0.0.1); an upstream for tests and benchmarks must answer everything.
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
`, addr.Addr(), addr.Port(), addr.Port(), dir, filepath.Join(dir, "nsd.pid"), filepath.Join(dir, "zone.list"),
		filepath.Join(dir, "xfrd.state"), dir, filepath.Join(dir, "nsd.log"), yesNo(addr.Addr().Is4()), yesNo(addr.Addr().Is6()))
	for _, z := range zones {
		abs, err := filepath.Abs(z.File)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&conf, "zone:\n  name: %q\n  zonefile: %q\n", z.Name, abs)
	}
	path := filepath.Join(dir, "nsd.conf")
	return path, os.WriteFile(path, []byte(conf.String()), 0o644)
}

// ErrNotInstalled means the nsd binary is not on this machine.
var ErrNotInstalled = errors.New("nsd is not installed (Debian package nsd)")

// Start runs NSD in the foreground on addr (port 0 picks a free one) with its state in dir, and
// returns once it answers a SOA query for the first zone.
func Start(dir string, addr netip.Addr, zones ...Zone) (*Server, error) {
	return StartOn(-1, dir, addr, zones...)
}

// StartOn is Start with NSD pinned to one CPU (taskset), as benchmarks need; cpu < 0 does not pin.
func StartOn(cpu int, dir string, addr netip.Addr, zones ...Zone) (*Server, error) {
	port, err := FreePort(addr)
	if err != nil {
		return nil, err
	}
	return start(cpu, dir, netip.AddrPortFrom(addr, port), zones)
}

// StartAt is Start on a given port: a test that stops an upstream and brings it back there.
func StartAt(dir string, addr netip.AddrPort, zones ...Zone) (*Server, error) {
	return start(-1, dir, addr, zones)
}

func start(cpu int, dir string, ap netip.AddrPort, zones []Zone) (*Server, error) {
	addr, port := ap.Addr(), ap.Port()
	bin, err := exec.LookPath("nsd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nsd"); serr != nil {
			return nil, ErrNotInstalled
		}
		bin = "/usr/sbin/nsd"
	}
	if len(zones) == 0 {
		return nil, errors.New("nsd: no zones")
	}
	confPath, err := WriteConfig(dir, netip.AddrPortFrom(addr, port), zones...)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, "-d", "-c", confPath)
	if cpu >= 0 {
		cmd = exec.Command("taskset", "-c", fmt.Sprint(cpu), bin, "-d", "-c", confPath)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	log, err := os.Create(filepath.Join(dir, "nsd.stderr"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{Addr: netip.AddrPortFrom(addr, port), cmd: cmd, done: make(chan error, 1), dir: dir}
	go func() { s.done <- cmd.Wait() }()
	if err := s.waitReady(zones[0].Name, 10*time.Second); err != nil {
		s.Stop()
		out, _ := os.ReadFile(filepath.Join(dir, "nsd.stderr"))
		logs, _ := os.ReadFile(filepath.Join(dir, "nsd.log"))
		return nil, fmt.Errorf("nsd did not come up: %w\n%s%s", err, out, logs)
	}
	return s, nil
}

func (s *Server) waitReady(zone string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(zone), dns.TypeSOA)
	for {
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("exited: %v", err)
		default:
		}
		if r, _, err := c.ExchangeContext(ctx, m, s.Addr.String()); err == nil && r.Rcode == dns.RcodeSuccess {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop kills NSD (by its PID) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
	case <-time.After(3 * time.Second):
		s.cmd.Process.Kill()
		err := <-s.done
		s.done <- err
	}
}

// PID is the process ID of NSD.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// FreePort returns a port free for both UDP and TCP on addr at the moment of asking.
func FreePort(addr netip.Addr) (uint16, error) {
	for i := 0; i < 20; i++ {
		u, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
		if err != nil {
			return 0, err
		}
		port := uint16(u.LocalAddr().(*net.UDPAddr).Port)
		t, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(addr, port)))
		u.Close()
		if err == nil {
			t.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free port")
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
