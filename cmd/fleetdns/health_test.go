package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/fleetdns/fleetdns/fabric"
)

// TestCtlBGPHealth: the health section of `fleetdns ctl bgp`, from the status runServer serves
// to the text the command prints, during a shared fault.
func TestCtlBGPHealth(t *testing.T) {
	bad := errors.New("i/o timeout")
	fail := func(context.Context) error { return bad }
	h, err := fabric.NewNodeHealthChecker(fabric.HealthConfig{Interval: time.Hour, Timeout: time.Second, Rise: 1, Fall: 1},
		fabric.Probes{Local: func(context.Context) error { return nil }, Upstream: fail,
			Siblings: []fabric.Sibling{{Name: "192.0.2.22:53", Check: fail}}},
		func(bool) {}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	for h.Status().Checks == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	<-done
	data, err := json.Marshal(map[string]any{"peers": []any{}, "prefixes": []any{}, "health": healthStatus(h)})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := printHuman(&out, "bgp", data); err != nil {
		t.Fatal(err)
	}
	want := "health healthy, shared fault (" + fabric.ReasonShared + ")\n  local: ok\n  upstream: i/o timeout\n  sibling 192.0.2.22:53: i/o timeout\n"
	if !strings.HasSuffix(out.String(), want) {
		t.Errorf("ctl bgp =\n%s\nwant it to end with\n%s", out.String(), want)
	}
}

func TestSelfAddr(t *testing.T) {
	for _, tc := range []struct {
		listen []string
		want   string
		kernel []netip.Prefix // announce: kernel adds these only while healthy
	}{
		{[]string{"198.51.100.53:53", "127.0.0.1:5300"}, "127.0.0.1:5300", nil},
		{[]string{"198.51.100.53:53", "192.0.2.21:53"}, "198.51.100.53:53", nil},
		{[]string{"0.0.0.0:53"}, "127.0.0.1:53", nil},
		{[]string{"[::]:5353"}, "[::1]:5353", nil},
		{[]string{"198.51.100.53:53", "192.0.2.21:53"}, "192.0.2.21:53", []netip.Prefix{netip.MustParsePrefix("198.51.100.53/32")}},
	} {
		var l []netip.AddrPort
		for _, a := range tc.listen {
			l = append(l, netip.MustParseAddrPort(a))
		}
		if got := selfAddr(l, tc.kernel).String(); got != tc.want {
			t.Errorf("selfAddr(%v) = %s, want %s", tc.listen, got, tc.want)
		}
	}
}
