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
	"github.com/prometheus/client_golang/prometheus"
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

// startFailover runs the failover controller, if configured, until ctx ends; it returns its
// metrics and its ctl verb.
func startFailover(ctx context.Context, cfg failoverConfig, srv *resolver.Server, log *slog.Logger, o *ops) (opsExtra, error) {
	if !cfg.present {
		return opsExtra{}, nil
	}
	f, err := fabric.NewFailover(cfg.FailoverConfig, upstreamProber{srv}, srv, log.With("component", "failover"))
	if err != nil {
		return opsExtra{}, err
	}
	o.wg.Go(func() {
		if err := f.Run(ctx); err != nil {
			log.Error("failover", "err", err)
		}
	})
	state := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "fleetdns_failover_state",
		Help: "Where the root zone's queries go: 0 local recursors, 1 failed over (remote added), 2 both failing.",
	}, func() float64 { return float64(f.Status().State) })
	transitions := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "fleetdns_failover_transitions_total", Help: "Changes of the failover state.",
	}, func() float64 { return float64(f.Status().Transitions) })
	return opsExtra{
		collectors: []prometheus.Collector{state, transitions},
		verbs: map[string]func() any{"failover": func() any {
			st := f.Status()
			return map[string]any{"state": st.State.String(), "since": st.Since, "transitions": st.Transitions, "evidence": st.Evidence}
		}},
	}, nil
}

// merge joins what two parts add to ops.
func (e opsExtra) merge(o opsExtra) opsExtra {
	e.collectors = append(e.collectors, o.collectors...)
	if e.verbs == nil {
		e.verbs = map[string]func() any{}
	}
	for k, v := range o.verbs {
		e.verbs[k] = v
	}
	return e
}
