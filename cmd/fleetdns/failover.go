package main

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/fleetdns/fleetdns/fabric"
	"github.com/fleetdns/fleetdns/resolver"
	"github.com/miekg/dns"
	"go.yaml.in/yaml/v3"
)

// failoverConfig is the `failover:` block: the datacenter failover of the root zone.
type failoverConfig struct {
	fabric.FailoverConfig
	present bool
}

func (p *parser) failover(n *yaml.Node, f *failoverConfig) {
	f.present = true
	f.Interval = 5 * time.Second
	p.mapping(n, "failover", func(key string, k, v *yaml.Node) {
		switch key {
		case "failover.interval":
			f.Interval = p.duration(v, key)
		case "failover.timeout":
			f.Timeout = p.duration(v, key)
		case "failover.rise":
			f.Rise = p.integer(v, key, 1)
		case "failover.fall":
			f.Fall = p.integer(v, key, 1)
		case "failover.local":
			f.Local = p.addrList(v, key, 53)
		case "failover.remote":
			f.Remote = p.addrList(v, key, 53)
		case "failover.canary":
			p.mapping(v, key, func(key string, k, v *yaml.Node) {
				switch key {
				case "failover.canary.name":
					f.Name = dns.Fqdn(p.domain(v, key))
				case "failover.canary.type":
					t, ok := dns.StringToType[strings.ToUpper(p.str(v, key))]
					if !ok {
						p.errorf(v, key, "%q is not a record type", v.Value)
					}
					f.Type = t
				case "failover.canary.expect":
					f.Expect = p.str(v, key)
				default:
					p.errorf(k, key, "unknown key")
				}
			})
		default:
			p.errorf(k, key, "unknown key")
		}
	})
	if err := f.FailoverConfig.Validate(); err != nil {
		p.errorf(n, "failover", "%s", strings.TrimPrefix(err.Error(), "failover: "))
	}
}

// upstreamProber adapts the resolver to fabric.Prober: fabric never imports the resolver.
type upstreamProber struct{ s *resolver.Server }

func (u upstreamProber) Probe(ctx context.Context, a netip.AddrPort, name string, qtype uint16) ([]string, error) {
	return u.s.AskUpstream(ctx, a, name, qtype)
}

var _ fabric.UpstreamSetter = (*resolver.Server)(nil)

// newFailover builds the failover controller, if configured (nil if not).
func newFailover(cfg failoverConfig, srv *resolver.Server, log *slog.Logger) (*fabric.Failover, error) {
	if !cfg.present {
		return nil, nil
	}
	return fabric.NewFailover(cfg.FailoverConfig, upstreamProber{srv}, srv, log.With("component", "failover"))
}

// failoverStatus is what `fleetdns ctl failover` shows.
func failoverStatus(f *fabric.Failover) any {
	st := f.Status()
	return map[string]any{"state": st.State.String(), "since": st.Since, "transitions": st.Transitions, "evidence": st.Evidence}
}
