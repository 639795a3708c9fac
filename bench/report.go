package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// percentiles are the latency columns of the tables and the fields of results.json.
var percentiles = []struct {
	name string
	p    float64
}{{"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}, {"p99.9", 0.999}}

// stats is one table row: the medians across rounds of one system on one workload.
type stats struct {
	rounds  int
	qps     float64
	perCPU  float64
	lostPct float64
	latency []float64 // median per percentile, ns; nil when no round recorded latencies
}

func (r *Report) stats(system, workload string) stats {
	samples := r.Select(system, workload)
	st := stats{
		rounds: len(samples),
		qps:    Median(samples, (*Sample).QPS),
		perCPU: Median(samples, (*Sample).PerCPUSecond),
		lostPct: Median(samples, func(s *Sample) float64 {
			if s.Sent <= 0 {
				return 0
			}
			return 100 * float64(s.Lost) / float64(s.Sent)
		}),
	}
	if timed := timed(samples); len(timed) > 0 {
		for _, pc := range percentiles {
			st.latency = append(st.latency, Median(timed, func(s *Sample) float64 {
				return float64(s.Percentile(pc.p))
			}))
		}
	}
	return st
}

// timed returns the samples that recorded latencies: a round without them (a failed capture)
// would otherwise drag every percentile towards 0.
func timed(samples []*Sample) []*Sample {
	return slices.DeleteFunc(slices.Clone(samples), func(s *Sample) bool { return len(s.Latencies) == 0 })
}

// Markdown renders the results as a section to paste into a README or a pull request.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString("### Results\n\n")
	machine := r.Machine
	if machine == "" {
		machine = "an unrecorded machine"
	}
	baseline := "no baseline was set, so there are no ratios"
	if r.Baseline != "" {
		baseline = "ratios are against **" + r.Baseline + "**"
	}
	fmt.Fprintf(&b, "Measured %s on %s; %s. Command:\n\n",
		r.Date.UTC().Format("2006-01-02 15:04 MST"), machine, baseline)
	fence := codeFence(r.Command)
	fmt.Fprintf(&b, "%s\n%s\n%s\n", fence, r.Command, fence)

	vs := "vs " + cell(r.Baseline)
	if r.Baseline == "" {
		vs = "vs baseline"
	}
	for _, w := range r.Workloads {
		if w.Description == "" {
			fmt.Fprintf(&b, "\n#### %s\n\n", w.Name)
		} else {
			fmt.Fprintf(&b, "\n#### %s: %s\n\n", w.Name, w.Description)
		}
		if w.Rate > 0 {
			fmt.Fprintf(&b, "Open loop at %s queries/s offered.\n\n", grouped(float64(w.Rate)))
		} else {
			b.WriteString("Closed loop: each query is sent as soon as the previous one is answered.\n\n")
		}
		fmt.Fprintf(&b, "| System | Version | Rounds | Queries/s | %s | Queries/CPU-s | %s | Lost |", vs, vs)
		for _, pc := range percentiles {
			fmt.Fprintf(&b, " %s |", pc.name)
		}
		b.WriteString("\n|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")

		base := r.stats(r.Baseline, w.Name)
		for _, sys := range r.Systems {
			st := r.stats(sys, w.Name)
			fmt.Fprintf(&b, "| %s | %s |", cell(sys), cell(r.Versions[sys]))
			if st.rounds == 0 {
				b.WriteString(" not run |" + strings.Repeat(" |", 5+len(percentiles)) + "\n")
				continue
			}
			fmt.Fprintf(&b, " %d | %s | %s | %s | %s | %s |", st.rounds,
				grouped(st.qps), ratio(st.qps, base.qps, base.rounds),
				grouped(st.perCPU), ratio(st.perCPU, base.perCPU, base.rounds),
				lost(st.lostPct))
			for i := range percentiles {
				if st.latency == nil {
					b.WriteString(" n/a |")
					continue
				}
				fmt.Fprintf(&b, " %s |", latency(time.Duration(math.Round(st.latency[i]))))
			}
			b.WriteString("\n")
		}
	}

	r.resourcesMarkdown(&b)
	if len(r.Notes) > 0 {
		b.WriteString("\n#### Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// codeFence returns a backtick fence longer than any backtick run in s, so a command that
// itself contains backticks cannot end its code block early.
func codeFence(s string) string {
	longest, run := 0, 0
	for _, c := range s {
		if c == '`' {
			run++
			longest = max(longest, run)
		} else {
			run = 0
		}
	}
	return strings.Repeat("`", max(3, longest+1))
}

// cell escapes the one character that would split a table cell.
func cell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

// ratio of v against the baseline's median; n/a when the baseline did not run or measured 0,
// since a ratio against nothing would read as a real result.
func ratio(v, base float64, baseRounds int) string {
	if baseRounds == 0 || base == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f×", v/base)
}

// lost formats a loss percentage; a small nonzero loss must not round to a clean 0.00%.
func lost(pct float64) string {
	switch {
	case pct == 0:
		return "0%"
	case pct < 0.01:
		return "<0.01%"
	}
	return fmt.Sprintf("%.2f%%", pct)
}

// grouped formats v ≥ 0 rounded to an integer with thousands separators: rates are read by
// magnitude first.
func grouped(v float64) string {
	s := strconv.FormatInt(int64(math.Round(max(v, 0))), 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// latency formats d with two or three significant digits in the unit a reader expects
// (85µs, 1.2ms), unlike time.Duration.String's full precision (1.234567ms).
func latency(d time.Duration) string {
	units := []struct {
		name string
		size float64
	}{{"ns", 1}, {"µs", 1e3}, {"ms", 1e6}, {"s", 1e9}}
	u := units[len(units)-1]
	for _, c := range units {
		// 999.5 rather than 1000 so that rounding cannot print 1000µs instead of 1ms.
		if float64(d) < 999.5*c.size {
			u = c
			break
		}
	}
	v := float64(d) / u.size
	if u.size == 1 || v >= 9.95 {
		return fmt.Sprintf("%.0f%s", v, u.name)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + u.name
}

// Write writes results.md, results.json and the charts into dir, creating it if needed.
func (r *Report) Write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("results directory: %w", err)
	}
	charts, err := r.Charts(dir)
	if err != nil {
		return err
	}
	alt := map[string]string{
		"cpu-efficiency.png": "Queries per CPU-second, closed loop (higher is better)",
		"throughput.png":     "Queries per second, closed loop (higher is better)",
		"latency-cdf.png":    "Latency CDF, open loop (lower is better)",
	}
	md := r.Markdown()
	if len(charts) > 0 {
		md += "\n#### Charts\n\n"
		for _, c := range charts {
			md += fmt.Sprintf("![%s](%s)\n\n", alt[c], c)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("write results.md: %w", err)
	}
	js, err := json.MarshalIndent(r.summary(), "", "  ")
	if err != nil {
		return fmt.Errorf("encode results.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "results.json"), append(js, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results.json: %w", err)
	}
	return nil
}

// jsonReport is Report as written to results.json: field names match Report so the file decodes
// back into one, but each sample carries its percentiles instead of every latency, which would
// make the file megabytes per round.
type jsonReport struct {
	Date      time.Time
	Machine   string
	Command   string
	Baseline  string
	Systems   []string
	Versions  map[string]string
	Workloads []Workload
	Samples   []jsonSample
	Notes     []string
}

type jsonSample struct {
	System   string
	Workload string
	Round    int

	Sent     int
	Answered int
	Lost     int
	Duration time.Duration // nanoseconds, as all durations here
	CPU      time.Duration
	RSS      int64

	QPS          float64
	PerCPUSecond float64
	P50          time.Duration
	P90          time.Duration
	P99          time.Duration
	P999         time.Duration `json:"P99.9"`
}

func (r *Report) summary() jsonReport {
	out := jsonReport{
		Date: r.Date, Machine: r.Machine, Command: r.Command, Baseline: r.Baseline,
		Systems: r.Systems, Versions: r.Versions, Workloads: r.Workloads, Notes: r.Notes,
	}
	for i := range r.Samples {
		s := &r.Samples[i]
		out.Samples = append(out.Samples, jsonSample{
			System: s.System, Workload: s.Workload, Round: s.Round,
			Sent: s.Sent, Answered: s.Answered, Lost: s.Lost,
			Duration: s.Duration, CPU: s.CPU, RSS: s.RSS,
			QPS: s.QPS(), PerCPUSecond: s.PerCPUSecond(),
			P50: s.Percentile(0.50), P90: s.Percentile(0.90),
			P99: s.Percentile(0.99), P999: s.Percentile(0.999),
		})
	}
	return out
}

// resourcesMarkdown renders memory and idle behaviour: resident size after start-up, wake-ups
// while idle, and the resident cost of one cached answer against the baseline's.
func (r *Report) resourcesMarkdown(b *strings.Builder) {
	if len(r.Resources) == 0 {
		return
	}
	var base Resource
	for _, res := range r.Resources {
		if res.System == r.Baseline {
			base = res
		}
	}
	b.WriteString("\n#### Memory and idle\n\n")
	b.WriteString("Resident size after start-up, wake-ups per second while idle (context switches of all threads), ")
	b.WriteString("and the resident size after filling the cache with unique names, per answer.\n\n")
	fmt.Fprintf(b, "| System | Idle RSS | Idle wake-ups/s | Answers cached | RSS after | Bytes per answer | vs %s |\n", cell(r.Baseline))
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|\n")
	for _, res := range r.Resources {
		per, vs := "n/a", "n/a"
		if res.Answers > 0 {
			per = grouped(res.BytesPerAnswer())
			if base.Answers > 0 && base.BytesPerAnswer() > 0 {
				vs = fmt.Sprintf("%.2f×", res.BytesPerAnswer()/base.BytesPerAnswer())
			}
		}
		after := "n/a"
		if res.Answers > 0 {
			after = fmt.Sprintf("%.0f MiB", float64(res.FilledRSS)/(1<<20))
		}
		fmt.Fprintf(b, "| %s | %.1f MiB | %.1f | %s | %s | %s | %s |\n", cell(res.System),
			float64(res.IdleRSS)/(1<<20), res.IdleWakeups, grouped(float64(res.Answers)), after, per, vs)
	}
}
