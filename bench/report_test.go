package bench

import (
	"encoding/json"
	"errors"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// spread returns n sorted latencies from first in steps of step.
func spread(first, step time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = first + time.Duration(i)*step
	}
	return out
}

// testReport builds a run whose medians, ratios and percentiles are known by construction:
//   - hits: unbound 3 rounds (odd median), fleetdns 2 rounds (even median), dnsmasq not run;
//   - misses: unbound not run, so its ratios are n/a;
//   - latency: open loop, every system 3 rounds.
func testReport() *Report {
	ms, us := time.Millisecond, time.Microsecond
	return &Report{
		Date:     time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
		Machine:  "AMD EPYC 7B13, 2 cores, Linux 6.8",
		Command:  "go run ./cmd/bench -rounds 3",
		Baseline: "unbound",
		Systems:  []string{"fleetdns", "unbound", "dnsmasq"},
		Versions: map[string]string{"fleetdns": "v0.3.0", "unbound": "1.19.2", "dnsmasq": "2.90"},
		Workloads: []Workload{
			{Name: "hits", Description: "cached answers"},
			{Name: "misses", Description: "every query goes upstream"},
			{Name: "latency", Description: "fixed offered load", Rate: 20000},
		},
		Samples: []Sample{
			// unbound hits: q/s 100k, 120k, 110k -> 110k; q/CPU-s the same (1 s of CPU).
			{System: "unbound", Workload: "hits", Round: 1, Sent: 100000, Answered: 100000, Duration: time.Second, CPU: time.Second, Latencies: spread(1*ms, ms, 100)},
			{System: "unbound", Workload: "hits", Round: 2, Sent: 120000, Answered: 120000, Duration: time.Second, CPU: time.Second, Latencies: spread(2*ms, ms, 100)},
			{System: "unbound", Workload: "hits", Round: 3, Sent: 110000, Answered: 110000, Duration: time.Second, CPU: time.Second, Latencies: spread(3*ms, ms, 100)},
			// fleetdns hits: q/s 150k, 180k -> 165k (1.50×); q/CPU-s 200k, 240k -> 220k (2.00×);
			// lost 1% and 2% -> 1.50%; p50 50µs and 52µs -> 51µs.
			{System: "fleetdns", Workload: "hits", Round: 1, Sent: 200000, Answered: 150000, Lost: 2000, Duration: time.Second, CPU: 750 * ms, Latencies: spread(1*us, us, 100)},
			{System: "fleetdns", Workload: "hits", Round: 2, Sent: 200000, Answered: 180000, Lost: 4000, Duration: time.Second, CPU: 750 * ms, Latencies: spread(3*us, us, 100)},

			{System: "fleetdns", Workload: "misses", Round: 1, Sent: 50000, Answered: 50000, Duration: 2 * time.Second, CPU: time.Second, Latencies: spread(400*us, 20*us, 100)},
			{System: "dnsmasq", Workload: "misses", Round: 1, Sent: 1000000, Answered: 20000, Lost: 1, Duration: 2 * time.Second, CPU: 2 * time.Second},

			{System: "unbound", Workload: "latency", Round: 1, Sent: 200000, Answered: 200000, Duration: 10 * time.Second, CPU: 4 * time.Second, Latencies: spread(80*us, us, 1000)},
			{System: "unbound", Workload: "latency", Round: 2, Sent: 200000, Answered: 200000, Duration: 10 * time.Second, CPU: 4 * time.Second, Latencies: spread(90*us, 2*us, 1000)},
			{System: "unbound", Workload: "latency", Round: 3, Sent: 200000, Answered: 200000, Duration: 10 * time.Second, CPU: 4 * time.Second, Latencies: spread(70*us, us, 1000)},
			{System: "fleetdns", Workload: "latency", Round: 1, Sent: 200000, Answered: 200000, Duration: 10 * time.Second, CPU: 2 * time.Second, Latencies: spread(30*us, 100*time.Nanosecond, 5000)},
			{System: "fleetdns", Workload: "latency", Round: 2, Sent: 200000, Answered: 200000, Duration: 10 * time.Second, CPU: 2 * time.Second, Latencies: spread(32*us, 100*time.Nanosecond, 5000)},
			{System: "fleetdns", Workload: "latency", Round: 3, Sent: 200000, Answered: 200000, Duration: 10 * time.Second, CPU: 2 * time.Second, Latencies: spread(31*us, 100*time.Nanosecond, 5000)},
			{System: "dnsmasq", Workload: "latency", Round: 1, Sent: 200000, Answered: 199000, Lost: 1000, Duration: 10 * time.Second, CPU: 5 * time.Second, Latencies: spread(150*us, 10*us, 500)},
		},
		Notes: []string{"knot-resolver skipped: kresd not installed"},
	}
}

