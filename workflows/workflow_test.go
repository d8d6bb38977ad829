package workflows_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/activities/registry"
	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// recorder is a fake step catalogue for unit tests of the interpreter's own
// logic; real adapters are tested against real systems in their packages.
type recorder struct {
	mu       sync.Mutex
	calls    []string
	args     map[string]map[string]any
	attempts map[string]int
}

type recordIn struct {
	Value any `json:"value,omitempty"`
}

type flakyIn struct {
	FailTimes int `json:"failTimes"`
}

type failIn struct {
	Type         string `json:"type"`
	Message      string `json:"message"`
	NonRetryable bool   `json:"nonRetryable,omitempty"`
}

type sleepIn struct {
	Duration string `json:"duration"`
}

func (r *recorder) catalogue(t *testing.T) *activities.Catalogue {
	r.args = map[string]map[string]any{}
	r.attempts = map[string]int{}
	record := activities.Step("test.record", "record the call", func(ctx context.Context, in recordIn) (map[string]any, error) {
		id := activity.GetInfo(ctx).ActivityID
		r.mu.Lock()
		defer r.mu.Unlock()
		r.calls = append(r.calls, id)
		r.args[id] = map[string]any{"value": in.Value}
		return map[string]any{"value": in.Value, "id": id}, nil
	})
	flaky := activities.Step("test.flaky", "fail N times", func(ctx context.Context, in flakyIn) (map[string]any, error) {
		id := activity.GetInfo(ctx).ActivityID
		r.mu.Lock()
		r.attempts[id]++
		n := r.attempts[id]
		r.mu.Unlock()
		if n <= in.FailTimes {
			return nil, fmt.Errorf("transient failure %d", n)
		}
		return map[string]any{"attempt": n}, nil
	})
	fail := activities.Step("test.fail", "always fail", func(ctx context.Context, in failIn) (map[string]any, error) {
		id := activity.GetInfo(ctx).ActivityID
		r.mu.Lock()
		r.attempts[id]++
		r.mu.Unlock()
		if in.NonRetryable {
			return nil, temporal.NewNonRetryableApplicationError(in.Message, in.Type, nil)
		}
		return nil, temporal.NewApplicationError(in.Message, in.Type)
	})
	fail.Errors = []string{"BadImage"} // the error type a test runbook names in nonRetryable
	sleep := activities.Step("test.sleep", "sleep", func(ctx context.Context, in sleepIn) (map[string]any, error) {
		d, _ := time.ParseDuration(in.Duration)
		select {
		case <-time.After(d):
			return nil, nil
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	})
	// The full catalogue (handlers unused) so the built-in runbooks load,
	// plus the fakes these tests run.
	cat, err := registry.Catalogue(registry.Deps{})
	require.NoError(t, err)
	for _, st := range []activities.StepType{record, flaky, fail, sleep} {
		require.NoError(t, cat.Add(st))
	}
	return cat
}

type harness struct {
	*testsuite.TestWorkflowEnvironment
	rec      *recorder
	upserted []temporal.SearchAttributes
}

func newHarness(t *testing.T) *harness { return newHarnessWith(t) }

// newHarnessWith is newHarness with extra step types in the catalogue.
func newHarnessWith(t *testing.T, extra ...activities.StepType) *harness {
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	rec := &recorder{}
	cat := rec.catalogue(t)
	for _, st := range extra {
		require.NoError(t, cat.Add(st))
	}
	lib, err := runbooks.NewLibrary("", cat)
	require.NoError(t, err)
	workflows.Register(env, &workflows.Resolver{Library: lib, Catalogue: cat, AllowInline: true})
	h := &harness{TestWorkflowEnvironment: env, rec: rec}
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		h.upserted = append(h.upserted, args.Get(0).(temporal.SearchAttributes))
	}).Return(nil)
	return h
}

