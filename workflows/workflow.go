// Package workflows holds RunbookWorkflow, the interpreter that executes a
// runbook on Temporal: steps as activities called by name, approval gates
// that wait for a signal or an update, parallel groups, conditions,
// compensation on failure, a status query, current details for the UI and
// search attributes for audit. It knows nothing of Kubernetes or Backstage:
// step types come from the worker's catalogue.
//
// Files by role: workflow.go is the procedure (resolve, run the steps,
// settle the outcome); stepcall.go is the one way any step type is called;
// approval.go the gates; identity.go who is on the other end of an
// approval's connection (header, interceptors); details.go what the Temporal UI shows;
// search.go the search attributes; failure.go how errors become a step's
// message and type; resolve.go the activity that loads the runbook;
// resolvecheck.go what resolve checks of the worker's config;
// versioning.go the change ids below.
//
// # Changing the interpreter while runs wait
//
// Runs wait at gates for days, and a worker upgraded meanwhile replays
// their history with the new code. Temporal requires the replay to issue
// the same commands in the same order (activities, timers, markers,
// search-attribute upserts, completion), so:
//
//  1. A change that alters which commands a run issues, or their order or
//     options the server sees (a new or removed activity, timer, marker or
//     upsert; activity ids; a different step order, condition or
//     compensation; waiting instead of not waiting), is guarded:
//     v := workflow.GetVersion(ctx, "<change-id>", workflow.DefaultVersion, N)
//     runs the old code for DefaultVersion and the new code otherwise.
//     Change ids are kebab-case names of the change, each declared as a
//     constant next to its use and listed in versioning.go.
//  2. Never remove a change id or reuse one: when the old branch goes (no
//     run that could take it is open any more, checked with the search
//     attribute TemporalChangeVersion), keep the call with the old minimum
//     raised: GetVersion(ctx, id, 1, 1). TestChangeIDsAreKept enforces it.
//  3. Changes that only touch what the workflow computes from recorded
//     results (status fields, messages, query answers) or what activities
//     do need no guard; nor does anything decided inside the resolve
//     activity, whose result history records.
//  4. Record a history of the new path (STAGEHAND_RECORD_HISTORY, see
//     record_*_test.go) into testdata; TestReplayRecordedHistories replays
//     every one, including runs left waiting at a gate, and
//     TestReplayCatchesUnguardedChange shows that an unguarded change fails
//     there while the same change guarded passes.
package workflows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// run is the interpreter's state for one execution. Workflow goroutines are
// cooperative, so handlers and steps share it without locks. It holds no
// workflow.Context: every method takes the one in play, so compensation
// (which runs on a disconnected context) cannot mix contexts.
type run struct {
	// workflowID is what people type to act on the run.
	workflowID string
	in         RunInput
	resolved   *ResolvedRun
	status     *Status
	// index maps a step id to its place in status.Steps / status.Compensation.
	index     map[string]*StepStatus
	data      map[string]any
	stepsData map[string]any
	// decision is filled by the signal or update handler for the gate in
	// status.PendingGate, the one waiting now.
	decision *DecisionRecord
	gateIDs  map[string]bool
	// compensating is set while the onFailure steps run: the run's outcome
	// is decided then, and a gate must not change it.
	compensating bool
	// targets holds each activity step's one-line "what it acts on", shown
	// in the UI's details and as the activity's summary.
	targets map[string]string
}

// RunbookWorkflow executes one runbook: resolve it, run its steps, settle
// the outcome. See contract.go for the names the UI and CLI rely on.
func RunbookWorkflow(ctx workflow.Context, in RunInput) (*Status, error) {
	r := newRun(ctx, in)
	// Handlers come first so `status` answers, and approvals are checked,
	// even while the runbook is still being resolved.
	if err := r.registerHandlers(ctx); err != nil {
		return nil, err
	}
	resolved, err := resolveRun(ctx, in)
	if err != nil {
		return r.failToStart(ctx, err)
	}
	r.begin(ctx, resolved)
	failure := r.runSteps(ctx, resolved.Runbook.Steps)
	return r.settle(ctx, failure)
}

