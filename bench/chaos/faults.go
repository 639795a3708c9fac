package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Fault is the network fault the stub namespace's nftables table makes on the veth to the
// upstream. The zero Fault drops nothing (but still counts).
type Fault struct {
	LossPercent int  // each UDP packet, in and out, is dropped with this probability (0-100)
	Blackhole   bool // every UDP and TCP packet to and from the upstream is dropped
}

func (f Fault) String() string {
	switch {
	case f.Blackhole:
		return "upstream blackholed (100% of UDP and TCP dropped both ways)"
	case f.LossPercent > 0:
		return fmt.Sprintf("%d%% of UDP packets dropped both ways", f.LossPercent)
	}
	return "no loss"
}

// Mechanism says how faults are made, for the report.
const Mechanism = "nftables, in the input hook of each namespace matched on its end of the veth (so " +
	"loopback traffic between the load generator and the systems is never touched): packets from the " +
	"upstream are dropped in the stub namespace, packets to it in the upstream namespace; loss is " +
	"`numgen random mod 100 < N drop` on UDP each way, the blackhole a `drop` of all UDP and TCP; no netem. " +
	"Not the output hook: a drop there fails the sender's sendto() with EPERM (and a TCP connect at once), " +
	"which a resolver sees as an error, not as a lost packet"

const nftTable = "fdc_chaos"

// checkNft fails clearly when nftables cannot be used: the lab has no other way to drop packets
// (this kernel has no netem).
func checkNft() error {
	for _, ns := range []string{StubNS, UpNS} {
		cmd, err := nft(context.Background(), ns, "list", "ruleset")
		if err != nil {
			return errors.New("chaos lab: nft is not installed (Debian package nftables); the lab drops packets with nftables")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("chaos lab: nft does not work in network namespace %s (kernel without nf_tables?): %v: %s",
				ns, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// ruleset is the whole table of one namespace for f, where packets arrive on iface, replaced in
// one transaction (declaring the table first makes the delete safe when it does not exist yet).
// Its counters start at zero with each fault: "seen" counts every UDP packet arriving on the
// veth, "dropped" what was dropped.
func ruleset(f Fault, iface string) string {
	var rules strings.Builder
	fmt.Fprintf(&rules, "\t\tiifname %q meta l4proto udp counter name \"seen\"\n", iface)
	switch {
	case f.Blackhole:
		fmt.Fprintf(&rules, "\t\tiifname %q meta l4proto { udp, tcp } counter name \"dropped\" drop\n", iface)
	case f.LossPercent > 0:
		fmt.Fprintf(&rules, "\t\tiifname %q meta l4proto udp numgen random mod 100 < %d counter name \"dropped\" drop\n", iface, f.LossPercent)
	}
	return fmt.Sprintf(`table inet %[1]s
delete table inet %[1]s
table inet %[1]s {
	counter seen {}
	counter dropped {}
	chain input {
		type filter hook input priority filter; policy accept;
%[2]s	}
}
`, nftTable, rules.String())
}

// SetFault replaces both namespaces' rules with those of f: first the direction to the
// upstream, then back, a few milliseconds apart.
func (l *Lab) SetFault(ctx context.Context, f Fault) error {
	if f.LossPercent < 0 || f.LossPercent > 100 {
		return fmt.Errorf("loss %d%%, want 0-100", f.LossPercent)
	}
	for _, side := range []struct{ ns, iface string }{{UpNS, upIf}, {StubNS, stubIf}} {
		cmd, err := nft(ctx, side.ns, "-f", "-")
		if err != nil {
			return err
		}
		cmd.Stdin = strings.NewReader(ruleset(f, side.iface))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("nft in %s (%s): %v: %s", side.ns, f, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// Counters are the packets nftables saw and dropped on the veth since the fault was set: In
// is from the upstream to the stub, Out from the stub to the upstream.
type Counters struct {
	UDPIn, UDPOut   int64 // UDP packets that arrived at the other end
	DropIn, DropOut int64 // packets dropped there (UDP, and TCP under a blackhole)
}

func (c Counters) String() string {
	pct := func(d, n int64) string {
		if n == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f%%", 100*float64(d)/float64(n))
	}
	return fmt.Sprintf("nft: upstream to stub %d UDP packets, %d dropped (%s); stub to upstream %d, %d dropped (%s)",
		c.UDPIn, c.DropIn, pct(c.DropIn, c.UDPIn), c.UDPOut, c.DropOut, pct(c.DropOut, c.UDPOut))
}

// Counters reads both tables' counters.
func (l *Lab) Counters(ctx context.Context) (Counters, error) {
	var c Counters
	var err error
	if c.UDPIn, c.DropIn, err = counters(ctx, StubNS); err != nil {
		return c, err
	}
	c.UDPOut, c.DropOut, err = counters(ctx, UpNS)
	return c, err
}

func counters(ctx context.Context, ns string) (udp, dropped int64, err error) {
	cmd, err := nft(ctx, ns, "-j", "list", "counters", "table", "inet", nftTable)
	if err != nil {
		return 0, 0, err
	}
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("nft list counters in %s: %w", ns, err)
	}
	var doc struct {
		Nftables []struct {
			Counter *struct {
				Name    string `json:"name"`
				Packets int64  `json:"packets"`
			} `json:"counter"`
		} `json:"nftables"`
	}
	if err := json.NewDecoder(bytes.NewReader(out)).Decode(&doc); err != nil {
		return 0, 0, fmt.Errorf("nft list counters in %s: %w", ns, err)
	}
	for _, o := range doc.Nftables {
		switch {
		case o.Counter == nil:
		case o.Counter.Name == "seen":
			udp = o.Counter.Packets
		case o.Counter.Name == "dropped":
			dropped = o.Counter.Packets
		}
	}
	return udp, dropped, nil
}

// nft is the command `nft args...` in the namespace ns.
func nft(ctx context.Context, ns string, args ...string) (*exec.Cmd, error) {
	ip, err := lookPath("ip")
	if err != nil {
		return nil, err
	}
	bin, err := lookPath("nft")
	if err != nil {
		return nil, err
	}
	return exec.CommandContext(ctx, ip, append([]string{"netns", "exec", ns, bin}, args...)...), nil
}
