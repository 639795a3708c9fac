package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/nsd"
	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

// binDir holds the fleetdns binary built for this test run; TestMain removes it.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "fleetdns-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	// Every goroutine the in-process tests started (run, ops, reloads) must have exited.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// requireTool fails in CI (FLEETDNS_REQUIRE_TOOLS=1, set by the test script) and skips
// elsewhere when an external program, or a privilege, a test needs is missing.
func requireTool(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv("FLEETDNS_REQUIRE_TOOLS") != "" {
		t.Fatal(err)
	}
	t.Skip(err)
}

// testVersion is stamped into the binary the way a release build stamps its version.
const testVersion = "v0.0.0-e2e-test"

var (
	buildOnce sync.Once
	buildErr  error
)

// binary builds the command once per test run, with the race detector when the tests have it,
// so the daemon's own goroutines are checked too (a race makes it exit 66, not 0).
func binary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(binDir, "fleetdns")
	buildOnce.Do(func() {
		args := []string{"build", "-o", bin, "-ldflags", "-X main.version=" + testVersion}
		if raceEnabled() {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}

func raceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// proc is a program started for a test; it is stopped by its PID when the test ends.
type proc struct {
	cmd  *exec.Cmd
	log  string        // file with its stdout and stderr
	done chan struct{} // closed once it has exited
	err  error         // from Wait; read only after done
}

func startProc(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	return startProcAttr(t, &syscall.SysProcAttr{}, name, args...)
}

// startProcAttr is startProc with attributes for the child, such as the user it runs as.
func startProcAttr(t *testing.T, attr *syscall.SysProcAttr, name string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), filepath.Base(name)+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// If the test binary dies, so does the program, instead of lingering.
	cmd.SysProcAttr = attr
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.stop(syscall.SIGTERM, 5*time.Second) })
	return p
}

// stop sends sig to the process's PID, waits up to limit for it to exit, then kills it. It
// returns Wait's error and whether the process exited within limit.
func (p *proc) stop(sig syscall.Signal, limit time.Duration) (error, bool) {
	select {
	case <-p.done:
		return p.err, true
	default:
	}
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
		return p.err, true
	case <-time.After(limit):
		p.cmd.Process.Kill()
		<-p.done
		return p.err, false
	}
}

