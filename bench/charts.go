package bench

import (
	"cmp"
	"fmt"
	"image/color"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Chart geometry: 900x500 px at the PNG canvas's 96 dpi, in the points gonum measures in.
const (
	chartWidth  = 900 * vg.Inch / 96
	chartHeight = 500 * vg.Inch / 96
	cdfPoints   = 200
)

// colours are Okabe-Ito, distinguishable with the common colour-vision deficiencies; a
// system keeps its colour across charts because it is indexed by its place in r.Systems.
var colours = []color.Color{
	color.RGBA{0x00, 0x72, 0xB2, 0xFF}, color.RGBA{0xE6, 0x9F, 0x00, 0xFF},
	color.RGBA{0x00, 0x9E, 0x73, 0xFF}, color.RGBA{0xD5, 0x5E, 0x00, 0xFF},
	color.RGBA{0xCC, 0x79, 0xA7, 0xFF}, color.RGBA{0x56, 0xB4, 0xE9, 0xFF},
	color.RGBA{0x99, 0x99, 0x99, 0xFF}, color.RGBA{0x00, 0x00, 0x00, 0xFF},
}

// Charts writes the PNG charts into dir and returns their file names, relative to dir. A chart
// with nothing to show is not written.
func (r *Report) Charts(dir string) ([]string, error) {
	charts := []struct {
		file string
		make func() *plot.Plot
	}{
		{"cpu-efficiency.png", func() *plot.Plot {
			return r.barChart("Queries per CPU-second of the server, closed loop (higher is better)",
				"queries per CPU-second", (*Sample).PerCPUSecond)
		}},
		{"throughput.png", func() *plot.Plot {
			return r.barChart("Answered queries per second, closed loop (higher is better)",
				"queries/s", (*Sample).QPS)
		}},
		{"latency-cdf.png", r.latencyCDF},
	}
	var files []string
	for _, c := range charts {
		p := c.make()
		if p == nil {
			continue
		}
		if err := p.Save(chartWidth, chartHeight, filepath.Join(dir, c.file)); err != nil {
			return files, fmt.Errorf("chart %s: %w", c.file, err)
		}
		files = append(files, c.file)
	}
	return files, nil
}

// newPlot returns a plot with fonts sized to stay legible when the PNG is shown scaled down.
func newPlot(title, xLabel, yLabel string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.Title.TextStyle.Font.Size = 15
	p.Title.Padding = 8
	p.X.Label.Text = xLabel
	p.Y.Label.Text = yLabel
	for _, a := range []*plot.Axis{&p.X, &p.Y} {
		a.Label.TextStyle.Font.Size = 13
		a.Tick.Label.Font.Size = 12
	}
	p.Legend.TextStyle.Font.Size = 12
	p.Legend.Top = true
	return p
}

// closedLoop lists the closed-loop workloads and the systems with at least one sample in them.
func (r *Report) closedLoop() (workloads []string, systems []int) {
	for _, w := range r.Workloads {
		if w.Rate != 0 {
			continue
		}
		for _, sys := range r.Systems {
			if len(r.Select(sys, w.Name)) > 0 {
				workloads = append(workloads, w.Name)
				break
			}
		}
	}
	for i, sys := range r.Systems {
		for _, w := range workloads {
			if len(r.Select(sys, w)) > 0 {
				systems = append(systems, i)
				break
			}
		}
	}
	return workloads, systems
}

// barChart groups, per closed-loop workload, one bar per system for the median of f; nil when
// no closed-loop workload ran.
func (r *Report) barChart(title, yLabel string, f func(*Sample) float64) *plot.Plot {
	workloads, systems := r.closedLoop()
	if len(workloads) == 0 {
		return nil
	}
	p := newPlot(title, "", yLabel)
	p.Add(&plotter.Grid{Horizontal: plotter.DefaultGridLineStyle})

	// The plot area is roughly the canvas less the y axis; bars fill 80% of each slot.
	width := min(0.8*(chartWidth-70)/vg.Length(len(workloads)*len(systems)), 60)
	label := draw.TextStyle{
		Font:    font.From(plot.DefaultFont, 10),
		XAlign:  draw.XCenter,
		Handler: plot.DefaultTextHandler,
	}
	var top float64
	for n, i := range systems {
		var values plotter.Values
		var xys plotter.XYLabels
		for x, w := range workloads {
			v := Median(r.Select(r.Systems[i], w), f)
			values = append(values, v)
			top = max(top, v)
			// A missing bar would otherwise look like a result of zero.
			text := si(v)
			if len(r.Select(r.Systems[i], w)) == 0 {
				text = "not run"
			}
			xys.XYs = append(xys.XYs, plotter.XY{X: float64(x), Y: v})
			xys.Labels = append(xys.Labels, text)
		}
		bars, err := plotter.NewBarChart(values, width)
		if err != nil {
			continue // only for a non-positive width, which the min above rules out
		}
		bars.Color = colours[i%len(colours)]
		bars.LineStyle.Width = 0
		bars.Offset = (vg.Length(n) - vg.Length(len(systems)-1)/2) * width
		labels, err := plotter.NewLabels(xys)
		if err == nil {
			for j := range labels.TextStyle {
				labels.TextStyle[j] = label
			}
			labels.Offset = vg.Point{X: bars.Offset, Y: 2}
			p.Add(labels)
		}
		p.Add(bars)
		p.Legend.Add(r.Systems[i], bars)
	}
	p.NominalX(workloads...)
	p.X.Tick.Label.Font.Size = 13
	// Each workload's group sits in the middle of a slot of width 1, not on the plot's edge.
	p.X.Min, p.X.Max = -0.5, float64(len(workloads))-0.5
	p.Y.Min = 0
	// Headroom above the tallest bar keeps the legend, drawn inside the plot area, off the bars.
	legend := float64(len(systems))*16 + 20
	area := float64(chartHeight) - 90
	if top > 0 {
		p.Y.Max = top / max(0.3, 1-legend/area)
	}
	p.Y.Tick.Marker = niceTicks(si)
	return p
}

// niceTicks marks a linear axis every 1, 2, 2.5 or 5 times a power of ten, about six labels
// over the range (gonum's default labels as few as two), each formatted by label.
type niceTicks func(float64) string

func (label niceTicks) Ticks(lo, hi float64) []plot.Tick {
	if !(hi > lo) {
		return []plot.Tick{{Value: lo, Label: label(lo)}}
	}
	raw := (hi - lo) / 6
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	step := 10 * pow
	for _, m := range []float64{1, 2, 2.5, 5} {
		if m*pow >= raw {
			step = m * pow
			break
		}
	}
	var ticks []plot.Tick
	for i := math.Ceil(lo / step); i*step <= hi*(1+1e-9); i++ {
		v := exact(i*step, pow)
		ticks = append(ticks, plot.Tick{Value: v, Label: label(v)})
		if half := exact(v+step/2, pow); half <= hi {
			ticks = append(ticks, plot.Tick{Value: half}) // minor
		}
	}
	return ticks
}

// exact rounds v to a multiple of pow/4 by dividing by an integer where pow < 1, so that a tick
// reads 0.6 rather than 6*0.1 = 0.6000000000000001.
func exact(v, pow float64) float64 {
	q := math.Round(v / pow * 4)
	if pow < 1 {
		return q / (4 * math.Round(1/pow))
	}
	return q * pow / 4
}

// si formats v to three significant digits with a k or M suffix.
func si(v float64) string {
	if v == 0 {
		return "0"
	}
	// Round first so that 999,999 becomes 1M rather than 1e+03k.
	mag := math.Pow(10, math.Floor(math.Log10(math.Abs(v)))-2)
	v = math.Round(v/mag) * mag
	suffix := ""
	switch {
	case math.Abs(v) >= 1e6:
		v, suffix = v/1e6, "M"
	case math.Abs(v) >= 1e3:
		v, suffix = v/1e3, "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64) + suffix
}

// latencyCDF draws, per open-loop workload and system, the distribution of answer latency in the
// round with the median p99, so that one lucky or unlucky round does not stand for the system.
// Nil when no open-loop workload has latencies.
func (r *Report) latencyCDF() *plot.Plot {
	type line struct {
		name   string
		colour int
		dashed int
		sample *Sample
	}
	var lines []line
	var open []Workload
	for _, w := range r.Workloads {
		if w.Rate > 0 {
			open = append(open, w)
		}
	}
	for k, w := range open {
		for i, sys := range r.Systems {
			s := medianP99(r.Select(sys, w.Name))
			if s == nil {
				continue
			}
			name := sys
			if len(open) > 1 {
				name += " (" + w.Name + ")"
			}
			lines = append(lines, line{name, i, k, s})
		}
	}
	if len(lines) == 0 {
		return nil
	}

	title := "Answer latency, open loop (lower is better: further left)"
	if len(open) == 1 {
		title = fmt.Sprintf("Answer latency at %s queries/s offered (lower is better: further left)",
			grouped(float64(open[0].Rate)))
	}
	p := newPlot(title, "latency (log scale)", "fraction of answers")
	p.Add(plotter.NewGrid())
	p.Legend.Top = false // the bottom right of a CDF is empty
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = latencyTicks{}
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, l := range lines {
		pts := cdf(l.sample)
		lo, hi = min(lo, pts[0].X), max(hi, pts[len(pts)-1].X)
		ln, err := plotter.NewLine(pts)
		if err != nil {
			continue // only for NaN or infinite points, which cdf cannot produce
		}
		ln.Color = colours[l.colour%len(colours)]
		ln.Width = 2
		if l.dashed > 0 {
			ln.Dashes = []vg.Length{vg.Length(4 + 2*l.dashed), 3}
		}
		p.Add(ln)
		p.Legend.Add(l.name, ln)
	}
	// A log axis cannot be widened by ±1 around a single value the way gonum does by default.
	p.X.Min, p.X.Max = lo/1.2, hi*1.2
	p.Y.Min, p.Y.Max = 0, 1
	p.Y.Tick.Marker = niceTicks(func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) })
	return p
}