func TestReportMarkdownRows(t *testing.T) {
	md := testReport().Markdown()
	tests := []struct {
		name string
		want string
	}{
		{"header and command",
			"### Results\n\nMeasured 2025-03-04 05:06 UTC on AMD EPYC 7B13, 2 cores, Linux 6.8; ratios are against **unbound**. Command:\n\n```\ngo run ./cmd/bench -rounds 3\n```\n"},
		{"table header",
			"| System | Version | Rounds | Queries/s | vs unbound | Queries/CPU-s | vs unbound | Lost | p50 | p90 | p99 | p99.9 |\n"},
		{"baseline, odd rounds, 1..100ms percentiles of the middle round",
			"| unbound | 1.19.2 | 3 | 110,000 | 1.00× | 110,000 | 1.00× | 0% | 51ms | 91ms | 100ms | 101ms |\n"},
		{"even rounds, twice the baseline per CPU-second",
			"| fleetdns | v0.3.0 | 2 | 165,000 | 1.50× | 220,000 | 2.00× | 1.50% | 51µs | 91µs | 100µs | 101µs |\n"},
		{"system without samples",
			"| dnsmasq | 2.90 | not run | | | | | | | | | |\n"},
		{"baseline not run",
			"| fleetdns | v0.3.0 | 1 | 25,000 | n/a | 50,000 | n/a | 0% | 1.4ms | 2.2ms | 2.4ms | 2.4ms |\n"},
		{"tiny loss, no latencies",
			"| dnsmasq | 2.90 | 1 | 10,000 | n/a | 10,000 | n/a | <0.01% | n/a | n/a | n/a | n/a |\n"},
		{"open loop",
			"#### latency: fixed offered load\n\nOpen loop at 20,000 queries/s offered.\n"},
		{"open loop, medians of fractional microseconds round",
			"| fleetdns | v0.3.0 | 3 | 20,000 | 1.00× | 100,000 | 2.00× | 0% | 281µs | 481µs | 526µs | 530µs |\n"},
		{"notes", "\n#### Notes\n\n- knot-resolver skipped: kresd not installed\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(md, tc.want) {
				t.Errorf("Markdown() lacks\n%q\ngot\n%s", tc.want, md)
			}
		})
	}
}

func TestReportMarkdownOrder(t *testing.T) {
	md := testReport().Markdown()
	// Workloads in r.Workloads order, and within each, systems in r.Systems order.
	order := []string{"#### hits:", "| fleetdns |", "| unbound |", "| dnsmasq |",
		"#### misses:", "| fleetdns |", "| unbound |", "| dnsmasq |",
		"#### latency:", "| fleetdns |", "| unbound |", "| dnsmasq |", "#### Notes"}
	rest := md
	for _, s := range order {
		i := strings.Index(rest, s)
		if i < 0 {
			t.Fatalf("Markdown(): %q missing or out of order in\n%s", s, md)
		}
		rest = rest[i+len(s):]
	}
	if again := testReport().Markdown(); again != md {
		t.Errorf("Markdown() differs between calls:\n%s\nthen\n%s", md, again)
	}
}

func TestReportMarkdownFence(t *testing.T) {
	r := testReport()
	r.Command = "bench -tag ```x``` -n 1"
	want := "````\nbench -tag ```x``` -n 1\n````\n"
	if md := r.Markdown(); !strings.Contains(md, want) {
		t.Errorf("Markdown() of a command with backticks lacks %q:\n%s", want, md)
	}
}

