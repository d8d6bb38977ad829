package workflows_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/workflows"
)

type interruptIn struct {
	Times int `json:"times"`
}

// interruptHarness adds test.interrupted: a step whose worker "stops"
// during its first `times` calls (it fails as the step adapter reports a
// stop), and runs every step as worker w-1.
func interruptHarness(t *testing.T) (*harness, *[]string) {
	var mu sync.Mutex
	var ids []string
	st := activities.Step("test.interrupted", "interrupted by its worker's stop `times` times", func(ctx context.Context, in interruptIn) (map[string]any, error) {
		mu.Lock()
		defer mu.Unlock()
		ids = append(ids, activity.GetInfo(ctx).ActivityID)
		if len(ids) <= in.Times {
			return nil, temporal.NewNonRetryableApplicationError("worker w-0 stopped during the step", activities.ErrStepInterrupted, nil)
		}
		return map[string]any{"calls": len(ids)}, nil
	})
	h := newHarnessWith(t, st)
	h.SetWorkerOptions(worker.Options{BackgroundActivityContext: activities.NewWorker("w-1").Context(context.Background())})
	return h, &ids
}

const interruptRunbook = `name: watch
steps:
  - id: watch
    uses: test.interrupted
    with: {times: %d}
  - id: after
    uses: test.record
`

// A step its worker's stop interrupted runs again, as a new activity,
// without spending an attempt, and the run goes on.
func TestInterruptedStepRunsAgain(t *testing.T) {
	h, ids := interruptHarness(t)
	h.run(fmt.Sprintf(interruptRunbook, 2), nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	w := step(st, "watch")
	assert.Equal(t, workflows.StepSucceeded, w.State)
	assert.EqualValues(t, 1, w.Attempts, "an interruption is not an attempt")
	assert.Equal(t, []string{"watch", "watch~1", "watch~2"}, *ids)
	assert.Equal(t, "w-1", w.Worker, "the step records the worker that completed it")
	assert.Equal(t, "w-1", step(st, "after").Worker)
	assert.Equal(t, workflows.StepSucceeded, step(st, "after").State)
}

// One that is interrupted over and over fails the run, saying so.
func TestInterruptedStepGivesUp(t *testing.T) {
	h, ids := interruptHarness(t)
	h.run(fmt.Sprintf(interruptRunbook, 1000), nil, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	w := step(st, "watch")
	assert.Equal(t, workflows.StepFailed, w.State)
	assert.Equal(t, activities.ErrStepInterrupted, w.ErrorType)
	assert.Contains(t, w.Error, "stopped during the step")
	assert.Len(t, *ids, 11, "the first call and ten resumes")
	assert.Equal(t, workflows.StepPending, step(st, "after").State)
}

// A resumed step keeps its retry budget: attempts that failed before an
// interruption count, the interrupted one does not. Each case's step
// fails its attempts with a retryable error, except the second attempt of
// each activity whose id is in stopsOn, which its worker's stop cuts short.
func TestInterruptedStepKeepsItsRetryBudget(t *testing.T) {
	cases := []struct {
		name    string
		stopsOn []string
		calls   []string
	}{
		// One failed attempt before the stop, two after it: the budget of three.
		{"interrupted once", []string{"build"}, []string{"build#1", "build#2", "build~1#1", "build~1#2"}},
		// Both failures count, and the last resume gets the one attempt left.
		{"interrupted twice", []string{"build", "build~1"}, []string{"build#1", "build#2", "build~1#1", "build~1#2", "build~2#1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var calls []string
			st := activities.Step("test.failstop", "fails, and is interrupted on some second attempts", func(ctx context.Context, _ interruptIn) (map[string]any, error) {
				mu.Lock()
				defer mu.Unlock()
				info := activity.GetInfo(ctx)
				calls = append(calls, fmt.Sprintf("%s#%d", info.ActivityID, info.Attempt))
				if info.Attempt == 2 && slices.Contains(tc.stopsOn, info.ActivityID) {
					return nil, temporal.NewNonRetryableApplicationError("worker w-0 stopped during the step", activities.ErrStepInterrupted, nil)
				}
				return nil, temporal.NewApplicationError("registry flaked", "Flaky")
			})
			h := newHarnessWith(t, st)
			h.run(`name: budget
steps:
  - id: build
    uses: test.failstop
    retry: {maxAttempts: 3, initialInterval: 1s}
`, nil, "alice")
			res, err := h.result(t)
			require.Error(t, err)
			b := step(res, "build")
			assert.Equal(t, workflows.StepFailed, b.State)
			assert.Equal(t, "Flaky", b.ErrorType)
			assert.EqualValues(t, 3, b.Attempts, "the budget of three, whatever the interruptions")
			assert.Equal(t, tc.calls, calls)
		})
	}
}