// medianP99 returns the round, among those with latencies, whose p99 is the median (the lower of
// the two middle ones for an even count); nil for none.
func medianP99(samples []*Sample) *Sample {
	timed := timed(samples)
	if len(timed) == 0 {
		return nil
	}
	slices.SortStableFunc(timed, func(a, b *Sample) int {
		return cmp.Compare(a.Percentile(0.99), b.Percentile(0.99))
	})
	return timed[(len(timed)-1)/2]
}

// cdf samples the latency distribution at evenly spaced fractions plus the tail, which even
// spacing would collapse into its last point; x is in microseconds, never 0 for the log axis.
func cdf(s *Sample) plotter.XYs {
	fractions := make([]float64, 0, cdfPoints+5)
	for i := range cdfPoints + 1 {
		fractions = append(fractions, float64(i)/cdfPoints)
	}
	fractions = append(fractions, 0.995, 0.999, 0.9995, 0.9999)
	slices.Sort(fractions)
	pts := make(plotter.XYs, 0, len(fractions))
	for _, f := range slices.Compact(fractions) {
		us := max(float64(s.Percentile(f))/1e3, 1e-3)
		pts = append(pts, plotter.XY{X: us, Y: f})
	}
	return pts
}

// latencyTicks marks a log axis in microseconds with duration labels (100µs, 1ms), labelling
// 1-2-5 steps over a few decades and only powers of ten over many, so labels never collide.
type latencyTicks struct{}

func (latencyTicks) Ticks(lo, hi float64) []plot.Tick {
	decades := math.Log10(hi / lo)
	var ticks []plot.Tick
	for e := math.Floor(math.Log10(lo)); e <= math.Ceil(math.Log10(hi)); e++ {
		for m := 1.0; m < 10; m++ {
			v := m * math.Pow(10, e)
			if v < lo || v > hi {
				continue
			}
			t := plot.Tick{Value: v}
			if m == 1 || (decades <= 3 && (m == 2 || m == 5)) || decades <= 1 {
				t.Label = latency(time.Duration(math.Round(v * 1e3)))
			}
			ticks = append(ticks, t)
		}
	}
	// A narrow range, such as one repeated latency, can fall between 1-2-5 steps.
	if !slices.ContainsFunc(ticks, func(t plot.Tick) bool { return t.Label != "" }) {
		for _, v := range []float64{lo, hi} {
			ticks = append(ticks, plot.Tick{Value: v, Label: latency(time.Duration(math.Round(v * 1e3)))})
		}
	}
	return ticks
}
