package main

import (
	"strings"
	"time"

	"github.com/fleetdns/fleetdns/policy"
	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"
)

// The policy part of the config: local zones and data, AAAA blocking, synthesized names and the
// junk guard.

func (p *parser) localZones(n *yaml.Node) []policy.LocalZone {
	var zones []policy.LocalZone
	p.entries(n, "local_zones", "zones", func(prefix string, item *yaml.Node) {
		var z policy.LocalZone
		p.mapping(item, prefix, func(key string, k, v *yaml.Node) {
			switch strings.TrimPrefix(key, prefix+".") {
			case "zone":
				z.Name = p.domain(v, key)
			case "type":
				z.Type = p.str(v, key)
			default:
				p.errorf(k, key, "unknown key")
			}
		})
		if item.Kind == yaml.MappingNode && (z.Name == "" || z.Type == "") {
			p.errorf(item, prefix, "needs zone and type")
		}
		zones = append(zones, z)
	})
	p.check("local_zones", n, policy.ValidateLocalZones(zones)) // the types are policy's
	return zones
}

// localData checks each record's syntax here, so the error has its line.
func (p *parser) localData(n *yaml.Node) []string {
	var out []string
	for _, item := range p.list(n, "local_data") {
		s, ok := p.scalar(item, "local_data")
		if !ok {
			continue
		}
		if rr, err := dns.NewRR(s); err != nil || rr == nil {
			p.errorf(item, "local_data", "%q is not a resource record: %v", s, err)
			continue
		}
		out = append(out, s)
	}
	return out
}

func (p *parser) blockAAAA(n *yaml.Node, b *policy.BlockAAAA) {
	p.mapping(n, "block_aaaa", func(key string, k, v *yaml.Node) {
		switch key {
		case "block_aaaa.suffixes":
			b.Suffixes = p.domainList(v, key)
		case "block_aaaa.answer":
			switch a := p.str(v, key); a {
			case "nodata":
			case "nxdomain":
				b.NXDomain = true
			default:
				p.errorf(v, key, "%q is not one of nodata, nxdomain", a)
			}
		default:
			p.errorf(k, key, "unknown key")
		}
	})
}

func (p *parser) synthesize(n *yaml.Node, c *policy.Config) {
	p.mapping(n, "synthesize", func(key string, k, v *yaml.Node) {
		switch key {
		case "synthesize.ip":
			c.SynthIP.TTL = 300 * time.Second // unless set
			p.mapping(v, key, func(key string, k, v *yaml.Node) {
				switch key {
				case "synthesize.ip.domain":
					c.SynthIP.Domain = p.domain(v, key)
				case "synthesize.ip.ttl":
					c.SynthIP.TTL = p.duration(v, key)
				default:
					p.errorf(k, key, "unknown key")
				}
			})
			if c.SynthIP.Domain == "" && v.Kind == yaml.MappingNode {
				p.errorf(v, key+".domain", "missing")
			}
		case "synthesize.dc":
			p.mapping(v, key, func(key string, k, v *yaml.Node) {
				switch key {
				case "synthesize.dc.label":
					c.SynthDC.Label = p.label(v, key)
				case "synthesize.dc.local":
					c.SynthDC.Local = p.label(v, key)
				case "synthesize.dc.domains":
					c.SynthDC.Domains = p.domainList(v, key)
				default:
					p.errorf(k, key, "unknown key")
				}
			})
			if v.Kind == yaml.MappingNode && (c.SynthDC.Label == "" || c.SynthDC.Local == "" || len(c.SynthDC.Domains) == 0) {
				p.errorf(v, key, "needs label, local and domains")
			}
		default:
			p.errorf(k, key, "unknown key")
		}
	})
}

func (p *parser) domain(n *yaml.Node, key string) string {
	s := p.str(n, key)
	if _, ok := dns.IsDomainName(s); !ok || s == "" {
		p.errorf(n, key, "%q is not a domain name", s)
	}
	return s
}

// label is one DNS label: no dots.
func (p *parser) label(n *yaml.Node, key string) string {
	s := p.str(n, key)
	if _, ok := dns.IsDomainName(s); !ok || s == "" || strings.Contains(strings.TrimSuffix(s, "."), ".") {
		p.errorf(n, key, "%q is not a single DNS label", s)
	}
	return strings.TrimSuffix(s, ".")
}

func (p *parser) domainList(n *yaml.Node, key string) []string {
	var out []string
	for _, item := range p.list(n, key) {
		if _, ok := p.scalar(item, key); ok {
			out = append(out, p.domain(item, key))
		}
	}
	return out
}

func (p *parser) strList(n *yaml.Node, key string) []string {
	var out []string
	for _, item := range p.list(n, key) {
		if s, ok := p.scalar(item, key); ok {
			out = append(out, s)
		}
	}
	return out
}
