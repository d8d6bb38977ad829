package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/mock"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/mocks"

	"github.com/stagehand-dev/stagehand/workflows"
)

// auditedList is listResponse with an upgrade run that left its audit
// summary in the memo, as workflow.UpsertMemo writes it.
func auditedList(t *testing.T) *workflowservice.ListWorkflowExecutionsResponse {
	resp := listResponse(t)
	resp.Executions[1].Memo = &commonpb.Memo{Fields: map[string]*commonpb.Payload{
		workflows.MemoAudit: payload(t, map[string]string{"version": "1.44.0 → 1.45.0", "digest": "sha256:abc"}),
	}}
	return resp
}

func TestListAuditSummary(t *testing.T) {
	for _, output := range []string{"table", "markdown", "json"} {
		t.Run(output, func(t *testing.T) {
			h := newHarness(t)
			h.client.On("ListWorkflow", mock.Anything, mock.Anything).Return(auditedList(t), nil).Once()
			if code := h.run("audit", "-o", output); code != ExitOK {
				t.Fatalf("exit %d: %s", code, h.errOut)
			}
			out := h.out.String()
			lines := strings.Split(strings.TrimSpace(out), "\n")
			switch output {
			case "table":
				assertContains(t, lines[0], "DURATION", "SUMMARY")
				assertContains(t, lines[2], "odd|id", "digest=sha256:abc · version=1.44.0 → 1.45.0")
				if !strings.HasSuffix(strings.TrimSpace(lines[1]), " -") {
					t.Errorf("a run without audit shows -: %q", lines[1])
				}
			case "markdown":
				assertContains(t, lines[0], "| SUMMARY |")
				assertContains(t, lines[3], "| digest=sha256:abc · version=1.44.0 → 1.45.0 |")
			case "json":
				var rows []map[string]any
				if err := json.Unmarshal([]byte(out), &rows); err != nil {
					t.Fatal(err)
				}
				if _, ok := rows[0]["audit"]; ok {
					t.Errorf("a run without audit has no audit key: %v", rows[0])
				}
				want := map[string]any{"version": "1.44.0 → 1.45.0", "digest": "sha256:abc"}
				if got, _ := rows[1]["audit"].(map[string]any); len(got) != 2 || got["version"] != want["version"] || got["digest"] != want["digest"] {
					t.Errorf("audit = %v, want %v", rows[1]["audit"], want)
				}
			}
		})
	}
}

