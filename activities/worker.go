package activities

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// Worker is what a worker process tells the steps it runs about itself:
// its identity (recorded with each step's result, so status and the audit
// say which of several workers ran it), how long its steps may drain when
// it stops, and a count of the steps under way, which a stopping worker
// reports if any outlive its stop timeout. The worker hands it to every
// step through its activity context (Worker.Context as the SDK's
// BackgroundActivityContext).
type Worker struct {
	Identity string
	// Drain is how long a step that is not resumable may go on after its
	// worker began to stop before the step adapter cancels it; zero
	// leaves that to the SDK's stop timeout. It must end before that
	// timeout, because once the SDK's timeout is over it cancels the
	// activity context's root and reports a step's outcome as a plain
	// (retried: an attempt spent) "postprocess" failure instead.
	Drain time.Duration

	running atomic.Int64
}

// NewWorker returns the Worker of a process named identity.
func NewWorker(identity string) *Worker {
	return &Worker{Identity: identity}
}

type workerKey struct{}

// Context returns parent carrying w, for the worker's activity context.
func (w *Worker) Context(parent context.Context) context.Context {
	return context.WithValue(parent, workerKey{}, w)
}

// WorkerOf returns the Worker ctx carries; nil outside a worker (tests
// that call handlers directly).
func WorkerOf(ctx context.Context) *Worker {
	w, _ := ctx.Value(workerKey{}).(*Worker)
	return w
}

func (w *Worker) begin() {
	if w != nil {
		w.running.Add(1)
	}
}

func (w *Worker) end() {
	if w != nil {
		w.running.Add(-1)
	}
}

// Running is the number of step handlers under way.
func (w *Worker) Running() int { return int(w.running.Load()) }

func (w *Worker) identity() string {
	if w == nil {
		return ""
	}
	return w.Identity
}

// ErrStepInterrupted is the error type of a step its worker's stop cut
// short. It is non-retryable so that the server does not spend one of the
// step's attempts on it: the workflow runs the step again itself (on
// whichever worker polls next), as the steps are idempotent.
const ErrStepInterrupted = "StepInterrupted"

// errWorkerStopping is the cause stopWatch cancels a step's context with,
// so a cancellation for any other reason (the run was cancelled, say) is
// never taken for the worker's stop.
var errWorkerStopping = errors.New("the worker is stopping")

// stopWatch ties a step's context to its worker's stop. A resumable step
// (a watch: it only observes) is cancelled as soon as the worker begins
// to stop, so it hands over at once instead of holding the stop; any
// other step may finish within the worker's Drain, and is cancelled
// then. Without a Drain, only the SDK's stop timeout ends such a step.
func stopWatch(ctx context.Context, w *Worker, resumable bool) (context.Context, context.CancelFunc) {
	if !activity.IsActivity(ctx) {
		return ctx, func() {}
	}
	var grace time.Duration
	switch {
	case resumable:
	case w != nil && w.Drain > 0:
		grace = w.Drain
	default:
		return ctx, func() {}
	}
	stop := activity.GetWorkerStopChannel(ctx)
	ctx, cancel := context.WithCancelCause(ctx)
	go func() {
		select {
		case <-stop:
		case <-ctx.Done():
			return
		}
		if grace > 0 {
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
		cancel(errWorkerStopping)
	}()
	return ctx, func() { cancel(nil) }
}

// interrupted reports whether a step ended because stopWatch cut it
// short: whatever the step returned then, it returned because its context
// ended, so the outcome of the step itself is unknown.
func interrupted(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), errWorkerStopping)
}

func interruptedError(stepID, name string, w *Worker, attempt int32) error {
	who := "its worker"
	if id := w.identity(); id != "" {
		who = "worker " + id
	}
	return temporal.NewApplicationErrorWithOptions(
		fmt.Sprintf("step %q (%s): %s stopped during the step; it runs again on another worker", stepID, name, who),
		ErrStepInterrupted, temporal.ApplicationErrorOptions{
			NonRetryable: true,
			Details:      []any{StepFailureDetails{Attempt: attempt}},
		})
}
