package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/runbooks"
)

// Defaults for steps that set none. Runbook steps are operations on real
// systems, so unlimited retries (Temporal's default) would hide failures.
const (
	defaultStepTimeout     = 10 * time.Minute
	defaultMaxAttempts     = 3
	defaultInitialInterval = time.Second
	defaultBackoff         = 2.0
	defaultMaximumInterval = 30 * time.Second
)

// stepCall is one call of a step type. Runbook steps, parallel members,
// compensation steps and gate reminders all go through callStep with one,
// so `with` rendering, activity options, summaries and error translation
// are the same for every caller.
type stepCall struct {
	// activityID is unique within the run (the step id, or e.g.
	// "merge-remind-2" for a reminder).
	activityID string
	// stepID is what the activity sees as StepRequest.StepID.
	stepID string
	uses   string
	// with is rendered against data just before the call, so it sees every
	// step that finished before this one.
	with map[string]any
	data map[string]any
	// timeout and heartbeatTimeout are the runbook's overrides (0: use the
	// step type's default).
	timeout          time.Duration
	heartbeatTimeout time.Duration
	// fallbackTimeout applies when neither the runbook nor the step type
	// sets a timeout (defaultStepTimeout when zero).
	fallbackTimeout time.Duration
	retry           *runbooks.RetryPolicy
}

// callStep renders the call's arguments and runs its step type: an
// activity, or a step the workflow implements itself (native).
func (r *run) callStep(ctx workflow.Context, c stepCall) (activities.StepResult, *stepError) {
	rendered, err := runbooks.RenderValue(anyMap(c.with), c.data)
	if err != nil {
		return activities.StepResult{}, &stepError{message: fmt.Sprintf("with: %v", err), errType: errTypeTemplate}
	}
	with, _ := rendered.(map[string]any)
	opts := r.resolved.StepTypes[c.uses]
	if opts.Native {
		return r.callNative(ctx, c, with)
	}
	target := stepTarget(with)
	if c.activityID == c.stepID {
		// Kept for the details of running steps; reminders are not steps.
		r.targets[c.stepID] = target
	}
	ao := workflow.ActivityOptions{
		ActivityID:          c.activityID,
		StartToCloseTimeout: firstDuration(c.timeout, opts.DefaultTimeout.D(), c.fallbackTimeout, defaultStepTimeout),
		HeartbeatTimeout:    firstDuration(c.heartbeatTimeout, opts.HeartbeatTimeout.D()),
		RetryPolicy:         retryPolicy(c.retry),
		Summary:             activitySummary(c.activityID, c.uses, target),
	}
	if opts.Irreversible && workflow.GetVersion(ctx, irreversibleWaitChange, workflow.DefaultVersion, 1) >= 1 {
		// Without this, a cancel settles the step as cancelled at once
		// while the attempt goes on in the worker: compensation would undo
		// the sandbox as if nothing merged while the merge lands.
		ao.WaitForCancellation = true
	}
	req := activities.StepRequest{
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID,
		// Only a runbook the worker loaded is named: the secret policy's
		// "runbook/stepId" rules must not match an inline definition.
		Runbook: r.in.Runbook,
		StepID:  c.stepID,
		With:    with,
	}
	var res activities.StepResult
	for resumed := 0; ; resumed++ {
		err = workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, ao), c.uses, req).Get(ctx, &res)
		if err == nil || !resumeInterrupted(ctx, err, c.activityID, resumed) {
			break
		}
		// A new activity (a new id: the interrupted one is closed) on
		// whichever worker polls next, with its attempts intact.
		ao.ActivityID = fmt.Sprintf("%s~%d", c.activityID, resumed+1)
		ao.Summary = activitySummary(ao.ActivityID, c.uses, target)
	}
	if err != nil {
		// A waited-for attempt that failed after the cancel failed for its
		// own reason; that, not "cancelled", is what happened.
		if temporal.IsCanceledError(err) || (ctx.Err() != nil && !ao.WaitForCancellation) {
			return activities.StepResult{}, &stepError{message: "cancelled", cancelled: true}
		}
		return activities.StepResult{}, describeActivityError(err, ao)
	}
	// A waited-for attempt that completed after the cancel is a success:
	// the run records it, and compensation sees the step as done.
	return res, nil
}

// maxStepResumes bounds how often one step is run again after its
// worker's stop interrupted it: a rolling restart of every worker
// interrupts a long step a few times; one that keeps being interrupted
// has a worker that stops whenever it runs (OOM-killed by it, say), and
// the run should fail and say so rather than loop.
const maxStepResumes = 10

