package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// mergeWindowRunbook has the patch runbook's shape around the merge: the
// sandbox is changed before it, and compensation rolls the sandbox back
// only if the merge did not happen; after a merge it leaves evidence.
const mergeWindowRunbook = `name: merge-window
description: cancel during a slow merge
steps:
  - id: sandbox_apply
    uses: log
    with: {message: "sandbox runs the PR image"}
  - id: merge_pr
    uses: %s
    with: {pr: 42}
  - id: prod_image
    uses: log
    with: {message: "production follows {{ .steps.merge_pr.outputs.mergeCommit }}"}
onFailure:
  - id: rollback_sandbox
    uses: log
    if: '{{ ne .steps.merge_pr.state "succeeded" }}'
    with: {message: "sandbox rolled back"}
  - id: production_evidence
    uses: log
    if: '{{ eq .steps.merge_pr.state "succeeded" }}'
    with: {message: "merged {{ .steps.merge_pr.outputs.mergeCommit }}, not reverted"}
`

type slowMergeIn struct {
	PR int `json:"pr"`
}

type slowMergeOut struct {
	MergeCommit string `json:"mergeCommit"`
}

// slowMerge stands in for git.merge: it blocks until released, then
// merges. Like a push already on the wire, it does not stop when the run
// is cancelled.
type slowMerge struct {
	started chan struct{}
	release chan struct{}
	merges  atomic.Int32
}

func (m *slowMerge) stepType(name string, irreversible bool) activities.StepType {
	st := activities.Step(name, "a merge that takes its time", func(ctx context.Context, in slowMergeIn) (slowMergeOut, error) {
		select {
		case m.started <- struct{}{}:
		default:
		}
		<-m.release
		m.merges.Add(1)
		return slowMergeOut{MergeCommit: fmt.Sprintf("c0ffee%02d", in.PR)}, nil
	})
	st.Irreversible = irreversible
	st.DefaultTimeout = time.Minute
	return st
}

// TestCancelDuringIrreversibleStepOnRealServer: a run is cancelled while
// its merge is under way and the merge completes afterwards. For an
// irreversible step type the run waits for the merge, records it as
// succeeded, and compensation leaves evidence instead of rolling the
// sandbox back. The same runbook with a step type not marked irreversible
// shows the window this closes: the step is settled as cancelled at once,
// the sandbox is rolled back, and the merge lands anyway.
func TestCancelDuringIrreversibleStepOnRealServer(t *testing.T) {
	srv := devserver.Shared(t)
	for _, tc := range []struct {
		name         string
		irreversible bool
	}{{"irreversible", true}, {"reversible", false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			merge := &slowMerge{started: make(chan struct{}, 1), release: make(chan struct{})}
			released := false
			t.Cleanup(func() {
				if !released {
					close(merge.release)
				}
			})
			uses := "test.slowMerge"
			cat, err := registry.Catalogue(registry.Deps{})
			require.NoError(t, err)
			require.NoError(t, cat.Add(merge.stepType(uses, tc.irreversible)))
			// The runbook is loaded from a directory, as a worker's are,
			// so the test does not depend on inline definitions.
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "merge-window.yaml"), fmt.Appendf(nil, mergeWindowRunbook, uses), 0o644))
			lib, err := runbooks.NewLibrary(dir, cat)
			require.NoError(t, err)
			tq := fmt.Sprintf("merge-window-%s-%d", tc.name, time.Now().UnixNano())
			w := worker.New(srv.Client, tq, worker.Options{})
			workflows.Register(w, &workflows.Resolver{Library: lib, Catalogue: cat})
			require.NoError(t, w.Start())
			t.Cleanup(w.Stop)

			id := tq
			run, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, workflows.WorkflowType,
				workflows.RunInput{Runbook: "merge-window", RequestedBy: "alice"})
			require.NoError(t, err)
			select {
			case <-merge.started:
			case <-time.After(30 * time.Second):
				t.Fatal("the merge never started")
			}
			require.NoError(t, srv.Client.CancelWorkflow(ctx, id, ""))
			// The workflow has acted on the cancel (asked the activity to
			// stop) before the merge completes: the window under test.
			require.Eventually(t, func() bool {
				return hasEvent(t, srv.Client, id, enums.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED)
			}, 30*time.Second, 100*time.Millisecond, "cancel requested for the merge")

			if !tc.irreversible {
				// The run does not wait: it compensates and ends while
				// the merge is still blocked.
				require.Error(t, run.Get(ctx, nil))
			}
			close(merge.release)
			released = true
			err = run.Get(ctx, nil)
			var canceled *temporal.CanceledError
			require.True(t, errors.As(err, &canceled), "got %T %v", err, err)
			require.Eventually(t, func() bool { return merge.merges.Load() == 1 }, 10*time.Second, 50*time.Millisecond, "the merge happened once")

			st, err := queryStatus(ctx, srv.Client, id)
			require.NoError(t, err)
			assert.Equal(t, workflows.RunCancelled, st.State)
			if tc.irreversible {
				assert.Equal(t, workflows.StepSucceeded, step(st, "merge_pr").State, "the merge that completed after the cancel is recorded")
				assert.Equal(t, "c0ffee42", step(st, "merge_pr").Outputs["mergeCommit"])
				assert.Equal(t, workflows.StepPending, step(st, "prod_image").State, "nothing starts after the cancel")
				assert.Equal(t, workflows.StepSkipped, step(st, "rollback_sandbox").State, "the sandbox is not rolled back as if nothing merged")
				assert.Equal(t, []string{"production_evidence"}, st.Compensated)
			} else {
				assert.Equal(t, workflows.StepCancelled, step(st, "merge_pr").State)
				assert.Equal(t, []string{"rollback_sandbox"}, st.Compensated, "the old window: rolled back although the merge landed")
				return
			}

			out, err := srv.Command(ctx, "workflow", "show", "--workflow-id", id, "--output", "json").Output()
			require.NoError(t, err, "temporal workflow show: %s", exitStderr(err))
			recordAndReplay(t, out, "cancel-during-irreversible-merge.json")
		})
	}
}

func hasEvent(t *testing.T, c client.Client, id string, typ enums.EventType) bool {
	t.Helper()
	iter := c.GetWorkflowHistory(context.Background(), id, "", false, 0)
	for iter.HasNext() {
		ev, err := iter.Next()
		require.NoError(t, err)
		if ev.GetEventType() == typ {
			return true
		}
	}
	return false
}
