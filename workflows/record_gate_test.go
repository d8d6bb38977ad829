package workflows_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// gateWaitingRunbook is a run that stops where real runs spend days: at an
// approval gate, after an irreversible step (so the history holds the
// irreversible-wait-for-cancellation version marker), with reminders
// firing, a refused signal recorded, and settings and environments read
// by templates.
const gateWaitingRunbook = `name: gate-waiting
description: waits at a reminded gate after an irreversible step
params:
  target: {type: environment, default: sandbox}
steps:
  - id: prepare
    uses: log
    with: {message: "deploying to {{ (index .environments .params.target).url }} for {{ .settings.team }}"}
  - id: push
    uses: test.slowMerge
    with: {pr: 7}
  - id: promote
    approval:
      message: "Promote {{ .steps.push.outputs.mergeCommit }}?"
      approvers: ['{{ join "," (index .environments .params.target).approvers }}']
      timeout: 72h
      remind:
        every: 1s
        uses: log
        with: {message: "promote open for {{ .gate.waiting }}"}
  - id: after
    uses: log
    with: {message: "promoted by {{ .steps.promote.outputs.by }}"}
onFailure:
  - id: undo
    uses: log
    with: {message: "undo after {{ .failedStep }}"}
`

// TestRecordedGateWaitingOnRealServer records the history of a run that
// is still waiting at its gate, the state in which a worker is most often
// upgraded under a run. TestReplayRecordedHistories replays it with the
// current interpreter: a change that alters the commands up to the gate
// fails there unless it is guarded by workflow.GetVersion (see doc in
// workflow.go). Written to testdata when STAGEHAND_RECORD_HISTORY names it.
func TestRecordedGateWaitingOnRealServer(t *testing.T) {
	srv := devserver.Shared(t)
	ctx := context.Background()
	merge := &slowMerge{started: make(chan struct{}, 1), release: make(chan struct{})}
	close(merge.release) // instant: the history needs the step, not the window
	cat, err := registry.Catalogue(registry.Deps{})
	require.NoError(t, err)
	require.NoError(t, cat.Add(merge.stepType("test.slowMerge", true)))
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "gate-waiting.yaml"), []byte(gateWaitingRunbook), 0o644))
	lib, err := runbooks.NewLibrary(dir, cat)
	require.NoError(t, err)
	tq := fmt.Sprintf("gate-waiting-%d", time.Now().UnixNano())
	w := worker.New(srv.Client, tq, worker.Options{})
	workflows.Register(w, &workflows.Resolver{Library: lib, Catalogue: cat,
		Environments: map[string]any{"sandbox": map[string]any{"url": "http://sandbox", "approvers": []any{"carol"}}},
		Settings:     map[string]any{"team": "portal"}})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	id := tq
	_, err = srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, workflows.WorkflowType,
		workflows.RunInput{Runbook: "gate-waiting", RequestedBy: "alice"})
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := queryStatus(ctx, srv.Client, id)
		return err == nil && st.PendingGate != nil && countEvents(t, srv.Client, id, "promote-remind") >= 2
	}, 30*time.Second, 200*time.Millisecond, "gate with two reminders")
	// A refused decision is kept in the status (and in history as a signal).
	require.NoError(t, srv.Client.SignalWorkflow(ctx, id, "", workflows.ApprovalSignal,
		workflows.ApprovalDecision{Gate: "promote", Decision: workflows.DecisionApprove, By: "alice"}))
	require.Eventually(t, func() bool {
		st, err := queryStatus(ctx, srv.Client, id)
		return err == nil && len(st.Decisions) == 1 && countEvents(t, srv.Client, id, "promote-remind") >= 3
	}, 30*time.Second, 200*time.Millisecond, "refused signal recorded, one more reminder")
	st, err := queryStatus(ctx, srv.Client, id)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunWaitingApproval, st.State)
	assert.Equal(t, []string{"carol"}, st.PendingGate.Approvers)
	assert.Contains(t, st.Decisions[0].Refused, "four-eyes")
	assert.Equal(t, "c0ffee07", step(st, "push").Outputs["mergeCommit"])

	out, err := srv.Command(ctx, "workflow", "show", "--workflow-id", id, "--output", "json").Output()
	require.NoError(t, err, "temporal workflow show: %s", exitStderr(err))
	require.NoError(t, srv.Client.TerminateWorkflow(ctx, id, "", "recorded while waiting"))
	recordAndReplay(t, out, "gate-waiting-irreversible-remind-refused.json")
}