func (h *harness) run(def string, params map[string]any, requestedBy string) {
	h.ExecuteWorkflow(workflows.WorkflowType, workflows.RunInput{Definition: def, Params: params, RequestedBy: requestedBy})
}

func (h *harness) result(t *testing.T) (*workflows.Status, error) {
	t.Helper()
	require.True(t, h.IsWorkflowCompleted())
	err := h.GetWorkflowError()
	if err != nil {
		var appErr *temporal.ApplicationError
		if errors.As(err, &appErr) && appErr.HasDetails() {
			var st workflows.Status
			require.NoError(t, appErr.Details(&st))
			return &st, err
		}
		var canceled *temporal.CanceledError
		if errors.As(err, &canceled) && canceled.HasDetails() {
			var st workflows.Status
			require.NoError(t, canceled.Details(&st))
			return &st, err
		}
		return nil, err
	}
	var st workflows.Status
	require.NoError(t, h.GetWorkflowResult(&st))
	return &st, nil
}

func (h *harness) query(t *testing.T) workflows.Status {
	t.Helper()
	v, err := h.QueryWorkflow(workflows.StatusQuery)
	require.NoError(t, err)
	var st workflows.Status
	require.NoError(t, v.Get(&st))
	return st
}

func step(st *workflows.Status, id string) workflows.StepStatus {
	for _, s := range st.Steps {
		if s.ID == id {
			return s
		}
	}
	for _, s := range st.Compensation {
		if s.ID == id {
			return s
		}
	}
	return workflows.StepStatus{}
}

func TestSequencingAndTemplating(t *testing.T) {
	h := newHarness(t)
	h.run(`name: seq
params:
  image: {type: string, required: true}
  replicas: {type: int, default: 2}
steps:
  - id: first
    uses: noop
    with: {echo: "sha-0123456789"}
  - id: second
    uses: test.record
    with: {value: "{{ .steps.first.outputs.echo | short 12 }} on {{ .params.image }}"}
  - id: third
    uses: test.record
    with: {value: "{{ .params.replicas }}"}
`, map[string]any{"image": "repo/backend:pr-1"}, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunSucceeded, st.State)
	assert.Equal(t, []string{"second", "third"}, h.rec.calls)
	assert.Equal(t, "sha-01234567 on repo/backend:pr-1", h.rec.args["second"]["value"])
	assert.EqualValues(t, 2, h.rec.args["third"]["value"], "a single-action template keeps the int type")
	assert.Equal(t, "repo/backend:pr-1", st.Image)
	for _, s := range st.Steps {
		assert.Equal(t, workflows.StepSucceeded, s.State, s.ID)
		assert.EqualValues(t, 1, s.Attempts, s.ID)
		require.NotNil(t, s.StartedAt)
		require.NotNil(t, s.EndedAt)
	}
}

