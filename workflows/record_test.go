package workflows_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// pathsRunbook exercises the interpreter paths the patch histories do not:
// a parallel group, a gate with reminders decided by the approve update, and
// a cancellation while a durable timer runs (compensation follows).
const pathsRunbook = `name: paths
description: parallel group, reminded gate approved by update, cancellation
params:
  image: {type: string, default: "registry.local/app:1.0"}
steps:
  - id: prepare
    uses: log
    with: {message: "preparing {{ .params.image }}"}
  - id: checks
    parallel:
      - id: check_a
        uses: noop
        with: {echo: a}
      - id: check_b
        uses: noop
        with: {echo: b}
  - id: promote
    approval:
      message: "Promote {{ .params.image }}?"
      approvers: [carol]
      timeout: 1h
      remind:
        every: 1s
        uses: log
        with: {message: "gate {{ .gate.id }} still open after {{ .gate.waiting }}"}
  - id: soak
    uses: wait
    with: {duration: 1h}
onFailure:
  - id: undo
    uses: log
    with: {message: "undo after {{ .failedStep }}"}
`

// TestRecordedPathsOnRealServer runs pathsRunbook on a real dev server:
// reminders fire, carol approves through the update, the run is cancelled
// during the soak and compensation runs. The fresh history is replayed at
// once, and written to testdata (for TestReplayRecordedHistories) when
// STAGEHAND_RECORD_HISTORY names that directory. testdata also holds the
// same run recorded by the interpreter before the step-call refactor
// (paths-update-parallel-remind-cancel.json, resolve as a regular
// activity), so both code paths keep replaying.
func TestRecordedPathsOnRealServer(t *testing.T) {
	srv := devserver.Shared(t)
	ctx := context.Background()
	cat, err := registry.Catalogue(registry.Deps{})
	require.NoError(t, err)
	lib, err := runbooks.NewLibrary("", cat)
	require.NoError(t, err)
	tq := fmt.Sprintf("paths-%d", time.Now().UnixNano())
	w := worker.New(srv.Client, tq, worker.Options{})
	workflows.Register(w, &workflows.Resolver{Library: lib, Catalogue: cat, AllowInline: true})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	id := fmt.Sprintf("paths-%d", time.Now().UnixNano())
	run, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, workflows.WorkflowType,
		workflows.RunInput{Definition: pathsRunbook, RequestedBy: "alice"})
	require.NoError(t, err)

	// Wait for the gate and at least two reminders.
	require.Eventually(t, func() bool {
		st, err := queryStatus(ctx, srv.Client, id)
		return err == nil && st.PendingGate != nil && countEvents(t, srv.Client, id, "remind") >= 2
	}, 30*time.Second, 200*time.Millisecond, "gate with two reminders")

	h, err := srv.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: workflows.ApproveUpdate, WaitForStage: client.WorkflowUpdateStageCompleted,
		Args: []any{workflows.ApprovalDecision{Gate: "promote", Decision: workflows.DecisionApprove, By: "carol", Comment: "ok"}},
	})
	require.NoError(t, err)
	var rec workflows.DecisionRecord
	require.NoError(t, h.Get(ctx, &rec))
	assert.Equal(t, "carol", rec.By)

	require.Eventually(t, func() bool {
		st, err := queryStatus(ctx, srv.Client, id)
		return err == nil && st.CurrentStep == "soak"
	}, 30*time.Second, 200*time.Millisecond, "soak running")
	require.NoError(t, srv.Client.CancelWorkflow(ctx, id, ""))

	err = run.Get(ctx, nil)
	require.Error(t, err)
	st, err := queryStatus(ctx, srv.Client, id)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunCancelled, st.State)
	assert.Equal(t, []string{"undo"}, st.Compensated)
	for _, id := range []string{"prepare", "checks", "check_a", "check_b"} {
		assert.Equal(t, workflows.StepSucceeded, step(st, id).State, id)
	}
	assert.Equal(t, workflows.StepApproved, step(st, "promote").State)
	assert.Equal(t, workflows.StepCancelled, step(st, "soak").State)

	// What the UI shows: activities and timers carry summaries naming the
	// step, its target and the gate's approvers.
	summaries := map[string]string{}
	iter := srv.Client.GetWorkflowHistory(ctx, id, "", false, 0)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		if p := ev.GetUserMetadata().GetSummary(); p != nil {
			var sum string
			require.NoError(t, converter.GetDefaultDataConverter().FromPayload(p, &sum))
			summaries[ev.GetEventType().String()+" "+sum] = sum
		}
	}
	assert.Contains(t, summaries, "ActivityTaskScheduled check_a (noop)")
	assert.Contains(t, summaries, "TimerStarted gate promote: waiting for carol")
	assert.Contains(t, summaries, "TimerStarted soak: wait 1h0m0s")
	assert.Contains(t, summaries, "ActivityTaskScheduled promote-remind-1: gate promote still open after 1s")
	assert.Contains(t, summaries, "MarkerRecorded resolve the runbook and its params")

	out, err := srv.Command(ctx, "workflow", "show", "--workflow-id", id, "--output", "json").Output()
	require.NoError(t, err, "temporal workflow show: %s", exitStderr(err))
	recordAndReplay(t, out, "paths-update-parallel-remind-cancel-local-resolve.json")
}

func queryStatus(ctx context.Context, c client.Client, id string) (*workflows.Status, error) {
	v, err := c.QueryWorkflow(ctx, id, "", workflows.StatusQuery)
	if err != nil {
		return nil, err
	}
	var st workflows.Status
	return &st, v.Get(&st)
}

// countEvents counts completed activities whose id contains substr.
func countEvents(t *testing.T, c client.Client, id, substr string) int {
	t.Helper()
	iter := c.GetWorkflowHistory(context.Background(), id, "", false, 0)
	n := 0
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil && strings.Contains(a.GetActivityId(), substr) {
			n++
		}
	}
	return n
}

func exitStderr(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}

// recordAndReplay replays a history `temporal workflow show --output json`
// printed, after writing it to testdata as name when
// STAGEHAND_RECORD_HISTORY names that directory (for
// TestReplayRecordedHistories), else to a temporary file.
func recordAndReplay(t *testing.T, history []byte, name string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if dir := os.Getenv("STAGEHAND_RECORD_HISTORY"); dir != "" {
		file = filepath.Join(dir, name)
	}
	require.NoError(t, os.WriteFile(file, history, 0o644))
	r := worker.NewWorkflowReplayer()
	r.RegisterWorkflowWithOptions(workflows.RunbookWorkflow, workflow.RegisterOptions{Name: workflows.WorkflowType})
	require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(nil, file))
}
