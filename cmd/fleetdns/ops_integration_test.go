package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/nsd"
	"github.com/miekg/dns"
)

// The tests in this file run the real binary and reach it the way an operator does: the
// Prometheus endpoint over HTTP, "fleetdns ctl" over the control socket, and edits of the
// files it was started with.

var loopback = netip.MustParseAddr("127.0.0.1")

func freeAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	port, err := nsd.FreePort(loopback)
	if err != nil {
		t.Fatal(err)
	}
	return netip.AddrPortFrom(loopback, port)
}

// socketDir is a short temporary directory: a unix socket path must fit in 108 bytes, which
// t.TempDir() under a long test name does not.
func socketDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fdns")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// writeRename replaces path the way deploy tools and editors do: a new file in the same
// directory, renamed over the old one.
func writeRename(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "ops", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// startClientFile is startClient with a config file the caller keeps, to change it later.
func startClientFile(t *testing.T, addr netip.AddrPort, path string) *proc {
	t.Helper()
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

// stopClean stops p with SIGTERM and fails the test unless it exits 0: the binary is built
// with the race detector when the tests are, and a race makes it exit 66.
func stopClean(t *testing.T, p *proc) {
	t.Helper()
	err, exited := p.stop(syscall.SIGTERM, 5*time.Second)
	if !exited || err != nil {
		t.Errorf("fleetdns client after SIGTERM: exited in 5s %v, error %v, want exit 0; output:\n%s", exited, err, p.output())
	}
}

// digWant asks the stub and fails the test unless the answer is status with exactly rrs.
func digWant(t *testing.T, stub netip.AddrPort, name, qtype, status string, rrs ...string) {
	t.Helper()
	a, err := dig(t.Context(), nil, stub, name, qtype)
	if err != nil {
		t.Fatal(err)
	}
	if a.status != status || strings.Join(a.rrs, "|") != strings.Join(rrs, "|") {
		t.Errorf("dig %s %s = %s %q, want %s %q", name, qtype, a.status, a.rrs, status, rrs)
	}
}

// waitAnswer asks the stub until name's A answer is exactly rr, for up to limit.
func waitAnswer(t *testing.T, p *proc, stub netip.AddrPort, name, rr string, limit time.Duration) {
	t.Helper()
	var last digAnswer
	var lastErr error
	deadline := time.Now().Add(limit)
	for {
		last, lastErr = dig(t.Context(), nil, stub, name, "A")
		if lastErr == nil && last.status == "NOERROR" && strings.Join(last.rrs, "|") == rr {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dig %s A after %s = %s %q (err %v), want NOERROR %q; output:\n%s",
				name, limit, last.status, last.rrs, lastErr, rr, p.output())
		}
		select {
		case <-p.done:
			t.Fatalf("fleetdns client exited (%v); output:\n%s", p.err, p.output())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// metrics is one scrape: the value of each series, keyed by series().
type metrics map[string]float64

// series names one series the way parseExposition keys it: labels sorted by name. labels are
// name, value pairs.
func series(name string, labels ...string) string {
	if len(labels) == 0 {
		return name
	}
	var pairs []string
	for i := 0; i+1 < len(labels); i += 2 {
		pairs = append(pairs, labels[i]+"="+strconv.Quote(labels[i+1]))
	}
	sort.Strings(pairs)
	return name + "{" + strings.Join(pairs, ",") + "}"
}

// parseExposition reads the Prometheus text format: "name{l="v",...} value [timestamp]".
func parseExposition(text string) (metrics, error) {
	m := metrics{}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			return nil, fmt.Errorf("line %d: %q: no value", n, line)
		}
		name, rest := line[:end], line[end:]
		var labels []string
		if rest[0] == '{' {
			i := 1
			for i < len(rest) && rest[i] != '}' {
				eq := strings.IndexByte(rest[i:], '=')
				if eq < 0 || i+eq+1 >= len(rest) || rest[i+eq+1] != '"' {
					return nil, fmt.Errorf("line %d: %q: bad label", n, line)
				}
				lname := rest[i : i+eq]
				j := i + eq + 2
				var val strings.Builder
				for ; j < len(rest) && rest[j] != '"'; j++ {
					if rest[j] == '\\' && j+1 < len(rest) {
						j++
						if rest[j] == 'n' {
							val.WriteByte('\n')
							continue
						}
					}
					val.WriteByte(rest[j])
				}
				if j >= len(rest) {
					return nil, fmt.Errorf("line %d: %q: unterminated label value", n, line)
				}
				labels = append(labels, lname, val.String())
				i = j + 1
				if i < len(rest) && rest[i] == ',' {
					i++
				}
			}
			if i >= len(rest) {
				return nil, fmt.Errorf("line %d: %q: no closing brace", n, line)
			}
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			return nil, fmt.Errorf("line %d: %q: no value", n, line)
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			return nil, fmt.Errorf("line %d: %q: %v", n, line, err)
		}
		key := series(name, labels...)
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("line %d: series %s given twice", n, key)
		}
		m[key] = v
	}
	return m, sc.Err()
}

func scrape(t *testing.T, addr netip.AddrPort) metrics {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr.String()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics status = %s, want 200 OK; body:\n%s", resp.Status, body)
	}
	m, err := parseExposition(string(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return m
}

// sumPrefix adds up every series whose key starts with prefix.
func (m metrics) sumPrefix(prefix string) float64 {
	var sum float64
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			sum += v
		}
	}
	return sum
}