func TestConditions(t *testing.T) {
	h := newHarness(t)
	h.run(`name: cond
params:
  environment: {type: string, enum: [sandbox, prod], default: sandbox}
steps:
  - id: onlyProd
    uses: test.record
    if: '{{ eq .params.environment "prod" }}'
  - id: onlySandbox
    uses: test.record
    if: '{{ eq .params.environment "sandbox" }}'
  - id: afterSkip
    uses: test.record
    with: {value: "{{ .steps.onlyProd.state }}"}
`, nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	assert.Equal(t, workflows.StepSkipped, step(st, "onlyProd").State)
	assert.Equal(t, workflows.StepSucceeded, step(st, "onlySandbox").State)
	assert.Equal(t, []string{"onlySandbox", "afterSkip"}, h.rec.calls)
	assert.Equal(t, "skipped", h.rec.args["afterSkip"]["value"])
}

func TestParallelGroup(t *testing.T) {
	h := newHarness(t)
	h.run(`name: par
steps:
  - id: checks
    parallel:
      - {id: a, uses: test.record, with: {value: 1}}
      - {id: b, uses: test.record, with: {value: 2}}
      - {id: c, uses: test.record, with: {value: 3}}
  - id: after
    uses: test.record
    with: {value: "{{ .steps.b.outputs.value }}+{{ .steps.checks.outputs.c.value }}"}
`, nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{"a", "b", "c"}, h.rec.calls[:3])
	assert.Equal(t, "after", h.rec.calls[3])
	assert.Equal(t, "2+3", h.rec.args["after"]["value"])
	assert.Equal(t, "checks", step(st, "a").Parent)
	assert.Equal(t, workflows.StepSucceeded, step(st, "checks").State)
}

func TestParallelGroupFailureFailsRun(t *testing.T) {
	h := newHarness(t)
	h.run(`name: parfail
steps:
  - id: checks
    parallel:
      - {id: a, uses: test.record}
      - {id: b, uses: test.fail, with: {type: Boom, message: "b broke", nonRetryable: true}}
  - id: never
    uses: test.record
`, nil, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	assert.Equal(t, workflows.RunFailed, st.State)
	assert.Equal(t, "b", st.FailedStep)
	assert.Equal(t, workflows.StepFailed, step(st, "checks").State)
	assert.NotContains(t, h.rec.calls, "never")
}

func TestRetriesAndNonRetryable(t *testing.T) {
	h := newHarness(t)
	h.run(`name: retry
steps:
  - id: flaky
    uses: test.flaky
    with: {failTimes: 2}
    retry: {maxAttempts: 3, initialInterval: 1s}
  - id: fatal
    uses: test.fail
    with: {type: BadImage, message: "image not found"}
    retry: {maxAttempts: 5, initialInterval: 1s, nonRetryable: [BadImage]}
`, nil, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	assert.Equal(t, workflows.StepSucceeded, step(st, "flaky").State)
	assert.EqualValues(t, 3, step(st, "flaky").Attempts)
	f := step(st, "fatal")
	assert.Equal(t, workflows.StepFailed, f.State)
	assert.Equal(t, "BadImage", f.ErrorType)
	assert.Equal(t, "image not found", f.Error)
	assert.EqualValues(t, 1, f.Attempts, "a nonRetryable error type ends the step at once")
	assert.Equal(t, 1, h.rec.attempts["fatal"])
}

func TestRetriesExhausted(t *testing.T) {
	h := newHarness(t)
	h.run(`name: exhaust
steps:
  - id: flaky
    uses: test.flaky
    with: {failTimes: 10}
    retry: {maxAttempts: 2, initialInterval: 1s}
`, nil, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	assert.Equal(t, 2, h.rec.attempts["flaky"])
	assert.EqualValues(t, 2, step(st, "flaky").Attempts)
	assert.Contains(t, step(st, "flaky").Error, "transient failure 2")
	assert.Contains(t, err.Error(), "step flaky failed")
}

func TestStepTimeout(t *testing.T) {
	h := newHarness(t)
	h.run(`name: slow
steps:
  - id: slow
    uses: test.sleep
    with: {duration: 5s}
    timeout: 200ms
    retry: {maxAttempts: 1}
`, nil, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	s := step(st, "slow")
	assert.Equal(t, workflows.StepFailed, s.State)
	assert.Equal(t, "Timeout", s.ErrorType)
	assert.Contains(t, s.Error, "timed out after 200ms")
}

const gated = `name: gated
params:
  image: {type: string, required: true}
steps:
  - id: before
    uses: test.record
  - id: merge
    approval:
      message: "Merge {{ .params.image }}?"
      approvers: [bob, carol]
      timeout: 1h
  - id: after
    uses: test.record
    with: {value: "approved by {{ .steps.merge.outputs.by }}"}
onFailure:
  - id: undo
    uses: test.record
    with: {value: "undo after {{ .failedStep }}: {{ .error }}"}
  - id: tell
    uses: test.record
`

func TestApprovalBySignal(t *testing.T) {
	h := newHarness(t)
	var waiting workflows.Status
	h.RegisterDelayedCallback(func() {
		waiting = h.query(t)
		// Refused: not an approver, then the requester themself.
		h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "mallory"})
		h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "alice"})
		h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "carol", Comment: "lgtm"})
	}, time.Minute)
	h.run(gated, map[string]any{"image": "repo/b:pr-7"}, "alice")
	st, err := h.result(t)
	require.NoError(t, err)

	assert.Equal(t, workflows.RunWaitingApproval, waiting.State)
	assert.Equal(t, "merge", waiting.CurrentStep)
	require.NotNil(t, waiting.PendingGate)
	assert.Equal(t, "Merge repo/b:pr-7?", waiting.PendingGate.Message)
	assert.Equal(t, []string{"bob", "carol"}, waiting.PendingGate.Approvers)
	require.NotNil(t, waiting.PendingGate.Deadline)
	assert.Equal(t, time.Hour, waiting.PendingGate.Deadline.Sub(waiting.PendingGate.OpenedAt))
	assert.Equal(t, workflows.StepSucceeded, step(&waiting, "before").State)
	assert.Equal(t, workflows.StepPending, step(&waiting, "after").State)

	assert.Equal(t, workflows.RunSucceeded, st.State)
	assert.Equal(t, workflows.StepApproved, step(st, "merge").State)
	assert.Equal(t, "approved by carol", h.rec.args["after"]["value"])
	require.Len(t, st.Decisions, 3)
	assert.Contains(t, st.Decisions[0].Refused, "not an approver")
	assert.Contains(t, st.Decisions[1].Refused, "four-eyes")
	assert.Empty(t, st.Decisions[2].Refused)
	assert.Equal(t, "lgtm", st.Decisions[2].Comment)
}

