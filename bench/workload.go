package bench

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"

	"github.com/miekg/dns"
)

// ZoneName is the upstream's zone; every workload asks for names in it.
const ZoneName = "bench.test."

// The workloads, in the order a round runs them on a freshly started system: the mix first,
// while the cache is cold.
var (
	WorkloadMix     = Workload{Name: "mix", Description: "cold start, Zipf-distributed names over the zone, A and AAAA half and half, 10% search-list junk, 5% NXDOMAIN (closed loop)"}
	WorkloadHits    = Workload{Name: "hits", Description: "cache hits over 1 000 names (closed loop, 200 outstanding)"}
	WorkloadLatency = Workload{Name: "latency", Description: "cache hits at a fixed 20 000 queries/s (open loop)", Rate: 20000}
	WorkloadMisses  = Workload{Name: "misses", Description: "cache misses only: every name new, each one an upstream query (closed loop)"}
)

// WriteZone writes the upstream zone: names h0..h(n-1) with an A and an AAAA record each, and
// a wildcard under miss. so that every never-asked name there resolves (the misses workload).
// NXDOMAIN names (nx*) and junk (a name with the zone twice) fall outside both.
func WriteZone(path string, names int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, "$ORIGIN %s\n$TTL 86400\n@ IN SOA ns.%s h.%s 1 3600 900 604800 300\n@ IN NS ns\nns IN A 192.0.2.1\n",
		ZoneName, ZoneName, ZoneName)
	fmt.Fprintf(w, "*.miss IN A 192.0.2.2\n")
	for i := range names {
		fmt.Fprintf(w, "h%d IN A 198.51.100.%d\nh%d IN AAAA 2001:db8::%x\n", i, i%254+1, i, i%65535+1)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func packQuery(name string, qtype uint16) []byte {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.Id = 0 // the load generator writes its own
	m.SetEdns0(1232, false)
	b, err := m.Pack()
	if err != nil {
		panic(fmt.Sprintf("bench: pack %s: %v", name, err)) // names are generated here, always valid
	}
	return b
}

// HitQueries asks for h0..h(n-1) A.
func HitQueries(n int) [][]byte {
	qs := make([][]byte, n)
	for i := range qs {
		qs[i] = packQuery(fmt.Sprintf("h%d.%s", i, ZoneName), dns.TypeA)
	}
	return qs
}

// MixQueries draws total queries the way a fleet's resolvers see them: name popularity Zipf-
// distributed (a few names very often, a long tail rarely) over the zone's names, A and AAAA
// half and half, 10% search-list artefacts (the zone appended to a name already in it) and 5%
// names that do not exist. The same seed gives the same list, so every system gets the same.
func MixQueries(seed uint64, total, names int) [][]byte {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	zipf := rand.NewZipf(r, 1.1, 1, uint64(names-1))
	qs := make([][]byte, total)
	for i := range qs {
		qtype := dns.TypeA
		if r.IntN(2) == 1 {
			qtype = dns.TypeAAAA
		}
		n := zipf.Uint64()
		var name string
		switch p := r.IntN(100); {
		case p < 10:
			name = fmt.Sprintf("h%d.%s%s", n, ZoneName, ZoneName)
		case p < 15:
			name = fmt.Sprintf("nx%d.%s", n, ZoneName)
		default:
			name = fmt.Sprintf("h%d.%s", n, ZoneName)
		}
		qs[i] = packQuery(name, qtype)
	}
	return qs
}

// MissQueries asks for n names no system has seen: unique per round and system.
func MissQueries(tag string, n int) [][]byte {
	qs := make([][]byte, n)
	for i := range qs {
		qs[i] = packQuery(fmt.Sprintf("m%d.%s.miss.%s", i, tag, ZoneName), dns.TypeA)
	}
	return qs
}
