package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/worker/app"
	"github.com/stagehand-dev/stagehand/worker/config"
	"github.com/stagehand-dev/stagehand/workflows"
)

func TestMain(m *testing.M) { devserver.Main(m) }

// startWorker runs a real worker in-process on its own task queue against
// the shared dev server.
func startWorker(t *testing.T, srv *devserver.Server, runbooksDir string) (string, *app.App) {
	t.Helper()
	cfg := config.Defaults()
	cfg.Temporal.Address = srv.Address
	cfg.Temporal.Namespace = srv.Namespace
	cfg.Temporal.TaskQueue = fmt.Sprintf("it-%s-%d", t.Name(), time.Now().UnixNano())
	cfg.RunbooksDir = runbooksDir
	a, err := app.New(context.Background(), cfg, app.Options{Client: srv.Client, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	require.NoError(t, a.Start())
	t.Cleanup(a.Stop)
	return cfg.Temporal.TaskQueue, a
}

func temporalCLI(t *testing.T, srv *devserver.Server, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := srv.Command(ctx, args...).CombinedOutput()
	require.NoError(t, err, "temporal %v: %s", args, out)
	return string(out)
}

func waitForState(t *testing.T, c client.Client, id string, want workflows.RunState) workflows.Status {
	t.Helper()
	var st workflows.Status
	require.Eventually(t, func() bool {
		v, err := c.QueryWorkflow(context.Background(), id, "", workflows.StatusQuery)
		if err != nil {
			return false
		}
		if err := v.Get(&st); err != nil {
			return false
		}
		return st.State == want
	}, 30*time.Second, 50*time.Millisecond, "run %s never reached %s (last: %s)", id, want, st.State)
	return st
}

// TestHelloWithRealTemporalCLI is the Temporal UI's path: the run is started
// with the exact JSON input the README shows and approved with a plain
// signal, both through the real temporal CLI against a real server.
func TestHelloWithRealTemporalCLI(t *testing.T) {
	srv := devserver.Shared(t)
	tq, _ := startWorker(t, srv, "")
	id := "hello-" + fmt.Sprint(time.Now().UnixNano())
	input := `{"runbook":"hello","params":{"image":"registry.local/backstage-portal/backend:pr-42-0123abcd-1763700000","environment":"prod"},"requestedBy":"alice"}`
	temporalCLI(t, srv, "workflow", "start", "--type", workflows.WorkflowType, "--task-queue", tq, "--workflow-id", id, "--input", input)

	st := waitForState(t, srv.Client, id, workflows.RunWaitingApproval)
	require.NotNil(t, st.PendingGate)
	assert.Equal(t, "merge", st.PendingGate.Gate)
	assert.Equal(t, []string{"bob", "carol"}, st.PendingGate.Approvers)
	assert.Equal(t, "Merge registry.local/backstage-portal/backend:pr-42-0123abcd-1763700000?", st.PendingGate.Message)

	// The requester approving their own run is refused and recorded.
	temporalCLI(t, srv, "workflow", "signal", "--workflow-id", id, "--name", workflows.ApprovalSignal,
		"--input", `{"gate":"merge","decision":"approve","by":"alice"}`)
	temporalCLI(t, srv, "workflow", "signal", "--workflow-id", id, "--name", workflows.ApprovalSignal,
		"--input", `{"gate":"merge","decision":"approve","by":"carol","comment":"sandbox looks good"}`)

	var result workflows.Status
	require.NoError(t, srv.Client.GetWorkflow(context.Background(), id, "").Get(context.Background(), &result))
	assert.Equal(t, workflows.RunSucceeded, result.State)
	require.Len(t, result.Decisions, 2)
	assert.Contains(t, result.Decisions[0].Refused, "four-eyes")
	assert.Equal(t, "carol", result.Decisions[1].By)
	for _, s := range result.Steps {
		assert.Contains(t, []workflows.StepState{workflows.StepSucceeded, workflows.StepApproved}, s.State, s.ID)
	}

	desc, err := srv.Client.DescribeWorkflowExecution(context.Background(), id, "")
	require.NoError(t, err)
	sa := desc.WorkflowExecutionInfo.SearchAttributes.GetIndexedFields()
	decode := func(name string) any {
		var v any
		require.NoError(t, converter.GetDefaultDataConverter().FromPayload(sa[name], &v), name)
		return v
	}
	assert.Equal(t, "hello", decode("StagehandRunbook"))
	assert.Equal(t, "prod", decode("StagehandEnvironment"))
	assert.Equal(t, "succeeded", decode("StagehandOutcome"))
	assert.Equal(t, "alice", decode("StagehandRequestedBy"))
	assert.Equal(t, []any{"carol"}, decode("StagehandApprovers"))

	// Record the history for the replay test when asked to.
	if dir := os.Getenv("STAGEHAND_RECORD_HISTORY"); dir != "" {
		out := temporalCLI(t, srv, "workflow", "show", "--workflow-id", id, "--output", "json")
		require.NoError(t, os.WriteFile(filepath.Join(dir, "hello-approved.json"), []byte(out), 0o644))
	}
}

// TestUpdateRefusesBeforeHistory checks the approve update's validator on a
// real server: refused decisions never become events.
func TestUpdateRefusesBeforeHistory(t *testing.T) {
	srv := devserver.Shared(t)
	tq, _ := startWorker(t, srv, "")
	ctx := context.Background()
	run, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "upd-" + fmt.Sprint(time.Now().UnixNano()), TaskQueue: tq},
		workflows.WorkflowType, workflows.RunInput{Runbook: "hello", Params: map[string]any{"image": "r/b:1"}, RequestedBy: "alice"})
	require.NoError(t, err)
	waitForState(t, srv.Client, run.GetID(), workflows.RunWaitingApproval)

	update := func(d workflows.ApprovalDecision) error {
		h, err := srv.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
			WorkflowID: run.GetID(), UpdateName: workflows.ApproveUpdate, Args: []any{d}, WaitForStage: client.WorkflowUpdateStageCompleted,
		})
		if err != nil {
			return err
		}
		var rec workflows.DecisionRecord
		return h.Get(ctx, &rec)
	}
	err = update(workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "mallory"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "mallory is not an approver")
	err = update(workflows.ApprovalDecision{Gate: "deploy", Decision: "approve", By: "bob"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown gate "deploy"`)
	require.NoError(t, update(workflows.ApprovalDecision{Gate: "merge", Decision: "reject", By: "bob", Comment: "not today"}))

	var st workflows.Status
	err = run.Get(ctx, &st)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "rejected by bob: not today")

	// No refused update left a trace in history.
	iter := srv.Client.GetWorkflowHistory(ctx, run.GetID(), "", false, 0)
	updates := 0
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		if ev.GetWorkflowExecutionUpdateAcceptedEventAttributes() != nil {
			updates++
		}
	}
	assert.Equal(t, 1, updates)
}

// TestBadInputFailsBeforeAnyStep: a run with invalid params ends at the
// resolve activity, naming the param.
func TestBadInputFailsBeforeAnyStep(t *testing.T) {
	srv := devserver.Shared(t)
	tq, _ := startWorker(t, srv, "")
	ctx := context.Background()
	run, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: tq},
		workflows.WorkflowType, workflows.RunInput{Runbook: "hello", Params: map[string]any{"image": "no-tag"}, RequestedBy: "alice"})
	require.NoError(t, err)
	err = run.Get(ctx, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `image: "no-tag" does not match pattern`)
	iter := srv.Client.GetWorkflowHistory(ctx, run.GetID(), "", false, 0)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			assert.Equal(t, workflows.ResolveActivity, a.GetActivityType().GetName(), "no step ran")
		}
	}
}

func TestRunbooksDirIsLoaded(t *testing.T) {
	srv := devserver.Shared(t)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mine.yaml"), []byte("name: mine\nsteps:\n  - id: say\n    uses: log\n    with: {message: hi}\n"), 0o644))
	tq, a := startWorker(t, srv, dir)
	assert.Contains(t, a.Library.Names(), "mine")
	run, err := srv.Client.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{TaskQueue: tq},
		workflows.WorkflowType, workflows.RunInput{Runbook: "mine", RequestedBy: "alice"})
	require.NoError(t, err)
	var st workflows.Status
	require.NoError(t, run.Get(context.Background(), &st))
	b, _ := json.Marshal(st.Steps)
	assert.Contains(t, string(b), `"message":"hi"`)
}
