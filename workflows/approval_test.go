package workflows_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/interceptor"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// syncBuffer collects the worker's log lines (the SDK may log from more
// than one goroutine).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// lines returns the JSON log lines whose msg is msg.
func (s *syncBuffer) lines(t *testing.T, msg string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(s.b.String(), "\n") {
		if l == "" {
			continue
		}
		m := map[string]any{}
		require.NoError(t, json.Unmarshal([]byte(l), &m), l)
		if m["msg"] == msg {
			out = append(out, m)
		}
	}
	return out
}

// testIdentity stands in for the client side in the SDK's test
// environment, which sends signals and updates without headers: it writes
// workflows.IdentityHeader from the decision's comment ("identity:X"), and
// the worker's real interceptor (installed after it) reads it from there.
// Its start field, when set, is the identity header of the run's start.
type testIdentity struct {
	interceptor.WorkerInterceptorBase
	start string
}

func (t *testIdentity) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	i := &testIdentityInbound{start: t.start}
	i.Next = next
	return i
}

type testIdentityInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	start string
}

func (i *testIdentityInbound) ExecuteWorkflow(ctx workflow.Context, in *interceptor.ExecuteWorkflowInput) (any, error) {
	if i.start != "" {
		putIdentity(ctx, workflows.ApprovalDecision{Comment: "identity:" + i.start})
	}
	return i.Next.ExecuteWorkflow(ctx, in)
}

func putIdentity(ctx workflow.Context, d workflows.ApprovalDecision) {
	id, ok := strings.CutPrefix(d.Comment, "identity:")
	if !ok {
		return
	}
	p, err := converter.GetDefaultDataConverter().ToPayload(id)
	if err != nil {
		panic(err)
	}
	interceptor.WorkflowHeader(ctx)[workflows.IdentityHeader] = p
}

func (i *testIdentityInbound) HandleSignal(ctx workflow.Context, in *interceptor.HandleSignalInput) error {
	var d workflows.ApprovalDecision
	if err := converter.GetDefaultDataConverter().FromPayloads(in.Arg, &d); err == nil {
		putIdentity(ctx, d)
	}
	return i.Next.HandleSignal(ctx, in)
}

func (i *testIdentityInbound) ValidateUpdate(ctx workflow.Context, in *interceptor.UpdateInput) error {
	putIdentity(ctx, in.Args[0].(workflows.ApprovalDecision))
	return i.Next.ValidateUpdate(ctx, in)
}

func (i *testIdentityInbound) ExecuteUpdate(ctx workflow.Context, in *interceptor.UpdateInput) (any, error) {
	putIdentity(ctx, in.Args[0].(workflows.ApprovalDecision))
	return i.Next.ExecuteUpdate(ctx, in)
}

type approvalHarness struct {
	*harness
	log *syncBuffer
}

// newApprovalHarness is newHarness with the worker's identity interceptor,
// an approval policy, inline runbooks as configured and a captured log.
func newApprovalHarness(t *testing.T, allowInline bool, policy workflows.ApprovalPolicy, extra ...interceptor.WorkerInterceptor) *approvalHarness {
	return newApprovalHarnessStartedAs(t, "", allowInline, policy, extra...)
}

// newApprovalHarnessStartedAs is newApprovalHarness for a run whose start
// carries the identity header start.
func newApprovalHarnessStartedAs(t *testing.T, start string, allowInline bool, policy workflows.ApprovalPolicy, extra ...interceptor.WorkerInterceptor) *approvalHarness {
	var suite testsuite.WorkflowTestSuite
	buf := &syncBuffer{}
	suite.SetLogger(tlog.NewStructuredLogger(slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: slog.LevelInfo}))))
	env := suite.NewTestWorkflowEnvironment()
	rec := &recorder{}
	cat := rec.catalogue(t)
	lib, err := runbooks.NewLibrary("", cat)
	require.NoError(t, err)
	workflows.Register(env, &workflows.Resolver{Library: lib, Catalogue: cat, AllowInline: allowInline, Approvals: policy})
	ics := append([]interceptor.WorkerInterceptor{&testIdentity{start: start}}, workflows.WorkerInterceptors()...)
	env.SetWorkerOptions(worker.Options{Interceptors: append(ics, extra...)})
	h := &harness{TestWorkflowEnvironment: env, rec: rec}
	env.OnUpsertTypedSearchAttributes(mock.Anything).Return(nil)
	return &approvalHarness{harness: h, log: buf}
}