func TestApprovalUpdateValidator(t *testing.T) {
	h := newHarness(t)
	refusals := map[string]string{}
	update := func(name string, d workflows.ApprovalDecision) {
		h.UpdateWorkflow(workflows.ApproveUpdate, name, &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { refusals[name] = err.Error() },
			OnAccept:   func() {},
			OnComplete: func(any, error) {},
		}, d)
	}
	h.RegisterDelayedCallback(func() {
		update("unknown-gate", workflows.ApprovalDecision{Gate: "deploy", Decision: "approve", By: "bob"})
		update("wrong-approver", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "mallory"})
		update("self", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "alice"})
		update("bad-decision", workflows.ApprovalDecision{Gate: "merge", Decision: "maybe", By: "bob"})
		update("ok", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob"})
	}, time.Minute)
	h.RegisterDelayedCallback(func() {
		update("not-waiting", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "carol"})
	}, 2*time.Minute)
	h.RegisterDelayedCallback(func() {}, 3*time.Minute)
	h.run(strings.Replace(gated, "onFailure:", "  - id: hold\n    uses: wait\n    with: {duration: 5m}\nonFailure:", 1), map[string]any{"image": "repo/b:pr-7"}, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	assert.Contains(t, refusals["unknown-gate"], `unknown gate "deploy"`)
	assert.Contains(t, refusals["wrong-approver"], "mallory is not an approver")
	assert.Contains(t, refusals["self"], "four-eyes")
	assert.Contains(t, refusals["bad-decision"], "decision must be")
	assert.NotContains(t, refusals, "ok")
	assert.Contains(t, refusals["not-waiting"], "not waiting")
	assert.Equal(t, "bob", step(st, "merge").Outputs["by"])
	require.Len(t, st.Decisions, 1, "refused updates never reach the run's state")
}

