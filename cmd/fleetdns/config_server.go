package main

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdns/fleetdns/fabric"
	"github.com/fleetdns/fleetdns/fabric/bgp"
	"github.com/fleetdns/fleetdns/fabric/kernel"
	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"
)

// serverConfig is server mode's part of the config: the node's identity, its BGP speaker, the
// health check that decides whether it announces, and how it leaves the path.
type serverConfig struct {
	NodeID     string
	Datacenter string
	BGP        bgp.Config
	Health     fabric.HealthConfig
	HealthName string
	HealthType uint16
	Controller fabric.ControllerConfig
	// Siblings are the other nodes' unicast DNS addresses, asked the health name when this
	// node's upstream probe fails; HealthListen is the HTTP address of GET /health ("" is off).
	Siblings     []netip.AddrPort
	HealthListen string
	// Announce is how the node draws traffic while healthy: "bgp" (the embedded speaker),
	// "kernel" (the prefixes added on the host, for a BIRD or FRR on the node to export) or
	// "none" (only GET /health, for load balancers). Kernel is the kernel announcer's config.
	Announce    string
	Kernel      kernel.Config
	healthAt    map[string]*yaml.Node // "health" and/or "bgp.health": where each block was given
	announced   []*yaml.Node          // bgp.announce[i]'s prefix value (or the item without one), for errors
	kernelNodes []*yaml.Node          // kernel.prefixes[i], for errors
	at          map[string]*yaml.Node // "node", "bgp", "kernel", "announce": where each was given
}

func defaultServerConfig() serverConfig {
	return serverConfig{
		Kernel:     kernel.DefaultConfig(),
		Health:     fabric.HealthConfig{Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 3, Fall: 2},
		HealthName: "health.fleetdns.", HealthType: dns.TypeA,
		Controller: fabric.ControllerConfig{Drain: 3 * time.Second, ShutdownGraceful: true},
	}
}

func (p *parser) node(n *yaml.Node, s *serverConfig) {
	s.given("node", n)
	p.mapping(n, "node", func(key string, k, v *yaml.Node) {
		switch key {
		case "node.id":
			s.NodeID = p.str(v, key)
			if s.NodeID == "" || len(s.NodeID) > 255 {
				p.errorf(v, key, "must be 1 to 255 characters")
			}
		case "node.datacenter":
			s.Datacenter = p.str(v, key)
		default:
			p.errorf(k, key, "unknown key")
		}
	})
}

// present reports whether a server-mode block (node, bgp, announce or kernel) was given: it
// makes the config a server's.
func (s *serverConfig) present() bool { return len(s.at) > 0 }

// given records where a server-mode block was given.
func (s *serverConfig) given(key string, n *yaml.Node) {
	if s.at == nil {
		s.at = map[string]*yaml.Node{}
	}
	s.at[key] = n
}

// serverBlocks lists the blocks of the config in data that only server mode reads, in the
// order given: client mode ignores them, and says so.
func serverBlocks(data []byte) []string {
	var root yaml.Node
	if yaml.Unmarshal(data, &root) != nil || len(root.Content) == 0 || root.Content[0].Kind != yaml.MappingNode {
		return nil
	}
	var out []string
	top := root.Content[0].Content
	for i := 0; i+1 < len(top); i += 2 {
		switch k := top[i].Value; k {
		case "node", "bgp", "health", "announce", "kernel":
			out = append(out, k)
		}
	}
	return out
}

// announceMode parses the top-level announce key.
func (p *parser) announceMode(n *yaml.Node, s *serverConfig) {
	s.given("announce", n)
	switch m := p.str(n, "announce"); m {
	case "bgp", "kernel", "none":
		s.Announce = m
	default:
		p.errorf(n, "announce", "%q is not one of bgp, kernel, none", m)
	}
}