func (h *approvalHarness) update(refusals map[string]string, name string, d workflows.ApprovalDecision) {
	h.UpdateWorkflow(workflows.ApproveUpdate, name, &testsuite.TestUpdateCallback{
		OnReject:   func(err error) { refusals[name] = err.Error() },
		OnAccept:   func() {},
		OnComplete: func(any, error) {},
	}, d)
}

const simpleGate = `name: gate
steps:
  - id: merge
    approval:
      message: "Merge?"
      approvers: ["Bob", " carol "]
      timeout: 1h
  - id: after
    uses: test.record
    with: {value: "{{ .steps.merge.outputs.by }} {{ .steps.merge.outputs.identity }}"}
`

func TestInlineRunbooksOffByDefault(t *testing.T) {
	h := newApprovalHarness(t, false, workflows.ApprovalPolicy{})
	h.run(simpleGate, nil, "alice")
	st, err := h.result(t)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `inline runbooks ("definition") are off on this worker`)
	assert.Contains(t, err.Error(), "allowInlineRunbooks: true")
	assert.Contains(t, err.Error(), "known: hello", "it names the runbooks a run may use")
	assert.Equal(t, workflows.RunFailed, st.State)
	assert.Empty(t, h.rec.calls)

	// Named runbooks still run.
	h = newApprovalHarness(t, false, workflows.ApprovalPolicy{})
	h.ExecuteWorkflow(workflows.WorkflowType, workflows.RunInput{Runbook: "hello", Params: map[string]any{"image": "no-tag"}, RequestedBy: "alice"})
	_, err = h.result(t)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "does not match pattern", "a named runbook resolves (and fails on its params, not on inline)")
}

func TestRunWithoutRequestedByIsRefused(t *testing.T) {
	for _, who := range []string{"", "   "} {
		h := newApprovalHarness(t, true, workflows.ApprovalPolicy{})
		h.run(simpleGate, nil, who)
		st, err := h.result(t)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `"requestedBy" is required`)
		assert.Equal(t, workflows.RunFailed, st.State)
		assert.Empty(t, h.rec.calls)
	}
}

// TestOverlongRequestedByIsRefused: requestedBy becomes a search attribute
// at the start, and a value past the server's size limit would fail every
// workflow task of the run.
func TestOverlongRequestedByIsRefused(t *testing.T) {
	h := newApprovalHarness(t, true, workflows.ApprovalPolicy{})
	h.run(simpleGate, nil, strings.Repeat("a", workflows.MaxRequestedByLen+1))
	st, err := h.result(t)
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf(`"requestedBy" is %d bytes, longer than %d`, workflows.MaxRequestedByLen+1, workflows.MaxRequestedByLen))
	assert.Equal(t, workflows.RunFailed, st.State)
	assert.Empty(t, h.rec.calls)
}