func TestReportLatencyFormat(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{0, "0ns"},
		{850 * time.Nanosecond, "850ns"},
		{999 * time.Nanosecond, "999ns"},
		{1000 * time.Nanosecond, "1µs"},
		{8540 * time.Nanosecond, "8.5µs"},
		{85 * time.Microsecond, "85µs"},
		{999600 * time.Nanosecond, "1ms"},
		{1200 * time.Microsecond, "1.2ms"},
		{9960 * time.Microsecond, "10ms"},
		{100 * time.Millisecond, "100ms"},
		{1500 * time.Millisecond, "1.5s"},
	}
	for _, tc := range tests {
		if got := latency(tc.d); got != tc.want {
			t.Errorf("latency(%d) = %s, want %s", tc.d, got, tc.want)
		}
	}
}

func TestReportNumberFormat(t *testing.T) {
	tests := []struct {
		v           float64
		grouped, si string
	}{
		{0, "0", "0"},
		{999.4, "999", "999"},
		{1234.5, "1,235", "1.23k"},
		{250000, "250,000", "250k"},
		{999999, "999,999", "1M"},
		{1500000, "1,500,000", "1.5M"},
	}
	for _, tc := range tests {
		if got := grouped(tc.v); got != tc.grouped {
			t.Errorf("grouped(%v) = %s, want %s", tc.v, got, tc.grouped)
		}
		if got := si(tc.v); got != tc.si {
			t.Errorf("si(%v) = %s, want %s", tc.v, got, tc.si)
		}
	}
}