func (p *proc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// waitFor calls ready until it reports true, failing the test if p exits first or limit passes.
func waitFor(t *testing.T, p *proc, what string, limit time.Duration, ready func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ready() {
		select {
		case <-p.done:
			t.Fatalf("%s: exited (%v) before it was ready; output:\n%s", what, p.err, p.output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not ready after %s; output:\n%s", what, limit, p.output())
		}
		select {
		case <-p.done:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// startClient runs "fleetdns client -config FILE" listening on addr, and returns once a query
// for localhost (answered locally, so the cache stays empty) gets an answer.
func startClient(t *testing.T, addr netip.AddrPort, config string) *proc {
	t.Helper()
	path := filepath.Join(t.TempDir(), "fleetdns.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, binary(t), "client", "-config", path)
	c := &dns.Client{Timeout: 200 * time.Millisecond}
	m := new(dns.Msg)
	m.SetQuestion("localhost.", dns.TypeA)
	waitFor(t, p, "fleetdns client", 5*time.Second, func() bool {
		r, _, err := c.Exchange(m, addr.String())
		return err == nil && r.Rcode == dns.RcodeSuccess
	})
	return p
}

func startNSD(t *testing.T) *nsd.Server {
	t.Helper()
	n, err := nsd.Start(t.TempDir(), netip.MustParseAddr("127.0.0.1"),
		nsd.Zone{Name: "example.test.", File: "testdata/example.test.zone"})
	if errors.Is(err, nsd.ErrNotInstalled) {
		requireTool(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	return n
}

// digAnswer is what dig printed: the status, the header flags and the answer records, each
// as "name type rdata" with its TTL apart.
type digAnswer struct {
	status string
	flags  []string
	rrs    []string
	ttls   []int
}

var (
	digStatus = regexp.MustCompile(`status: ([A-Z]+),`)
	digFlags  = regexp.MustCompile(`;; flags: ([a-z ]*);`)
)

// dig runs the real dig, prefixed by wrap (e.g. "ip netns exec NAME"), with a bounded wait.
func dig(ctx context.Context, wrap []string, server netip.AddrPort, args ...string) (digAnswer, error) {
	argv := append(append([]string{}, wrap...), "dig", "@"+server.Addr().String(), "-p", strconv.Itoa(int(server.Port())),
		"+time=2", "+tries=1", "+noall", "+comments", "+answer")
	argv = append(argv, args...)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return digAnswer{}, fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	var a digAnswer
	if m := digStatus.FindSubmatch(out); m != nil {
		a.status = string(m[1])
	}
	if m := digFlags.FindSubmatch(out); m != nil {
		a.flags = strings.Fields(string(m[1]))
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || strings.HasPrefix(f[0], ";") {
			continue
		}
		ttl, err := strconv.Atoi(f[1])
		if err != nil {
			return a, fmt.Errorf("TTL in %q: %v", line, err)
		}
		a.rrs = append(a.rrs, strings.Join(append([]string{f[0], f[3]}, f[4:]...), " "))
		a.ttls = append(a.ttls, ttl)
	}
	return a, nil
}

func hasFlag(flags []string, f string) bool {
	for _, g := range flags {
		if g == f {
			return true
		}
	}
	return false
}

func TestClientEndToEnd(t *testing.T) {
	_, err := exec.LookPath("dig")
	requireTool(t, err)
	n := startNSD(t)
	port, err := nsd.FreePort(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	stub := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
	p := startClient(t, stub, fmt.Sprintf(`listen: ["%s"]
forward:
  - zone: .
    upstreams: ["%s"]
log:
  level: debug
`, stub, n.Addr))

	cases := []struct {
		name, qtype string
		tcp         bool
		status      string
		rrs         []string
		local       bool // answered by the stub itself, not NSD
	}{
		{"www.example.test", "A", false, "NOERROR", []string{"www.example.test. A 192.0.2.10"}, false},
		{"alias.example.test", "A", false, "NOERROR",
			[]string{"alias.example.test. CNAME www.example.test.", "www.example.test. A 192.0.2.10"}, false},
		{"v6.example.test", "AAAA", false, "NOERROR", []string{"v6.example.test. AAAA 2001:db8::10"}, false},
		{"v6.example.test", "AAAA", true, "NOERROR", []string{"v6.example.test. AAAA 2001:db8::10"}, false},
		{"www.example.test", "MX", false, "NOERROR", nil, false},
		{"nope.example.test", "A", false, "NXDOMAIN", nil, false},
		{"localhost", "A", false, "NOERROR", []string{"localhost. A 127.0.0.1"}, true},
	}
	query := func(t *testing.T, i int) digAnswer {
		tc := cases[i]
		args := []string{tc.name, tc.qtype}
		if tc.tcp {
			args = append(args, "+tcp")
		}
		a, err := dig(t.Context(), nil, stub, args...)
		if err != nil {
			t.Fatal(err)
		}
		if a.status != tc.status || strings.Join(a.rrs, "|") != strings.Join(tc.rrs, "|") {
			t.Errorf("dig %s %s = %s %q, want %s %q", tc.name, tc.qtype, a.status, a.rrs, tc.status, tc.rrs)
		}
		if !hasFlag(a.flags, "ra") {
			t.Errorf("dig %s %s flags = %v, want ra", tc.name, tc.qtype, a.flags)
		}
		return a
	}
	caseName := func(i int) string {
		name := cases[i].name + "/" + cases[i].qtype
		if cases[i].tcp {
			name += "/tcp"
		}
		return name
	}

	// First through NSD, then with NSD gone: only the stub's cache can answer the second time.
	first := make([]digAnswer, len(cases))
	for i := range cases {
		t.Run("nsd up/"+caseName(i), func(t *testing.T) {
			first[i] = query(t, i)
			for _, ttl := range first[i].ttls {
				if !cases[i].local && ttl > 300 {
					t.Errorf("dig %s TTL = %d, want at most the zone's 300", cases[i].name, ttl)
				}
			}
		})
	}
	n.Stop()
	if a, err := dig(t.Context(), nil, n.Addr, "www.example.test", "A"); err == nil {
		t.Fatalf("NSD still answers after Stop (%s %q): the cache is not what answers next", a.status, a.rrs)
	}
	for i := range cases {
		t.Run("nsd stopped/"+caseName(i), func(t *testing.T) {
			a := query(t, i)
			if len(a.ttls) != len(first[i].ttls) {
				return // reported by query
			}
			for j, ttl := range a.ttls {
				if ttl > first[i].ttls[j] {
					t.Errorf("dig %s %s TTL = %d from the cache, want at most %d, its TTL when stored", cases[i].name, cases[i].qtype, ttl, first[i].ttls[j])
				}
			}
		})
	}

	err, exited := p.stop(syscall.SIGTERM, 5*time.Second)
	if !exited || err != nil {
		t.Errorf("fleetdns client after SIGTERM: exited in 5s %v, error %v, want a clean exit; output:\n%s", exited, err, p.output())
	}
}

func TestClientSignals(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  syscall.Signal
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"SIGINT", syscall.SIGINT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port, err := nsd.FreePort(netip.MustParseAddr("127.0.0.1"))
			if err != nil {
				t.Fatal(err)
			}
			stub := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)
			// The upstream is never asked: readiness uses localhost, which is answered locally.
			p := startClient(t, stub, fmt.Sprintf("listen: [\"%s\"]\nforward:\n  - zone: .\n    upstreams: [127.0.0.1:9]\n", stub))

			// SIGHUP must not kill it: it reloads the config.
			p.cmd.Process.Signal(syscall.SIGHUP)
			waitFor(t, p, "SIGHUP reload logged", 5*time.Second, func() bool {
				return strings.Contains(p.output(), "config reloaded")
			})
			if a, err := dig(t.Context(), nil, stub, "localhost", "A"); err != nil || a.status != "NOERROR" {
				t.Errorf("dig localhost after SIGHUP = %+v, %v, want NOERROR", a, err)
			}

			start := time.Now()
			err, exited := p.stop(tc.sig, 5*time.Second)
			if !exited || err != nil {
				t.Fatalf("fleetdns client after %s: exited in 5s %v, error %v, want exit 0; output:\n%s", tc.name, exited, err, p.output())
			}
			if !strings.Contains(p.output(), "stopped") {
				t.Errorf("fleetdns client output after %s = %q, want it to say stopped", tc.name, p.output())
			}
			t.Logf("exited %s after %s", time.Since(start).Round(time.Millisecond), tc.name)
		})
	}
}

func TestBinaryCommands(t *testing.T) {
	bin := binary(t)
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("forward:\n  - zone: .\n    upstreams: [192.0.2.1]\nfailover: {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"version"}, 0, "fleetdns " + testVersion + "\n", ""},
		{[]string{"check", "-config", "testdata/full.yaml"}, 0, "testdata/full.yaml: ok\n", ""},
		{[]string{"check", "-config", bad}, 1, "", bad + ":4: failover: the canary needs a name and a type\n"},
		{nil, 2, "", "usage:"},
	} {
		t.Run(strings.Join(append([]string{"fleetdns"}, tc.args...), " "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, tc.args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			code := 0
			if ee, ok := errors.AsType[*exec.ExitError](err); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tc.code {
				t.Errorf("fleetdns %q exit = %d, want %d; stderr: %s", tc.args, code, tc.code, stderr.String())
			}
			if stdout.String() != tc.stdout {
				t.Errorf("fleetdns %q stdout = %q, want %q", tc.args, stdout.String(), tc.stdout)
			}
			if (tc.stderr == "" && stderr.Len() > 0) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("fleetdns %q stderr = %q, want %q", tc.args, stderr.String(), tc.stderr)
			}
		})
	}
}
