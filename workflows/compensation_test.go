package workflows_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/workflows"
)

// restoring is the shape of a failed upgrade that migrated the database: a
// gate in onFailure asks whether to restore the backup, later compensation
// steps run or not by its state, and the audit records the outcome.
const restoring = `name: restoring
steps:
  - id: migrate
    uses: test.record
    with: {value: "v2"}
  - id: settle
    uses: wait
    with: {duration: 5m}
  - id: smoke
    uses: test.fail
    with: {type: Broken, message: "smoke failed", nonRetryable: true}
onFailure:
  - id: restore
    approval:
      message: "{{ .failedStep }} failed; restore the backup?"
      approvers: [bob, carol]
      timeout: 2h
  - id: do_restore
    if: '{{ eq .steps.restore.state "approved" }}'
    uses: test.record
    with: {value: "restore approved by {{ .steps.restore.outputs.by }}"}
  - id: tell
    uses: test.record
    with: {value: "restore was {{ .steps.restore.state }}"}
audit:
  summary:
    version: '{{ .steps.migrate.outputs.value }}'
    restore: '{{ .steps.restore.state }}'
    never: '{{ .steps.smoke.outputs.nothing.here }}'
  details:
    error: 'at {{ .failedStep }}: {{ .error }}'
`

func (h *harness) memos() *[]map[string]any {
	var got []map[string]any
	h.OnUpsertMemo(mock.Anything).Run(func(args mock.Arguments) {
		got = append(got, args.Get(0).(map[string]any))
	}).Return(nil)
	return &got
}

func outcomes(h *harness) []string {
	var out []string
	for _, sa := range h.upserted {
		if v, ok := sa.GetKeyword(workflows.SearchOutcome); ok {
			out = append(out, v)
		}
	}
	return out
}

func TestOnFailureGateApprovedByUpdate(t *testing.T) {
	h := newHarness(t)
	memos := h.memos()
	var waiting workflows.Status
	var early, self string
	refuse := func(name string, target *string, d workflows.ApprovalDecision) {
		h.UpdateWorkflow(workflows.ApproveUpdate, name, &testsuite.TestUpdateCallback{
			OnReject: func(err error) { *target = err.Error() }, OnAccept: func() {}, OnComplete: func(any, error) {},
		}, d)
	}
	// The compensation gate is known, but not waiting, before the run fails.
	h.RegisterDelayedCallback(func() {
		refuse("early", &early, workflows.ApprovalDecision{Gate: "restore", Decision: "approve", By: "bob"})
	}, time.Minute)
	h.RegisterDelayedCallback(func() {
		waiting = h.query(t)
		refuse("self", &self, workflows.ApprovalDecision{Gate: "restore", Decision: "approve", By: "alice"})
		h.UpdateWorkflow(workflows.ApproveUpdate, "ok", &testsuite.TestUpdateCallback{
			OnReject: func(err error) { t.Errorf("approval refused: %v", err) }, OnAccept: func() {}, OnComplete: func(any, error) {},
		}, workflows.ApprovalDecision{Gate: "restore", Decision: "approve", By: "carol", Comment: "restore it"})
	}, 10*time.Minute)
	h.run(restoring, nil, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr))
	assert.Equal(t, workflows.RunFailedErrorType, appErr.Type())

	assert.Contains(t, early, `gate "restore" is not waiting for a decision (it is not reached yet)`)
	assert.Contains(t, self, "four-eyes")
	assert.Equal(t, workflows.RunWaitingApproval, waiting.State, "a waiting compensation gate shows, so status, watch and approve find it")
	require.NotNil(t, waiting.PendingGate)
	assert.Equal(t, "restore", waiting.PendingGate.Gate)
	assert.Equal(t, "smoke failed; restore the backup?", waiting.PendingGate.Message)
	assert.Equal(t, "restore", waiting.CurrentStep)
	assert.Equal(t, workflows.StepWaitingApproval, step(&waiting, "restore").State)
	assert.Equal(t, "smoke", waiting.FailedStep)

	assert.Equal(t, workflows.RunFailed, st.State, "a compensation gate never changes the outcome")
	assert.Equal(t, "smoke", st.FailedStep)
	assert.Equal(t, workflows.StepApproved, step(st, "restore").State)
	assert.Equal(t, []string{"migrate", "do_restore", "tell"}, h.rec.calls)
	assert.Equal(t, "restore approved by carol", h.rec.args["do_restore"]["value"])
	assert.Equal(t, "restore was approved", h.rec.args["tell"]["value"])
	assert.Equal(t, []string{"do_restore", "tell"}, st.Compensated)
	assert.Equal(t, []string{"running", "waiting_approval", "failed", "failed"}, outcomes(h))

	require.NotNil(t, st.Audit)
	assert.Equal(t, map[string]string{"version": "v2", "restore": "approved", "never": ""}, st.Audit.Summary)
	assert.Equal(t, map[string]string{"error": "at smoke: smoke failed"}, st.Audit.Details)
	require.Len(t, *memos, 1)
	assert.Equal(t, map[string]any{workflows.MemoAudit: st.Audit.Summary}, (*memos)[0])
}