// waitMetric scrapes until the series reaches at least want, for up to limit.
func waitMetric(t *testing.T, p *proc, addr netip.AddrPort, key string, want float64, limit time.Duration) metrics {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		m := scrape(t, addr)
		if m[key] >= want {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %s, want at least %v; output:\n%s", key, m[key], limit, want, p.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ctlResult is what one run of "fleetdns ctl" printed and its exit code.
type ctlResult struct {
	stdout, stderr string
	code           int
}

func runCtlBin(t *testing.T, args ...string) ctlResult {
	t.Helper()
	return runCtlAs(t, binary(t), nil, args...)
}

// runCtlAs runs bin's "ctl args" with attributes for the process (nil: none).
func runCtlAs(t *testing.T, bin string, attr *syscall.SysProcAttr, args ...string) ctlResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"ctl"}, args...)...)
	cmd.SysProcAttr = attr
	// A race-enabled binary otherwise sleeps a second at exit, and the tests run ctl often.
	cmd.Env = append(os.Environ(), "GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return ctlResult{stdout.String(), stderr.String(), code}
}

// ctlOK runs fleetdns ctl -socket socket args and fails the test unless it exits 0.
func ctlOK(t *testing.T, socket string, args ...string) string {
	t.Helper()
	r := runCtlBin(t, append([]string{"-socket", socket}, args...)...)
	if r.code != 0 {
		t.Fatalf("fleetdns ctl %q exit = %d, want 0; stderr: %s", args, r.code, r.stderr)
	}
	return r.stdout
}

// waitControl waits until the control socket accepts connections.
func waitControl(t *testing.T, p *proc, socket string) {
	t.Helper()
	waitFor(t, p, "control socket "+socket, 5*time.Second, func() bool {
		c, err := net.Dial("unix", socket)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
}

// ctlStats is the part of "fleetdns ctl -json stats" the tests look at.
type ctlStats struct {
	Queries      uint64 `json:"queries"`
	CacheEntries int    `json:"cache_entries"`
	CacheHits    uint64 `json:"cache_hits"`
	CacheMisses  uint64 `json:"cache_misses"`
}

func statsJSON(t *testing.T, socket string) ctlStats {
	t.Helper()
	out := ctlOK(t, socket, "-json", "stats")
	var s ctlStats
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("fleetdns ctl -json stats: %v\n%s", err, out)
	}
	return s
}

// dumpEntry is one element of "fleetdns ctl -json cache-dump", as scripts read it.
type dumpEntry struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Class   string   `json:"class"`
	Flags   string   `json:"flags"`
	TTL     int      `json:"ttl"`
	Rcode   string   `json:"rcode"`
	Records []string `json:"records"`
}

func dumpJSON(t *testing.T, socket string) []dumpEntry {
	t.Helper()
	out := ctlOK(t, socket, "-json", "cache-dump")
	var entries []dumpEntry
	if err := json.Unmarshal([]byte(out), &entries); err != nil {
		t.Fatalf("fleetdns ctl -json cache-dump: %v\n%s", err, out)
	}
	return entries
}

// cachedKeys lists the cache as "name/type", in the dump's order.
func cachedKeys(t *testing.T, socket string) []string {
	t.Helper()
	var keys []string
	for _, e := range dumpJSON(t, socket) {
		keys = append(keys, e.Name+"/"+e.Type)
	}
	return keys
}

// dropTTLs removes the TTL, the second field, from records in presentation format: it counts
// down while the test runs.
func dropTTLs(rrs []string) []string {
	out := make([]string, len(rrs))
	for i, rr := range rrs {
		f := strings.Fields(rr)
		if len(f) > 2 {
			rr = strings.Join(append(f[:1:1], f[2:]...), " ")
		}
		out[i] = rr
	}
	return out
}

