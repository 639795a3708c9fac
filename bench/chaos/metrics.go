package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fleetdns/fleetdns/bench"
)

// fleetdnsMetrics reads fleetdns's Prometheus endpoint (in the stub namespace) and returns the
// counters the lab reports, by their full series name. The connection is made on a thread in
// the namespace, so plain HTTP/1.0 over it is simpler than teaching net/http's dialer goroutines.
func (l *Lab) fleetdnsMetrics(ctx context.Context) (map[string]float64, error) {
	return fleetdnsMetricsIn(ctx, StubNS)
}

// fleetdnsMetricsIn reads the metrics of the fleetdns that listens on metricsAddr in ns.
func fleetdnsMetricsIn(ctx context.Context, ns string) (map[string]float64, error) {
	var resp []byte
	err := bench.InNetns(ns, func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp", metricsAddr.String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", metricsAddr); err != nil {
			return err
		}
		resp, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("fleetdns metrics: %w", err)
	}
	r, err := http.ReadResponse(bufio.NewReader(strings.NewReader(string(resp))), nil)
	if err != nil {
		return nil, fmt.Errorf("fleetdns metrics: %w", err)
	}
	defer r.Body.Close()
	if r.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fleetdns metrics: %s", r.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !reportedMetric(line) {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m, sc.Err()
}

func reportedMetric(line string) bool {
	for _, p := range []string{"fleetdns_upstream_queries_total{", "fleetdns_answers_total{", "fleetdns_cache_stale_answers_total",
		"fleetdns_cache_prefetches_total", "fleetdns_dropped_queries_total"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

// metricsSummary is the change of each reported counter, one "name value" per series, short:
// fleetdns_upstream_queries_total{result="timeout",...} becomes upstream{timeout}.
func metricsSummary(before, after map[string]float64) string {
	var parts []string
	for k, v := range after {
		d := v - before[k]
		if d == 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.0f", shortName(k), d))
	}
	sort.Strings(parts)
	return "fleetdns counters over the load: " + strings.Join(parts, ", ")
}

func shortName(series string) string {
	name, labels, _ := strings.Cut(series, "{")
	name = strings.TrimSuffix(strings.TrimPrefix(name, "fleetdns_"), "_total")
	var kind, upstream string
	for l := range strings.SplitSeq(strings.TrimSuffix(labels, "}"), ",") {
		k, v, ok := strings.Cut(l, "=")
		switch {
		case ok && (k == "result" || k == "source"):
			kind = strings.Trim(v, `"`)
		case ok && k == "upstream":
			upstream = " " + strings.Trim(v, `"`) // a stub with several upstreams (the fabric)
		}
	}
	if kind == "" {
		return name
	}
	return name + "{" + kind + upstream + "}"
}