// resumeInterruptedChange gates running an interrupted step again (see
// the versioning rule in doc.go). Histories recorded before it cannot
// hold a StepInterrupted failure, so it is asked only when one arrives.
const resumeInterruptedChange = "resume-interrupted-step"

// resumeInterrupted reports whether a failed call was interrupted by its
// worker's stop and should run again: the step types are idempotent, and
// the interruption says nothing about the step itself.
func resumeInterrupted(ctx workflow.Context, err error, activityID string, resumed int) bool {
	var appErr *temporal.ApplicationError
	if ctx.Err() != nil || !errors.As(err, &appErr) || appErr.Type() != activities.ErrStepInterrupted || resumed >= maxStepResumes {
		return false
	}
	if workflow.GetVersion(ctx, resumeInterruptedChange, workflow.DefaultVersion, 1) < 1 {
		return false
	}
	workflow.GetLogger(ctx).Warn("step interrupted by its worker's stop; running it again", "activityID", activityID, "resumes", resumed+1)
	return true
}

// irreversibleWaitChange gates WaitForCancellation for irreversible step
// types (see the versioning rule in doc.go). Before it, a cancel settled
// such a step at once; replaying a run recorded then, where a cancel came
// during a merge and compensation was scheduled in the same workflow task,
// must not wait for the merge's completion instead.
const irreversibleWaitChange = "irreversible-wait-for-cancellation"

// callNative runs the step types the workflow implements itself.
func (r *run) callNative(ctx workflow.Context, c stepCall, with map[string]any) (activities.StepResult, *stepError) {
	switch c.uses {
	case "wait":
		raw := fmt.Sprint(with["duration"])
		d, err := runbooks.ParseDuration(raw)
		if err != nil {
			return activities.StepResult{}, &stepError{message: fmt.Sprintf("with.duration: %v", err), errType: errTypeInvalidArguments}
		}
		// A durable timer: a wait of hours is one timer in history, not a
		// loop of activities, and it survives worker restarts. The summary
		// names the timer in the UI (Sleep would show as "Sleep").
		timer := workflow.NewTimerWithOptions(ctx, d.D(), workflow.TimerOptions{Summary: fmt.Sprintf("%s: wait %s", c.activityID, d)})
		if err := timer.Get(ctx, nil); err != nil {
			return activities.StepResult{}, &stepError{message: "cancelled", cancelled: true}
		}
		return activities.StepResult{Attempt: 1, Outputs: map[string]any{"duration": d.String()}}, nil
	default:
		return activities.StepResult{}, &stepError{
			message: fmt.Sprintf("native step type %q is not implemented by this workflow", c.uses), errType: errTypeUnknownStepType}
	}
}

func firstDuration(ds ...time.Duration) time.Duration {
	for _, d := range ds {
		if d > 0 {
			return d
		}
	}
	return 0
}

func retryPolicy(p *runbooks.RetryPolicy) *temporal.RetryPolicy {
	rp := &temporal.RetryPolicy{
		MaximumAttempts:    defaultMaxAttempts,
		InitialInterval:    defaultInitialInterval,
		BackoffCoefficient: defaultBackoff,
		MaximumInterval:    defaultMaximumInterval,
	}
	if p == nil {
		return rp
	}
	rp.MaximumAttempts = int32(p.MaxAttempts)
	if p.MaxAttempts == 0 {
		rp.MaximumAttempts = defaultMaxAttempts
	}
	if p.InitialInterval > 0 {
		rp.InitialInterval = p.InitialInterval.D()
	}
	if p.BackoffCoefficient > 0 {
		rp.BackoffCoefficient = p.BackoffCoefficient
	}
	if p.MaximumInterval > 0 {
		rp.MaximumInterval = p.MaximumInterval.D()
	} else if rp.MaximumInterval < rp.InitialInterval {
		rp.MaximumInterval = rp.InitialInterval
	}
	rp.NonRetryableErrorTypes = nonRetryableTypes(p.NonRetryable)
	return rp
}

// nonRetryableTypes maps the runbook's error-type names onto the retry
// policy's. Our "Timeout" (what status and audit show for a timed-out
// attempt) is known to the server by the timeout's own names, so listing
// it must list those for `nonRetryable: [Timeout]` to stop the retries.
func nonRetryableTypes(names []string) []string {
	var out []string
	for _, n := range names {
		out = append(out, n)
		if n == errTypeTimeout {
			out = append(out, "TemporalTimeout:StartToClose", "TemporalTimeout:Heartbeat")
		}
	}
	return out
}

func anyMap(m map[string]any) any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