func TestMetricsEndpoint(t *testing.T) {
	_, err := exec.LookPath("dig")
	requireTool(t, err)
	n := startNSD(t)
	stub, metricsAddr := freeAddr(t), freeAddr(t)
	p := startClient(t, stub, fmt.Sprintf(`listen: ["%s"]
forward:
  - zone: .
    upstreams: ["%s"]
metrics:
  listen: "%s"
`, stub, n.Addr, metricsAddr))

	up := []string{"zone", ".", "upstream", n.Addr.String()}
	before := scrape(t, metricsAddr)
	for _, tc := range []struct {
		series string
		want   float64
	}{
		{series("fleetdns_config_reloads_total", "result", "success"), 0},
		{series("fleetdns_config_reloads_total", "result", "failure"), 0},
		{series("fleetdns_build_info", "version", testVersion, "goversion", runtime.Version()), 1},
		{series("fleetdns_cache_entries"), 0},
		{series("fleetdns_upstream_healthy", up...), 1},
		{series("fleetdns_upstream_queries_total", append(up, "result", "ok")...), 0},
	} {
		if got, ok := before[tc.series]; !ok || got != tc.want {
			t.Errorf("before the queries: %s = %v (present %v), want %v", tc.series, got, ok, tc.want)
		}
	}

	// Each name from NSD, then again from the cache: a miss and a hit of each kind of answer.
	for _, q := range []struct {
		name, qtype, status string
		rrs                 []string
	}{
		{"www.example.test", "A", "NOERROR", []string{"www.example.test. A 192.0.2.10"}},
		{"www.example.test", "A", "NOERROR", []string{"www.example.test. A 192.0.2.10"}},
		{"nope.example.test", "A", "NXDOMAIN", nil},
		{"nope.example.test", "A", "NXDOMAIN", nil},
		{"v6.example.test", "AAAA", "NOERROR", []string{"v6.example.test. AAAA 2001:db8::10"}},
		{"v6.example.test", "AAAA", "NOERROR", []string{"v6.example.test. AAAA 2001:db8::10"}},
		{"localhost", "A", "NOERROR", []string{"localhost. A 127.0.0.1"}}, // local
	} {
		digWant(t, stub, q.name, q.qtype, q.status, q.rrs...)
	}

	after := scrape(t, metricsAddr)
	for _, tc := range []struct {
		series string
		delta  float64
	}{
		{series("fleetdns_requests_total", "type", "A", "rcode", "NOERROR"), 3},
		{series("fleetdns_requests_total", "type", "A", "rcode", "NXDOMAIN"), 2},
		{series("fleetdns_requests_total", "type", "AAAA", "rcode", "NOERROR"), 2},
		{series("fleetdns_answers_total", "source", "cache"), 3},
		{series("fleetdns_answers_total", "source", "upstream"), 3},
		{series("fleetdns_answers_total", "source", "local"), 1},
		{series("fleetdns_answers_total", "source", "prefetch"), 0},
		{series("fleetdns_answers_total", "source", "stale"), 0},
		{series("fleetdns_answers_total", "source", "servfail"), 0},
		{series("fleetdns_cache_hits_total"), 3},
		{series("fleetdns_cache_misses_total"), 3},
		{series("fleetdns_upstream_queries_total", append(up, "result", "ok")...), 3},
		{series("fleetdns_upstream_queries_total", append(up, "result", "timeout")...), 0},
		{series("fleetdns_upstream_queries_total", append(up, "result", "error")...), 0},
		{series("fleetdns_upstream_rtt_seconds_count", up...), 3},
		{series("fleetdns_upstream_rtt_seconds_bucket", append(up, "le", "+Inf")...), 3},
		{series("fleetdns_policy_decisions_total", "rule", "local_data"), 1}, // localhost's built-in zone
	} {
		got, ok := after[tc.series]
		if !ok {
			t.Errorf("after the queries: %s missing", tc.series)
			continue
		}
		if d := got - before[tc.series]; d != tc.delta {
			t.Errorf("%s went from %v to %v: +%v, want +%v", tc.series, before[tc.series], got, d, tc.delta)
		}
	}
	// Nothing counted twice or under another label: seven queries, seven requests and answers.
	for _, prefix := range []string{"fleetdns_requests_total{", "fleetdns_answers_total{"} {
		if d := after.sumPrefix(prefix) - before.sumPrefix(prefix); d != 7 {
			t.Errorf("sum of %s...} went up by %v, want 7", prefix, d)
		}
	}
	if k := series("fleetdns_upstream_rtt_seconds_sum", up...); after[k] <= before[k] {
		t.Errorf("%s = %v after two upstream answers, want above %v", k, after[k], before[k])
	}
	for _, tc := range []struct {
		series string
		want   float64
	}{
		{series("fleetdns_cache_entries"), 3}, // www A, v6 AAAA and the NXDOMAIN
		{series("fleetdns_upstream_healthy", up...), 1},
		{series("fleetdns_build_info", "version", testVersion, "goversion", runtime.Version()), 1},
		{series("fleetdns_config_reloads_total", "result", "success"), 0},
		{series("fleetdns_config_reloads_total", "result", "failure"), 0},
	} {
		if got, ok := after[tc.series]; !ok || got != tc.want {
			t.Errorf("after the queries: %s = %v (present %v), want %v", tc.series, got, ok, tc.want)
		}
	}
	stopClean(t, p)
}

