// Package workflows holds RunbookWorkflow, the interpreter that executes a
// runbook on Temporal: steps as activities called by name, approval gates
// that wait for a signal or an update, parallel groups, conditions,
// compensation on failure, a status query, current details for the UI and
// search attributes for audit. It knows nothing of Kubernetes or Backstage:
// step types come from the worker's catalogue.
package workflows

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
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

// run is the interpreter's state for one execution. Workflow goroutines are
// cooperative, so handlers and steps share it without locks.
type run struct {
	ctx      workflow.Context
	in       RunInput
	resolved *ResolvedRun
	status   *Status
	// index maps a step id to its place in status.Steps / status.Compensation.
	index     map[string]*StepStatus
	data      map[string]any
	stepsData map[string]any
	// decision is filled by the signal or update handler for the gate in
	// status.PendingGate, the one waiting now.
	decision *ApprovalDecision
	gateIDs  map[string]bool
}

// RunbookWorkflow executes one runbook. See the package comment and
// contract.go for the names the UI and CLI rely on.
func RunbookWorkflow(ctx workflow.Context, in RunInput) (*Status, error) {
	r := &run{
		ctx:     ctx,
		in:      in,
		index:   map[string]*StepStatus{},
		gateIDs: map[string]bool{},
		status: &Status{
			Runbook:     in.Runbook,
			RequestedBy: in.RequestedBy,
			State:       RunRunning,
			StartedAt:   workflow.Now(ctx),
			Steps:       []StepStatus{},
		},
	}
	if r.status.Runbook == "" {
		r.status.Runbook = "inline"
	}
	// The query handler comes first so `status` answers even while the
	// runbook is still being resolved.
	if err := workflow.SetQueryHandlerWithOptions(ctx, StatusQuery, func() (*Status, error) { return r.status, nil },
		workflow.QueryHandlerOptions{Description: "The run's state, every step's progress and the pending approval gate"}); err != nil {
		return nil, fmt.Errorf("register status query: %w", err)
	}
	if err := r.registerApprovalHandlers(); err != nil {
		return nil, err
	}

	resolveCtx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		ActivityID:          "resolve",
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 3, NonRetryableErrorTypes: []string{InvalidRunbookErrorType, InvalidParamsErrorType}},
	})
	var resolved ResolvedRun
	if err := workflow.ExecuteActivity(resolveCtx, ResolveActivity, in).Get(ctx, &resolved); err != nil {
		msg := causeMessage(err)
		r.status.State = RunFailed
		r.status.Error = msg
		r.finish()
		r.upsertOutcome(ctx)
		return nil, temporal.NewNonRetryableApplicationError(msg, RunFailedErrorType, nil, *r.status)
	}
	normalizeParams(&resolved)
	r.resolved = &resolved
	r.status.Runbook = resolved.Runbook.Name
	r.status.Description = resolved.Runbook.Description
	r.status.Params = resolved.Params
	r.status.Environment = environmentOf(resolved.Runbook, resolved.Params)
	if img, ok := resolved.Params["image"].(string); ok {
		r.status.Image = img
	}
	r.stepsData = map[string]any{}
	r.planSteps(resolved.Runbook.Steps, "")
	for _, s := range resolved.Runbook.OnFailure {
		r.stepsData[s.ID] = stepData(nil, StepPending, "")
	}
	r.data = map[string]any{
		runbooks.RootParams:       resolved.Params,
		runbooks.RootSteps:        r.stepsData,
		runbooks.RootEnvironments: orEmpty(resolved.Environments),
		runbooks.RootSettings:     orEmpty(resolved.Settings),
		runbooks.RootRun: map[string]any{
			"id":          workflow.GetInfo(ctx).WorkflowExecution.ID,
			"runId":       workflow.GetInfo(ctx).WorkflowExecution.RunID,
			"runbook":     resolved.Runbook.Name,
			"requestedBy": in.RequestedBy,
		},
	}
	r.upsertStart()
	r.publish()

	failure := r.runSteps(ctx, resolved.Runbook.Steps)
	switch {
	case failure == nil:
		r.status.State = RunSucceeded
		r.finish()
		r.upsertOutcome(ctx)
		return r.status, nil
	case failure.cancelled || errors.Is(ctx.Err(), workflow.ErrCanceled):
		r.status.State = RunCancelled
		r.status.Error = "run cancelled"
		if failure.step != "" {
			r.status.FailedStep = failure.step
		}
	case failure.rejected:
		r.status.State = RunRejected
		r.status.FailedStep = failure.step
		r.status.Error = failure.message
	default:
		r.status.State = RunFailed
		r.status.FailedStep = failure.step
		r.status.Error = failure.message
	}
	// Compensation must run even when the run itself was cancelled.
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	r.compensate(dctx)
	r.finish()
	r.upsertOutcome(dctx)
	switch r.status.State {
	case RunCancelled:
		return r.status, temporal.NewCanceledError(*r.status)
	case RunRejected:
		return nil, temporal.NewNonRetryableApplicationError(r.status.Error, RunRejectedErrorType, nil, *r.status)
	default:
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("step %s failed: %s", r.status.FailedStep, r.status.Error), RunFailedErrorType, nil, *r.status)
	}
}

