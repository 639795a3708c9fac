package bgp

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

func validConfig() Config {
	return Config{
		ASN:      65053,
		RouterID: netip.MustParseAddr("192.0.2.1"),
		Peers: []Peer{{
			Address:      netip.MustParseAddr("192.0.2.254"),
			ASN:          65000,
			LocalAddress: netip.MustParseAddr("192.0.2.1"),
		}},
		Prefixes: []Prefix{{Prefix: netip.MustParsePrefix("198.51.100.53/32"), Communities: []string{"65000:53"}}},
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{name: "valid", modify: func(*Config) {}},
		{name: "no asn", modify: func(c *Config) { c.ASN = 0 }, want: "asn: must be set"},
		{name: "ipv6 router id", modify: func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::1") }, want: "router_id"},
		{name: "no peers", modify: func(c *Config) { c.Peers = nil }, want: "at least one is needed"},
		{name: "no local address", modify: func(c *Config) { c.Peers[0].LocalAddress = netip.Addr{} }, want: "local_address must be set"},
		{name: "local address in announced prefix", modify: func(c *Config) {
			c.Peers[0].LocalAddress = netip.MustParseAddr("198.51.100.53")
		}, want: "lies in the announced prefix"},
		{name: "local address of other family", modify: func(c *Config) {
			c.Peers[0].LocalAddress = netip.MustParseAddr("2001:db8::1")
		}, want: "not of the peer's address family"},
		{name: "hold time too short", modify: func(c *Config) { c.Peers[0].HoldTime = 2 * time.Second }, want: "hold_time"},
		{name: "hold time fraction", modify: func(c *Config) { c.Peers[0].HoldTime = 3500 * time.Millisecond }, want: "whole seconds"},
		{name: "hold time 3s", modify: func(c *Config) { c.Peers[0].HoldTime = 3 * time.Second }},
		{name: "duplicate peer", modify: func(c *Config) { c.Peers = append(c.Peers, c.Peers[0]) }, want: "duplicate peer"},
		{name: "multihop on ibgp", modify: func(c *Config) { c.Peers[0].ASN = c.ASN; c.Peers[0].Multihop = 2 }, want: "eBGP peers only"},
		{name: "bad community", modify: func(c *Config) { c.Prefixes[0].Communities = []string{"65536:1"} }, want: "community"},
		{name: "host bits", modify: func(c *Config) { c.Prefixes[0].Prefix = netip.MustParsePrefix("198.51.100.53/24") }, want: "host bits"},
		{name: "ipv6 prefix without ipv6 peer", modify: func(c *Config) {
			c.Prefixes = append(c.Prefixes, Prefix{Prefix: netip.MustParsePrefix("2001:db8::53/128")})
		}, want: "no peer of this address family"},
		{name: "secondary local pref not below primary", modify: func(c *Config) { c.SecondaryLocalPref = 100 }, want: "below the primary"},
		{name: "negative prepend", modify: func(c *Config) { c.SecondaryPrepend = -1 }, want: "prepend"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.modify(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	s, err := New(validConfig(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if s.cfg.Peers[0].HoldTime != DefaultHoldTime || s.cfg.SecondaryLocalPref != DefaultSecondaryLocalPref || s.cfg.SecondaryPrepend != DefaultSecondaryPrepend {
		t.Errorf("New: defaults not applied: %+v", s.cfg)
	}
	if s.Announced() || len(s.Peers()) != 1 || s.Peers()[0].State != "idle" {
		t.Errorf("new speaker: Announced() = %v, Peers() = %v, want false and one idle peer", s.Announced(), s.Peers())
	}
}

// TestPoliciesPrependOnlyTowardsEBGP guards the trap that an empty neighbor set matches
// every peer: without eBGP peers there must be no prepend statement at all.
func TestPoliciesPrependOnlyTowardsEBGP(t *testing.T) {
	for _, tc := range []struct {
		name        string
		peerASN     uint32
		wantPrepend bool
	}{
		{name: "ebgp peer", peerASN: 65000, wantPrepend: true},
		{name: "ibgp peer only", peerASN: 65053, wantPrepend: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			c.Peers[0].ASN = tc.peerASN
			c.Prefixes = append(c.Prefixes, Prefix{Prefix: netip.MustParsePrefix("198.51.100.54/32"), Secondary: true})
			_, pols, _ := policies(c.withDefaults())
			got := false
			for _, p := range pols {
				for _, st := range p.Statements {
					if st.GetActions().GetAsPrepend() != nil {
						got = true
						if st.GetConditions().GetNeighborSet().GetName() != ebgpSetName {
							t.Errorf("prepend statement %s has no eBGP neighbor set condition", st.Name)
						}
					}
				}
			}
			if got != tc.wantPrepend {
				t.Errorf("prepend statement present = %v, want %v", got, tc.wantPrepend)
			}
		})
	}
}

func TestPathCommunities(t *testing.T) {
	p := Prefix{Prefix: netip.MustParsePrefix("198.51.100.53/32"), Communities: []string{"65000:53"}}
	for _, tc := range []struct {
		graceful bool
		want     []uint32
	}{
		{graceful: false, want: []uint32{65000<<16 | 53}},
		{graceful: true, want: []uint32{65000<<16 | 53, gracefulShutdown}},
	} {
		ap, err := path(p, 50, tc.graceful)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint32
		for _, a := range ap.Pattrs {
			var c api.CommunitiesAttribute
			if a.UnmarshalTo(&c) == nil {
				got = c.Communities
			}
		}
		if len(got) != len(tc.want) || got[0] != tc.want[0] || got[len(got)-1] != tc.want[len(tc.want)-1] {
			t.Errorf("path(graceful=%v) communities = %v, want %v", tc.graceful, got, tc.want)
		}
	}
}
