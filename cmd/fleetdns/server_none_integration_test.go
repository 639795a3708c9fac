package main

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/bench/faultdns"
	"github.com/miekg/dns"
)

// TestServerAnnounceNone runs server mode without any announcer (announce: none), the layout
// behind a cloud load balancer: GET /health is the node's only signal. It answers 200 while
// the node is healthy, 503 with the reason within fall × interval + timeout of the upstream
// going silent, 200 again after it returns, and 503 "draining" first at SIGTERM while the
// node still answers DNS.
func TestServerAnnounceNone(t *testing.T) {
	bin := binary(t)
	up, err := faultdns.Start("127.0.0.1:0", netip.MustParseAddr("192.0.2.78"), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(up.Close)
	listen, hc := freeAddr(t), freeAddr(t)
	config := fmt.Sprintf(`listen: ["%s"]
forward: [{zone: ".", upstreams: ["%s"]}]
control: {socket: "%s"}
node: {id: "lb-1"}
announce: none
health: {name: "health.example.test.", type: A, interval: 200ms, timeout: 150ms, rise: 2, fall: 2, listen: "%s"}
`, listen, up.Addr, filepath.Join(socketDir(t), "ctl.sock"), hc)
	path := filepath.Join(t.TempDir(), "lb.yaml")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check", "-config", path).CombinedOutput(); err != nil {
		t.Fatalf("fleetdns check: %v\n%s", err, out)
	}
	p := startProc(t, bin, "server", "-config", path)
	url := "http://" + hc.String() + "/health"
	get := func() (int, string) {
		c := &http.Client{Timeout: time.Second}
		r, err := c.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, strings.TrimSpace(string(b))
	}
	until := func(what string, limit time.Duration, code int, body string) time.Duration {
		t.Helper()
		start := time.Now()
		waitFor(t, p, what, limit, func() bool {
			c, b := get()
			return c == code && strings.Contains(b, body)
		})
		return time.Since(start)
	}
	until("GET /health 200 once healthy", 10*time.Second, 200, "ok")

	up.Set(faultdns.Drop, 0)
	bound := 2*200*time.Millisecond + 150*time.Millisecond
	d := until("GET /health 503 with the upstream silent", 5*time.Second, 503, "upstream probe failed")
	t.Logf("upstream silent: 503 after %s (bound fall × interval + timeout = %s)", d.Round(time.Millisecond), bound)
	if d > bound+200*time.Millisecond {
		t.Errorf("503 after %s, want within %s (+200ms for polling)", d, bound)
	}
	up.Set(faultdns.None, 0)
	until("GET /health 200 after the upstream returns", 5*time.Second, 200, "ok")

	p.cmd.Process.Signal(syscall.SIGTERM)
	until("GET /health 503 draining at SIGTERM", time.Second, 503, "draining")
	m := new(dns.Msg)
	m.SetQuestion("www.example.test.", dns.TypeA)
	if r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, listen.String()); err != nil || r.Rcode != dns.RcodeSuccess {
		t.Errorf("during the drain: %v %v, want the node still answering", r, err)
	}
	if err, exited := p.stop(0, 10*time.Second); !exited || err != nil {
		t.Errorf("after SIGTERM: exited %v, %v; output:\n%s", exited, err, p.output())
	}
	if !strings.Contains(p.output(), "msg=stopped") {
		t.Errorf("log does not end with stopped:\n%s", p.output())
	}
}
