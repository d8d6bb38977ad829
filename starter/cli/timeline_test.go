package cli

import (
	"bytes"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
)

// TestBuildTimelineFromRecordedHistory reads a history recorded from a real
// run on a real server (the replay test's fixture).
func TestBuildTimelineFromRecordedHistory(t *testing.T) {
	f, err := os.Open("../../workflows/testdata/hello-approved.json")
	require.NoError(t, err)
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	require.NoError(t, err)
	tl := BuildTimeline(h.GetEvents())

	var whats []string
	for _, e := range tl.Entries {
		whats = append(whats, e.What+":"+e.Step)
	}
	assert.Equal(t, []string{"started:", "resolve:resolve", "wait:", "approval:merge", "approval:merge", "step:note", "ended:"}, whats)
	start := tl.Entries[0]
	assert.Contains(t, start.Detail, "hello requested by alice")
	assert.Contains(t, start.Detail, "environment=prod")
	refused, approved := tl.Entries[3], tl.Entries[4]
	assert.Equal(t, "approve by alice via signal", refused.Detail)
	assert.Equal(t, `approve by carol via signal: "sandbox looks good"`, approved.Detail)
	note := tl.Entries[5]
	assert.Equal(t, "log", note.Uses)
	assert.EqualValues(t, 1, note.Attempts)
	assert.Equal(t, "22007@vm@", note.Worker, "the worker that started the step's attempt")
	assert.Equal(t, "succeeded", note.Outcome)
	assert.Equal(t, "succeeded", tl.Entries[6].Outcome)

	var out bytes.Buffer
	require.NoError(t, writeShow(&out, showResult{Run: &runView{WorkflowID: "hello-1", Start: start.At}, Timeline: tl}, true))
	assert.Contains(t, out.String(), "### Run `hello-1`")
	assert.Contains(t, out.String(), "| approval |")
	assert.Contains(t, out.String(), "| WORKER |")
	assert.Contains(t, out.String(), "| 22007@vm@ |")
}
