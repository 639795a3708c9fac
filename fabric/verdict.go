package fabric

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// ReasonShared is the reason a node stays announced while its upstreams fail for every node.
const ReasonShared = "shared upstream failure: serving cache and stale"

// Probes are the checks of one health round, run in parallel each interval.
type Probes struct {
	// Local proves the node's own listener and pipeline answer, without the upstreams (cmd asks
	// the node's listen address for id.server. CH TXT).
	Local Check
	// Upstream is the node's own path to the upstreams (the health name, cache bypassed).
	Upstream Check
	// Siblings ask the other nodes, at their unicast addresses, the same upstream question:
	// each resolves it through its own path.
	Siblings []Sibling
}

// Sibling is one other node and the probe that asks it.
type Sibling struct {
	Name  string // its address, for status and logs
	Check Check
}

// Round is what the probes of one round found: nil is a pass.
type Round struct {
	Local    error
	Upstream error
	Siblings []error // one per Probes.Siblings, in order
}

// Verdict is the decision of one round, before hysteresis.
type Verdict struct {
	OK     bool   // the node should be announced
	Shared bool   // announced only because the upstream failure is shared by every node
	Reason string // why, for status, logs and the health endpoint
}

// Decide turns one round into a verdict. A node withdraws for faults of its own, never for a
// fault every node shares:
//   - the local probe fails: the node cannot serve: withdraw;
//   - local and upstream pass: announce;
//   - the upstream fails and at least one sibling passes: this node's own path is cut, the
//     siblings can take its traffic: withdraw;
//   - the upstream fails and every sibling fails too: the fault is shared; withdrawing would
//     take the anycast address down everywhere, and with it the answers the caches still hold:
//     stay announced (ReasonShared);
//   - the upstream fails and no siblings are configured: nothing tells a shared fault from a
//     node's own, so the node withdraws (the behaviour without siblings).
func Decide(r Round, names []string) Verdict {
	if r.Local != nil {
		return Verdict{Reason: "local probe failed: " + r.Local.Error()}
	}
	if r.Upstream == nil {
		return Verdict{OK: true, Reason: "ok"}
	}
	if len(r.Siblings) == 0 {
		return Verdict{Reason: "upstream probe failed, no siblings configured to tell a shared fault: " + r.Upstream.Error()}
	}
	var passing []string
	for i, err := range r.Siblings {
		if err == nil {
			name := fmt.Sprint("sibling ", i)
			if i < len(names) {
				name = names[i]
			}
			passing = append(passing, name)
		}
	}
	if len(passing) > 0 {
		return Verdict{Reason: fmt.Sprintf("upstream probe failed here while %s passes: this node's path is cut: %v",
			strings.Join(passing, ", "), r.Upstream)}
	}
	return Verdict{OK: true, Shared: true, Reason: ReasonShared}
}

// run runs every probe of a round in parallel, each with ctx (which carries the timeout).
func (p Probes) run(ctx context.Context) Round {
	r := Round{Siblings: make([]error, len(p.Siblings))}
	var wg sync.WaitGroup
	call := func(c Check, dst *error) {
		wg.Go(func() {
			if c == nil {
				return
			}
			*dst = c(ctx)
		})
	}
	call(p.Local, &r.Local)
	call(p.Upstream, &r.Upstream)
	for i, s := range p.Siblings {
		call(s.Check, &r.Siblings[i])
	}
	wg.Wait()
	return r
}

func (p Probes) names() []string {
	out := make([]string, len(p.Siblings))
	for i, s := range p.Siblings {
		out[i] = s.Name
	}
	return out
}
