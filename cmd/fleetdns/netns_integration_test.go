package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/nsd"
)

var netnsSeq atomic.Int32

// newNetns creates a network namespace with lo up, removed when the test ends, and returns
// its name. Each etc file is written to /etc/netns/NAME, which "ip netns exec" bind-mounts
// over the file of that name in /etc, so programs in the namespace see it as theirs.
func newNetns(t *testing.T, etc map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("fdns-test-%d-%d", os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		requireTool(t, fmt.Errorf("ip netns add %s: %v: %s", name, err, out))
	}
	// Registered first, so it runs last: after every process in the namespace is stopped.
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	dir := filepath.Join("/etc/netns", name)
	_, err := os.Stat("/etc/netns")
	madeParent := errors.Is(err, os.ErrNotExist)
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
		if madeParent {
			os.Remove("/etc/netns") // fails, rightly, if someone else put a namespace there meanwhile
		}
	})
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for file, content := range etc {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set lo up in %s: %v: %s", name, err, out)
	}
	return name
}

// nsdConfig serves testdata/example.test.zone on 127.0.0.53 port 53, with its state in dir.
// nsd.Start cannot be used: it starts NSD in the test's own namespace.
func nsdConfig(t *testing.T, dir string) string {
	t.Helper()
	path, err := nsd.WriteConfig(dir, netip.MustParseAddrPort("127.0.0.53:53"),
		nsd.Zone{Name: "example.test.", File: "testdata/example.test.zone"})
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// checkComm makes sure the PID the test will signal is the daemon's own: "ip netns exec"
// execs the program rather than forking, so the PID of ip becomes the program's. NSD renames
// its processes ("nsd: xfrd" is the one started, and the one that stops the others).
func checkComm(t *testing.T, p *proc, want string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.cmd.Process.Pid))
	if got := strings.TrimSpace(string(b)); err != nil || !strings.HasPrefix(got, want) {
		t.Fatalf("/proc/%d/comm = %q (%v), want %q...", p.cmd.Process.Pid, got, err, want)
	}
}

// getent runs "getent ahosts NAME" in the namespace: glibc's resolver, as every program uses it.
func getent(ctx context.Context, ns, name string) (out string, code int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	b, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, "getent", "ahosts", name).CombinedOutput()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return string(b), ee.ExitCode(), nil
	}
	return string(b), 0, err
}

// TestGlibcThroughStub runs the stub as a host would: without -config, upstreams from
// /etc/resolv.conf, which lists the stub first and systemd-resolved's address second, and
// glibc's getaddrinfo as the client. Only root can make the namespace that keeps port 53 and
// /etc/resolv.conf private to the test.
func TestGlibcThroughStub(t *testing.T) {
	if os.Geteuid() != 0 {
		requireTool(t, errors.New("needs root to create a network namespace"))
	}
	for _, tool := range []string{"ip", "getent", "dig"} {
		_, err := exec.LookPath(tool)
		requireTool(t, err)
	}
	nsdBin, err := exec.LookPath("nsd")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nsd"); serr != nil {
			requireTool(t, err)
		}
		nsdBin = "/usr/sbin/nsd"
	}
	bin := binary(t)

	ns := newNetns(t, map[string]string{
		// The stub's own address first, as an installed fleetdns leaves it; the short timeout
		// keeps a failing lookup from taking glibc's default 2 x 5s per server.
		"resolv.conf": "nameserver 127.0.0.1\nnameserver 127.0.0.53\noptions timeout:1 attempts:1\n",
		// Plain DNS, whatever the host uses (nss-resolve would bypass the stub).
		"nsswitch.conf": "hosts: files dns\n",
		"hosts":         "127.0.0.1 localhost\n::1 localhost\n",
	})
	inNS := []string{"ip", "netns", "exec", ns}
	stubV4 := netip.MustParseAddrPort("127.0.0.1:53")
	stubV6 := netip.MustParseAddrPort("[::1]:53")
	upstream := netip.MustParseAddrPort("127.0.0.53:53")

	server := startProc(t, "ip", append(inNS[1:], nsdBin, "-d", "-c", nsdConfig(t, t.TempDir()))...)
	waitFor(t, server, "nsd in "+ns, 10*time.Second, func() bool {
		a, err := dig(t.Context(), inNS, upstream, "example.test", "SOA")
		return err == nil && a.status == "NOERROR" && len(a.rrs) == 1
	})
	checkComm(t, server, "nsd")

	stub := startProc(t, "ip", append(inNS[1:], bin, "client")...)
	waitFor(t, stub, "fleetdns client in "+ns, 5*time.Second, func() bool {
		a, err := dig(t.Context(), inNS, stubV4, "localhost", "A")
		return err == nil && a.status == "NOERROR"
	})
	checkComm(t, stub, "fleetdns")

	t.Run("embedded listen addresses", func(t *testing.T) {
		for _, addr := range []netip.AddrPort{stubV4, stubV6} {
			a, err := dig(t.Context(), inNS, addr, "localhost", "A")
			if err != nil || a.status != "NOERROR" || strings.Join(a.rrs, "|") != "localhost. A 127.0.0.1" {
				t.Errorf("dig @%s localhost A = %s %q (%v), want NOERROR [localhost. A 127.0.0.1]", addr, a.status, a.rrs, err)
			}
		}
	})

	cases := []struct {
		name string
		code int    // getent's exit status; 2 is "not found"
		addr string // first address printed
	}{
		{"www.example.test", 0, "192.0.2.10"},
		{"alias.example.test", 0, "192.0.2.10"},
		{"v6.example.test", 0, "2001:db8::10"},
		{"nope.example.test", 2, ""},
	}
	lookup := func(t *testing.T, name string, code int, addr string) {
		out, got, err := getent(t.Context(), ns, name)
		if err != nil {
			t.Fatalf("getent ahosts %s: %v\n%s", name, err, out)
		}
		var first string
		if f := strings.Fields(out); len(f) > 0 {
			first = f[0]
		}
		if got != code || first != addr {
			t.Errorf("getent ahosts %s = exit %d, first address %q, want exit %d, %q; output:\n%s\nfleetdns:\n%s",
				name, got, first, code, addr, out, stub.output())
		}
	}
	for _, tc := range cases {
		t.Run("nsd up/"+tc.name, func(t *testing.T) { lookup(t, tc.name, tc.code, tc.addr) })
	}

	// glibc would have fallen back to 127.0.0.53 had the stub failed; with NSD gone, an answer
	// can only come from the stub's cache.
	if err, exited := server.stop(syscall.SIGTERM, 5*time.Second); !exited {
		t.Fatalf("nsd did not exit on SIGTERM (%v); output:\n%s", err, server.output())
	}
	if a, err := dig(t.Context(), inNS, upstream, "www.example.test", "A"); err == nil {
		t.Fatalf("something still answers on %s after NSD stopped (%s %q)", upstream, a.status, a.rrs)
	}
	for _, tc := range cases {
		t.Run("nsd stopped/"+tc.name, func(t *testing.T) { lookup(t, tc.name, tc.code, tc.addr) })
	}

	if err, exited := stub.stop(syscall.SIGTERM, 5*time.Second); !exited || err != nil {
		t.Errorf("fleetdns client after SIGTERM: exited in 5s %v, error %v, want exit 0; output:\n%s", exited, err, stub.output())
	}
}