func newRun(ctx workflow.Context, in RunInput) *run {
	r := &run{
		workflowID: workflow.GetInfo(ctx).WorkflowExecution.ID,
		in:         in,
		index:      map[string]*StepStatus{},
		gateIDs:    map[string]bool{},
		targets:    map[string]string{},
		status: &Status{
			Runbook:           in.Runbook,
			RequestedBy:       in.RequestedBy,
			RequesterIdentity: startIdentity(ctx),
			State:             RunRunning,
			StartedAt:         workflow.Now(ctx),
			Steps:             []StepStatus{},
		},
	}
	if r.status.Runbook == "" {
		r.status.Runbook = "inline"
	}
	return r
}

func (r *run) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandlerWithOptions(ctx, StatusQuery, func() (*Status, error) { return r.status, nil },
		workflow.QueryHandlerOptions{Description: "The run's state, every step's progress and the pending approval gate"}); err != nil {
		return fmt.Errorf("register status query: %w", err)
	}
	return r.registerApprovalHandlers(ctx)
}

// failToStart ends a run whose runbook or params did not resolve: no step
// ran, so there is nothing to compensate.
func (r *run) failToStart(ctx workflow.Context, err error) (*Status, error) {
	msg := causeMessage(err)
	r.status.State = RunFailed
	r.status.Error = msg
	r.finish(ctx)
	r.upsertOutcome(ctx)
	return nil, temporal.NewNonRetryableApplicationError(msg, RunFailedErrorType, nil, *r.status)
}

// begin records the resolved runbook in the status and the template data,
// and announces the run in search attributes and details.
func (r *run) begin(ctx workflow.Context, resolved *ResolvedRun) {
	r.resolved = resolved
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
		// Known from the start, so a decision sent too early is told the
		// gate is "not reached yet" rather than "unknown".
		if s.Kind() == runbooks.KindApproval {
			r.gateIDs[s.ID] = true
		}
	}
	info := workflow.GetInfo(ctx)
	started := info.WorkflowStartTime.UTC()
	r.data = map[string]any{
		runbooks.RootParams:       resolved.Params,
		runbooks.RootSteps:        r.stepsData,
		runbooks.RootEnvironments: orEmpty(resolved.Environments),
		runbooks.RootSettings:     orEmpty(resolved.Settings),
		runbooks.RootRun: map[string]any{
			// id is the workflow id (what people type); runId is Temporal's
			// run id of this execution.
			"id":          info.WorkflowExecution.ID,
			"runId":       info.WorkflowExecution.RunID,
			"runbook":     resolved.Runbook.Name,
			"requestedBy": r.in.RequestedBy,
			// The workflow's start, from history, so replays see the same
			// value; image tags such as upgrade-<release>-<sha8>-<unix> use it.
			"startedAt":   started.Format(time.RFC3339),
			"startedUnix": started.Unix(),
		},
	}
	r.upsertStart(ctx)
	r.countRunStarted(ctx)
	r.publish(ctx)
}