// kernel parses the kernel block: where announce: kernel puts the prefixes.
func (p *parser) kernel(n *yaml.Node, s *serverConfig) {
	s.given("kernel", n)
	p.mapping(n, "kernel", func(key string, k, v *yaml.Node) {
		switch key {
		case "kernel.device":
			s.Kernel.Device = p.str(v, key)
		case "kernel.table":
			s.Kernel.Table = p.integer(v, key, 0)
		case "kernel.prefixes":
			s.Kernel.Prefixes, s.kernelNodes = nil, nil
			p.entries(v, key, "prefixes", func(prefix string, item *yaml.Node) {
				s.Kernel.Prefixes = append(s.Kernel.Prefixes, p.netPrefix(item, prefix))
				s.kernelNodes = append(s.kernelNodes, item)
			})
		default:
			p.errorf(k, key, "unknown key")
		}
	})
}

// checkAnnounce settles how the node announces and that the blocks it needs are there: without
// announce, a bgp block means bgp, a kernel block kernel, neither none. The blocks of another
// mode are an error, not ignored: an operator who wrote them expects them to act.
func (p *parser) checkAnnounce(s *serverConfig, path string) {
	_, hasBGP := s.at["bgp"]
	_, hasKernel := s.at["kernel"]
	if s.Announce == "" {
		switch {
		case hasBGP:
			s.Announce = "bgp"
		case hasKernel:
			s.Announce = "kernel"
		default:
			s.Announce = "none"
		}
	}
	where := func(key string) *yaml.Node {
		if n, ok := s.at[key]; ok {
			return n
		}
		return s.at["announce"]
	}
	switch s.Announce {
	case "bgp":
		if !hasBGP {
			p.errorf(where("announce"), "announce", "bgp needs a bgp block (asn, router_id, peers, announce)")
		}
		if hasKernel {
			p.errorf(s.at["kernel"], "kernel", "given, but announce is bgp: remove it, or set announce: kernel")
		}
	case "kernel":
		if hasBGP {
			p.errorf(s.at["bgp"], "bgp", "given, but announce is kernel (a routing daemon on the node exports the prefixes): remove it, or set announce: bgp")
		}
		if !hasKernel {
			p.errorf(where("announce"), "announce", "kernel needs a kernel block with the prefixes to add (kernel: {prefixes: [198.51.100.53/32]})")
		} else if err := s.Kernel.Validate(); err != nil {
			p.errorf(s.at["kernel"], "kernel", "%v", err)
		}
	case "none":
		if hasKernel {
			p.errorf(s.at["kernel"], "kernel", "given, but announce is none: remove it, or set announce: kernel")
		}
		if s.HealthListen == "" {
			p.errorf(where("announce"), "announce", "none: the node leaves the path only through GET /health, so health.listen is needed")
		}
	}
}

func (p *parser) bgp(n *yaml.Node, s *serverConfig) {
	s.given("bgp", n)
	p.mapping(n, "bgp", func(key string, k, v *yaml.Node) {
		switch key {
		case "bgp.asn":
			s.BGP.ASN = p.asn(v, key)
		case "bgp.router_id":
			s.BGP.RouterID = p.addr(v, key)
		case "bgp.peers":
			s.BGP.Peers = p.peers(v)
		case "bgp.announce":
			s.BGP.Prefixes, s.announced = p.announce(v)
		case "bgp.secondary_local_pref":
			s.BGP.SecondaryLocalPref = uint32(p.integer(v, key, 0))
		case "bgp.secondary_prepend":
			s.BGP.SecondaryPrepend = p.integer(v, key, 0)
		case "bgp.health":
			p.health(v, key, s)
		case "bgp.shutdown":
			p.mapping(v, key, func(key string, k, v *yaml.Node) {
				switch key {
				case "bgp.shutdown.mode":
					switch m := p.str(v, key); m {
					case "graceful":
						s.Controller.ShutdownGraceful = true
					case "withdraw":
						s.Controller.ShutdownGraceful = false
					default:
						p.errorf(v, key, "%q is not one of graceful, withdraw", m)
					}
				case "bgp.shutdown.drain":
					s.Controller.Drain = p.duration(v, key)
				default:
					p.errorf(k, key, "unknown key")
				}
			})
		default:
			p.errorf(k, key, "unknown key")
		}
	})
}

