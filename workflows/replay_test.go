package workflows_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/workflows"
)

// TestReplayRecordedHistories replays histories recorded from real runs on
// a real server (regenerate with
// `STAGEHAND_RECORD_HISTORY=$PWD/workflows/testdata go test ./worker/app ./workflows`),
// finished runs and one left waiting at its gate. A change to the
// interpreter that alters the order of commands fails here unless it is
// gated with workflow.GetVersion (the rule is in the package doc;
// TestReplayCatchesUnguardedChange shows the failure). Never delete or
// regenerate away an old history: it stands for runs still open.
func TestReplayRecordedHistories(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files, "no recorded histories in workflows/testdata")
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			r := worker.NewWorkflowReplayer()
			r.RegisterWorkflowWithOptions(workflows.RunbookWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowType})
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, f))
		})
	}
}
