package main

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/faultdns"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// These tests run fleetdns and ctl as users other than root, which only root can arrange:
// uid 65534 (nobody) for the service or the intruder, 65533 for a bystander.
const (
	nobodyUID    = 65534
	bystanderUID = 65533
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test runs fleetdns and ctl as other users (uid 65534, 65533)")
	}
}

func as(uid uint32, caps ...uintptr) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}, AmbientCaps: caps}
}

// openDir is a short temporary directory (for socket paths) that every user may traverse and
// read: the binary and the configs of processes run as other users live there.
func openDir(t *testing.T) string {
	t.Helper()
	dir := socketDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sharedBinary is the test's fleetdns binary copied where other users can run it: the build
// directory is private to root.
func sharedBinary(t *testing.T) string {
	t.Helper()
	src, err := os.Open(binary(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	bin := filepath.Join(openDir(t), "fleetdns")
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// startClientAs runs "fleetdns client" as attr with config, written readable by everyone,
// and waits until it answers localhost on addr.
func startClientAs(t *testing.T, bin string, attr *syscall.SysProcAttr, addr netip.AddrPort, config string) *proc {
	t.Helper()
	path := filepath.Join(openDir(t), "fleetdns.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProcAttr(t, attr, bin, "client", "-config", path)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("localhost.", dns.TypeA)
	waitFor(t, p, "fleetdns client", 10*time.Second, func() bool {
		r, _, err := c.Exchange(m, addr.String())
		return err == nil && r.Rcode == dns.RcodeSuccess
	})
	return p
}

func clientConfig(listen, upstream netip.AddrPort, socket string) string {
	return fmt.Sprintf("listen: [\"%s\"]\nforward:\n  - {zone: \".\", upstreams: [\"%s\"]}\ncontrol:\n  socket: %q\n",
		listen, upstream, socket)
}

// ownedDir makes dir/name, mode 0750, owned by uid: what an operator does for a service user
// with "install -d -o fleetdns -m 0750 /run/fleetdns".
func ownedDir(t *testing.T, dir, name string, uid int) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.Mkdir(path, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
	return path
}

func wantRefused(t *testing.T, what string, r ctlResult, words ...string) {
	t.Helper()
	ok := r.code == 1 && r.stdout == ""
	for _, w := range words {
		ok = ok && strings.Contains(r.stderr, w)
	}
	if !ok {
		t.Errorf("%s = exit %d, stdout %q, stderr %q; want exit 1, no stdout, a message with %q", what, r.code, r.stdout, r.stderr, words)
	}
}

// TestCtlRefusesForeignSocket is the attack of issue 11: a user who can create the control
// socket's path (here uid 65534 in its own directory under /tmp, running a fleetdns of its own)
// must not be what root's "fleetdns ctl" talks to. The file's owner gives it away; once root's
// chown hides that, the listening process's credentials (SO_PEERCRED) still do.
func TestCtlRefusesForeignSocket(t *testing.T) {
	requireRoot(t)
	bin := sharedBinary(t)
	socket := filepath.Join(ownedDir(t, openDir(t), "run", nobodyUID), "ctl.sock")
	addr := freeAddr(t)
	p := startClientAs(t, bin, as(nobodyUID), addr, clientConfig(addr, freeAddr(t), socket))
	waitControl(t, p, socket)

	wantRefused(t, "root's ctl stats on a socket of uid 65534", runCtlAs(t, bin, nil, "-socket", socket, "stats"),
		"refusing control socket "+socket, "belongs to uid 65534")
	if err := os.Lchown(socket, 0, 0); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, "root's ctl stats on a root-owned socket served by uid 65534", runCtlAs(t, bin, nil, "-socket", socket, "stats"),
		"refusing control socket "+socket, "listening on it runs as uid 65534")
	// Named as the service user, the same process is trusted.
	if r := runCtlAs(t, bin, nil, "-socket", socket, "-user", strconv.Itoa(nobodyUID), "stats"); r.code != 0 || !strings.Contains(r.stdout, "queries ") {
		t.Errorf("ctl -user 65534 stats = exit %d, output %q; want exit 0 and the stats", r.code, r.stdout)
	}
	stopClean(t, p)
}

// TestControlSocketClosedToOthers shows that the daemon's socket, run as root, cannot be used
// by another user: the directory it creates is 0750, and even in a directory anyone may enter
// the socket's mode 0600 refuses the connection.
func TestControlSocketClosedToOthers(t *testing.T) {
	requireRoot(t)
	bin := sharedBinary(t)
	dir := filepath.Join(openDir(t), "run") // missing: fleetdns creates it
	socket := filepath.Join(dir, "ctl.sock")
	addr := freeAddr(t)
	p := startClientAs(t, bin, &syscall.SysProcAttr{}, addr, clientConfig(addr, freeAddr(t), socket))
	waitControl(t, p, socket)
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("control socket directory made by fleetdns: mode %v (%v), want 0750", fi.Mode().Perm(), err)
	}
	if fi, err := os.Lstat(socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket: mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	// -user 0: ctl itself would talk to this socket; the kernel is what refuses.
	wantRefused(t, "ctl stats as uid 65534", runCtlAs(t, bin, as(nobodyUID), "-socket", socket, "-user", "0", "stats"), "permission denied")
	if err := os.Chmod(dir, 0o755); err != nil { // as systemd's RuntimeDirectory= makes it
		t.Fatal(err)
	}
	wantRefused(t, "ctl stats as uid 65534, directory 0755", runCtlAs(t, bin, as(nobodyUID), "-socket", socket, "-user", "0", "stats"), "permission denied")
	ctlOK(t, socket, "stats")
	stopClean(t, p)
}

// freePrivileged finds a loopback address whose port 53 is free over UDP and TCP.
func freePrivileged(t *testing.T) netip.AddrPort {
	t.Helper()
	for last := 77; last < 90; last++ {
		ap := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(last)}), 53)
		pc, err := net.ListenPacket("udp", ap.String())
		if err != nil {
			continue
		}
		l, err := net.Listen("tcp", ap.String())
		pc.Close()
		if err != nil {
			continue
		}
		l.Close()
		return ap
	}
	t.Skip("no loopback address from 127.0.0.77 to 127.0.0.89 has port 53 free")
	return netip.AddrPort{}
}

// TestClientAsUserWithNetBindService runs the stub the way issue 11 asks it to be deployed: as
// an unprivileged user holding only CAP_NET_BIND_SERVICE (systemd's User= with
// AmbientCapabilities=), on port 53, forwarding to an upstream, with its control socket in a
// directory root gave that user.
func TestClientAsUserWithNetBindService(t *testing.T) {
	requireRoot(t)
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if start, perr := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || perr != nil || start <= 53 {
		t.Skipf("port 53 is not privileged here (ip_unprivileged_port_start %q, %v): the capability would show nothing", b, err)
	}
	bin := sharedBinary(t)
	up, err := faultdns.Start("127.0.0.1:0", netip.MustParseAddr("192.0.2.77"), 300)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	listen := freePrivileged(t)
	socket := filepath.Join(ownedDir(t, openDir(t), "run", nobodyUID), "ctl.sock")
	config := clientConfig(listen, up.Addr, socket)

	// Without the capability the same user cannot bind port 53: the capability is what does it.
	path := filepath.Join(openDir(t), "fleetdns.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	bare := startProcAttr(t, as(nobodyUID), bin, "client", "-config", path)
	// Signal 0 sends nothing: stop only waits for the exit.
	if err, exited := bare.stop(0, 10*time.Second); !exited || err == nil || !strings.Contains(bare.output(), "permission denied") {
		t.Errorf("fleetdns client as uid 65534 without CAP_NET_BIND_SERVICE on %s: exited %v (%v), output:\n%s\nwant a failed bind, permission denied",
			listen, exited, err, bare.output())
	}

	p := startClientAs(t, bin, as(nobodyUID, unix.CAP_NET_BIND_SERVICE), listen, config)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	wantStatus := []string{"Uid:\t65534\t65534\t65534\t65534", "CapEff:\t0000000000000400"} // bit 10: CAP_NET_BIND_SERVICE only
	for _, w := range wantStatus {
		if !strings.Contains(string(status), w) {
			t.Errorf("/proc/PID/status of fleetdns client has no %q:\n%s", w, status)
		}
	}
	c := &dns.Client{Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion("www.example.test.", dns.TypeA)
	r, _, err := c.Exchange(m, listen.String())
	if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.77" {
		t.Fatalf("www.example.test A from %s = %v (%v), want the upstream's 192.0.2.77", listen, r, err)
	}
	if up.Queries() == 0 {
		t.Errorf("upstream queries = 0, want the miss forwarded")
	}

	waitControl(t, p, socket)
	if out := ctlOK(t, socket, "-user", strconv.Itoa(nobodyUID), "stats"); !strings.Contains(out, "cache_misses 1") {
		t.Errorf("root's ctl -user 65534 stats:\n%s\nwant cache_misses 1", out)
	}
	wantRefused(t, "root's ctl stats without naming the service user", runCtlAs(t, bin, nil, "-socket", socket, "stats"), "belongs to uid 65534")
	wantRefused(t, "ctl stats as uid 65533", runCtlAs(t, bin, as(bystanderUID), "-socket", socket, "-user", strconv.Itoa(nobodyUID), "stats"), "permission denied")
	stopClean(t, p)
}