func TestFourEyesAndApproversCompareNormalisedNames(t *testing.T) {
	h := newApprovalHarness(t, true, workflows.ApprovalPolicy{})
	refusals := map[string]string{}
	h.RegisterDelayedCallback(func() {
		// The requester under another spelling of their name.
		h.update(refusals, "self", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "Alice "})
		// "Bob" and " carol " in the runbook are bob and carol.
		h.update(refusals, "ok", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: " CAROL"})
	}, time.Minute)
	h.run(simpleGate, nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	assert.Contains(t, refusals["self"], "four-eyes")
	assert.NotContains(t, refusals, "ok")
	require.Len(t, st.Decisions, 1)
	assert.Equal(t, "CAROL", st.Decisions[0].By)

	// A requester listed as an approver cannot reject-as-approver either
	// way; an approver's spelling does not matter for rejecting.
	h = newApprovalHarness(t, true, workflows.ApprovalPolicy{})
	h.RegisterDelayedCallback(func() {
		h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "merge", Decision: "reject", By: "bob  "})
	}, time.Minute)
	h.run(simpleGate, nil, "ALICE")
	st, err = h.result(t)
	require.Error(t, err)
	assert.Equal(t, workflows.RunRejected, st.State)
}

func TestIdentityRecordedAndChecked(t *testing.T) {
	policy := workflows.ApprovalPolicy{Identities: map[string]string{
		"CN=bob,O=acme":            "bob",
		"stagehand-cli:carol@host": "Carol",
		"CN=alice,O=acme":          "alice",
	}}
	h := newApprovalHarness(t, true, policy)
	refusals := map[string]string{}
	h.RegisterDelayedCallback(func() {
		// bob's certificate, but the decision says carol.
		h.update(refusals, "impersonation", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "carol", Comment: "identity:CN=bob,O=acme"})
		// carol's mapped identity, spelled differently in the map: fine.
		h.update(refusals, "ok", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "carol", Comment: "identity:stagehand-cli:carol@host"})
	}, time.Minute)
	h.run(simpleGate, nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	assert.Contains(t, refusals["impersonation"], `its connection identity "CN=bob,O=acme" belongs to bob`)
	assert.NotContains(t, refusals, "ok")
	require.Len(t, st.Decisions, 1)
	assert.Equal(t, "stagehand-cli:carol@host", st.Decisions[0].Identity)
	assert.Equal(t, "carol stagehand-cli:carol@host", h.rec.args["after"]["value"], "the gate's outputs carry the identity")

	lines := h.log.lines(t, workflows.RefusedApprovalLog)
	require.Len(t, lines, 1, "every refused update is logged once")
	l := lines[0]
	assert.Equal(t, "WARN", l["level"])
	assert.Equal(t, "update", l["via"])
	assert.Equal(t, "merge", l["gate"])
	assert.Equal(t, "carol", l["by"])
	assert.Equal(t, "CN=bob,O=acme", l["identity"])
	assert.Contains(t, l["reason"], "belongs to bob")
	assert.Equal(t, "default-test-run-id", l["runId"])
	assert.Equal(t, "default-test-workflow-id", l["workflowId"])
}

// TestFourEyesBindsTheStartersIdentity: requestedBy is the starter's own
// claim, so a requester who names someone else must still not approve
// their own run, neither from the connection that started it nor as the
// approver that connection's identity maps to.
func TestFourEyesBindsTheStartersIdentity(t *testing.T) {
	policy := workflows.ApprovalPolicy{Identities: map[string]string{
		"CN=bob,O=acme":            "bob",
		"stagehand-cli:bob@laptop": "bob",
		"CN=carol,O=acme":          "carol",
	}}
	h := newApprovalHarnessStartedAs(t, "CN=bob,O=acme", true, policy)
	refusals := map[string]string{}
	var waiting workflows.Status
	h.RegisterDelayedCallback(func() {
		waiting = h.query(t)
		// bob started the run as "alice" and approves from the same connection ...
		h.update(refusals, "same", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob", Comment: "identity:CN=bob,O=acme"})
		// ... or from his other identity.
		h.update(refusals, "other", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "Bob", Comment: "identity:stagehand-cli:bob@laptop"})
		h.update(refusals, "ok", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "carol", Comment: "identity:CN=carol,O=acme"})
	}, time.Minute)
	h.run(identityGate, nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	assert.Equal(t, "CN=bob,O=acme", waiting.RequesterIdentity)
	assert.Contains(t, refusals["same"], `bob started this run (identity "CN=bob,O=acme") and cannot approve it (four-eyes rule)`)
	assert.Contains(t, refusals["other"], `Bob started this run (identity "CN=bob,O=acme") and cannot approve it (four-eyes rule)`)
	assert.NotContains(t, refusals, "ok")
	require.Len(t, st.Decisions, 1)
	assert.Equal(t, "carol", st.Decisions[0].By)
}