func TestOnFailureGateRejectedBySignal(t *testing.T) {
	h := newHarness(t)
	h.RegisterDelayedCallback(func() {
		h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "restore", Decision: "reject", By: "bob", Comment: "keep v2"})
	}, 10*time.Minute)
	h.run(restoring, nil, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(err, &appErr))
	assert.Equal(t, workflows.RunFailedErrorType, appErr.Type(), "rejecting a compensation gate does not make the run rejected")
	assert.Equal(t, workflows.RunFailed, st.State)
	assert.Equal(t, "smoke", st.FailedStep)
	assert.Equal(t, "smoke failed", st.Error)
	assert.Equal(t, workflows.StepRejected, step(st, "restore").State)
	assert.Equal(t, workflows.StepSkipped, step(st, "do_restore").State)
	assert.Equal(t, []string{"migrate", "tell"}, h.rec.calls, "later onFailure steps still run; their if decides")
	assert.Equal(t, "restore was rejected", h.rec.args["tell"]["value"])
	require.Len(t, st.Decisions, 1)
	assert.Equal(t, "keep v2", st.Decisions[0].Comment)
	assert.Equal(t, "rejected", st.Audit.Summary["restore"])
}

func TestOnFailureGateTimesOut(t *testing.T) {
	h := newHarness(t)
	reminded := strings.Replace(restoring, "      timeout: 2h\n", `      timeout: 2h
      remind:
        every: 45m
        uses: test.record
        with: {value: "{{ .gate.id }} waits {{ .gate.waiting }} after {{ .failedStep }}"}
`, 1)
	require.NotEqual(t, restoring, reminded)
	h.run(reminded, nil, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	assert.Equal(t, workflows.RunFailed, st.State)
	assert.Equal(t, "smoke failed", st.Error)
	assert.Equal(t, workflows.StepRejected, step(st, "restore").State)
	assert.Contains(t, step(st, "restore").Error, "timed out after 2h0m0s")
	assert.Equal(t, workflows.StepSkipped, step(st, "do_restore").State)
	assert.Equal(t, []string{"migrate", "restore-remind-1", "restore-remind-2", "tell"}, h.rec.calls, "reminders run while a compensation gate waits")
	assert.Equal(t, "restore waits 1h30m0s after smoke", h.rec.args["restore-remind-2"]["value"])
	require.NotNil(t, st.EndedAt)
	assert.Equal(t, 2*time.Hour+5*time.Minute, st.EndedAt.Sub(st.StartedAt).Round(time.Minute))
}

// Cancelling the run cannot reach compensation (its context is
// disconnected), so a gate there ends by its decision or its timeout.
func TestOnFailureGateOutlivesCancellation(t *testing.T) {
	for _, how := range []string{"timeout", "signal", "update"} {
		decide := how != "timeout"
		t.Run(how, func(t *testing.T) {
			h := newHarness(t)
			h.RegisterDelayedCallback(func() { h.CancelWorkflow() }, time.Minute)
			d := workflows.ApprovalDecision{Gate: "restore", Decision: "approve", By: "bob"}
			switch how {
			case "signal":
				h.RegisterDelayedCallback(func() { h.SignalWorkflow(workflows.ApprovalSignal, d) }, 30*time.Minute)
			case "update":
				h.RegisterDelayedCallback(func() {
					h.UpdateWorkflow(workflows.ApproveUpdate, "u", &testsuite.TestUpdateCallback{
						OnReject: func(err error) { t.Errorf("refused after cancellation: %v", err) }, OnAccept: func() {}, OnComplete: func(any, error) {},
					}, d)
				}, 30*time.Minute)
			}
			h.run(`name: cancelled
steps:
  - id: long
    uses: wait
    with: {duration: 10h}
onFailure:
  - id: restore
    approval:
      approvers: [bob]
      timeout: 1h
  - id: do_restore
    if: '{{ eq .steps.restore.state "approved" }}'
    uses: test.record
`, nil, "alice")
			st, err := h.result(t)
			require.Error(t, err)
			var canceled *temporal.CanceledError
			require.True(t, errors.As(err, &canceled), "got %T %v", err, err)
			assert.Equal(t, workflows.RunCancelled, st.State)
			if decide {
				assert.Equal(t, workflows.StepApproved, step(st, "restore").State)
				assert.Equal(t, []string{"do_restore"}, h.rec.calls)
			} else {
				assert.Equal(t, workflows.StepRejected, step(st, "restore").State)
				assert.Empty(t, h.rec.calls)
			}
			assert.Nil(t, st.Audit, "no audit section, no audit record")
		})
	}
}

func TestAuditOnSuccessAndRunStart(t *testing.T) {
	h := newHarness(t)
	memos := h.memos()
	h.SetStartTime(time.Date(2026, 11, 22, 2, 45, 1, 0, time.UTC))
	h.run(`name: audited
steps:
  - id: tag
    uses: test.record
    with: {value: "upgrade-1.45.0-0123abcd-{{ .run.startedUnix }}"}
  - id: unix
    uses: test.record
    with: {value: "{{ .run.startedUnix }}"}
audit:
  summary:
    tag: '{{ .steps.tag.outputs.value }}'
    started: '{{ .run.startedAt }}'
    failure: '{{ .failedStep }}{{ .error }}'
    long: '{{ range $i, $x := split "," "a,b,c,d,e,f,g,h,i,j" }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ $x }}{{ end }}'
`, nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunSucceeded, st.State)
	assert.Equal(t, "upgrade-1.45.0-0123abcd-1795315501", h.rec.args["tag"]["value"])
	assert.EqualValues(t, 1795315501, h.rec.args["unix"]["value"], "a single action keeps the int")
	require.NotNil(t, st.Audit)
	assert.Equal(t, "upgrade-1.45.0-0123abcd-1795315501", st.Audit.Summary["tag"])
	assert.Equal(t, "2026-11-22T02:45:01Z", st.Audit.Summary["started"])
	assert.Equal(t, "", st.Audit.Summary["failure"], ".failedStep and .error are empty after a success")
	assert.LessOrEqual(t, len(st.Audit.Summary["long"]), 200+len("…"), "summary values are cut to 200")
	assert.Nil(t, st.Audit.Details)
	require.Len(t, *memos, 1)
	assert.Equal(t, st.Audit.Summary, (*memos)[0][workflows.MemoAudit])
}

func TestNoAuditSectionNoMemo(t *testing.T) {
	h := newHarness(t)
	memos := h.memos()
	h.run("name: plain\nsteps:\n  - id: a\n    uses: test.record\n", nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	assert.Nil(t, st.Audit)
	assert.Empty(t, *memos, "runbooks without audit issue no memo command, so old histories replay")
}

// A parallel group in onFailure used to panic the workflow task (its steps
// had no status to record into); its steps now run and are reported.
func TestOnFailureParallelGroup(t *testing.T) {
	h := newHarness(t)
	h.run(`name: p
steps:
  - id: broken
    uses: test.fail
    with: {type: X, message: "no", nonRetryable: true}
onFailure:
  - id: group
    parallel:
      - id: a
        uses: test.record
      - id: b
        uses: test.record
  - id: after
    uses: test.record
    with: {value: "{{ .steps.a.state }} {{ .steps.group.state }}"}
`, nil, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	require.NotNil(t, st, "err: %v", err)
	assert.Equal(t, workflows.RunFailed, st.State)
	assert.ElementsMatch(t, []string{"a", "b", "after"}, h.rec.calls)
	assert.Equal(t, "succeeded succeeded", h.rec.args["after"]["value"])
	assert.Equal(t, []string{"group", "after"}, st.Compensated)
	require.Len(t, st.Compensation, 4)
	assert.Equal(t, "group", st.Compensation[1].Parent)
	assert.Equal(t, workflows.StepSucceeded, step(st, "b").State)
}