// normalizeParams restores int params to int64: the activity result went
// through JSON, which turns every number into float64, and templates such
// as printf "%d" must see the declared type.
func normalizeParams(res *ResolvedRun) {
	for name, p := range res.Runbook.Params {
		if p.Type != runbooks.ParamInt {
			continue
		}
		if f, ok := res.Params[name].(float64); ok {
			res.Params[name] = int64(f)
		}
	}
}

// environmentOf names where a run acts, for the status and the
// StagehandEnvironment search attribute: the `environment` param if there
// is one, else every environment-typed param in declaration-independent
// (sorted) order, e.g. "prod,sandbox" for a patch.
func environmentOf(rb runbooks.Runbook, params map[string]any) string {
	if env, ok := params["environment"].(string); ok && env != "" {
		return env
	}
	var names []string
	for name, p := range rb.Params {
		if p.Type == runbooks.ParamEnvironment {
			if v, ok := params[name].(string); ok && v != "" {
				names = append(names, v)
			}
		}
	}
	return strings.Join(sortedStrings(names), ",")
}

// stepFailure says why a step (and so the run) did not succeed.
type stepFailure struct {
	step      string
	message   string
	rejected  bool
	cancelled bool
}

func (r *run) planSteps(steps []runbooks.Step, parent string) {
	for _, s := range steps {
		r.status.Steps = append(r.status.Steps, StepStatus{ID: s.ID, Uses: s.Uses, Kind: string(s.Kind()), State: StepPending, Parent: parent})
		// Every step is visible to templates from the start, so onFailure
		// conditions can ask whether a step ran (.steps.<id>.state).
		r.stepsData[s.ID] = stepData(nil, StepPending, "")
		if s.Kind() == runbooks.KindApproval {
			r.gateIDs[s.ID] = true
		}
		r.planSteps(s.Parallel, s.ID)
	}
	// Pointers are taken after the slice stops growing.
	for i := range r.status.Steps {
		r.index[r.status.Steps[i].ID] = &r.status.Steps[i]
	}
}

// runSteps runs steps in order and stops at the first failure that is not
// marked continueOnError.
func (r *run) runSteps(ctx workflow.Context, steps []runbooks.Step) *stepFailure {
	for _, s := range steps {
		if f := r.runStep(ctx, s, r.index[s.ID]); f != nil {
			return f
		}
	}
	return nil
}