func TestUnmappedStarterIdentityIsOnlyRecorded(t *testing.T) {
	// An identity the worker does not map proves nothing: a shared account
	// may start a run and approve it under another name, as before.
	h := newApprovalHarnessStartedAs(t, "stagehand-cli:ops@jump", true, workflows.ApprovalPolicy{})
	h.RegisterDelayedCallback(func() {
		h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob", Comment: "identity:stagehand-cli:ops@jump"})
	}, time.Minute)
	h.run(simpleGate, nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	assert.Equal(t, "stagehand-cli:ops@jump", st.RequesterIdentity)
	require.Len(t, st.Decisions, 1)
	assert.Empty(t, st.Decisions[0].Refused)
}

const identityGate = `name: gate
steps:
  - id: merge
    approval:
      message: "Merge?"
      approvers: [bob, carol]
      timeout: 1h
      requireIdentity: true
`

func TestGateRequiresIdentity(t *testing.T) {
	policy := workflows.ApprovalPolicy{Identities: map[string]string{"CN=bob,O=acme": "bob"}}
	h := newApprovalHarness(t, true, policy)
	refusals := map[string]string{}
	var waiting workflows.Status
	h.RegisterDelayedCallback(func() {
		waiting = h.query(t)
		h.update(refusals, "none", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob"})
		h.update(refusals, "unmapped", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "carol", Comment: "identity:CN=carol,O=acme"})
		// Signals are checked the same way (and the refusal recorded).
		h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob"})
		h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob", Comment: "identity:CN=bob,O=acme"})
	}, time.Minute)
	h.run(identityGate, nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	require.NotNil(t, waiting.PendingGate)
	assert.True(t, waiting.PendingGate.RequireIdentity)
	assert.Contains(t, refusals["none"], "requires the decider's identity, and this decision's connection carried none")
	assert.Contains(t, refusals["unmapped"], `identity "CN=carol,O=acme" is not in the worker's approvals.identities`)
	require.Len(t, st.Decisions, 2)
	assert.Contains(t, st.Decisions[0].Refused, "carried none")
	assert.Equal(t, "", st.Decisions[0].Identity)
	assert.Empty(t, st.Decisions[1].Refused)
	assert.Equal(t, "CN=bob,O=acme", st.Decisions[1].Identity, "each signal is paired with its own identity")
	assert.Len(t, h.log.lines(t, workflows.RefusedApprovalLog), 3, "two refused updates and one refused signal")

	// Worker-wide: approvals.requireIdentity applies to gates without the flag.
	h = newApprovalHarness(t, true, workflows.ApprovalPolicy{RequireIdentity: true})
	refusals = map[string]string{}
	h.RegisterDelayedCallback(func() {
		h.update(refusals, "none", workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob"})
	}, time.Minute)
	h.run(simpleGate, nil, "alice")
	_, err = h.result(t)
	require.Error(t, err, "nobody could approve: the gate times out")
	assert.Contains(t, refusals["none"], "carried none")
}

func TestRefusedSignalRecordsAreBounded(t *testing.T) {
	h := newApprovalHarness(t, true, workflows.ApprovalPolicy{})
	const refused = workflows.MaxRefusedDecisions + 15
	h.RegisterDelayedCallback(func() {
		for i := 0; i < refused; i++ {
			h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: fmt.Sprintf("mallory%d", i)})
		}
		h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob"})
	}, time.Minute)
	h.run(simpleGate, nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	require.Len(t, st.Decisions, workflows.MaxRefusedDecisions+1)
	assert.Equal(t, 15, st.RefusedDropped)
	assert.Equal(t, "mallory15", st.Decisions[0].By, "the oldest refused records are dropped")
	assert.Equal(t, "bob", st.Decisions[len(st.Decisions)-1].By)
	assert.Empty(t, st.Decisions[len(st.Decisions)-1].Refused)
	assert.Len(t, h.log.lines(t, workflows.RefusedApprovalLog), refused, "every refused signal is still logged")
}

// TestRefusedSignalRecordsAreSmall: the count bound alone does not bound
// the status when each refused signal carries a huge name, gate or comment
// (a signal may be megabytes): MaxRefusedDecisions of them would make the
// run's result and query answer too large to return.
func TestRefusedSignalRecordsAreSmall(t *testing.T) {
	h := newApprovalHarness(t, true, workflows.ApprovalPolicy{})
	huge := strings.Repeat("é", 50_000)
	h.RegisterDelayedCallback(func() {
		for i := 0; i < 5; i++ {
			h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: huge, Decision: huge, By: huge, Comment: huge})
		}
		h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob"})
	}, time.Minute)
	h.run(simpleGate, nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	require.Len(t, st.Decisions, 6)
	for _, d := range st.Decisions[:5] {
		for name, v := range map[string]string{"gate": d.Gate, "decision": d.Decision, "by": d.By, "comment": d.Comment, "refused": d.Refused} {
			limit := workflows.MaxRefusedFieldLen
			if name == "refused" {
				limit *= 4
			}
			assert.LessOrEqual(t, len(v), limit+len("…"), name)
			assert.True(t, utf8.ValidString(v), "%s is cut on a character boundary", name)
		}
		assert.True(t, strings.HasSuffix(d.By, "…"), "a cut value says it was cut")
		assert.Contains(t, d.Refused, "decision must be")
	}
	for _, l := range h.log.lines(t, workflows.RefusedApprovalLog) {
		assert.LessOrEqual(t, len(l["by"].(string)), workflows.MaxRefusedFieldLen+len("…"), "the log line is bounded too")
	}
}

// commandCounter counts what a workflow asks the server to record: each
// timer, activity, local activity, version marker, search-attribute or
// memo upsert is one command and at most three history events (scheduled,
// started, completed / started, fired), and each may wake the workflow for
// one workflow task (three more events). 6 × commands bounds the history.
type commandCounter struct {
	interceptor.WorkerInterceptorBase
	mu sync.Mutex
	n  int
}

func (c *commandCounter) add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

func (c *commandCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

func (c *commandCounter) InterceptWorkflow(_ workflow.Context, next interceptor.WorkflowInboundInterceptor) interceptor.WorkflowInboundInterceptor {
	i := &countInbound{c: c}
	i.Next = next
	return i
}

type countInbound struct {
	interceptor.WorkflowInboundInterceptorBase
	c *commandCounter
}

func (i *countInbound) Init(outbound interceptor.WorkflowOutboundInterceptor) error {
	o := &countOutbound{c: i.c}
	o.Next = outbound
	return i.Next.Init(o)
}

type countOutbound struct {
	interceptor.WorkflowOutboundInterceptorBase
	c *commandCounter
}

func (o *countOutbound) ExecuteActivity(ctx workflow.Context, t string, args ...any) workflow.Future {
	o.c.add()
	return o.Next.ExecuteActivity(ctx, t, args...)
}

func (o *countOutbound) ExecuteLocalActivity(ctx workflow.Context, t string, args ...any) workflow.Future {
	o.c.add()
	return o.Next.ExecuteLocalActivity(ctx, t, args...)
}

func (o *countOutbound) NewTimer(ctx workflow.Context, d time.Duration) workflow.Future {
	o.c.add()
	return o.Next.NewTimer(ctx, d)
}

func (o *countOutbound) NewTimerWithOptions(ctx workflow.Context, d time.Duration, opts workflow.TimerOptions) workflow.Future {
	o.c.add()
	return o.Next.NewTimerWithOptions(ctx, d, opts)
}

func (o *countOutbound) AwaitWithOptions(ctx workflow.Context, opts workflow.AwaitOptions, cond func() bool) (bool, error) {
	o.c.add() // the timeout's timer
	return o.Next.AwaitWithOptions(ctx, opts, cond)
}

func (o *countOutbound) GetVersion(ctx workflow.Context, id string, min, max workflow.Version) workflow.Version {
	o.c.add()
	return o.Next.GetVersion(ctx, id, min, max)
}

func (o *countOutbound) UpsertTypedSearchAttributes(ctx workflow.Context, sas ...temporal.SearchAttributeUpdate) error {
	o.c.add()
	return o.Next.UpsertTypedSearchAttributes(ctx, sas...)
}

func (o *countOutbound) UpsertMemo(ctx workflow.Context, memo map[string]any) error {
	o.c.add()
	return o.Next.UpsertMemo(ctx, memo)
}

// TestLongGateHistoryIsBounded: a gate reminding every second stays open
// for two hours (7,200 reminders at that pace) and is then approved. The
// reminders slow down after MaxRemindersAtInterval, so the run completes
// with a bounded number of commands, hence a bounded history.
func TestLongGateHistoryIsBounded(t *testing.T) {
	counter := &commandCounter{}
	h := newApprovalHarness(t, true, workflows.ApprovalPolicy{}, counter)
	h.RegisterDelayedCallback(func() {
		h.SignalWorkflow(workflows.ApprovalSignal, workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob"})
	}, 2*time.Hour)
	h.run(`name: long
steps:
  - id: merge
    approval:
      message: "ok?"
      approvers: [bob]
      timeout: 72h
      remind:
        every: 1s
        uses: test.record
        with: {value: "{{ .gate.reminder }}"}
`, nil, "alice")
	st, err := h.result(t)
	require.NoError(t, err)
	assert.Equal(t, workflows.RunSucceeded, st.State)

	reminders := len(h.rec.calls)
	// 200 at 1s, then 2s, 4s, ... 4096s: 12 more reminders fit in 2h.
	assert.GreaterOrEqual(t, reminders, runbooks.MaxRemindersAtInterval, "reminders keep coming at the runbook's pace first")
	assert.LessOrEqual(t, reminders, runbooks.MaxRemindersAtInterval+13)
	commands := counter.count()
	t.Logf("%d reminders, %d commands", reminders, commands)
	const maxEvents = 5000 // Temporal warns at 10,240 events and stops a run at 51,200
	assert.Less(t, 6*commands+10, maxEvents, "history events bound: 6 per command plus the run's start and end")
}

// TestReminderPacingOverWeeks: a gate with reminders every minute, open for
// four weeks, reminds about 250 times, not 40,320.
func TestReminderPacingOverWeeks(t *testing.T) {
	n, elapsed := 0, time.Duration(0)
	for elapsed < 28*24*time.Hour {
		n++
		wait := time.Minute
		if n > runbooks.MaxRemindersAtInterval {
			wait = workflows.ReminderInterval(time.Minute, n)
		}
		elapsed += wait
	}
	assert.Less(t, n, runbooks.MaxRemindersAtInterval+60, "reminders over four weeks")
	assert.Equal(t, 2*time.Minute, workflows.ReminderInterval(time.Minute, runbooks.MaxRemindersAtInterval+1))
	assert.Equal(t, runbooks.MaxReminderInterval, workflows.ReminderInterval(time.Minute, runbooks.MaxRemindersAtInterval+100))
	assert.Equal(t, 48*time.Hour, workflows.ReminderInterval(48*time.Hour, runbooks.MaxRemindersAtInterval+5), "a slow reminder is never sped up")
}