// health parses the health block, at the top level (path "health") or, deprecated, under bgp
// (path "bgp.health", without siblings and listen, which are new).
func (p *parser) health(n *yaml.Node, path string, s *serverConfig) {
	if s.healthAt == nil {
		s.healthAt = map[string]*yaml.Node{}
	}
	s.healthAt[path] = n
	p.mapping(n, path, func(key string, k, v *yaml.Node) {
		switch sub := strings.TrimPrefix(key, path+"."); {
		case sub == "name":
			s.HealthName = p.domain(v, key)
		case sub == "type":
			t, ok := dns.StringToType[strings.ToUpper(p.str(v, key))]
			if !ok {
				p.errorf(v, key, "%q is not a record type", v.Value)
			}
			s.HealthType = t
		case sub == "interval":
			s.Health.Interval = p.duration(v, key)
		case sub == "timeout":
			s.Health.Timeout = p.duration(v, key)
		case sub == "rise":
			s.Health.Rise = p.integer(v, key, 1)
		case sub == "fall":
			s.Health.Fall = p.integer(v, key, 1)
		case sub == "graceful_withdraw":
			s.Controller.GracefulWithdraw = p.duration(v, key)
		case sub == "siblings" && path == "health":
			s.Siblings = p.addrList(v, key, 53)
		case sub == "listen" && path == "health":
			s.HealthListen = p.str(v, key)
			if _, err := parseAddrPort(s.HealthListen, 0); err != nil {
				p.errorf(v, key, "%v", err)
			}
		default:
			p.errorf(k, key, "unknown key")
		}
	})
	if err := s.Health.Validate(); err != nil {
		p.errorf(n, path, "%v", err)
	}
}

// checkHealth reports a health block given twice and returns the deprecation warning of
// bgp.health.
func (p *parser) checkHealth(s *serverConfig) []string {
	defer func() { s.healthAt = nil }() // only for errors
	old, ok := s.healthAt["bgp.health"]
	if !ok {
		return nil
	}
	if _, both := s.healthAt["health"]; both {
		p.errorf(old, "bgp.health", "given together with the top-level health block: keep only health")
		return nil
	}
	return []string{fmt.Sprintf("%s:%d: bgp.health: deprecated: move it to the top-level health block (same keys, plus siblings and listen)", p.file, old.Line)}
}

func (p *parser) peers(n *yaml.Node) []bgp.Peer {
	var out []bgp.Peer
	p.entries(n, "bgp.peers", "peers", func(prefix string, item *yaml.Node) {
		pe := bgp.Peer{HoldTime: 9 * time.Second}
		p.mapping(item, prefix, func(key string, k, v *yaml.Node) {
			switch strings.TrimPrefix(key, prefix+".") {
			case "address":
				pe.Address = p.addr(v, key)
			case "asn":
				pe.ASN = p.asn(v, key)
			case "password":
				pe.Password = p.str(v, key)
			case "hold_time":
				pe.HoldTime = p.duration(v, key)
				if err := bgp.CheckHoldTime(pe.HoldTime); err != nil && !p.reported(key) {
					p.errorf(v, key, "%v", err) // BGP's rule, at the key's line
				}
			case "multihop":
				pe.Multihop = uint8(min(p.integer(v, key, 0), 255))
			case "passive":
				pe.Passive = p.boolean(v, key)
			case "local_address":
				pe.LocalAddress = p.addr(v, key)
			default:
				p.errorf(k, key, "unknown key")
			}
		})
		if !pe.Address.IsValid() || pe.ASN == 0 {
			p.errorf(item, prefix, "needs address and asn")
		}
		out = append(out, pe)
	})
	return out
}