func (r *run) runStep(ctx workflow.Context, s runbooks.Step, st *StepStatus) *stepFailure {
	if ctx.Err() != nil {
		return &stepFailure{step: s.ID, cancelled: true}
	}
	if s.If != "" {
		ok, err := runbooks.RenderCondition(s.If, r.data)
		if err != nil {
			return r.fail(st, s, fmt.Sprintf("if: %v", err), activities.ErrTemplateError, 0)
		}
		if !ok {
			st.State = StepSkipped
			r.recordStep(s.ID, st)
			r.publish()
			return nil
		}
	}
	now := workflow.Now(ctx)
	st.StartedAt = &now
	st.State = StepRunning
	r.publish()

	var f *stepFailure
	switch s.Kind() {
	case runbooks.KindApproval:
		f = r.runGate(ctx, s, st)
	case runbooks.KindParallel:
		f = r.runParallel(ctx, s, st)
	default:
		f = r.runActivity(ctx, s, st)
	}
	end := workflow.Now(ctx)
	st.EndedAt = &end
	r.recordStep(s.ID, st)
	r.publish()
	if f != nil && s.ContinueOnError && !f.cancelled && !f.rejected {
		workflow.GetLogger(ctx).Warn("step failed; continuing (continueOnError)", "step", s.ID, "error", f.message)
		return nil
	}
	return f
}

// recordStep makes a finished step visible to later templates.
func (r *run) recordStep(id string, st *StepStatus) {
	r.stepsData[id] = stepData(st.Outputs, st.State, st.Error)
}

func stepData(outputs map[string]any, state StepState, errMsg string) map[string]any {
	return map[string]any{"outputs": orEmpty(outputs), "state": string(state), "error": errMsg}
}

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

func (r *run) fail(st *StepStatus, s runbooks.Step, msg, errType string, attempts int32) *stepFailure {
	st.State = StepFailed
	st.Error = msg
	st.ErrorType = errType
	if attempts > 0 {
		st.Attempts = attempts
	}
	return &stepFailure{step: s.ID, message: msg}
}

func (r *run) runActivity(ctx workflow.Context, s runbooks.Step, st *StepStatus) *stepFailure {
	rendered, err := runbooks.RenderValue(anyMap(s.With), r.data)
	if err != nil {
		return r.fail(st, s, fmt.Sprintf("with: %v", err), activities.ErrTemplateError, 0)
	}
	with, _ := rendered.(map[string]any)
	opts := r.resolved.StepTypes[s.Uses]
	if opts.Native {
		return r.runNative(ctx, s, st, with)
	}
	ao := workflow.ActivityOptions{
		ActivityID:          s.ID,
		StartToCloseTimeout: firstDuration(s.Timeout.D(), opts.DefaultTimeout.D(), defaultStepTimeout),
		HeartbeatTimeout:    firstDuration(s.HeartbeatTimeout.D(), opts.HeartbeatTimeout.D()),
		RetryPolicy:         retryPolicy(s.Retry),
	}
	actx := workflow.WithActivityOptions(ctx, ao)
	var res activities.StepResult
	err = workflow.ExecuteActivity(actx, s.Uses, activities.StepRequest{
		WorkflowID: workflow.GetInfo(ctx).WorkflowExecution.ID,
		StepID:     s.ID,
		With:       with,
	}).Get(ctx, &res)
	if err != nil {
		if temporal.IsCanceledError(err) || ctx.Err() != nil {
			st.State = StepCancelled
			return &stepFailure{step: s.ID, message: "cancelled", cancelled: true}
		}
		msg, errType, attempts := describeActivityError(err, ao)
		return r.fail(st, s, msg, errType, attempts)
	}
	st.State = StepSucceeded
	st.Attempts = res.Attempt
	st.Outputs = res.Outputs
	return nil
}

// runNative runs the step types the workflow implements itself.
func (r *run) runNative(ctx workflow.Context, s runbooks.Step, st *StepStatus, with map[string]any) *stepFailure {
	switch s.Uses {
	case "wait":
		raw := fmt.Sprint(with["duration"])
		d, err := runbooks.ParseDuration(raw)
		if err != nil {
			return r.fail(st, s, fmt.Sprintf("with.duration: %v", err), activities.ErrInvalidArguments, 0)
		}
		// A durable timer: a wait of hours is one timer in history, not a
		// loop of activities, and it survives worker restarts.
		if err := workflow.Sleep(ctx, d.D()); err != nil {
			st.State = StepCancelled
			return &stepFailure{step: s.ID, message: "cancelled", cancelled: true}
		}
		st.State = StepSucceeded
		st.Attempts = 1
		st.Outputs = map[string]any{"duration": d.String()}
		return nil
	default:
		return r.fail(st, s, fmt.Sprintf("native step type %q is not implemented by this workflow", s.Uses), activities.ErrUnknownStepType, 0)
	}
}

