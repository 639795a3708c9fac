package resolver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fleetdns/fleetdns/cache"
	"github.com/fleetdns/fleetdns/policy"
	"github.com/miekg/dns"
)

// ControlRequest is one line a client of the control socket sends.
type ControlRequest struct {
	Verb string `json:"verb"` // stats | flush | flush-zone | cache-dump | forwards | reload
	Arg  string `json:"arg,omitempty"`
}

// ControlResponse is the one line the server answers with.
type ControlResponse struct {
	OK    bool            `json:"ok"`
	Error string          `json:"error,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
}

// Control serves the control socket: a unix socket, mode 0600, in a directory only root and the
// service user can write to (created with mode 0750 if missing), so that only they can flush
// the cache or reload the config, and nobody else can answer in fleetdns's place.
type Control struct {
	Path   string
	Server *Server
	// Reload re-reads the configuration and returns a summary of what changed.
	Reload func() (string, error)
	// Status holds further read-only verbs (server mode adds "bgp").
	Status map[string]func() any
}

// Run listens until ctx ends and returns once every connection is served.
func (c *Control) Run(ctx context.Context) error {
	l, err := listenControl(c.Path)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		<-ctx.Done()
		l.Close()
	})
	defer func() {
		wg.Wait()
		os.Remove(c.Path)
	}()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			continue
		}
		wg.Go(func() {
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(30 * time.Second))
			c.serve(conn)
		})
	}
}

func (c *Control) serve(conn net.Conn) {
	var req ControlRequest
	line, err := bufio.NewReader(conn).ReadBytes('\n')
	if err == nil {
		err = json.Unmarshal(line, &req)
	}
	var resp ControlResponse
	if err != nil {
		resp.Error = "bad request: " + err.Error()
	} else if data, err := c.do(req); err != nil {
		resp.Error = err.Error()
	} else {
		resp.OK = true
		resp.Data, _ = json.Marshal(data)
	}
	b, _ := json.Marshal(resp)
	conn.Write(append(b, '\n'))
}

func (c *Control) do(req ControlRequest) (any, error) {
	s := c.Server
	switch req.Verb {
	case "stats":
		return s.Snapshot(), nil
	case "flush":
		return s.flush(req.Arg, false)
	case "flush-zone":
		return s.flush(req.Arg, true)
	case "cache-dump":
		return s.dump(s.now()), nil
	case "forwards":
		return s.forwards(), nil
	case "reload":
		if c.Reload == nil {
			return nil, errors.New("reload is not available")
		}
		summary, err := c.Reload()
		return map[string]string{"result": summary}, err
	}
	if f, ok := c.Status[req.Verb]; ok {
		return f(), nil
	}
	return nil, fmt.Errorf("unknown verb %q", req.Verb)
}

// Snapshot is the server's counters as one JSON-friendly value.
func (s *Server) Snapshot() map[string]any {
	st := &s.Stats
	pol := map[string]uint64{}
	for r := policy.Reason(1); r < policy.NumReasons; r++ {
		pol[r.String()] = st.Policy[r].Load()
	}
	answers := map[string]uint64{}
	for src := range st.Answers {
		if v := st.Answers[src].Load(); v > 0 {
			answers[source(src).String()] = v
		}
	}
	entries, bytes, evictions := s.cache.Totals()
	return map[string]any{
		"queries": st.Queries.Load(), "cache_hits": st.Hits(), "cache_misses": st.Misses.Load(),
		"prefetches": st.Prefetches.Load(), "stale_answers": st.answered(srcStale),
		"local_answers": st.answered(srcLocal, srcSynth), "refused": st.answered(srcRefused),
		"servfail": st.answered(srcServfail), "formerr": st.Formerr.Load(),
		"dropped": st.Dropped.Load(), "cache_entries": entries, "cache_bytes": bytes,
		"cache_evictions": evictions, "inflight": len(s.slots), "policy": pol, "answers": answers,
	}
}

// flush drops the cached answers for name (every type), or for every name under it.
func (s *Server) flush(name string, zone bool) (map[string]int, error) {
	if _, ok := dns.IsDomainName(name); !ok || name == "" {
		return nil, fmt.Errorf("%q is not a domain name", name)
	}
	q, err := cache.NewQuestion(name, 0, 0, false, false)
	if err != nil {
		return nil, err
	}
	want := string(q.Name)
	n := s.cache.RemoveIf(func(c cache.Question) bool {
		if !zone {
			return string(c.Name) == want
		}
		return dns.IsSubDomain(dns.Fqdn(name), wireToString(c.Name))
	})
	return map[string]int{"removed": n}, nil
}

// DumpEntry is one cached answer.
type DumpEntry struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Class   string   `json:"class"`
	Flags   string   `json:"flags,omitempty"` // do, cd
	TTL     int      `json:"ttl"`             // seconds left; negative once stale
	Rcode   string   `json:"rcode"`
	Records []string `json:"records"`
}

func (s *Server) dump(now time.Time) []DumpEntry {
	var out []DumpEntry
	s.cache.Range(func(q cache.Question, e *cache.Entry) bool {
		d := DumpEntry{Name: wireToString(q.Name), Type: dns.TypeToString[q.Type], Class: dns.ClassToString[q.Class],
			TTL: int(e.Remaining(now).Round(time.Second) / time.Second), Rcode: dns.RcodeToString[e.Rcode()]}
		var flags []string
		if q.DO {
			flags = append(flags, "do")
		}
		if q.CD {
			flags = append(flags, "cd")
		}
		d.Flags = strings.Join(flags, ",")
		if m, err := e.Msg(); err == nil {
			for _, rr := range append(m.Answer, m.Ns...) {
				d.Records = append(d.Records, strings.ReplaceAll(rr.String(), "\t", " "))
			}
		}
		out = append(out, d)
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Type < out[j].Type
	})
	return out
}

// ForwardStatus is one forward zone with the state of its upstreams.
type ForwardStatus struct {
	Zone      string           `json:"zone"`
	Note      string           `json:"note,omitempty"` // e.g. the failover controller's state and evidence
	Upstreams []UpstreamReport `json:"upstreams"`
}

// UpstreamReport is an upstream's health and RTT as ctl shows them.
type UpstreamReport struct {
	Addr    string  `json:"addr"`
	TCP     bool    `json:"tcp,omitempty"`
	Healthy bool    `json:"healthy"`
	SRTTms  float64 `json:"srtt_ms"`
	Fails   int     `json:"consecutive_failures"`
	Queries uint64  `json:"queries"`
}

func (s *Server) forwards() []ForwardStatus {
	var out []ForwardStatus
	for _, p := range s.Forwarder().Pools() {
		fs := ForwardStatus{Zone: p.Zone, Note: p.Note}
		for _, u := range p.Upstreams {
			st := u.Status()
			var n uint64
			for _, c := range u.Counts().Results {
				n += c
			}
			fs.Upstreams = append(fs.Upstreams, UpstreamReport{Addr: u.Addr.String(), TCP: u.TCP, Healthy: st.Healthy,
				SRTTms: float64(st.SRTT.Microseconds()) / 1000, Fails: st.Fails, Queries: n})
		}
		out = append(out, fs)
	}
	return out
}

func wireToString(wire []byte) string {
	name, _, err := dns.UnpackDomainName(wire, 0)
	if err != nil {
		return "."
	}
	return name
}
