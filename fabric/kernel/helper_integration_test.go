//go:build linux

package kernel

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHelperAnnouncer is the announcing process of the tests above; run directly, it does
// nothing. It starts an Announcer with the Config in $FLEETDNS_KERNEL_HELPER, answers "ok"
// or "err ..." to that and to each command on stdin, and stops the Announcer and exits at
// EOF.
func TestHelperAnnouncer(t *testing.T) {
	js := os.Getenv(helperEnv)
	if js == "" {
		return
	}
	reply := func(err error) {
		if err != nil {
			fmt.Printf("err %v\n", strings.ReplaceAll(err.Error(), "\n", "; "))
			return
		}
		fmt.Println("ok")
	}
	// The last line of defence for the host: `ip netns exec` failing open would put us there.
	if err := notParentNetns(); err != nil {
		reply(err)
		t.Fatal(err)
	}
	var cfg Config
	if err := json.Unmarshal([]byte(js), &cfg); err != nil {
		reply(err)
		t.Fatal(err)
	}
	a, err := New(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		reply(err)
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := a.Start(ctx); err != nil {
		reply(err)
		t.Fatal(err)
	}
	reply(nil)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		switch cmd := in.Text(); cmd {
		case "announce":
			reply(a.Announce(ctx, false))
		case "graceful":
			reply(a.Announce(ctx, true))
		case "withdraw":
			reply(a.Withdraw(ctx))
		case "probe":
			reply(probe(cfg.Prefixes))
		case "status":
			b, _ := json.Marshal(a.Status())
			fmt.Printf("ok %s\n", b)
		case "stop": // the process stays, so that the parent sees what Stop itself did
			reply(a.Stop(ctx))
		default:
			reply(fmt.Errorf("unknown command %q", cmd))
		}
	}
	_ = a.Stop(ctx) // the parent is done or gone: leave nothing behind
}

// notParentNetns fails unless this process is in another network namespace than the test
// that started it, whose namespace is in $FLEETDNS_KERNEL_HELPER_PARENT.
func notParentNetns() error {
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		return fmt.Errorf("refusing to run: %w", err)
	}
	if parent := os.Getenv(parentEnv); parent == "" || self == parent {
		return fmt.Errorf("refusing to run in the test's own network namespace (%s, parent %q)", self, parent)
	}
	return nil
}

// probe sends a UDP datagram to each host prefix's address and reads it back there.
func probe(ps []netip.Prefix) error {
	for _, p := range ps {
		if !p.IsSingleIP() {
			continue
		}
		if err := echo(p.Addr()); err != nil {
			return fmt.Errorf("probe %v: %w", p.Addr(), err)
		}
	}
	return nil
}

func echo(a netip.Addr) error {
	l, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	if err != nil {
		return err
	}
	defer l.Close()
	c, err := net.DialUDP("udp", nil, l.LocalAddr().(*net.UDPAddr))
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte("fleetdns")); err != nil {
		return err
	}
	if err := l.SetReadDeadline(time.Now().Add(2 * time.Second)); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := l.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "fleetdns" {
		return fmt.Errorf("read %q, want %q", buf[:n], "fleetdns")
	}
	return nil
}

// helper is the announcing process, driven line by line.
type helper struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	done   chan error // the exit status, once
	stderr *syncBuffer
	exited bool
}

// syncBuffer is the helper's stderr (its log), written by exec's copying goroutine and read
// by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startHelper(t *testing.T, ns *netns, cfg Config) *helper {
	t.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ns.ipPath, "netns", "exec", ns.name, os.Args[0],
		"-test.run=^TestHelperAnnouncer$", "-test.count=1", "-test.timeout=2m")
	self, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), helperEnv+"="+string(js), parentEnv+"="+self)
	h := &helper{cmd: cmd, lines: make(chan string, 16), done: make(chan error, 1), stderr: &syncBuffer{}}
	cmd.Stderr = h.stderr
	pr, pw := io.Pipe()
	cmd.Stdout = pw
	cmd.WaitDelay = 5 * time.Second
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper: %v", err)
	}
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	go func() {
		err := cmd.Wait()
		pw.Close()
		h.done <- err
	}()
	// `ip netns exec` execs the helper in place, so this PID is the helper's own.
	t.Cleanup(func() {
		if !h.exited {
			h.stdin.Close() // the helper stops its Announcer at EOF
			select {
			case <-h.done:
			case <-time.After(replyWait):
				_ = cmd.Process.Kill()
				<-h.done
			}
		}
		if t.Failed() {
			t.Logf("helper log:\n%s", h.stderr.String())
		}
	})
	if r := h.reply(t); r != "ok" {
		t.Fatalf("helper Start: %s", r)
	}
	return h
}

// reply is the helper's next answer: a line that is "ok", starts with "ok " or "err ".
func (h *helper) reply(t *testing.T) string {
	t.Helper()
	timeout := time.After(replyWait)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				t.Fatalf("helper exited before replying; log:\n%s", h.stderr.String())
			}
			if l == "ok" || strings.HasPrefix(l, "ok ") || strings.HasPrefix(l, "err ") {
				return l
			}
			t.Logf("helper: %s", l)
		case <-timeout:
			t.Fatalf("no reply from the helper in %v", replyWait)
		}
	}
}

func (h *helper) send(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := io.WriteString(h.stdin, cmd+"\n"); err != nil {
		t.Fatalf("send %q to helper: %v", cmd, err)
	}
	return h.reply(t)
}

// do sends cmd and fails the test unless the helper answers "ok".
func (h *helper) do(t *testing.T, cmd string) {
	t.Helper()
	if r := h.send(t, cmd); r != "ok" {
		t.Fatalf("%s: %s", cmd, r)
	}
}

func (h *helper) status(t *testing.T) Status {
	t.Helper()
	r := h.send(t, "status")
	var s Status
	if err := json.Unmarshal([]byte(strings.TrimPrefix(r, "ok ")), &s); err != nil {
		t.Fatalf("status reply %q: %v", r, err)
	}
	return s
}

// exit closes the helper's stdin and waits for it to exit cleanly.
func (h *helper) exit(t *testing.T) {
	t.Helper()
	h.stdin.Close()
	select {
	case err := <-h.done:
		h.exited = true
		if err != nil {
			t.Errorf("helper exit: %v", err)
		}
	case <-time.After(replyWait):
		t.Fatalf("helper still running %v after stop", replyWait)
	}
}
