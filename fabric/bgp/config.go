package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Defaults applied by New to zero fields.
const (
	DefaultHoldTime           = 9 * time.Second
	DefaultSecondaryLocalPref = 50
	DefaultSecondaryPrepend   = 3

	// primaryLocalPref is what iBGP peers see on primary prefixes; the secondary value must
	// stay below it or "secondary" would attract traffic first.
	primaryLocalPref = 100
	minHoldTime      = 3 * time.Second
	maxHoldTime      = 65535 * time.Second
	maxPrepend       = 16
	// TCP_MD5SIG_MAXKEYLEN in Linux.
	maxPasswordLen = 80
)

// Peer is one BGP neighbor (a router). A peer whose ASN equals Config.ASN is iBGP.
type Peer struct {
	Address  netip.Addr
	ASN      uint32
	Password string // TCP MD5 (RFC 2385), optional
	// HoldTime defaults to 9s; the keepalive interval is a third of it. BGP counts it in
	// whole seconds and it may not be below 3s, so that a hung node loses its route fast.
	HoldTime time.Duration
	Multihop uint8 // eBGP multihop TTL; 0 = directly connected
	Passive  bool  // wait for the peer to connect (listens on port 179 of LocalAddress)
	// LocalAddress is the session's source address. It is required: left to the kernel,
	// the source could be the anycast address on lo, and the session would follow the route.
	LocalAddress netip.Addr
}

// Prefix is one announced prefix.
type Prefix struct {
	Prefix netip.Prefix
	// Secondary prefixes get Config.SecondaryLocalPref on iBGP peers and the AS path
	// prepended Config.SecondaryPrepend times on eBGP peers, so routers prefer a primary.
	Secondary   bool
	Communities []string // "65000:53"
}

// Config is the speaker's configuration (the `bgp:` block of the server config, minus
// health, which fabric owns). Zero values of HoldTime, SecondaryLocalPref and
// SecondaryPrepend mean the defaults.
//
// IPv4 prefixes are sent to IPv4 peers and IPv6 prefixes to IPv6 peers, each with the
// session's own local address as next hop; every prefix needs a peer of its family.
type Config struct {
	ASN                uint32
	RouterID           netip.Addr // an IPv4 address (the BGP identifier is 32 bits)
	Peers              []Peer
	Prefixes           []Prefix
	SecondaryLocalPref uint32 // default 50 (primary gets 100)
	SecondaryPrepend   int    // default 3
}

