package activities

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
)

// Worker is what a worker process tells the steps it runs about itself:
// its identity (recorded with each step's result, so status and the audit
// say which of several workers ran it) and a count of the steps under
// way, which a stopping worker waits on before it closes its connection,
// so the failures of steps its stop interrupted still reach the server.
// The worker hands it to every step through its activity context
// (Worker.Context as the SDK's BackgroundActivityContext).
type Worker struct {
	Identity string

	mu      sync.Mutex
	running int
	idle    chan struct{} // closed while running == 0
}

// NewWorker returns the Worker of a process named identity.
func NewWorker(identity string) *Worker {
	idle := make(chan struct{})
	close(idle)
	return &Worker{Identity: identity, idle: idle}
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
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running == 0 {
		w.idle = make(chan struct{})
	}
	w.running++
}

func (w *Worker) end() {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.running--
	if w.running == 0 {
		close(w.idle)
	}
}

// Running is the number of step handlers under way.
func (w *Worker) Running() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.running
}

// WaitIdle waits until no step handler runs, or timeout; it reports
// whether they all returned.
func (w *Worker) WaitIdle(timeout time.Duration) bool {
	w.mu.Lock()
	idle := w.idle
	w.mu.Unlock()
	select {
	case <-idle:
		return true
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-idle:
		return true
	case <-t.C:
		return false
	}
}

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

// stopWatch ties a step's context to its worker's stop. A resumable step
// (a watch: it only observes) is cancelled as soon as the worker begins
// to stop, so it hands over at once instead of holding the stop for its
// whole stop timeout; other steps keep their context until the SDK
// cancels it when the stop timeout runs out.
func stopWatch(ctx context.Context, resumable bool) (context.Context, <-chan struct{}, context.CancelFunc) {
	if !activity.IsActivity(ctx) {
		return ctx, nil, func() {}
	}
	stop := activity.GetWorkerStopChannel(ctx)
	if !resumable {
		return ctx, stop, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		select {
		case <-stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, stop, cancel
}

// interrupted reports whether a step's failure is its worker's stop: the
// worker is stopping and the step's context was cancelled by it.
func interrupted(ctx context.Context, stop <-chan struct{}) bool {
	if stop == nil || ctx.Err() == nil {
		return false
	}
	select {
	case <-stop:
		// Whatever the step returned, it returned because its context
		// ended: the outcome of the step itself is unknown.
		return true
	default:
		return false
	}
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