func (r *run) runParallel(ctx workflow.Context, s runbooks.Step, st *StepStatus) *stepFailure {
	failures := make([]*stepFailure, len(s.Parallel))
	wg := workflow.NewWaitGroup(ctx)
	for i, child := range s.Parallel {
		wg.Add(1)
		workflow.Go(ctx, func(gctx workflow.Context) {
			defer wg.Done()
			failures[i] = r.runStep(gctx, child, r.index[child.ID])
		})
	}
	wg.Wait(ctx)
	// The first failure in declaration order decides, so the result does
	// not depend on which activity happened to finish first.
	for _, f := range failures {
		if f != nil {
			st.State = StepFailed
			if f.cancelled {
				st.State = StepCancelled
			}
			st.Error = fmt.Sprintf("%s: %s", f.step, f.message)
			return &stepFailure{step: f.step, message: f.message, cancelled: f.cancelled}
		}
	}
	st.State = StepSucceeded
	outputs := map[string]any{}
	for _, child := range s.Parallel {
		outputs[child.ID] = orEmpty(r.index[child.ID].Outputs)
	}
	st.Outputs = outputs
	return nil
}

func (r *run) compensate(ctx workflow.Context) {
	steps := r.resolved.Runbook.OnFailure
	if len(steps) == 0 {
		return
	}
	r.data[runbooks.RootFailedStep] = r.status.FailedStep
	r.data[runbooks.RootError] = r.status.Error
	r.status.Compensation = make([]StepStatus, len(steps))
	for i, s := range steps {
		r.status.Compensation[i] = StepStatus{ID: s.ID, Uses: s.Uses, Kind: string(s.Kind()), State: StepPending}
	}
	for i, s := range steps {
		st := &r.status.Compensation[i]
		// Compensation is best effort: one failing step must not stop the
		// others from undoing what they can.
		_ = r.runStep(ctx, s, st)
		if st.State == StepSucceeded {
			r.status.Compensated = append(r.status.Compensated, s.ID)
		}
	}
}

func (r *run) finish() {
	now := workflow.Now(r.ctx)
	r.status.EndedAt = &now
	r.status.CurrentStep = ""
	r.status.PendingGate = nil
	r.publish()
}

// publish refreshes what the UI shows: current details and current step.
func (r *run) publish() {
	var running []string
	for _, st := range r.status.Steps {
		if st.State == StepRunning || st.State == StepWaitingApproval {
			running = append(running, st.ID)
		}
	}
	for _, st := range r.status.Compensation {
		if st.State == StepRunning {
			running = append(running, st.ID)
		}
	}
	r.status.CurrentStep = strings.Join(running, ",")
	workflow.SetCurrentDetails(r.ctx, r.details())
}

func (r *run) details() string {
	var b strings.Builder
	fmt.Fprintf(&b, "**%s** — %s", r.status.Runbook, r.status.State)
	if r.status.CurrentStep != "" {
		fmt.Fprintf(&b, " at `%s`", r.status.CurrentStep)
	}
	b.WriteString("\n\n")
	if g := r.status.PendingGate; g != nil {
		fmt.Fprintf(&b, "Waiting for approval at gate `%s` by one of %s: %s\n\n", g.Gate, strings.Join(g.Approvers, ", "), g.Message)
		fmt.Fprintf(&b, "Approve: send signal `%s` with `{\"gate\":%q,\"decision\":\"approve\",\"by\":\"<you>\"}`\n\n", ApprovalSignal, g.Gate)
	}
	for _, st := range r.status.Steps {
		indent := ""
		if st.Parent != "" {
			indent = "  "
		}
		fmt.Fprintf(&b, "%s- %s `%s`", indent, stateMark(st.State), st.ID)
		if st.Error != "" {
			fmt.Fprintf(&b, ": %s", truncate(st.Error, 200))
		}
		b.WriteString("\n")
	}
	if r.status.Error != "" {
		fmt.Fprintf(&b, "\nError: %s\n", truncate(r.status.Error, 400))
	}
	return b.String()
}

