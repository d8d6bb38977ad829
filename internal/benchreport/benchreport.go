// Package benchreport collects the figures of Stagehand's benchmarks into
// one file, so `make bench` can print them as a single table (tools/benchtable)
// after each benchmark has printed its own log. Every figure is a Row: the
// measured value, the baseline measured in the same run, their ratio and the
// target it is judged against.
//
// Benchmarks run in separate test processes (one per package), so the file
// is appended to, one JSON object per line, and each Record is one write.
package benchreport

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// EnvReport names the file Record appends to; unset, Record does nothing,
// so a benchmark run by hand only prints its log.
const EnvReport = "STAGEHAND_BENCH_REPORT"

// Row is one figure of the table.
type Row struct {
	// Benchmark is the Go benchmark that measured it, e.g. BenchmarkThroughput.
	Benchmark string `json:"benchmark"`
	// Metric says what was measured, e.g. "time of a 50-step run (median)".
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	// Unit is the unit of Value and Baseline, e.g. ms, MiB, runs/s, events.
	Unit string `json:"unit"`
	// Baseline is the same measure of the baseline, in Unit; BaselineWhat
	// names it (e.g. "hand-written workflow"). A row without a baseline
	// (Baseline 0) has no ratio.
	Baseline     float64 `json:"baseline,omitempty"`
	BaselineWhat string  `json:"baselineWhat,omitempty"`
	// Ratio is Value/Baseline; Record fills it in when it is 0.
	Ratio float64 `json:"ratio,omitempty"`
	// Target is what the figure must meet, as "ratio OP N" or "value OP N"
	// with OP one of <=, <, >=, > (e.g. "ratio <= 1.10", "value <= 256");
	// empty when there is none. ParseTarget reads it.
	Target string `json:"target,omitempty"`
	// N is the b.N of the benchmark run that recorded the row; Record sets
	// it. `go test -benchtime Nx` runs a benchmark with b.N = 1 before
	// b.N = N, so a benchmark records twice, and readers keep only the rows
	// of each benchmark's last (largest-N) run: Latest.
	N int `json:"n,omitempty"`
}

// Latest drops the rows of every benchmark's earlier runs (smaller N),
// keeping the order of the rest.
func Latest(rows []Row) []Row {
	maxN := map[string]int{}
	for _, r := range rows {
		maxN[r.Benchmark] = max(maxN[r.Benchmark], r.N)
	}
	var out []Row
	for _, r := range rows {
		if r.N == maxN[r.Benchmark] {
			out = append(out, r)
		}
	}
	return out
}

// Record appends rows to the file named by $STAGEHAND_BENCH_REPORT. It fails
// tb when a row's target does not parse or the file cannot be written: the
// table is what `make bench` is for.
func Record(tb testing.TB, rows ...Row) {
	tb.Helper()
	path := os.Getenv(EnvReport)
	if path == "" {
		return
	}
	n := 0
	if b, ok := tb.(*testing.B); ok {
		n = b.N
	}
	var buf bytes.Buffer
	for _, r := range rows {
		r.N = n
		if r.Ratio == 0 && r.Baseline != 0 {
			r.Ratio = r.Value / r.Baseline
		}
		if r.Target != "" {
			if _, err := ParseTarget(r.Target); err != nil {
				tb.Fatalf("benchreport: %s %q: %v", r.Benchmark, r.Metric, err)
			}
		}
		line, err := json.Marshal(r)
		if err != nil {
			tb.Fatalf("benchreport: %v", err)
		}
		buf.Write(append(line, '\n'))
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		tb.Fatalf("benchreport: %s=%s: %v", EnvReport, path, err)
	}
	_, err = f.Write(buf.Bytes())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		tb.Fatalf("benchreport: write %s: %v", path, err)
	}
}

// Target is a parsed Row.Target.
type Target struct {
	// Of is "ratio" or "value": which number the limit applies to.
	Of    string
	Op    string
	Limit float64
}

// ParseTarget reads "ratio <= 1.10" or "value <= 256".
func ParseTarget(s string) (Target, error) {
	f := strings.Fields(s)
	if len(f) != 3 {
		return Target{}, fmt.Errorf("target %q: want \"ratio|value OP NUMBER\"", s)
	}
	t := Target{Of: f[0], Op: f[1]}
	if t.Of != "ratio" && t.Of != "value" {
		return Target{}, fmt.Errorf("target %q: applies to %q, want ratio or value", s, t.Of)
	}
	switch t.Op {
	case "<=", "<", ">=", ">":
	default:
		return Target{}, fmt.Errorf("target %q: operator %q, want <=, <, >= or >", s, t.Op)
	}
	n, err := strconv.ParseFloat(f[2], 64)
	if err != nil {
		return Target{}, fmt.Errorf("target %q: limit: %w", s, err)
	}
	t.Limit = n
	return t, nil
}

// Met says whether r meets t.
func (t Target) Met(r Row) bool {
	x := r.Value
	if t.Of == "ratio" {
		if r.Baseline == 0 {
			// No baseline, no ratio: a target on it cannot be met.
			return false
		}
		x = r.Ratio
	}
	switch t.Op {
	case "<=":
		return x <= t.Limit
	case "<":
		return x < t.Limit
	case ">=":
		return x >= t.Limit
	default:
		return x > t.Limit
	}
}
