package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/fleetdns/fleetdns/resolver"
)

// runCtl talks to a running fleetdns over its control socket.
func runCtl(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", defaultControlSocket, "control socket of the running fleetdns")
	asJSON := fs.Bool("json", false, "print the answer as JSON, for scripts")
	service := fs.String("user", defaultServiceUser, "the user fleetdns runs as (name or uid): ctl answers only from a socket of root, of you or of this user")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "user" })
	tr, err := newTrust(*service, explicit)
	if err != nil {
		fmt.Fprintf(stderr, "fleetdns ctl: %v\n", err)
		return 2
	}
	verb, arg := fs.Arg(0), fs.Arg(1)
	switch verb {
	case "stats", "cache-dump", "forwards", "reload", "bgp", "failover":
	case "flush", "flush-zone":
		if arg == "" {
			fmt.Fprintf(stderr, "fleetdns ctl %s: a name is needed\n", verb)
			return 2
		}
	default:
		fmt.Fprintln(stderr, "usage: fleetdns ctl [-socket PATH] [-user NAME] [-json] stats | flush NAME | flush-zone ZONE | cache-dump | forwards | reload | bgp | failover")
		return 2
	}
	resp, err := ask(*socket, tr, resolver.ControlRequest{Verb: verb, Arg: arg})
	if err != nil {
		fmt.Fprintf(stderr, "fleetdns ctl: %v\n", err)
		return 1
	}
	if !resp.OK {
		fmt.Fprintf(stderr, "fleetdns ctl %s: %s\n", verb, resp.Error)
		return 1
	}
	if *asJSON {
		var out bytes.Buffer
		json.Indent(&out, resp.Data, "", "  ")
		fmt.Fprintln(stdout, out.String())
		return 0
	}
	if err := printHuman(stdout, verb, resp.Data); err != nil {
		fmt.Fprintf(stderr, "fleetdns ctl: %v\n", err)
		return 1
	}
	return 0
}

// ask sends req and reads the answer, once both the socket file and the process listening on
// it are known to belong to a trusted user: nothing is sent before.
func ask(socket string, tr trust, req resolver.ControlRequest) (resolver.ControlResponse, error) {
	var resp resolver.ControlResponse
	if err := tr.checkFile(socket); err != nil {
		return resp, err
	}
	c, err := net.DialTimeout("unix", socket, 2*time.Second)
	if err != nil {
		return resp, err
	}
	defer c.Close()
	if err := tr.checkPeer(socket, c); err != nil {
		return resp, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	b, _ := json.Marshal(req)
	if _, err := c.Write(append(b, '\n')); err != nil {
		return resp, err
	}
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		return resp, fmt.Errorf("reading the answer: %w", err)
	}
	return resp, json.Unmarshal(line, &resp)
}

