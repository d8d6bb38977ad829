package benchreport

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRecordAppendsRowsWithRatio(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.jsonl")
	t.Setenv(EnvReport, path)
	Record(t, Row{Benchmark: "B", Metric: "time", Value: 110, Unit: "ms", Baseline: 100, BaselineWhat: "hand", Target: "ratio <= 1.10"})
	Record(t, Row{Benchmark: "B", Metric: "rss", Value: 200, Unit: "MiB", Target: "value <= 256"},
		Row{Benchmark: "B", Metric: "speedup", Value: 1, Baseline: 4, Ratio: 9})
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	require.Len(t, lines, 3)
	var rows []Row
	for _, l := range lines {
		var r Row
		require.NoError(t, json.Unmarshal([]byte(l), &r))
		rows = append(rows, r)
	}
	assert.InDelta(t, 1.1, rows[0].Ratio, 1e-9)
	assert.Zero(t, rows[1].Ratio, "no baseline, no ratio")
	assert.Equal(t, 9.0, rows[2].Ratio, "a given ratio is kept")
}

func TestRecordWithoutEnvWritesNothing(t *testing.T) {
	t.Setenv(EnvReport, "")
	dir := t.TempDir()
	t.Chdir(dir)
	Record(t, Row{Benchmark: "B", Metric: "m", Value: 1})
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

func TestParseTarget(t *testing.T) {
	tg, err := ParseTarget("ratio >= 0.95")
	require.NoError(t, err)
	assert.Equal(t, Target{Of: "ratio", Op: ">=", Limit: 0.95}, tg)
	assert.True(t, tg.Met(Row{Ratio: 0.95, Baseline: 10}))
	assert.False(t, tg.Met(Row{Ratio: 0.94, Value: 5, Baseline: 10}))
	tl, err := ParseTarget("ratio <= 1.10")
	require.NoError(t, err)
	assert.False(t, tl.Met(Row{Value: 5}), "no baseline: a ratio target is not met")

	tg, err = ParseTarget("value < 256")
	require.NoError(t, err)
	assert.True(t, tg.Met(Row{Value: 255.9, Ratio: 1000}))
	assert.False(t, tg.Met(Row{Value: 256}))

	for _, bad := range []string{"", "ratio", "ratio <= ", "speed <= 1", "ratio == 1", "value <= fast", "value <= 1 MiB"} {
		_, err := ParseTarget(bad)
		assert.Error(t, err, bad)
	}
}

func TestLatestKeepsEachBenchmarksLastRun(t *testing.T) {
	rows := []Row{
		{Benchmark: "A", Metric: "x", N: 1}, {Benchmark: "A", Metric: "y", N: 1},
		{Benchmark: "A", Metric: "x", N: 5}, {Benchmark: "A", Metric: "y", N: 5},
		{Benchmark: "B", Metric: "z", N: 1},
	}
	got := Latest(rows)
	assert.Equal(t, []Row{rows[2], rows[3], rows[4]}, got)
}

func TestRecordSetsN(t *testing.T) {
	path := filepath.Join(t.TempDir(), "report.jsonl")
	t.Setenv(EnvReport, path)
	// 3x as make bench runs them: go test runs the body with b.N = 1,
	// then with b.N = 3, so it records twice.
	bt := flag.Lookup("test.benchtime")
	prev := bt.Value.String()
	require.NoError(t, bt.Value.Set("3x"))
	t.Cleanup(func() { _ = bt.Value.Set(prev) })
	res := testing.Benchmark(func(b *testing.B) {
		Record(b, Row{Benchmark: "B", Metric: "m", Value: float64(b.N)})
	})
	require.Equal(t, 3, res.N)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var rows []Row
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r Row
		require.NoError(t, json.Unmarshal([]byte(l), &r))
		rows = append(rows, r)
	}
	require.Len(t, rows, 2)
	assert.Equal(t, []int{1, 3}, []int{rows[0].N, rows[1].N})
	assert.Equal(t, []Row{rows[1]}, Latest(rows))
}
