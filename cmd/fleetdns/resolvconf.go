package main

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/fleetdns/fleetdns/resolver"
)

// resolvConfPath is where the embedded defaults find their upstreams; tests point it elsewhere.
var resolvConfPath = "/etc/resolv.conf"

// resolvConfForward forwards "." to the nameservers of a resolv.conf, leaving out fleetdns's
// own listen addresses (once resolv.conf points at fleetdns, that line is fleetdns itself), so a
// systemd-resolved at 127.0.0.53 still counts. When fleetdns listens on a wildcard address on
// port 53, every loopback nameserver is taken to be fleetdns itself.
func resolvConfForward(path string, listen []netip.AddrPort) ([]resolver.ZoneConfig, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("upstreams from resolv.conf: %w", err)
	}
	defer f.Close()
	own := map[netip.AddrPort]bool{}
	ownAny := false // listening on 0.0.0.0:53 or [::]:53 covers the loopback addresses too
	for _, a := range listen {
		own[netip.AddrPortFrom(a.Addr().Unmap(), a.Port())] = true
		if a.Addr().IsUnspecified() && a.Port() == 53 {
			ownAny = true
		}
	}
	var ups []netip.AddrPort
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		addr, err := netip.ParseAddr(fields[1]) // keeps an IPv6 zone: fe80::1%eth0 needs it
		if err != nil {
			continue // glibc ignores what it cannot parse, and so do we
		}
		a := netip.AddrPortFrom(addr.Unmap(), 53)
		if !own[a] && !(ownAny && addr.IsLoopback()) {
			ups = append(ups, a)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("upstreams from %s: %w", path, err)
	}
	if len(ups) == 0 {
		return nil, fmt.Errorf("upstreams from %s: no nameserver other than fleetdns's own listen addresses; give a forward zone in a config file", path)
	}
	return []resolver.ZoneConfig{{Zone: ".", Upstreams: ups, Protocol: "udp"}}, nil
}
