package resolver

import (
	"encoding/binary"

	"github.com/fleetdns/fleetdns/policy"
	"github.com/fleetdns/fleetdns/resolver/upstream"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Counters on the query path are plain atomics (Stats, Upstream), turned into Prometheus
// metrics only when scraped: a labelled Prometheus counter costs a map lookup per increment,
// which a cache hit of 150 ns cannot afford.

// typeSlots are the query types counted by name; every other type counts as "other".
var typeSlots = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeMX, dns.TypeTXT, dns.TypePTR,
	dns.TypeSRV, dns.TypeNS, dns.TypeSOA, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeANY, dns.TypeCAA, dns.TypeDS,
	dns.TypeDNSKEY}

const numTypeSlots = 16 // len(typeSlots) + "other"

// typeSlot is the index of t in typeSlots, or len(typeSlots) for any other type. A switch, not
// a loop: it runs on every cache hit.
func typeSlot(t uint16) int {
	switch t {
	case dns.TypeA:
		return 0
	case dns.TypeAAAA:
		return 1
	case dns.TypeCNAME:
		return 2
	case dns.TypeMX:
		return 3
	case dns.TypeTXT:
		return 4
	case dns.TypePTR:
		return 5
	case dns.TypeSRV:
		return 6
	case dns.TypeNS:
		return 7
	case dns.TypeSOA:
		return 8
	case dns.TypeHTTPS:
		return 9
	case dns.TypeSVCB:
		return 10
	case dns.TypeANY:
		return 11
	case dns.TypeCAA:
		return 12
	case dns.TypeDS:
		return 13
	case dns.TypeDNSKEY:
		return 14
	}
	return len(typeSlots)
}

func typeSlotName(i int) string {
	if i < len(typeSlots) {
		return dns.TypeToString[typeSlots[i]]
	}
	return "other"
}

const numSources = int(srcSlipped) + 1

// count records one reply by query type, rcode and where it came from.
func (s *Server) count(resp []byte, src source) {
	if len(resp) < 12 {
		return
	}
	s.Stats.Answers[src].Add(1)
	slot := len(typeSlots)
	if binary.BigEndian.Uint16(resp[4:]) == 1 {
		off := 12
		for off < len(resp) && resp[off] != 0 && resp[off]&0xc0 == 0 {
			off += int(resp[off]) + 1
		}
		if off+3 <= len(resp) {
			slot = typeSlot(binary.BigEndian.Uint16(resp[off+1:]))
		}
	}
	s.Stats.Requests[slot][resp[3]&0xf].Add(1)
}

var (
	descRequests   = prometheus.NewDesc("fleetdns_requests_total", "Queries answered, by query type and response code.", []string{"type", "rcode"}, nil)
	descAnswers    = prometheus.NewDesc("fleetdns_answers_total", "Answers by where they came from: local (local zones and data, junk guard, AAAA block), synthesized, cache, prefetch (a hit that started a refresh), upstream, stale, servfail, refused, error, rate_limited (truncated by rate_limit).", []string{"source"}, nil)
	descPolicy     = prometheus.NewDesc("fleetdns_policy_decisions_total", "Queries answered by a policy rule.", []string{"rule"}, nil)
	descHits       = prometheus.NewDesc("fleetdns_cache_hits_total", "Queries answered from a fresh cache entry.", nil, nil)
	descMisses     = prometheus.NewDesc("fleetdns_cache_misses_total", "Queries that found no fresh cache entry.", nil, nil)
	descPrefetches = prometheus.NewDesc("fleetdns_cache_prefetches_total", "Background refreshes of answers in the last 10% of their TTL.", nil, nil)
	descStale      = prometheus.NewDesc("fleetdns_cache_stale_answers_total", "Expired answers served because the upstreams failed or were slow (RFC 8767).", nil, nil)
	descEntries    = prometheus.NewDesc("fleetdns_cache_entries", "Answers in the cache.", nil, nil)
	descCacheBytes = prometheus.NewDesc("fleetdns_cache_bytes", "Size of the answers in the cache as cache.max_bytes counts it: packed answers and their index, plus a fixed per-answer overhead.", nil, nil)
	descEvictions  = prometheus.NewDesc("fleetdns_cache_evictions_total", "Answers pushed out of the cache to make room, by cache.size or cache.max_bytes.", nil, nil)
	descInflight   = prometheus.NewDesc("fleetdns_inflight_queries", "Queries waiting for an upstream.", nil, nil)
	descDropped    = prometheus.NewDesc("fleetdns_dropped_queries_total", "Queries not resolved because too many were waiting for upstreams: dropped over UDP, REFUSED over TCP.", nil, nil)
	descUpQueries  = prometheus.NewDesc("fleetdns_upstream_queries_total", "Queries sent to upstreams, by forward zone, upstream and result.", []string{"zone", "upstream", "result"}, nil)
	descUpRTT      = prometheus.NewDesc("fleetdns_upstream_rtt_seconds", "Round-trip time of upstream queries that got an answer.", []string{"zone", "upstream"}, nil)
	descUpHealthy  = prometheus.NewDesc("fleetdns_upstream_healthy", "1 while an upstream is considered healthy, 0 while it is marked down.", []string{"zone", "upstream"}, nil)
	descLimits     = prometheus.NewDesc("fleetdns_limit_hits_total", "Times a limit on what clients may hold was hit, by limit: inflight_per_client (a miss over its client's share of the in-flight slots: dropped over UDP, REFUSED over TCP), tcp_conns (a connection closed at accept, all TCP slots taken), tcp_conns_per_client (closed at accept, its client had its share of them), tcp_access_control (a client outside access control closed, at accept or after its REFUSED answer), tcp_pipeline (a connection reached its cap of misses in flight and was not read until one was answered), tcp_write_timeout (closed because a reply could not be written in time: a client that does not read), tcp_lifetime (closed at its lifetime cap), tcp_queries_per_conn (closed after its cap of queries), udp_query_size (a UDP query too large to read whole, answered FORMERR), rrl_dropped (a UDP answer over its client prefix's rate_limit, dropped), rrl_slipped (one over it sent truncated, for the client to retry over TCP).", []string{"limit"}, nil)
	descTCPConns   = prometheus.NewDesc("fleetdns_tcp_connections", "Open client TCP connections.", nil, nil)
	descMismatched = prometheus.NewDesc("fleetdns_upstream_mismatched_responses_total", "Responses ignored because address, port, ID or question did not match the query (RFC 5452).", nil, nil)
	descRetrans    = prometheus.NewDesc("fleetdns_upstream_retransmits_total", "Packets sent again because a query's own timer ran out (loss, or a slow upstream).", nil, nil)
	descRetransCap = prometheus.NewDesc("fleetdns_upstream_retransmits_denied_total", "Retransmissions not sent because the forward zone's retransmission budget (earned by answers) was spent.", nil, nil)
)

