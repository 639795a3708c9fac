package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/nsd"
)

// TestDatacenterFailover runs two real NSDs as the local and the remote datacenter's recursors,
// stops the local one and starts it again, and measures how long the root zone takes to fail
// over and back; after the failover, no client query for a name the remote one resolves fails.
func TestDatacenterFailover(t *testing.T) {
	_, err := exec.LookPath("dig")
	requireTool(t, err)
	lo := netip.MustParseAddr("127.0.0.1")
	zone := nsd.Zone{Name: "example.net.", File: "testdata/failover/example.net.zone"}
	startAt := func(dir string, a netip.AddrPort) *nsd.Server {
		s, err := nsd.StartAt(dir, a, zone)
		if errors.Is(err, nsd.ErrNotInstalled) {
			requireTool(t, err)
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Stop)
		return s
	}
	ports := make([]uint16, 3)
	for i := range ports {
		if ports[i], err = nsd.FreePort(lo); err != nil {
			t.Fatal(err)
		}
	}
	local := startAt(t.TempDir(), netip.AddrPortFrom(lo, ports[0]))
	remote := startAt(t.TempDir(), netip.AddrPortFrom(lo, ports[1]))
	stub := netip.AddrPortFrom(lo, ports[2])
	sockDir, err := os.MkdirTemp("", "fdns")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	sock := filepath.Join(sockDir, "ctl.sock")
	startClient(t, stub, fmt.Sprintf(`listen: ["%s"]
forward:
  - {zone: ".", upstreams: ["%s"]}
control: {socket: "%s"}
failover:
  interval: 500ms
  timeout: 300ms
  canary: {name: canary.example.net., type: A, expect: 192.0.2.99}
  local: ["%s"]
  remote: ["%s"]
`, stub, local.Addr, sock, local.Addr, remote.Addr))

	ctl := func(args ...string) *exec.Cmd {
		c := exec.Command(binary(t), append([]string{"ctl", "-socket", sock}, args...)...)
		c.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0") // a -race binary would linger 1s at exit
		return c
	}
	state := func() map[string]any {
		out, err := ctl("-json", "failover").Output()
		if err != nil {
			t.Fatalf("ctl failover: %v", err)
		}
		var m map[string]any
		json.Unmarshal(out, &m)
		return m
	}
	waitState := func(want string) time.Duration {
		start := time.Now()
		for time.Since(start) < 10*time.Second {
			if state()["state"] == want {
				return time.Since(start)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("failover state %v after 10s, want %s", state(), want)
		return 0
	}
	waitState("local")
	forwards := func() string {
		out, _ := ctl("forwards").CombinedOutput()
		return string(out)
	}
	if f := forwards(); strings.Contains(f, remote.Addr.String()) {
		t.Errorf("with the local recursor healthy, ctl forwards = %q, want the remote one not in the pool", f)
	}

	local.Stop()
	d := waitState("failed-over")
	t.Logf("local recursor stopped: failed over after %s (fall 2 x interval 500ms)", d.Round(10*time.Millisecond))
	if d > 2500*time.Millisecond {
		t.Errorf("failover took %s, want at most 2.5s", d)
	}
	if f := forwards(); !strings.Contains(f, remote.Addr.String()) || !strings.Contains(f, "failover: failed-over") ||
		!strings.Contains(f, "local "+local.Addr.String()+" failed") {
		t.Errorf("ctl forwards after the failover = %q, want the remote recursor, the state and the evidence", f)
	}
	for i := range 20 {
		a, err := dig(context.Background(), nil, stub, fmt.Sprintf("host%d.example.net", i), "A")
		if err != nil || a.status != "NOERROR" || len(a.rrs) != 1 {
			t.Errorf("query %d after the failover: %+v, %v, want NOERROR with the remote's answer", i, a, err)
		}
	}

	startAt(t.TempDir(), local.Addr)
	d = waitState("local")
	t.Logf("local recursor back: failed back after %s (rise 2 x interval 500ms)", d.Round(10*time.Millisecond))
	if d > 2500*time.Millisecond {
		t.Errorf("failback took %s, want at most 2.5s", d)
	}
	if tr := state()["transitions"]; tr != float64(2) {
		t.Errorf("transitions = %v, want 2", tr)
	}
}