func TestApprovalRejectRunsOnFailure(t *testing.T) {
	h := newHarness(t)
	h.RegisterDelayedCallback(func() {
		h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "merge", Decision: "reject", By: "bob", Comment: "smoke test flaky"})
	}, time.Minute)
	h.run(gated, map[string]any{"image": "repo/b:pr-7"}, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr))
	assert.Equal(t, workflows.RunRejectedErrorType, appErr.Type())
	assert.Equal(t, workflows.RunRejected, st.State)
	assert.Equal(t, "merge", st.FailedStep)
	assert.Contains(t, st.Error, "rejected by bob: smoke test flaky")
	assert.Equal(t, []string{"before", "undo", "tell"}, h.rec.calls, "onFailure runs in order after the rejection")
	assert.Equal(t, "undo after merge: gate merge rejected by bob: smoke test flaky", h.rec.args["undo"]["value"])
	assert.Equal(t, []string{"undo", "tell"}, st.Compensated)
}

func TestApprovalTimeout(t *testing.T) {
	h := newHarness(t)
	h.run(gated, map[string]any{"image": "repo/b:pr-7"}, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	assert.Equal(t, workflows.RunRejected, st.State)
	assert.Contains(t, st.Error, "approval gate merge timed out after 1h0m0s with no decision")
	assert.Equal(t, workflows.StepRejected, step(st, "merge").State)
	assert.Equal(t, []string{"undo", "tell"}, st.Compensated)
}

func TestOnFailureOrderAndContext(t *testing.T) {
	h := newHarness(t)
	h.run(`name: fails
steps:
  - id: ok
    uses: test.record
  - id: broken
    uses: test.fail
    with: {type: Broken, message: "pods crash-looping", nonRetryable: true}
  - id: never
    uses: test.record
onFailure:
  - id: first
    uses: test.record
    with: {value: "{{ .failedStep }}"}
  - id: brokenToo
    uses: test.fail
    with: {type: X, message: "compensation failed", nonRetryable: true}
  - id: last
    uses: test.record
    with: {value: "{{ .error }}"}
`, nil, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	assert.Equal(t, workflows.RunFailed, st.State)
	assert.Equal(t, "broken", st.FailedStep)
	assert.Equal(t, []string{"ok", "first", "last"}, h.rec.calls, "compensation is best effort and ordered")
	assert.Equal(t, "broken", h.rec.args["first"]["value"])
	assert.Equal(t, "pods crash-looping", h.rec.args["last"]["value"])
	assert.Equal(t, []string{"first", "last"}, st.Compensated)
	assert.Equal(t, workflows.StepFailed, step(st, "brokenToo").State)
	assert.Equal(t, workflows.StepPending, step(st, "never").State)
}

func TestContinueOnError(t *testing.T) {
	h := newHarness(t)
	h.run(`name: cont
steps:
  - id: optional
    uses: test.fail
    with: {type: X, message: "meh", nonRetryable: true}
    continueOnError: true
  - id: next
    uses: test.record
    with: {value: "{{ .steps.optional.state }}"}
`, nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunSucceeded, st.State)
	assert.Equal(t, "failed", h.rec.args["next"]["value"])
}

func TestCancellationRunsOnFailure(t *testing.T) {
	h := newHarness(t)
	h.RegisterDelayedCallback(func() { h.CancelWorkflow() }, time.Minute)
	h.run(`name: cancel
steps:
  - id: long
    uses: wait
    with: {duration: 1h}
  - id: never
    uses: test.record
onFailure:
  - id: cleanup
    uses: test.record
    with: {value: "{{ .failedStep }}"}
`, nil, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	var canceled *temporal.CanceledError
	require.True(t, errors.As(err, &canceled), "got %T %v", err, err)
	assert.Equal(t, workflows.RunCancelled, st.State)
	assert.Equal(t, []string{"cleanup"}, h.rec.calls)
	assert.Equal(t, "long", h.rec.args["cleanup"]["value"])
	assert.Equal(t, []string{"cleanup"}, st.Compensated)
}

func TestInvalidParamsFailBeforeAnyStep(t *testing.T) {
	h := newHarness(t)
	h.ExecuteWorkflow(workflows.WorkflowType, workflows.RunInput{Runbook: "hello", Params: map[string]any{"image": "no-tag", "environment": "qa"}, RequestedBy: "alice"})
	st, err := h.result(t)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `image: "no-tag" does not match pattern`)
	assert.Contains(t, err.Error(), `environment: "qa" is not one of sandbox, prod`)
	assert.Equal(t, workflows.RunFailed, st.State)
	assert.Empty(t, h.rec.calls)
}

func TestUnknownRunbook(t *testing.T) {
	h := newHarness(t)
	h.ExecuteWorkflow(workflows.WorkflowType, workflows.RunInput{Runbook: "nope"})
	_, err := h.result(t)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `unknown runbook "nope" (known: hello`)
}

func TestSearchAttributes(t *testing.T) {
	h := newHarness(t)
	h.RegisterDelayedCallback(func() {
		h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob"})
	}, time.Minute)
	h.ExecuteWorkflow(workflows.WorkflowType, workflows.RunInput{Runbook: "hello", Params: map[string]any{"image": "repo/b:1.2", "environment": "prod"}, RequestedBy: "alice"})
	st, err := h.result(t)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunSucceeded, st.State)

	final := map[string]any{}
	var outcomes []string
	for _, sa := range h.upserted {
		if v, ok := sa.GetKeyword(workflows.SearchOutcome); ok {
			outcomes = append(outcomes, v)
		}
		for _, k := range []temporal.SearchAttributeKeyKeyword{workflows.SearchRunbook, workflows.SearchEnvironment, workflows.SearchImage, workflows.SearchRequestedBy} {
			if v, ok := sa.GetKeyword(k); ok {
				final[k.GetName()] = v
			}
		}
		if v, ok := sa.GetKeywordList(workflows.SearchApprovers); ok {
			final["approvers"] = v
		}
	}
	assert.Equal(t, map[string]any{
		"StagehandRunbook": "hello", "StagehandEnvironment": "prod", "StagehandImage": "repo/b:1.2",
		"StagehandRequestedBy": "alice", "approvers": []string{"bob"},
	}, final)
	assert.Equal(t, []string{"running", "waiting_approval", "running", "succeeded"}, outcomes)
	assert.Equal(t, "approved by bob", step(st, "note").Outputs["message"])
}