func TestCtlVerbs(t *testing.T) {
	_, err := exec.LookPath("dig")
	requireTool(t, err)
	n, err := nsd.Start(t.TempDir(), loopback,
		nsd.Zone{Name: "example.test.", File: "testdata/example.test.zone"},
		nsd.Zone{Name: "other.test.", File: "testdata/ops/other.test.zone"})
	if errors.Is(err, nsd.ErrNotInstalled) {
		requireTool(t, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	stub := freeAddr(t)
	socket := filepath.Join(socketDir(t), "ctl.sock")
	cfgPath := filepath.Join(t.TempDir(), "fleetdns.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, `listen: ["%s"]
forward:
  - zone: .
    upstreams: ["%s"]
control:
  socket: "%s"
`, stub, n.Addr, socket), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startClientFile(t, stub, cfgPath)
	waitControl(t, p, socket)

	fi, err := os.Lstat(socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode = %v, want a socket with 0600 (%v)", fi.Mode(), fs.ModeSocket|0o600)
	}

	t.Run("stats", func(t *testing.T) {
		js := statsJSON(t, socket)
		if js.CacheEntries != 0 || js.Queries == 0 {
			t.Errorf("ctl -json stats = %+v, want cache_entries 0 and the readiness queries counted", js)
		}
		human := map[string]string{}
		for _, line := range strings.Split(strings.TrimRight(ctlOK(t, socket, "stats"), "\n"), "\n") {
			f := strings.Fields(line)
			if len(f) != 2 {
				t.Errorf("ctl stats line %q, want \"key value\"", line)
				continue
			}
			human[f[0]] = f[1]
		}
		for key, want := range map[string]string{
			"queries":       strconv.FormatUint(js.Queries, 10),
			"cache_entries": "0",
			"cache_hits":    "0",
			"cache_misses":  "0",
		} {
			if human[key] != want {
				t.Errorf("ctl stats: %s = %q, want %q", key, human[key], want)
			}
		}
		if _, ok := human["policy.local_data"]; !ok {
			t.Errorf("ctl stats has no policy.local_data line (nested keys flattened with a dot); got %v", human)
		}
	})

	// Four answers in the cache, under two zones.
	q0 := statsJSON(t, socket).Queries
	digWant(t, stub, "www.example.test", "A", "NOERROR", "www.example.test. A 192.0.2.10")
	digWant(t, stub, "v6.example.test", "AAAA", "NOERROR", "v6.example.test. AAAA 2001:db8::10")
	digWant(t, stub, "nope.example.test", "A", "NXDOMAIN")
	digWant(t, stub, "www.other.test", "A", "NOERROR", "www.other.test. A 192.0.2.50")
	if s := statsJSON(t, socket); s.Queries != q0+4 || s.CacheEntries != 4 || s.CacheMisses != 4 {
		t.Errorf("ctl -json stats after 4 new names = queries %d, cache_entries %d, cache_misses %d; want %d, 4, 4",
			s.Queries, s.CacheEntries, s.CacheMisses, q0+4)
	}

	t.Run("cache-dump", func(t *testing.T) {
		// Records are the answer and authority sections; NSD adds its NS to positive answers.
		want := []struct {
			name, typ, rcode string
			records          []string // without their TTLs
			maxTTL           int
		}{
			{"nope.example.test.", "A", "NXDOMAIN",
				[]string{"example.test. IN SOA ns1.example.test. hostmaster.example.test. 2026112301 3600 900 604800 120"}, 60},
			{"v6.example.test.", "AAAA", "NOERROR",
				[]string{"v6.example.test. IN AAAA 2001:db8::10", "example.test. IN NS ns1.example.test."}, 300},
			{"www.example.test.", "A", "NOERROR",
				[]string{"www.example.test. IN A 192.0.2.10", "example.test. IN NS ns1.example.test."}, 300},
			{"www.other.test.", "A", "NOERROR",
				[]string{"www.other.test. IN A 192.0.2.50", "other.test. IN NS ns1.other.test."}, 300},
		}
		line := regexp.MustCompile(`^(\S+) IN (\S+) ttl=(-?\d+) (\S+) (.*)$`)
		lines := strings.Split(strings.TrimRight(ctlOK(t, socket, "cache-dump"), "\n"), "\n")
		if len(lines) != len(want) {
			t.Fatalf("ctl cache-dump printed %d lines, want %d:\n%s", len(lines), len(want), strings.Join(lines, "\n"))
		}
		for i, w := range want {
			m := line.FindStringSubmatch(lines[i])
			if m == nil {
				t.Errorf("ctl cache-dump line %q, want \"NAME IN TYPE ttl=N RCODE RECORDS\"", lines[i])
				continue
			}
			ttl, _ := strconv.Atoi(m[3])
			if m[1] != w.name || m[2] != w.typ || m[4] != w.rcode || ttl <= 0 || ttl > w.maxTTL ||
				!slices.Equal(dropTTLs(strings.Split(m[5], " | ")), w.records) {
				t.Errorf("ctl cache-dump line %d = %q, want %s IN %s ttl in 1..%d %s and the records %q", i, lines[i], w.name, w.typ, w.maxTTL, w.rcode, w.records)
			}
		}
		entries := dumpJSON(t, socket)
		if len(entries) != len(want) {
			t.Fatalf("ctl -json cache-dump = %d entries, want %d: %+v", len(entries), len(want), entries)
		}
		for i, w := range want {
			e := entries[i]
			if e.Name != w.name || e.Type != w.typ || e.Class != "IN" || e.Rcode != w.rcode || e.Flags != "" ||
				e.TTL <= 0 || e.TTL > w.maxTTL || !slices.Equal(dropTTLs(e.Records), w.records) {
				t.Errorf("ctl -json cache-dump[%d] = %+v, want %s %s IN %s ttl in 1..%d, records %q", i, e, w.name, w.typ, w.rcode, w.maxTTL, w.records)
			}
		}
	})

	t.Run("flush", func(t *testing.T) {
		for _, tc := range []struct {
			name  string
			args  []string
			dig   []string // names (type A) asked for before the flush, to cache them again
			out   string
			after []string // the cache afterwards
		}{
			{"one name", []string{"flush", "www.example.test"}, nil, "removed 1 cached answers\n",
				[]string{"nope.example.test./A", "v6.example.test./AAAA", "www.other.test./A"}},
			{"any case, trailing dot", []string{"flush", "WWW.Other.TEST."}, []string{"www.example.test"}, "removed 1 cached answers\n",
				[]string{"nope.example.test./A", "v6.example.test./AAAA", "www.example.test./A"}},
			{"a name not cached", []string{"flush", "absent.example.test"}, []string{"www.other.test"}, "removed 0 cached answers\n",
				[]string{"nope.example.test./A", "v6.example.test./AAAA", "www.example.test./A", "www.other.test./A"}},
			{"zone", []string{"flush-zone", "example.test"}, nil, "removed 3 cached answers\n",
				[]string{"www.other.test./A"}},
			{"zone of a name's parent only", []string{"flush-zone", "Other.Test"}, []string{"www.example.test"}, "removed 1 cached answers\n",
				[]string{"www.example.test./A"}},
			{"root zone", []string{"flush-zone", "."}, nil, "removed 1 cached answers\n", nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				for _, name := range tc.dig {
					before := statsJSON(t, socket)
					a, err := dig(t.Context(), nil, stub, name, "A")
					if err != nil || a.status != "NOERROR" {
						t.Fatalf("dig %s A = %+v, %v, want NOERROR", name, a, err)
					}
					// A flushed name is asked again: a miss, not a hit.
					if s := statsJSON(t, socket); s.CacheMisses != before.CacheMisses+1 || s.CacheHits != before.CacheHits {
						t.Errorf("after dig %s: cache_misses %d -> %d, cache_hits %d -> %d, want one more miss and no hit",
							name, before.CacheMisses, s.CacheMisses, before.CacheHits, s.CacheHits)
					}
				}
				if got := ctlOK(t, socket, tc.args...); got != tc.out {
					t.Errorf("ctl %q = %q, want %q", tc.args, got, tc.out)
				}
				if got := cachedKeys(t, socket); !slices.Equal(got, tc.after) {
					t.Errorf("cache after ctl %q = %q, want %q", tc.args, got, tc.after)
				}
			})
		}
	})

	t.Run("forwards", func(t *testing.T) {
		out := ctlOK(t, socket, "forwards")
		re := regexp.MustCompile(`^\.\n  ` + regexp.QuoteMeta(n.Addr.String()) + ` udp healthy srtt=[0-9.]+ms failures=0 queries=[1-9][0-9]*\n$`)
		if !re.MatchString(out) {
			t.Errorf("ctl forwards = %q, want %s", out, re)
		}
		var zones []struct {
			Zone      string `json:"zone"`
			Upstreams []struct {
				Addr    string  `json:"addr"`
				Healthy bool    `json:"healthy"`
				SRTTms  float64 `json:"srtt_ms"`
				Fails   int     `json:"consecutive_failures"`
				Queries uint64  `json:"queries"`
			} `json:"upstreams"`
		}
		js := ctlOK(t, socket, "-json", "forwards")
		if err := json.Unmarshal([]byte(js), &zones); err != nil {
			t.Fatalf("ctl -json forwards: %v\n%s", err, js)
		}
		if len(zones) != 1 || zones[0].Zone != "." || len(zones[0].Upstreams) != 1 {
			t.Fatalf("ctl -json forwards = %+v, want zone . with one upstream", zones)
		}
		u := zones[0].Upstreams[0]
		if u.Addr != n.Addr.String() || !u.Healthy || u.SRTTms <= 0 || u.Fails != 0 || u.Queries == 0 {
			t.Errorf("ctl -json forwards upstream = %+v, want %s healthy, srtt above 0, no failures, queries counted", u, n.Addr)
		}
	})

	t.Run("reload unchanged", func(t *testing.T) {
		if got, want := ctlOK(t, socket, "reload"), "policy and forward zones reloaded\n"; got != want {
			t.Errorf("ctl reload = %q, want %q", got, want)
		}
		var res map[string]string
		js := ctlOK(t, socket, "-json", "reload")
		if err := json.Unmarshal([]byte(js), &res); err != nil || res["result"] != "policy and forward zones reloaded" {
			t.Errorf("ctl -json reload = %s (%v), want result \"policy and forward zones reloaded\"", js, err)
		}
	})

	missing := filepath.Join(socketDir(t), "none.sock")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"unknown verb", []string{"-socket", socket, "frobnicate"}, 2, "usage: fleetdns ctl"},
		{"flush without a name", []string{"-socket", socket, "flush"}, 2, "fleetdns ctl flush: a name is needed"},
		{"flush of a bad name", []string{"-socket", socket, "flush", "a..b"}, 1, `fleetdns ctl flush: "a..b" is not a domain name`},
		{"missing socket", []string{"-socket", missing, "stats"}, 1, "fleetdns ctl: dial unix " + missing + ": connect: no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCtlBin(t, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) || r.stdout != "" {
				t.Errorf("fleetdns ctl %q = exit %d, stdout %q, stderr %q; want exit %d, no stdout, stderr with %q",
					tc.args, r.code, r.stdout, r.stderr, tc.code, tc.stderr)
			}
		})
	}
	stopClean(t, p)
	if _, err := os.Lstat(socket); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("control socket after a clean stop: Lstat error %v, want it removed", err)
	}
}

// TestCtlStatsLargeCounters prints stats the way "fleetdns ctl stats" does, with the counters a
// long-running stub reaches: every value must stay a plain integer for scripts and humans.
func TestCtlStatsLargeCounters(t *testing.T) {
	for _, tc := range []struct {
		data string
		want string
	}{
		{`{"queries": 999999}`, "queries 999999\n"},
		{`{"queries": 1234567}`, "queries 1234567\n"},
		{`{"cache_hits": 1000000}`, "cache_hits 1000000\n"},
		{`{"policy": {"local_data": 25000000}}`, "policy.local_data 25000000\n"},
	} {
		t.Run(tc.data, func(t *testing.T) {
			var out bytes.Buffer
			if err := printHuman(&out, "stats", json.RawMessage(tc.data)); err != nil {
				t.Fatal(err)
			}
			if got := out.String(); got != tc.want {
				t.Errorf("printHuman(stats, %s) = %q, want %q", tc.data, got, tc.want)
			}
		})
	}
}

func TestReload(t *testing.T) {
	_, err := exec.LookPath("dig")
	requireTool(t, err)
	n := startNSD(t)
	stub, metricsAddr := freeAddr(t), freeAddr(t)
	socket := filepath.Join(socketDir(t), "ctl.sock")
	zoneV1 := readFixture(t, "ops.test.zone")
	zoneWith := func(addr string) string { return strings.Replace(zoneV1, "192.0.2.1\n", addr+"\n", 1) }
	zonePath := filepath.Join(t.TempDir(), "ops.test.zone")
	if err := os.WriteFile(zonePath, []byte(zoneV1), 0o644); err != nil {
		t.Fatal(err)
	}
	config := func(extra string) string {
		return fmt.Sprintf(`listen: ["%s"]
forward:
  - zone: .
    upstreams: ["%s"]
local_data_files: ["%s"]
control:
  socket: "%s"
metrics:
  listen: "%s"
%s`, stub, n.Addr, zonePath, socket, metricsAddr, extra)
	}
	cfgPath := filepath.Join(t.TempDir(), "fleetdns.yaml")
	if err := os.WriteFile(cfgPath, []byte(config("")), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startClientFile(t, stub, cfgPath)
	waitControl(t, p, socket)

	success := series("fleetdns_config_reloads_total", "result", "success")
	failure := series("fleetdns_config_reloads_total", "result", "failure")
	const limit = 5 * time.Second

	digWant(t, stub, "a.ops.test", "A", "NOERROR", "a.ops.test. A 192.0.2.1")
	// Answered by NSD now, and by the cache after every reload below (checked at the end).
	digWant(t, stub, "www.example.test", "A", "NOERROR", "www.example.test. A 192.0.2.10")

	t.Run("zone file renamed over", func(t *testing.T) {
		before := scrape(t, metricsAddr)
		writeRename(t, zonePath, zoneWith("192.0.2.2"))
		waitAnswer(t, p, stub, "a.ops.test", "a.ops.test. A 192.0.2.2", limit)
		waitMetric(t, p, metricsAddr, success, before[success]+1, limit)
	})

	t.Run("broken zone file", func(t *testing.T) {
		before := scrape(t, metricsAddr)
		writeRename(t, zonePath, zoneWith("not-an-address"))
		after := waitMetric(t, p, metricsAddr, failure, before[failure]+1, limit)
		if after[success] != before[success] {
			t.Errorf("%s = %v after a broken zone file, want %v", success, after[success], before[success])
		}
		digWant(t, stub, "a.ops.test", "A", "NOERROR", "a.ops.test. A 192.0.2.2")
		// The operator is told which file and which line: the A record is line 4.
		log := p.output()
		if !strings.Contains(log, "config reload failed") || !strings.Contains(log, zonePath) ||
			!regexp.MustCompile(`line:? 4\b`).MatchString(log) {
			t.Errorf("log after a broken zone file does not say \"config reload failed\" with %s and line 4:\n%s", zonePath, log)
		}
	})

	t.Run("zone file fixed", func(t *testing.T) {
		writeRename(t, zonePath, zoneWith("192.0.2.3"))
		waitAnswer(t, p, stub, "a.ops.test", "a.ops.test. A 192.0.2.3", limit)
	})

	t.Run("config renamed over", func(t *testing.T) {
		writeRename(t, cfgPath, config(`local_data: ["b.ops.test. 300 IN A 192.0.2.9"]`+"\n"))
		waitAnswer(t, p, stub, "b.ops.test", "b.ops.test. A 192.0.2.9", limit)
		digWant(t, stub, "a.ops.test", "A", "NOERROR", "a.ops.test. A 192.0.2.3")
	})

	t.Run("config written in place and SIGHUP", func(t *testing.T) {
		before := scrape(t, metricsAddr)
		if err := os.WriteFile(cfgPath, []byte(config(`local_data: ["b.ops.test. 300 IN A 192.0.2.10"]`+"\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		waitAnswer(t, p, stub, "b.ops.test", "b.ops.test. A 192.0.2.10", limit)
		waitMetric(t, p, metricsAddr, success, before[success]+1, limit)
	})

	t.Run("cache survives reloads", func(t *testing.T) {
		n.Stop()
		if a, err := dig(t.Context(), nil, n.Addr, "www.example.test", "A"); err == nil {
			t.Fatalf("NSD still answers after Stop (%s %q): the cache is not what answers next", a.status, a.rrs)
		}
		if got, want := ctlOK(t, socket, "reload"), "policy and forward zones reloaded\n"; got != want {
			t.Errorf("ctl reload = %q, want %q", got, want)
		}
		before := scrape(t, metricsAddr)
		digWant(t, stub, "www.example.test", "A", "NOERROR", "www.example.test. A 192.0.2.10")
		after := scrape(t, metricsAddr)
		up := series("fleetdns_upstream_queries_total", "zone", ".", "upstream", n.Addr.String(), "result", "ok")
		for _, tc := range []struct {
			series string
			delta  float64
		}{
			{series("fleetdns_cache_hits_total"), 1},
			{series("fleetdns_cache_misses_total"), 0},
			{up, 0},
		} {
			if d := after[tc.series] - before[tc.series]; d != tc.delta {
				t.Errorf("%s went up by %v across a cached query after reloads, want %v", tc.series, d, tc.delta)
			}
		}
	})

	t.Run("ctl reload of a broken config", func(t *testing.T) {
		before := scrape(t, metricsAddr)
		broken := config("bogus: 1\n")
		line := strings.Count(broken[:strings.Index(broken, "bogus:")], "\n") + 1
		writeRename(t, cfgPath, broken)
		r := runCtlBin(t, "-socket", socket, "reload")
		want := fmt.Sprintf("fleetdns ctl reload: %s:%d: bogus: unknown key", cfgPath, line)
		if r.code != 1 || !strings.Contains(r.stderr, want) || r.stdout != "" {
			t.Errorf("fleetdns ctl reload of a broken config = exit %d, stdout %q, stderr %q; want exit 1, stderr with %q",
				r.code, r.stdout, r.stderr, want)
		}
		waitMetric(t, p, metricsAddr, failure, before[failure]+1, limit)
		digWant(t, stub, "a.ops.test", "A", "NOERROR", "a.ops.test. A 192.0.2.3")
		digWant(t, stub, "b.ops.test", "A", "NOERROR", "b.ops.test. A 192.0.2.10")
	})
	stopClean(t, p)
}

// TestCtlSocketInUse starts a second stub, on other addresses, with the control socket of one
// that runs: the second must not take the socket over, and stopping it must leave the first
// one reachable. (A host runs one fleetdns; a second one is a mistake, an operator's test run
// or a botched restart, and ctl must keep talking to the one that serves.)
func TestCtlSocketInUse(t *testing.T) {
	_, err := exec.LookPath("dig")
	requireTool(t, err)
	socket := filepath.Join(socketDir(t), "ctl.sock")
	dead := freeAddr(t) // no upstream is asked: only localhost, answered locally
	config := func(listen netip.AddrPort) string {
		return fmt.Sprintf("listen: [\"%s\"]\nforward:\n  - {zone: \".\", upstreams: [\"%s\"]}\ncontrol:\n  socket: %q\n",
			listen, dead, socket)
	}
	firstAddr, secondAddr := freeAddr(t), freeAddr(t)
	first := startClient(t, firstAddr, config(firstAddr))
	waitControl(t, first, socket)
	// The first has answered more queries than the second will have: that tells them apart.
	for range 5 {
		digWant(t, firstAddr, "localhost", "A", "NOERROR", "localhost. A 127.0.0.1")
	}
	q1 := statsJSON(t, socket).Queries

	// queries asks whichever process answers on the socket how many queries it has answered.
	queries := func() (uint64, error) {
		r := runCtlBin(t, "-socket", socket, "-json", "stats")
		if r.code != 0 {
			return 0, fmt.Errorf("exit %d: %s", r.code, r.stderr)
		}
		var s ctlStats
		err := json.Unmarshal([]byte(r.stdout), &s)
		return s.Queries, err
	}

	second := startClient(t, secondAddr, config(secondAddr))
	// The second has set its control socket up, or given up on it, once it logs that it has
	// none or answers on it; wait for either, up to 3 s.
	var got uint64
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(second.output(), "no control socket") && time.Now().Before(deadline) {
		if got, err = queries(); err == nil && got < q1 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got, err = queries(); err != nil || got < q1 {
		t.Errorf("ctl stats while a second fleetdns runs: queries = %d (%v), want the first's (at least %d): the second took the control socket over", got, err, q1)
	}
	stopClean(t, second)
	if got, err = queries(); err != nil || got < q1 {
		t.Errorf("ctl stats after the second fleetdns stopped: queries = %d (%v), want the first's (at least %d): the first, still running, must stay reachable", got, err, q1)
	}
	stopClean(t, first)
}
