// Command benchtable prints the figures `make bench` collected (the JSON
// lines internal/benchreport appends to $STAGEHAND_BENCH_REPORT) as one
// aligned table: what was measured, the figure, the baseline measured in the
// same run, their ratio (figure/baseline), the target and whether it is met.
//
// Usage: benchtable FILE
//
// It exits 1 when the file is missing, unreadable or holds no rows (a bench
// run that recorded nothing failed), and 0 otherwise: benchmarks report,
// they do not assert, so a missed target is a "NO" in the table.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/stagehand-dev/stagehand/internal/benchreport"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtable FILE")
		os.Exit(2)
	}
	f, err := os.Open(os.Args[1])
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchtable: %v\n", err)
		os.Exit(1)
	}
	defer f.Close()
	rows, err := read(f)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchtable: %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
	if len(rows) == 0 {
		fmt.Fprintf(os.Stderr, "benchtable: %s holds no figures: did the benchmarks run?\n", os.Args[1])
		os.Exit(1)
	}
	format(os.Stdout, rows)
}

// maxLine bounds one JSON line; rows are a few hundred bytes.
const maxLine = 64 << 10

// read parses one benchreport.Row per non-empty line and keeps each
// benchmark's last run (benchreport.Latest).
func read(r io.Reader) ([]benchreport.Row, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxLine)
	var rows []benchreport.Row
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var row benchreport.Row
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if row.Target != "" {
			if _, err := benchreport.ParseTarget(row.Target); err != nil {
				return nil, fmt.Errorf("line %d: %w", n, err)
			}
		}
		rows = append(rows, row)
	}
	return benchreport.Latest(rows), sc.Err()
}

var header = []string{"what", "figure", "baseline", "ratio", "target", "ok?"}

// format prints the rows grouped under their benchmark's name, columns
// padded to the widest cell, then how many targets were met.
func format(w io.Writer, rows []benchreport.Row) {
	type line struct {
		group string // a benchmark heading instead of cells
		cells []string
	}
	var lines []line
	widths := make([]int, len(header))
	grow := func(cells []string) {
		for i, c := range cells {
			widths[i] = max(widths[i], len(c))
		}
	}
	grow(header)
	met, targets := 0, 0
	for i, r := range rows {
		if i == 0 || r.Benchmark != rows[i-1].Benchmark {
			lines = append(lines, line{group: r.Benchmark})
		}
		cells := []string{"  " + r.Metric, number(r.Value) + unit(r.Unit), "", "", r.Target, ""}
		if r.Baseline != 0 {
			cells[2] = number(r.Baseline) + unit(r.Unit)
			if r.BaselineWhat != "" {
				cells[2] += " (" + r.BaselineWhat + ")"
			}
			cells[3] = ratio(r.Ratio)
		}
		if r.Target != "" {
			targets++
			// read checked the target; a row that gets here parses.
			t, _ := benchreport.ParseTarget(r.Target)
			if t.Met(r) {
				met++
				cells[5] = "yes"
			} else {
				cells[5] = "NO"
			}
		}
		grow(cells)
		lines = append(lines, line{cells: cells})
	}
	row := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			if i > 0 {
				b.WriteString(" | ")
			}
			b.WriteString(c + strings.Repeat(" ", widths[i]-len(c)))
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	row(header)
	var rule []string
	for _, n := range widths {
		rule = append(rule, strings.Repeat("-", n))
	}
	fmt.Fprintln(w, strings.Join(rule, "-+-"))
	for _, l := range lines {
		if l.group != "" {
			fmt.Fprintln(w, l.group)
			continue
		}
		row(l.cells)
	}
	fmt.Fprintf(w, "%d of %d targets met (ratio = figure / baseline, both measured in this run)\n", met, targets)
}

func unit(u string) string {
	if u == "" {
		return ""
	}
	return " " + u
}

// number prints about three significant digits, never an exponent for
// the magnitudes benchmarks produce.
func number(v float64) string {
	a := math.Abs(v)
	switch {
	case a == 0:
		return "0"
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	case a >= 0.001:
		return strconv.FormatFloat(v, 'f', 3, 64)
	default:
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
}

func ratio(r float64) string {
	a := math.Abs(r)
	if a != 0 && a < 0.001 {
		return strconv.FormatFloat(r, 'g', 2, 64) + "x"
	}
	return strconv.FormatFloat(r, 'f', 3, 64) + "x"
}