func TestGateRemindersUntilTimeout(t *testing.T) {
	h := newHarness(t)
	h.run(`name: remind
steps:
  - id: merge
    approval:
      message: "ok?"
      approvers: [bob]
      timeout: 3h30m
      remind:
        every: 1h
        uses: test.record
        with: {value: "reminder {{ .gate.reminder }} for {{ .gate.id }} after {{ .gate.waiting }}"}
onFailure:
  - id: after
    uses: test.record
    with: {value: "{{ .steps.merge.state }}"}
`, nil, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	assert.Equal(t, workflows.RunRejected, st.State)
	assert.Equal(t, []string{"merge-remind-1", "merge-remind-2", "merge-remind-3", "after"}, h.rec.calls)
	assert.Equal(t, "reminder 2 for merge after 2h0m0s", h.rec.args["merge-remind-2"]["value"])
	assert.Equal(t, "rejected", h.rec.args["after"]["value"])
}

func TestOnFailureSeesStepsThatNeverRan(t *testing.T) {
	h := newHarness(t)
	h.run(`name: early
steps:
  - id: broken
    uses: test.fail
    with: {type: X, message: "no", nonRetryable: true}
  - id: merge
    uses: test.record
onFailure:
  - id: rollback
    uses: test.record
    if: '{{ ne .steps.merge.state "succeeded" }}'
    with: {value: "merge was {{ .steps.merge.state }}"}
`, nil, "alice")
	_, err := h.result(t)
	require.Error(t, err)
	assert.Equal(t, []string{"rollback"}, h.rec.calls)
	assert.Equal(t, "merge was pending", h.rec.args["rollback"]["value"])
}