func printHuman(w io.Writer, verb string, data json.RawMessage) error {
	switch verb {
	case "stats":
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber() // counters as integers, not 1.234567e+06
		if err := d.Decode(&m); err != nil {
			return err
		}
		var lines []string
		flatten("", m, &lines)
		sort.Strings(lines)
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	case "flush", "flush-zone":
		var m map[string]int
		if err := json.Unmarshal(data, &m); err != nil {
			return err
		}
		fmt.Fprintf(w, "removed %d cached answers\n", m["removed"])
	case "cache-dump":
		var entries []resolver.DumpEntry
		if err := json.Unmarshal(data, &entries); err != nil {
			return err
		}
		for _, e := range entries {
			flags := ""
			if e.Flags != "" {
				flags = " " + e.Flags
			}
			fmt.Fprintf(w, "%s %s %s%s ttl=%d %s %s\n", e.Name, e.Class, e.Type, flags, e.TTL, e.Rcode, strings.Join(e.Records, " | "))
		}
	case "forwards":
		var zones []resolver.ForwardStatus
		if err := json.Unmarshal(data, &zones); err != nil {
			return err
		}
		for _, z := range zones {
			if z.Note != "" {
				fmt.Fprintf(w, "%s  [%s]\n", z.Zone, z.Note)
			} else {
				fmt.Fprintln(w, z.Zone)
			}
			for _, u := range z.Upstreams {
				health := "healthy"
				if !u.Healthy {
					health = "down"
				}
				proto := "udp"
				if u.TCP {
					proto = "tcp"
				}
				fmt.Fprintf(w, "  %s %s %s srtt=%.1fms failures=%d queries=%d\n", u.Addr, proto, health, u.SRTTms, u.Fails, u.Queries)
			}
		}
	case "bgp":
		var st struct {
			Peers []struct {
				Address string        `json:"address"`
				ASN     uint32        `json:"asn"`
				State   string        `json:"state"`
				Uptime  time.Duration `json:"uptime"`
			} `json:"peers"`
			Prefixes []struct {
				Prefix, Priority, Reason string
				Announced                bool
				Graceful                 bool `json:"graceful_shutdown"`
			} `json:"prefixes"`
			Health *healthView `json:"health"`
			Via    string      `json:"via"`
			Kernel *struct {
				Device  string
				Table   int
				Created bool
			} `json:"kernel"`
		}
		if err := json.Unmarshal(data, &st); err != nil {
			return err
		}
		if st.Via != "" && st.Via != "bgp" {
			fmt.Fprintf(w, "announce via %s\n", st.Via)
		}
		if k := st.Kernel; k != nil {
			where := "addresses on " + k.Device
			if k.Table != 0 {
				where = fmt.Sprintf("routes in table %d via %s", k.Table, k.Device)
			}
			if k.Created {
				where += " (created by fleetdns: gone when it exits)"
			}
			fmt.Fprintf(w, "  %s\n", where)
		}
		if st.Via == "" || st.Via == "bgp" {
			fmt.Fprintln(w, "peers")
		}
		for _, p := range st.Peers {
			if p.State == "established" {
				fmt.Fprintf(w, "  %s AS%d %s up %s\n", p.Address, p.ASN, p.State, p.Uptime.Round(time.Second))
			} else {
				fmt.Fprintf(w, "  %s AS%d %s\n", p.Address, p.ASN, p.State)
			}
		}
		if len(st.Prefixes) > 0 {
			fmt.Fprintln(w, "prefixes")
		}
		for _, p := range st.Prefixes {
			state := "withdrawn"
			if p.Announced {
				state = "announced"
				if p.Graceful {
					state = "announced with GRACEFUL_SHUTDOWN"
				}
			}
			fmt.Fprintf(w, "  %s %s %s (%s)\n", p.Prefix, p.Priority, state, p.Reason)
		}
		if st.Health != nil {
			st.Health.progress(w)
			st.Health.print(w)
		}
	case "failover":
		var m map[string]any
		if err := json.Unmarshal(data, &m); err != nil {
			return err
		}
		fmt.Fprintf(w, "state %v since %v (%v transitions)\nevidence: %v\n", m["state"], m["since"], m["transitions"], m["evidence"])
	case "reload":
		var m map[string]string
		if err := json.Unmarshal(data, &m); err != nil {
			return err
		}
		fmt.Fprintln(w, m["result"])
	}
	return nil
}

// healthView is the health section of `fleetdns ctl bgp`.
type healthView struct {
	Healthy     bool   `json:"healthy"`
	Reason      string `json:"reason"`
	SharedFault bool   `json:"shared_fault"`
	Local       string `json:"local"`
	Upstream    string `json:"upstream"`
	Siblings    []struct {
		Name   string `json:"name"`
		Result string `json:"result"`
	} `json:"siblings"`
	Checks    uint64    `json:"checks"`
	LastError string    `json:"last_error"`
	Streak    int       `json:"streak"`
	Need      int       `json:"need"`
	LastCheck time.Time `json:"last_check"`
	NextCheck time.Time `json:"next_check"`
}

func (h *healthView) print(w io.Writer) {
	state := "unhealthy"
	if h.Healthy {
		state = "healthy"
	}
	if h.SharedFault {
		state += ", shared fault"
	}
	fmt.Fprintf(w, "health %s (%s)\n  local: %s\n  upstream: %s\n", state, h.Reason, h.Local, h.Upstream)
	if len(h.Siblings) == 0 {
		fmt.Fprintln(w, "  siblings: none configured")
	}
	for _, s := range h.Siblings {
		fmt.Fprintf(w, "  sibling %s: %s\n", s.Name, s.Result)
	}
}

// progress says why the node is (not yet) announced and when that can change: the last check,
// how many more must agree, and when the next one runs.
func (h *healthView) progress(w io.Writer) {
	if h.Checks == 0 {
		fmt.Fprintln(w, "  no health check run yet")
		return
	}
	last := "passed"
	if h.LastError != "" {
		last = "failed: " + h.LastError
	}
	toward, verdict := "healthy", "passing"
	if h.Healthy {
		toward, verdict = "unhealthy", "failing"
	}
	fmt.Fprintf(w, "  last check %s %s\n  towards %s: %d of %d %s checks, next check in %s\n",
		h.LastCheck.Format(time.TimeOnly+".000"), last, toward, h.Streak, h.Need, verdict,
		max(0, time.Until(h.NextCheck)).Round(time.Millisecond))
}

func flatten(prefix string, m map[string]any, out *[]string) {
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			flatten(prefix+k+".", sub, out)
			continue
		}
		*out = append(*out, fmt.Sprintf("%s%s %v", prefix, k, v))
	}
}