func TestPercentile(t *testing.T) {
	ms := time.Millisecond
	hundred := spread(ms, ms, 100)
	tests := []struct {
		name      string
		latencies []time.Duration
		p         float64
		want      time.Duration
	}{
		{"p50 of 1..100ms", hundred, 0.50, 50 * ms},
		{"p90 of 1..100ms", hundred, 0.90, 90 * ms},
		{"p99 of 1..100ms", hundred, 0.99, 99 * ms},
		{"p99.9 of 1..100ms is the maximum", hundred, 0.999, 100 * ms},
		{"p0 is the minimum", hundred, 0, 1 * ms},
		{"p100 is the maximum", hundred, 1, 100 * ms},
		{"just above a rank rounds up", hundred, 0.011, 2 * ms},
		{"0.07*100 is 7.000000000000001 in floating point", hundred, 0.07, 7 * ms},
		{"0.29*100 is 28.999999999999996 in floating point", hundred, 0.29, 29 * ms},
		{"one answer", []time.Duration{5 * ms}, 0.999, 5 * ms},
		{"no answers", nil, 0.5, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Sample{Latencies: tc.latencies}
			if got := s.Percentile(tc.p); got != tc.want {
				t.Errorf("Percentile(%v) = %v, want %v", tc.p, got, tc.want)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		name   string
		values []float64
		want   float64
	}{
		{"none", nil, 0},
		{"one", []float64{7}, 7},
		{"odd, unsorted", []float64{3, 1, 2}, 2},
		{"even, mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"even, two", []float64{10, 20}, 15},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var samples []*Sample
			for _, v := range tc.values {
				samples = append(samples, &Sample{Answered: int(v), Duration: time.Second})
			}
			if got := Median(samples, (*Sample).QPS); got != tc.want {
				t.Errorf("Median(%v) = %v, want %v", tc.values, got, tc.want)
			}
		})
	}
}

func TestCharts(t *testing.T) {
	all := testReport()
	closedOnly := testReport()
	closedOnly.Samples = slices.DeleteFunc(closedOnly.Samples, func(s Sample) bool { return s.Workload == "latency" })
	openOnly := testReport()
	openOnly.Samples = slices.DeleteFunc(openOnly.Samples, func(s Sample) bool { return s.Workload != "latency" })
	empty := testReport()
	empty.Samples = nil

	tests := []struct {
		name   string
		report *Report
		want   []string
	}{
		{"all workloads", all, []string{"cpu-efficiency.png", "throughput.png", "latency-cdf.png"}},
		{"no open-loop samples", closedOnly, []string{"cpu-efficiency.png", "throughput.png"}},
		{"only open-loop samples", openOnly, []string{"latency-cdf.png"}},
		{"no samples", empty, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			got, err := tc.report.Charts(dir)
			if err != nil {
				t.Fatalf("Charts() error: %v", err)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Charts() = %v, want %v", got, tc.want)
			}
			for _, name := range []string{"cpu-efficiency.png", "throughput.png", "latency-cdf.png"} {
				f, err := os.Open(filepath.Join(dir, name))
				if !slices.Contains(tc.want, name) {
					if !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("%s: open error %v, want it absent", name, err)
					}
					if f != nil {
						f.Close()
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				img, err := png.Decode(f)
				f.Close()
				if err != nil {
					t.Fatalf("%s: decode: %v", name, err)
				}
				if b := img.Bounds(); b.Dx() != 900 || b.Dy() != 500 {
					t.Errorf("%s: size %dx%d, want 900x500", name, b.Dx(), b.Dy())
				}
			}
		})
	}
}

func TestReportWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "results")
	r := testReport()
	if err := r.Write(dir); err != nil {
		t.Fatalf("Write() error: %v", err)
	}

	md, err := os.ReadFile(filepath.Join(dir, "results.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(md), r.Markdown()) {
		t.Errorf("results.md does not start with Markdown():\n%s", md)
	}
	for _, c := range []string{"cpu-efficiency.png", "throughput.png", "latency-cdf.png"} {
		link := regexp.MustCompile(`(?m)^!\[[^]]+\]\(` + regexp.QuoteMeta(c) + `\)$`)
		if !link.Match(md) {
			t.Errorf("results.md lacks an image link to %s:\n%s", c, md)
		}
		if _, err := os.Stat(filepath.Join(dir, c)); err != nil {
			t.Errorf("chart %s: %v", c, err)
		}
	}

	js, err := os.ReadFile(filepath.Join(dir, "results.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(js), "Latencies") {
		t.Errorf("results.json carries latencies; it should carry percentiles only")
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatalf("results.json does not decode into a Report: %v", err)
	}
	if len(back.Samples) != len(r.Samples) || back.Command != r.Command || !back.Date.Equal(r.Date) {
		t.Errorf("results.json decoded to %d samples, command %q, date %v; want %d, %q, %v",
			len(back.Samples), back.Command, back.Date, len(r.Samples), r.Command, r.Date)
	}

	var summary struct{ Samples []jsonSample }
	if err := json.Unmarshal(js, &summary); err != nil {
		t.Fatal(err)
	}
	// The first sample is unbound's first round of hits: 1..100ms.
	got := summary.Samples[0]
	want := jsonSample{
		System: "unbound", Workload: "hits", Round: 1, Sent: 100000, Answered: 100000,
		Duration: time.Second, CPU: time.Second, QPS: 100000, PerCPUSecond: 100000,
		P50: 50 * time.Millisecond, P90: 90 * time.Millisecond,
		P99: 99 * time.Millisecond, P999: 100 * time.Millisecond,
	}
	if got != want {
		t.Errorf("results.json first sample = %+v, want %+v", got, want)
	}
}

func TestResourcesMarkdown(t *testing.T) {
	r := &Report{Baseline: "unbound", Resources: []Resource{
		{System: "fleetdns", IdleRSS: 12 << 20, IdleWakeups: 0.4, Answers: 1000, FilledRSS: 300 << 10},
		{System: "unbound", IdleRSS: 8 << 20, IdleWakeups: 2, Answers: 1000, FilledRSS: 600 << 10},
		{System: "dnsmasq", IdleRSS: 1 << 20},
	}}
	md := r.Markdown()
	for _, want := range []string{
		"| fleetdns | 12.0 MiB | 0.4 | 1,000 | 0 MiB | 307 | 0.50× |",
		"| unbound | 8.0 MiB | 2.0 | 1,000 | 1 MiB | 614 | 1.00× |",
		"| dnsmasq | 1.0 MiB | 0.0 | 0 | n/a | n/a | n/a |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown() lacks row %q:\n%s", want, md)
		}
	}
}
