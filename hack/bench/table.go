package main

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"time"
)

// table is what the bench prints: one row per comparison, the operator's figure beside what it
// is compared with, and the target it must meet.
type table struct {
	header string
	rows   []row
	notes  []string
}

type row struct {
	what, measured, against, ratio, target string
	// met is "yes", "no", or "" where there is no target.
	met string
}

func (t *table) add(r row) { t.rows = append(t.rows, r) }

func (t *table) note(format string, args ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, args...))
}

// String is the table in Markdown: readable as text, and pasted as is into docs/benchmarks.md.
func (t *table) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n", t.header)
	cells := [][]string{{"Measurement", "Operator", "Compared with", "Ratio", "Target", "Met"}}
	for _, r := range t.rows {
		cells = append(cells, []string{r.what, r.measured, r.against, r.ratio, r.target, r.met})
	}
	widths := make([]int, len(cells[0]))
	for _, c := range cells {
		for i, v := range c {
			widths[i] = max(widths[i], len([]rune(v)))
		}
	}
	line := func(c []string) {
		b.WriteString("|")
		for i, v := range c {
			fmt.Fprintf(&b, " %s%s |", v, strings.Repeat(" ", widths[i]-len([]rune(v))))
		}
		b.WriteString("\n")
	}
	line(cells[0])
	sep := make([]string, len(widths))
	for i, w := range widths {
		sep[i] = strings.Repeat("-", w)
	}
	line(sep)
	for _, c := range cells[1:] {
		line(c)
	}
	if len(t.notes) > 0 {
		b.WriteString("\n")
		for _, n := range t.notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	return b.String()
}

// median of the samples (the mean of the two middle ones for an even count).
func median(samples []float64) float64 {
	if len(samples) == 0 {
		return 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func seconds(d []time.Duration) []float64 {
	out := make([]float64, len(d))
	for i, v := range d {
		out[i] = v.Seconds()
	}
	return out
}

// spread is "min-max" of the samples, formatted.
func spread(samples []float64, format func(float64) string) string {
	if len(samples) < 2 {
		return ""
	}
	return fmt.Sprintf(" (%s–%s)", format(slices.Min(samples)), format(slices.Max(samples)))
}

func secs(v float64) string { return fmt.Sprintf("%.1f s", v) }
func millis(v float64) string {
	return fmt.Sprintf("%.0f ms", v*1000)
}

// met says whether ok held.
func met(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func numCPU() int { return runtime.NumCPU() }