func TestListWithoutAuditHasNoSummaryColumn(t *testing.T) {
	h := newHarness(t)
	resp := listResponse(t)
	// A memo written by something else, or not a map of strings, is ignored.
	resp.Executions[0].Memo = &commonpb.Memo{Fields: map[string]*commonpb.Payload{
		"other": payload(t, "x"), workflows.MemoAudit: payload(t, 42),
	}}
	h.client.On("ListWorkflow", mock.Anything, mock.Anything).Return(resp, nil).Once()
	if code := h.run("list"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	if strings.Contains(h.out.String(), "SUMMARY") {
		t.Errorf("SUMMARY column without any audit:\n%s", h.out)
	}
}

func TestShowPrintsAudit(t *testing.T) {
	st := waitingStatus()
	st.State, st.PendingGate = workflows.RunFailed, nil
	st.Audit = &workflows.AuditRecord{
		Summary: map[string]string{"version": "1.44.0 → 1.45.0", "digest": "sha256:abc"},
		Details: map[string]string{"schema": "catalog: +1 table\nscaffolder: none\n", "backups": "```odd```"},
	}
	res := showResult{Run: &runView{WorkflowID: "upgrade-1", Start: fixedNow}, Status: &st}

	var status bytes.Buffer
	writeStatusText(&status, fixedNow, res.Run, &st, "stagehand")
	assertContains(t, status.String(), "Audit:        digest=sha256:abc · version=1.44.0 → 1.45.0\n")

	var text bytes.Buffer
	if err := writeShow(&text, res, false); err != nil {
		t.Fatal(err)
	}
	assertContains(t, text.String(), "\nAudit:\n  digest: sha256:abc\n  version: 1.44.0 → 1.45.0\n",
		"  schema:\n    catalog: +1 table\n    scaffolder: none\n", "  backups:\n    ```odd```\n")

	var md bytes.Buffer
	if err := writeShow(&md, res, true); err != nil {
		t.Fatal(err)
	}
	assertContains(t, md.String(), "**Audit**\n\n- digest: sha256:abc\n- version: 1.44.0 → 1.45.0\n",
		"schema:\n\n```\ncatalog: +1 table\nscaffolder: none\n```\n", "backups:\n\n````\n```odd```\n````\n")

	// `audit show` reads the final Status from the run's result.
	h := newHarness(t)
	h.client.On("DescribeWorkflowExecution", mock.Anything, "upgrade-1", "").
		Return(describeResp(t, "upgrade-1", enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED, nil), nil)
	st.State = workflows.RunSucceeded
	run := &mocks.WorkflowRun{}
	run.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		*args.Get(1).(*workflows.Status) = st
	}).Return(nil)
	h.client.On("GetWorkflow", mock.Anything, "upgrade-1", "run-1").Return(run)
	iter := &mocks.HistoryEventIterator{}
	iter.On("HasNext").Return(false)
	h.client.On("GetWorkflowHistory", mock.Anything, "upgrade-1", "run-1", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT).Return(client.HistoryEventIterator(iter))
	if code := h.run("audit", "show", "upgrade-1", "-o", "json"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	var got struct {
		Status workflows.Status `json:"status"`
	}
	if err := json.Unmarshal(h.out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Audit == nil || got.Status.Audit.Summary["digest"] != "sha256:abc" || !strings.Contains(got.Status.Audit.Details["schema"], "catalog") {
		t.Errorf("json status audit = %+v", got.Status.Audit)
	}
}

// A gate in onFailure is found like any other: the run waits there after
// its failure, and `approve RUN` without --gate decides it.
func TestApproveCompensationGate(t *testing.T) {
	st := waitingStatus()
	st.PendingGate.Gate = "restore"
	st.FailedStep, st.Error = "smoke", "smoke failed"
	st.Steps[1].State = workflows.StepApproved
	st.Compensation = []workflows.StepStatus{{ID: "restore", Kind: "approval", State: workflows.StepWaitingApproval}}

	h := newHarness(t)
	h.client.On("DescribeWorkflowExecution", mock.Anything, "hello-1", "").
		Return(describeResp(t, "hello-1", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil), nil)
	h.client.On("QueryWorkflow", mock.Anything, "hello-1", "run-1", workflows.StatusQuery).Return(statusValue{st}, nil)
	if code := h.run("status", "hello-1"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	assertContains(t, h.out.String(), `Waiting for approval at gate "restore"`, "compensation goes on without it then", "approve hello-1 --gate restore")

	h = newHarness(t)
	h.client.On("DescribeWorkflowExecution", mock.Anything, "hello-1", "").
		Return(describeResp(t, "hello-1", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil), nil)
	h.client.On("QueryWorkflow", mock.Anything, "hello-1", "run-1", workflows.StatusQuery).Return(statusValue{st}, nil)
	handle := &mocks.WorkflowUpdateHandle{}
	handle.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
		*args.Get(1).(*workflows.DecisionRecord) = workflows.DecisionRecord{Identity: "stagehand-cli:bob@laptop"}
	}).Return(nil)
	want := workflows.ApprovalDecision{Gate: "restore", Decision: "approve", By: "bob"}
	h.client.On("UpdateWorkflow", mock.Anything, mock.MatchedBy(func(o client.UpdateWorkflowOptions) bool {
		return o.UpdateName == workflows.ApproveUpdate && len(o.Args) == 1 && o.Args[0] == want
	})).Return(client.WorkflowUpdateHandle(handle), nil).Once()
	if code := h.run("approve", "hello-1", "--as", "bob"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	assertContains(t, h.out.String(), "Approved gate restore of run hello-1 as bob", "Recorded with connection identity stagehand-cli:bob@laptop.")
}

// `audit show` lists decisions with their connection identity, says how
// many refused signals were dropped, and where refused updates are (the
// worker's log): they never reach the history it reads.
func TestShowDecisionsIdentityAndRefusedNote(t *testing.T) {
	st := waitingStatus()
	st.State, st.PendingGate = workflows.RunSucceeded, nil
	st.Decisions = []workflows.DecisionRecord{
		{ApprovalDecision: workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob"}, Identity: "stagehand-cli:alice@host", At: fixedNow, Refused: "the decision is by bob, but its connection identity belongs to alice"},
		{ApprovalDecision: workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob"}, Identity: "CN=bob,O=acme", At: fixedNow},
	}
	st.RefusedDropped = 3
	res := showResult{Run: &runView{WorkflowID: "patch-1", Start: fixedNow}, Status: &st}
	for _, markdown := range []bool{false, true} {
		var b bytes.Buffer
		if err := writeShow(&b, res, markdown); err != nil {
			t.Fatal(err)
		}
		assertContains(t, b.String(), "merge  approve by bob (identity CN=bob,O=acme)",
			"(identity stagehand-cli:alice@host) — REFUSED: the decision is by bob",
			"(3 older refused signals not listed)",
			`the worker logs each one (msg="approval refused"`)
	}
	// Without any decision the note is still there.
	st.Decisions, st.RefusedDropped = nil, 0
	var b bytes.Buffer
	if err := writeShow(&b, res, false); err != nil {
		t.Fatal(err)
	}
	assertContains(t, b.String(), `msg="approval refused"`)
}

// The CLI names itself to Temporal as stagehand-cli:<user>@<host> and sends
// that identity with signals and updates (a client interceptor).
func TestCLIIdentity(t *testing.T) {
	h := newHarness(t)
	h.f.Hostname = func() (string, error) { return "laptop", nil }
	var got client.Options
	h.f.Dial = func(_ context.Context, o client.Options) (Client, error) { got = o; return h.client, nil }
	h.client.On("ListWorkflow", mock.Anything, mock.Anything).Return(listResponse(t), nil)
	if code := h.run("list"); code != ExitOK {
		t.Fatal(code, h.errOut)
	}
	if got.Identity != "stagehand-cli:alice@laptop" {
		t.Errorf("identity %q", got.Identity)
	}
	if len(got.Interceptors) != 1 {
		t.Errorf("want the identity header interceptor, got %d interceptors", len(got.Interceptors))
	}
}

// A run needs a requester: with neither --requested-by nor $USER the CLI
// refuses before dialing (the worker would refuse it too).
func TestStartNeedsRequester(t *testing.T) {
	h := newHarness(t)
	h.f.Getenv = func(string) string { return "" }
	if code := h.run("start", "hello", "--param", "image=r/b:1"); code != ExitUsage {
		t.Fatalf("exit %d, want %d: %s", code, ExitUsage, h.errOut)
	}
	assertContains(t, h.errOut.String(), "--requested-by")
	if h.dialed != 0 {
		t.Error("dialed Temporal for a run that cannot start")
	}
	if code := h.run("start", "hello", "--param", "image=r/b:1", "--requested-by", "  "); code != ExitUsage {
		t.Fatalf("blank --requested-by: exit %d", code)
	}
}
