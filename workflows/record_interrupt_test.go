package workflows_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/internal/devserver"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// handoverRunbook has a watch (resumable: it hands over when its worker
// stops) and a build (not: it keeps running until the stop timeout
// cancels it), each of which waits until the test releases it.
const handoverRunbook = `name: handover
steps:
  - id: watch
    uses: test.watch
  - id: build
    uses: test.build
  - id: done
    uses: noop
`

type holdIn struct{}

// holder is a step type that blocks until released, recording which
// worker each call ran on.
type holder struct {
	mu       sync.Mutex
	workers  []string
	started  chan string
	released chan struct{}
}

func newHolder() *holder {
	return &holder{started: make(chan string, 10), released: make(chan struct{})}
}

func (h *holder) step(name string, resumable bool) activities.StepType {
	spec := activities.StepSpec{Name: name, Resumable: resumable}
	return activities.Implement(spec, func(ctx context.Context, _ holdIn) (map[string]any, error) {
		w := activities.WorkerOf(ctx).Identity
		h.mu.Lock()
		h.workers = append(h.workers, w)
		h.mu.Unlock()
		h.started <- w
		select {
		case <-h.released:
			return map[string]any{}, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
}

// TestStopHandsStepsOver runs two workers on one task queue of a real dev
// server. Worker A runs a watch; its stop hands the watch over at once
// and the run carries on on worker B. A's second stint runs a build; its
// stop waits the stop timeout, cancels the build, and B runs it again.
// Neither interruption spends an attempt, and the status names the worker
// of each step. The history is replayed, and written to testdata when
// STAGEHAND_RECORD_HISTORY names that directory.
func TestStopHandsStepsOver(t *testing.T) {
	srv := devserver.Shared(t)
	ctx := context.Background()
	watch, build := newHolder(), newHolder()
	cat, err := registry.Catalogue(registry.Deps{})
	require.NoError(t, err)
	require.NoError(t, cat.Add(watch.step("test.watch", true)))
	require.NoError(t, cat.Add(build.step("test.build", false)))
	lib, err := runbooks.NewLibrary("", cat)
	require.NoError(t, err)
	tq := fmt.Sprintf("handover-%d", time.Now().UnixNano())
	const stopTimeout = 3 * time.Second
	newWorker := func(identity string) worker.Worker {
		// As worker/app sets it up: the step adapter cancels what still
		// runs a little before the SDK's stop timeout.
		steps := activities.NewWorker(identity)
		steps.Drain = stopTimeout - time.Second
		w := worker.New(srv.Client, tq, worker.Options{
			Identity:                  identity,
			WorkerStopTimeout:         stopTimeout,
			BackgroundActivityContext: steps.Context(context.Background()),
		})
		workflows.Register(w, &workflows.Resolver{Library: lib, Catalogue: cat, AllowInline: true})
		require.NoError(t, w.Start())
		return w
	}

	a := newWorker("worker-a")
	id := fmt.Sprintf("handover-%d", time.Now().UnixNano())
	run, err := srv.Client.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: tq}, workflows.WorkflowType,
		workflows.RunInput{Definition: handoverRunbook, RequestedBy: "alice"})
	require.NoError(t, err)
	assert.Equal(t, "worker-a", waitStarted(t, watch))

	b := newWorker("worker-b")
	t.Cleanup(b.Stop)
	began := time.Now()
	a.Stop()
	assert.Less(t, time.Since(began), stopTimeout, "a watch must not hold the stop for its timeout")
	assert.Equal(t, "worker-b", waitStarted(t, watch), "the watch runs again on the other worker")
	close(watch.released)

	// The build starts on B (A is gone); stop B with A back to take over.
	assert.Equal(t, "worker-b", waitStarted(t, build))
	a2 := newWorker("worker-a2")
	t.Cleanup(a2.Stop)
	began = time.Now()
	b.Stop()
	took := time.Since(began)
	assert.GreaterOrEqual(t, took, stopTimeout-time.Second, "a build may go on for the drain time")
	assert.Less(t, took, stopTimeout+time.Second, "the stop ends within its timeout")
	assert.Equal(t, "worker-a2", waitStarted(t, build), "the cancelled build runs again on the other worker")
	close(build.released)

	require.NoError(t, run.Get(ctx, nil))
	st, err := queryStatus(ctx, srv.Client, id)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunSucceeded, st.State)
	for step, worker := range map[string]string{"watch": "worker-b", "build": "worker-a2", "done": "worker-a2"} {
		s := stepByID(st.Steps, step)
		assert.Equal(t, workflows.StepSucceeded, s.State, step)
		assert.Equal(t, worker, s.Worker, step)
		assert.EqualValues(t, 1, s.Attempts, "%s: an interruption is not an attempt", step)
	}
	assert.Equal(t, 1, countEvents(t, srv.Client, id, "watch~1"))
	assert.Equal(t, 1, countEvents(t, srv.Client, id, "build~1"))

	out, err := srv.Command(ctx, "workflow", "show", "--workflow-id", id, "--output", "json").Output()
	require.NoError(t, err, "temporal workflow show: %s", exitStderr(err))
	recordAndReplay(t, out, "stop-interrupts-watch-and-build.json")
}

func waitStarted(t *testing.T, h *holder) string {
	t.Helper()
	select {
	case w := <-h.started:
		return w
	case <-time.After(30 * time.Second):
		t.Fatal("the step did not start within 30s")
		return ""
	}
}

func stepByID(steps []workflows.StepStatus, id string) workflows.StepStatus {
	for _, s := range steps {
		if s.ID == id {
			return s
		}
	}
	return workflows.StepStatus{}
}