// Validate reports every problem in c at once.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.ASN == 0 {
		bad("asn: must be set")
	}
	if !c.RouterID.IsValid() || !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		bad("router_id %v: must be a non-zero IPv4 address", c.RouterID)
	}
	if c.SecondaryLocalPref >= primaryLocalPref {
		bad("secondary local_pref %d: must be below the primary's %d", c.SecondaryLocalPref, primaryLocalPref)
	}
	if c.SecondaryPrepend < 0 || c.SecondaryPrepend > maxPrepend {
		bad("secondary prepend %d: must be between 1 and %d (0 = default %d)", c.SecondaryPrepend, maxPrepend, DefaultSecondaryPrepend)
	}

	if len(c.Peers) == 0 {
		bad("peers: at least one is needed")
	}
	seenPeer := make(map[netip.Addr]bool)
	hasFamily := map[bool]bool{} // key: is IPv4
	for i, p := range c.Peers {
		name := fmt.Sprintf("peers[%d] (%v)", i, p.Address)
		if !p.Address.IsValid() || p.Address.IsUnspecified() || p.Address.Is4In6() {
			bad("%s: address must be a plain IPv4 or IPv6 address", name)
			continue
		}
		if seenPeer[p.Address] {
			bad("%s: duplicate peer address", name)
		}
		seenPeer[p.Address] = true
		hasFamily[p.Address.Is4()] = true
		if p.ASN == 0 {
			bad("%s: asn must be set", name)
		}
		switch {
		case !p.LocalAddress.IsValid() || p.LocalAddress.IsUnspecified():
			bad("%s: local_address must be set (the anycast address must never be the session's source)", name)
		case p.LocalAddress.Is4() != p.Address.Is4() || p.LocalAddress.Is4In6():
			bad("%s: local_address %v is not of the peer's address family", name, p.LocalAddress)
		case p.LocalAddress == p.Address:
			bad("%s: local_address equals the peer address", name)
		}
		for _, pfx := range c.Prefixes {
			if pfx.Prefix.IsValid() && pfx.Prefix.Contains(p.LocalAddress) {
				bad("%s: local_address %v lies in the announced prefix %v; the session would follow the anycast route", name, p.LocalAddress, pfx.Prefix)
			}
		}
		if p.HoldTime != 0 {
			if err := CheckHoldTime(p.HoldTime); err != nil {
				bad("%s: hold_time %w", name, err)
			}
		}
		if p.Multihop != 0 && p.ASN == c.ASN {
			bad("%s: multihop applies to eBGP peers only", name)
		}
		if len(p.Password) > maxPasswordLen {
			bad("%s: password longer than %d bytes (the TCP MD5 limit)", name, maxPasswordLen)
		}
	}

	if len(c.Prefixes) == 0 {
		bad("announce: at least one prefix is needed")
	}
	seenPrefix := make(map[netip.Prefix]bool)
	for i, p := range c.Prefixes {
		name := fmt.Sprintf("announce[%d] (%v)", i, p.Prefix)
		if !p.Prefix.IsValid() || p.Prefix.Addr().Is4In6() {
			bad("%s: not a valid IPv4 or IPv6 prefix", name)
			continue
		}
		if p.Prefix != p.Prefix.Masked() {
			bad("%s: host bits set (did you mean %v?)", name, p.Prefix.Masked())
		}
		if seenPrefix[p.Prefix] {
			bad("%s: duplicate prefix", name)
		}
		seenPrefix[p.Prefix] = true
		if !hasFamily[p.Prefix.Addr().Is4()] && len(c.Peers) > 0 {
			bad("%s: no peer of this address family would carry it (IPv6 prefixes need an IPv6 session and IPv4 prefixes an IPv4 one)", name)
		}
		for _, s := range p.Communities {
			if err := CheckCommunity(s); err != nil {
				bad("%s: %w", name, err)
			}
		}
	}
	return errors.Join(errs...)
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.SecondaryLocalPref == 0 {
		c.SecondaryLocalPref = DefaultSecondaryLocalPref
	}
	if c.SecondaryPrepend == 0 {
		c.SecondaryPrepend = DefaultSecondaryPrepend
	}
	peers := make([]Peer, len(c.Peers))
	for i, p := range c.Peers {
		if p.HoldTime == 0 {
			p.HoldTime = DefaultHoldTime
		}
		peers[i] = p
	}
	c.Peers = peers
	return c
}

// CheckHoldTime is BGP's rule for a hold time (RFC 4271: 0 or at least 3 s; we do not offer 0,
// which turns keepalives off), which a config's bgp.peers[].hold_time must follow.
func CheckHoldTime(d time.Duration) error {
	switch {
	case d < minHoldTime:
		return fmt.Errorf("%s is below the 3s minimum of BGP (RFC 4271)", d)
	case d > maxHoldTime:
		return fmt.Errorf("%s is above the %s maximum of BGP", d, maxHoldTime)
	case d%time.Second != 0:
		return fmt.Errorf("%s: must be whole seconds", d)
	}
	return nil
}

// CheckCommunity reports a community that is not RFC 1997's "ASN:value".
func CheckCommunity(s string) error {
	_, err := parseCommunity(s)
	return err
}

// parseCommunity parses an RFC 1997 community written "ASN:value", each half 0 to 65535.
func parseCommunity(s string) (uint32, error) {
	hi, lo, ok := strings.Cut(s, ":")
	h, err1 := strconv.ParseUint(hi, 10, 16)
	l, err2 := strconv.ParseUint(lo, 10, 16)
	if !ok || err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%q is not a community (65000:53)", s)
	}
	return uint32(h)<<16 | uint32(l), nil
}