// settle turns the steps' outcome into the run's: on failure, rejection or
// cancellation the onFailure steps run first, on a context that the run's
// cancellation does not reach.
func (r *run) settle(ctx workflow.Context, failure *stepFailure) (*Status, error) {
	switch {
	case failure == nil:
		r.status.State = RunSucceeded
		r.recordAudit(ctx)
		r.finish(ctx)
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
	ctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	r.compensate(ctx)
	r.recordAudit(ctx)
	r.finish(ctx)
	r.upsertOutcome(ctx)
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
	return strings.Join(slices.Sorted(slices.Values(names)), ",")
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

// runStep runs one step of any kind and records its outcome in st.
func (r *run) runStep(ctx workflow.Context, s runbooks.Step, st *StepStatus) *stepFailure {
	if ctx.Err() != nil {
		return &stepFailure{step: s.ID, cancelled: true}
	}
	if s.If != "" {
		ok, err := runbooks.RenderCondition(s.If, r.data)
		if err != nil {
			return st.fail(s.ID, &stepError{message: fmt.Sprintf("if: %v", err), errType: errTypeTemplate})
		}
		if !ok {
			st.State = StepSkipped
			r.recordStep(s.ID, st)
			r.publish(ctx)
			return nil
		}
	}
	now := workflow.Now(ctx)
	st.StartedAt = &now
	st.State = StepRunning
	r.publish(ctx)

	var f *stepFailure
	switch s.Kind() {
	case runbooks.KindApproval:
		f = r.runGate(ctx, s, st)
	case runbooks.KindParallel:
		f = r.runParallel(ctx, s, st)
	default:
		f = r.runActivityStep(ctx, s, st)
	}
	end := workflow.Now(ctx)
	st.EndedAt = &end
	r.recordStep(s.ID, st)
	r.recordStepMetrics(ctx, s, st)
	r.publish(ctx)
	if f != nil && s.ContinueOnError && !f.cancelled && !f.rejected {
		workflow.GetLogger(ctx).Warn("step failed; continuing (continueOnError)", "step", s.ID, "error", f.message)
		return nil
	}
	return f
}

// runActivityStep runs a step that names a step type in `uses`.
func (r *run) runActivityStep(ctx workflow.Context, s runbooks.Step, st *StepStatus) *stepFailure {
	res, serr := r.callStep(ctx, stepCall{
		activityID:       s.ID,
		stepID:           s.ID,
		uses:             s.Uses,
		with:             s.With,
		data:             r.data,
		timeout:          s.Timeout.D(),
		heartbeatTimeout: s.HeartbeatTimeout.D(),
		retry:            s.Retry,
	})
	if serr != nil {
		return st.fail(s.ID, serr)
	}
	st.State = StepSucceeded
	st.Attempts = res.Attempt
	st.Worker = res.Worker
	st.Outputs = res.Outputs
	return nil
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

// compensate runs the onFailure steps in order. It is best effort: one
// failing step must not stop the others from undoing what they can.
func (r *run) compensate(ctx workflow.Context) {
	steps := r.resolved.Runbook.OnFailure
	if len(steps) == 0 {
		return
	}
	r.data[runbooks.RootFailedStep] = r.status.FailedStep
	r.data[runbooks.RootError] = r.status.Error
	// A parallel group's steps follow it, marked with their Parent, as in
	// Steps: runParallel finds them (and checkDecision finds gates) through
	// r.index, which points into this slice once it stops growing.
	r.status.Compensation = make([]StepStatus, 0, len(steps))
	for _, s := range steps {
		r.status.Compensation = append(r.status.Compensation, StepStatus{ID: s.ID, Uses: s.Uses, Kind: string(s.Kind()), State: StepPending})
		for _, c := range s.Parallel {
			r.status.Compensation = append(r.status.Compensation, StepStatus{ID: c.ID, Uses: c.Uses, Kind: string(c.Kind()), State: StepPending, Parent: s.ID})
		}
	}
	for i := range r.status.Compensation {
		r.index[r.status.Compensation[i].ID] = &r.status.Compensation[i]
	}
	r.compensating = true
	defer func() { r.compensating = false }()
	for _, s := range steps {
		st := r.index[s.ID]
		_ = r.runStep(ctx, s, st)
		if st.State == StepSucceeded {
			r.status.Compensated = append(r.status.Compensated, s.ID)
		}
	}
	r.countCompensation(ctx)
}

func (r *run) finish(ctx workflow.Context) {
	now := workflow.Now(ctx)
	r.status.EndedAt = &now
	r.status.CurrentStep = ""
	r.status.PendingGate = nil
	r.countRunFinished(ctx)
	r.publish(ctx)
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
