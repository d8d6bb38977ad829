package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sample = `{"benchmark":"BenchmarkInterpreterOverhead","metric":"50-step run time (median)","value":412,"unit":"ms","baseline":400,"baselineWhat":"hand-written","ratio":1.03,"target":"ratio <= 1.10"}

{"benchmark":"BenchmarkInterpreterOverhead","metric":"history events","value":210,"unit":"events","baseline":150,"baselineWhat":"hand-written","ratio":1.4,"target":"ratio <= 1.10"}
{"benchmark":"BenchmarkParked","metric":"RSS, 10000 parked","value":180.6,"unit":"MiB","baseline":30.25,"baselineWhat":"idle worker","ratio":5.967,"target":"value <= 256"}
{"benchmark":"BenchmarkFailureDetection","metric":"failure detection p95","value":24.3,"unit":"ms","baseline":60000,"baselineWhat":"kubectl rollout status","ratio":0.000412}
`

func TestReadAndFormat(t *testing.T) {
	rows, err := read(strings.NewReader(sample))
	require.NoError(t, err)
	require.Len(t, rows, 4)
	var out bytes.Buffer
	format(&out, rows)
	got := out.String()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	// header, rule, 3 group headings, 4 rows, summary
	require.Len(t, lines, 10, got)
	assert.True(t, strings.HasPrefix(lines[0], "what"), got)
	assert.Equal(t, "BenchmarkInterpreterOverhead", lines[2])
	assert.Contains(t, lines[3], "| 412 ms")
	assert.Contains(t, lines[3], "| 400 ms (hand-written)")
	assert.Contains(t, lines[3], "| 1.030x")
	assert.True(t, strings.HasSuffix(lines[3], "| yes"), lines[3])
	assert.True(t, strings.HasSuffix(lines[4], "| NO"), lines[4])
	assert.Contains(t, lines[6], "| 181 MiB    | 30.2 MiB (idle worker)            | 5.967x")
	assert.True(t, strings.HasSuffix(lines[6], "| yes"), lines[6])
	assert.Contains(t, lines[8], "| 0.00041x")
	assert.Equal(t, "2 of 3 targets met (ratio = figure / baseline, both measured in this run)", lines[9])
	// Columns line up: every separator of the data rows is where the header's is.
	sep := strings.Index(lines[0], "|")
	for _, l := range []string{lines[3], lines[4], lines[6], lines[8]} {
		assert.Equal(t, sep, strings.Index(l, "|"), l)
	}
}

func TestReadKeepsLastRun(t *testing.T) {
	rows, err := read(strings.NewReader(`{"benchmark":"B","metric":"m (median of 1)","value":1,"n":1}
{"benchmark":"B","metric":"m (median of 5)","value":2,"n":5}
{"benchmark":"C","metric":"k","value":3,"n":1}
`))
	require.NoError(t, err)
	require.Len(t, rows, 2)
	assert.Equal(t, 2.0, rows[0].Value)
	assert.Equal(t, "C", rows[1].Benchmark)
}

func TestReadRejectsBadLines(t *testing.T) {
	_, err := read(strings.NewReader("{\"benchmark\":\"B\",\"value\":1}\nnot json\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 2")
	_, err = read(strings.NewReader(`{"benchmark":"B","value":1,"target":"ratio ~ 1"}`))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 1")
}

func TestNumber(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 1234.6: "1235", 24.34: "24.3", 1.6049: "1.60", 0.0426: "0.043", 0.00012: "0.00012", -3.5: "-3.50"} {
		assert.Equal(t, want, number(v), "%v", v)
	}
}
