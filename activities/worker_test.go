package activities_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/stagehand-dev/stagehand/activities"
)

type stopIn struct{}

// runDuringStop runs st in an activity environment whose worker is w-1 and
// whose stop channel the test closes once the step has started.
func runDuringStop(t *testing.T, st activities.StepType, started <-chan struct{}) (activities.StepResult, error, *activities.Worker) {
	t.Helper()
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	w := activities.NewWorker("w-1")
	env.SetWorkerOptions(worker.Options{BackgroundActivityContext: w.Context(context.Background())})
	stop := make(chan struct{})
	env.SetWorkerStopChannel(stop)
	env.RegisterActivityWithOptions(st.Handler, activity.RegisterOptions{Name: st.Name})
	go func() {
		<-started
		assert.Equal(t, 1, w.Running(), "the step counts as running")
		close(stop)
	}()
	val, err := env.ExecuteActivity(st.Name, activities.StepRequest{StepID: "watch"})
	var res activities.StepResult
	if err == nil {
		require.NoError(t, val.Get(&res))
	}
	return res, err, w
}

// A resumable step (a watch) is cancelled as soon as its worker stops and
// reports the interruption, naming the worker, as a non-retryable
// StepInterrupted the workflow runs again.
func TestResumableStepHandsOverOnStop(t *testing.T) {
	started := make(chan struct{})
	spec := activities.StepSpec{Name: "test.watch", Resumable: true}
	st := activities.Implement(spec, func(ctx context.Context, _ stopIn) (map[string]any, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	_, err, w := runDuringStop(t, st, started)
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr), "%v", err)
	assert.Equal(t, activities.ErrStepInterrupted, appErr.Type())
	assert.True(t, appErr.NonRetryable(), "an interruption must not spend a retry attempt")
	assert.Contains(t, appErr.Error(), "worker w-1 stopped during the step")
	assert.Equal(t, 0, w.Running())
	assert.True(t, w.WaitIdle(time.Second))
}

// Any other step keeps running through the stop (the SDK cancels it only
// when the stop timeout runs out) and its result names its worker.
func TestStepFinishesDuringStop(t *testing.T) {
	started := make(chan struct{})
	spec := activities.StepSpec{Name: "test.build", Outputs: []activities.Output{{Name: "done", Type: "bool"}}}
	st := activities.Implement(spec, func(ctx context.Context, _ stopIn) (map[string]any, error) {
		close(started)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(300 * time.Millisecond):
			return map[string]any{"done": true}, nil
		}
	})
	res, err, _ := runDuringStop(t, st, started)
	require.NoError(t, err)
	assert.Equal(t, true, res.Outputs["done"])
	assert.Equal(t, "w-1", res.Worker)
}

func TestWorkerWaitIdleTimesOut(t *testing.T) {
	w := activities.NewWorker("w")
	assert.True(t, w.WaitIdle(0), "nothing running: idle at once")
}