func stateMark(s StepState) string {
	switch s {
	case StepSucceeded, StepApproved:
		return "✅"
	case StepFailed, StepRejected:
		return "❌"
	case StepRunning:
		return "▶️"
	case StepWaitingApproval:
		return "⏸️"
	case StepSkipped:
		return "⏭️"
	case StepCancelled:
		return "⏹️"
	default:
		return "◻️"
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (r *run) upsertStart() {
	updates := []temporal.SearchAttributeUpdate{
		SearchRunbook.ValueSet(r.status.Runbook),
		SearchOutcome.ValueSet(string(RunRunning)),
	}
	if r.status.Environment != "" {
		updates = append(updates, SearchEnvironment.ValueSet(r.status.Environment))
	}
	if r.status.Image != "" {
		updates = append(updates, SearchImage.ValueSet(r.status.Image))
	}
	if r.in.RequestedBy != "" {
		updates = append(updates, SearchRequestedBy.ValueSet(r.in.RequestedBy))
	}
	if pr, ok := r.resolved.Params["pr"]; ok && fmt.Sprint(pr) != "" && fmt.Sprint(pr) != "0" {
		updates = append(updates, SearchPR.ValueSet(fmt.Sprint(pr)))
	}
	r.upsert(r.ctx, updates...)
}

func (r *run) upsertOutcome(ctx workflow.Context) {
	updates := []temporal.SearchAttributeUpdate{SearchOutcome.ValueSet(string(r.status.State))}
	// One upsert, so the number of commands does not depend on the outcome.
	if r.status.FailedStep != "" {
		updates = append(updates, SearchFailedStep.ValueSet(r.status.FailedStep))
	}
	r.upsert(ctx, updates...)
}

func (r *run) upsert(ctx workflow.Context, updates ...temporal.SearchAttributeUpdate) {
	if err := workflow.UpsertTypedSearchAttributes(ctx, updates...); err != nil {
		// Visibility is for audit; a failed upsert must not fail the run.
		workflow.GetLogger(ctx).Warn("upsert search attributes failed", "error", err)
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
	rp.NonRetryableErrorTypes = p.NonRetryable
	return rp
}

// describeActivityError turns an activity failure into the message, error
// type and attempt count shown in status and the audit.
func describeActivityError(err error, ao workflow.ActivityOptions) (string, string, int32) {
	var (
		attempts int32
		errType  string
		msg      = causeMessage(err)
	)
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		errType = appErr.Type()
		var d activities.StepFailureDetails
		if appErr.HasDetails() && appErr.Details(&d) == nil {
			attempts = d.Attempt
		}
	}
	var timeoutErr *temporal.TimeoutError
	if errors.As(err, &timeoutErr) {
		errType = activities.ErrTimeout
		switch timeoutErr.TimeoutType() {
		case enumspb.TIMEOUT_TYPE_HEARTBEAT:
			msg = fmt.Sprintf("no heartbeat for %s (worker lost or step hung)", ao.HeartbeatTimeout)
		default:
			msg = fmt.Sprintf("timed out after %s", ao.StartToCloseTimeout)
		}
	}
	var actErr *temporal.ActivityError
	if errors.As(err, &actErr) && actErr.RetryState() == enumspb.RETRY_STATE_MAXIMUM_ATTEMPTS_REACHED && ao.RetryPolicy != nil {
		attempts = ao.RetryPolicy.MaximumAttempts
	}
	return msg, errType, attempts
}

// causeMessage strips Temporal's wrapping ("activity error (type: ...)")
// down to the message a person wants to read.
func causeMessage(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			break
		}
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr == err {
			break
		}
		err = next
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return activities.CleanMessage(errors.New(appErr.Message()))
	}
	return activities.CleanMessage(err)
}

func anyMap(m map[string]any) any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// sortedStrings returns a sorted copy, for deterministic output.
func sortedStrings(in []string) []string {
	out := append([]string(nil), in...)
	sort.Strings(out)
	return out
}
