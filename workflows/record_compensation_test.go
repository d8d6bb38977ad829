package workflows_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/worker"

	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// compensationRunbook exercises a gate in onFailure (with reminders), a
// later onFailure step that asks about it, and the audit section.
const compensationRunbook = `name: restore-paths
description: failed step, reminded onFailure gate approved by update after a cancel request, audit
params:
  pause: {type: string, default: "not-a-duration"}
steps:
  - id: migrate
    uses: log
    with: {message: "migrated at {{ .run.startedAt }}"}
  - id: boom
    uses: wait
    with: {duration: "{{ .params.pause }}"}
onFailure:
  - id: restore
    approval:
      message: "{{ .failedStep }} failed; restore?"
      approvers: [carol]
      timeout: 1h
      remind:
        every: 1s
        uses: log
        with: {message: "restore gate open for {{ .gate.waiting }}"}
  - id: do_restore
    if: '{{ eq .steps.restore.state "approved" }}'
    uses: log
    with: {message: "restoring"}
audit:
  summary:
    restore: '{{ .steps.restore.state }}'
    started: '{{ .run.startedUnix }}'
  details:
    why: 'step {{ .failedStep }}: {{ .error }}'
`

// TestRecordedCompensationGateOnRealServer: the run fails, waits at its
// onFailure gate (reminders fire), a cancel request does not end the wait,
// carol approves through the update, the run ends failed with its audit in
// the result and the memo. The history is replayed at once, and written to
// testdata when STAGEHAND_RECORD_HISTORY names that directory.
func TestRecordedCompensationGateOnRealServer(t *testing.T) {
	srv := devserver.Shared(t)
	ctx := context.Background()
	cat, err := registry.Catalogue(registry.Deps{})
	require.NoError(t, err)
	lib, err := runbooks.NewLibrary("", cat)
	require.NoError(t, err)
	tq := fmt.Sprintf("restore-%d", time.Now().UnixNano())
	w := worker.New(srv.Client, tq, worker.Options{})
	workflows.Register(w, &workflows.Resolver{Library: lib, Catalogue: cat, AllowInline: true})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)

	id := fmt.Sprintf("restore-%d", time.Now().UnixNano())
	run, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, workflows.WorkflowType,
		workflows.RunInput{Definition: compensationRunbook, RequestedBy: "alice"})
	require.NoError(t, err)

	require.Eventually(t, func() bool {
		st, err := queryStatus(ctx, srv.Client, id)
		return err == nil && st.PendingGate != nil && st.PendingGate.Gate == "restore" && countEvents(t, srv.Client, id, "restore-remind") >= 2
	}, 30*time.Second, 200*time.Millisecond, "compensation gate with two reminders")
	require.NoError(t, srv.Client.CancelWorkflow(ctx, id, ""))
	st, err := queryStatus(ctx, srv.Client, id)
	require.NoError(t, err)
	require.NotNil(t, st.PendingGate, "a cancel request does not end a compensation gate")

	h, err := srv.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: workflows.ApproveUpdate, WaitForStage: client.WorkflowUpdateStageCompleted,
		Args: []any{workflows.ApprovalDecision{Gate: "restore", Decision: workflows.DecisionApprove, By: "carol", Comment: "restore"}},
	})
	require.NoError(t, err)
	require.NoError(t, h.Get(ctx, nil))

	require.Error(t, run.Get(ctx, nil))
	st, err = queryStatus(ctx, srv.Client, id)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunFailed, st.State)
	assert.Equal(t, "boom", st.FailedStep)
	assert.Equal(t, workflows.StepApproved, step(st, "restore").State)
	assert.Equal(t, []string{"do_restore"}, st.Compensated)
	require.NotNil(t, st.Audit)
	assert.Equal(t, "approved", st.Audit.Summary["restore"])
	assert.Len(t, st.Audit.Summary["started"], 10)
	assert.Contains(t, st.Audit.Details["why"], "step boom: ")

	desc, err := srv.Client.DescribeWorkflowExecution(ctx, id, "")
	require.NoError(t, err)
	var memo map[string]string
	p := desc.GetWorkflowExecutionInfo().GetMemo().GetFields()[workflows.MemoAudit]
	require.NotNil(t, p, "audit memo")
	require.NoError(t, converter.GetDefaultDataConverter().FromPayload(p, &memo))
	assert.Equal(t, st.Audit.Summary, memo)

	out, err := srv.Command(ctx, "workflow", "show", "--workflow-id", id, "--output", "json").Output()
	require.NoError(t, err, "temporal workflow show: %s", exitStderr(err))
	recordAndReplay(t, out, "restore-onfailure-gate-audit.json")
}