func (p *parser) announce(n *yaml.Node) ([]bgp.Prefix, []*yaml.Node) {
	var out []bgp.Prefix
	var nodes []*yaml.Node
	p.entries(n, "bgp.announce", "prefixes", func(prefix string, item *yaml.Node) {
		var pr bgp.Prefix
		node := item
		p.mapping(item, prefix, func(key string, k, v *yaml.Node) {
			switch strings.TrimPrefix(key, prefix+".") {
			case "prefix":
				node = v
				pr.Prefix = p.netPrefix(v, key)
			case "priority":
				switch pri := p.str(v, key); pri {
				case "primary":
				case "secondary":
					pr.Secondary = true
				default:
					p.errorf(v, key, "%q is not one of primary, secondary", pri)
				}
			case "communities":
				for _, c := range p.strList(v, key) {
					if err := bgp.CheckCommunity(c); err != nil {
						p.errorf(v, key, "%v", err) // BGP's rule, at the key's line
					}
					pr.Communities = append(pr.Communities, c)
				}
			default:
				p.errorf(k, key, "unknown key")
			}
		})
		out = append(out, pr)
		nodes = append(nodes, node)
	})
	return out, nodes
}

// checkServed reports every announced prefix that no listen address serves: announced, it
// would draw the anycast traffic of the prefix to a node that does not answer on it, a
// blackhole. A listen address serves a prefix that contains it; a wildcard listen serves every
// local address: 0.0.0.0 the IPv4 prefixes, [::] every prefix (Go opens it dual-stack). Ports
// are not compared: the prefix is about where queries are routed, the port is the clients'.
func (p *parser) checkServed(s *serverConfig, listen []netip.AddrPort) {
	type announced struct {
		prefix netip.Prefix
		node   *yaml.Node
		key    string
	}
	var all []announced
	switch s.Announce {
	case "bgp":
		for i, pr := range s.BGP.Prefixes {
			if i < len(s.announced) {
				all = append(all, announced{pr.Prefix, s.announced[i], fmt.Sprintf("bgp.announce[%d].prefix", i)})
			}
		}
	case "kernel":
		for i, pr := range s.Kernel.Prefixes {
			if i < len(s.kernelNodes) {
				all = append(all, announced{pr, s.kernelNodes[i], fmt.Sprintf("kernel.prefixes[%d]", i)})
			}
		}
	}
	for _, pr := range all {
		if !pr.prefix.IsValid() {
			continue // reported where it was parsed
		}
		served := false
		for _, a := range listen {
			addr := a.Addr().Unmap()
			if pr.prefix.Contains(addr) || (addr.IsUnspecified() && (addr.Is6() || pr.prefix.Addr().Is4())) {
				served = true
				break
			}
		}
		if !served {
			example := netip.AddrPortFrom(pr.prefix.Addr(), 53)
			p.errorf(pr.node, pr.key,
				"no listen address is in %s: announced, it would draw queries that this node does not answer (add one to listen, e.g. %q)",
				pr.prefix, example)
		}
	}
}

// netPrefix parses an announced prefix, which must be a network (no host bits set).
func (p *parser) netPrefix(n *yaml.Node, key string) netip.Prefix {
	s := p.str(n, key)
	pfx, err := netip.ParsePrefix(s)
	if err != nil || pfx != pfx.Masked() {
		p.errorf(n, key, "%q is not a network prefix (198.51.100.53/32)", s)
	}
	return pfx
}

func (p *parser) asn(n *yaml.Node, key string) uint32 {
	s, _ := p.scalar(n, key)
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 {
		p.errorf(n, key, "%q is not an AS number", s)
	}
	return uint32(v)
}

func (p *parser) addr(n *yaml.Node, key string) netip.Addr {
	s, _ := p.scalar(n, key)
	a, err := netip.ParseAddr(s)
	if err != nil {
		p.errorf(n, key, "%q is not an IP address", s)
	}
	return a
}