// collector exposes a Server's counters.
type collector struct{ s *Server }

// Collector returns the server's metrics, for the caller to register.
func (s *Server) Collector() prometheus.Collector { return collector{s} }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRequests, descAnswers, descPolicy, descHits, descMisses,
		descPrefetches, descStale, descEntries, descCacheBytes, descEvictions, descInflight, descDropped,
		descUpQueries, descUpRTT, descUpHealthy, descMismatched, descLimits, descTCPConns, descRetrans,
		descRetransCap} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	st := &s.Stats
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for t := range st.Requests {
		for rc := range st.Requests[t] {
			if v := st.Requests[t][rc].Load(); v > 0 {
				counter(descRequests, v, typeSlotName(t), dns.RcodeToString[rc])
			}
		}
	}
	for src := range st.Answers {
		if src != int(srcMiss) && src != int(srcDrop) {
			counter(descAnswers, st.Answers[src].Load(), source(src).String())
		}
	}
	for r := policy.Reason(1); r < policy.NumReasons; r++ {
		counter(descPolicy, st.Policy[r].Load(), r.String())
	}
	counter(descHits, st.Hits())
	counter(descMisses, st.Misses.Load())
	counter(descPrefetches, st.Prefetches.Load())
	counter(descStale, st.answered(srcStale))
	entries, bytes, evictions := s.cache.Totals()
	gauge(descEntries, float64(entries))
	gauge(descCacheBytes, float64(bytes))
	counter(descEvictions, evictions)
	gauge(descInflight, float64(len(s.slots)))
	counter(descDropped, st.Dropped.Load())
	for l := range limit(numLimits) {
		counter(descLimits, st.Limits[l].Load(), l.String())
	}
	gauge(descTCPConns, float64(s.tcpConns.open()))
	fwd := s.Forwarder()
	counter(descMismatched, fwd.Mismatched())
	counter(descRetrans, fwd.Retransmits())
	counter(descRetransCap, fwd.BudgetDenied())
	for _, p := range fwd.Pools() {
		for _, u := range p.Upstreams {
			addr := u.Addr.String()
			c := u.Counts()
			for r := upstream.Result(0); r < upstream.NumResults; r++ {
				counter(descUpQueries, c.Results[r], p.Zone, addr, r.String())
			}
			buckets := make(map[float64]uint64, len(upstream.RTTBuckets))
			var cum uint64
			for i, b := range upstream.RTTBuckets {
				cum += c.RTT[i]
				buckets[b.Seconds()] = cum
			}
			total := cum + c.RTT[len(upstream.RTTBuckets)]
			ch <- prometheus.MustNewConstHistogram(descUpRTT, total, c.RTTSum.Seconds(), buckets, p.Zone, addr)
			healthy := 0.0
			if u.Status().Healthy {
				healthy = 1
			}
			gauge(descUpHealthy, healthy, p.Zone, addr)
		}
	}
}
