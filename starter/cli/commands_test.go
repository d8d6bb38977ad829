package cli

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/mock"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/mocks"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/workflows"
)

func TestExitCodes(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		setup   func(h *harness)
		want    int
		wantErr []string
	}{
		{name: "help", args: []string{"--help"}, want: ExitOK},
		{name: "unknown command", args: []string{"frobnicate"}, want: ExitUsage, wantErr: []string{`unknown command "frobnicate"`, "stagehand --help"}},
		{name: "unknown flag", args: []string{"status", "x", "--bogus"}, want: ExitUsage, wantErr: []string{"unknown flag: --bogus", "stagehand status --help"}},
		{name: "missing arg", args: []string{"status"}, want: ExitUsage, wantErr: []string{"accepts 1 arg"}},
		{name: "bad output", args: []string{"status", "x", "-o", "yaml"}, want: ExitUsage, wantErr: []string{`invalid --output "yaml"`}},
		{name: "bad interval", args: []string{"watch", "x", "--interval", "0s"}, want: ExitUsage, wantErr: []string{"invalid --interval"}},
		{name: "start without runbook", args: []string{"start"}, want: ExitUsage, wantErr: []string{"name a runbook"}},
		{name: "bad param names the flag", args: []string{"start", "patch", "--param", "image"}, want: ExitUsage, wantErr: []string{`invalid --param "image"`}},
		{
			name: "no user to approve as",
			args: []string{"approve", "x", "--gate", "merge"},
			setup: func(h *harness) {
				h.f.Getenv = func(string) string { return "" }
			},
			want:    ExitUsage,
			wantErr: []string{"--as USER"},
		},
		{
			name: "unreachable",
			args: []string{"status", "x", "--address", "127.0.0.1:1"},
			setup: func(h *harness) {
				h.f.Dial = func(context.Context, client.Options) (Client, error) {
					return nil, errors.New("connection refused")
				}
			},
			want:    ExitTemporal,
			wantErr: []string{"cannot reach Temporal at 127.0.0.1:1: connection refused", "is the dev server running? try `make dev`"},
		},
		{
			name: "not found",
			args: []string{"status", "nope"},
			setup: func(h *harness) {
				h.client.On("DescribeWorkflowExecution", mock.Anything, "nope", "").Return(nil, serviceerror.NewNotFound("workflow not found"))
			},
			want:    ExitNotFound,
			wantErr: []string{`run "nope" not found in namespace "default"`, "stagehand list"},
		},
		{
			name: "rpc error",
			args: []string{"list"},
			setup: func(h *harness) {
				h.client.On("ListWorkflow", mock.Anything, mock.Anything).Return(nil, serviceerror.NewInvalidArgument("bad query"))
			},
			want:    ExitTemporal,
			wantErr: []string{"list runs", "bad query"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.setup != nil {
				tt.setup(h)
			}
			if got := h.run(tt.args...); got != tt.want {
				t.Errorf("exit %d, want %d; stderr:\n%s", got, tt.want, h.errOut)
			}
			assertContains(t, h.errOut.String(), tt.wantErr...)
		})
	}
}

func TestHelpDocumentsExitCodes(t *testing.T) {
	h := newHarness(t)
	if code := h.run("--help"); code != ExitOK {
		t.Fatal(code)
	}
	assertContains(t, h.out.String(), "Exit codes:", "  3  Temporal is unreachable", "  5  the run is waiting for approval",
		"TEMPORAL_ADDRESS", "audit", "validate", "watch")
	// Every command has examples.
	for _, c := range NewRootCmd(h.f).Commands() {
		if c.Name() != "help" && c.Example == "" {
			t.Errorf("%s has no examples", c.Name())
		}
	}
}

func TestGlobalFlagsFromEnv(t *testing.T) {
	h := newHarness(t)
	h.f.Getenv = func(k string) string {
		return map[string]string{"TEMPORAL_ADDRESS": "temporal:7233", "TEMPORAL_NAMESPACE": "ops", "STAGEHAND_TASK_QUEUE": "q2"}[k]
	}
	var got client.Options
	h.f.Dial = func(_ context.Context, o client.Options) (Client, error) { got = o; return h.client, nil }
	h.client.On("ListWorkflow", mock.Anything, mock.Anything).Return(listResponse(t), nil)
	if code := h.run("list"); code != ExitOK {
		t.Fatal(code, h.errOut)
	}
	if got.HostPort != "temporal:7233" || got.Namespace != "ops" {
		t.Errorf("dialed %s/%s", got.HostPort, got.Namespace)
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(good, []byte("name: good\nsteps:\n  - id: a\n    uses: log\n    with: {message: hi}\n  - id: b\n    uses: noop\n"), 0o600)
	os.WriteFile(bad, []byte("name: bad\nsteps:\n  - id: a\n    uses: nope\n  - id: b\n    uses: log\n    with: {mesage: hi}\n"), 0o600)

	h := newHarness(t)
	if code := h.run("validate", good); code != ExitOK {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	assertContains(t, h.out.String(), "ok: "+good+" (runbook good, 2 steps)")

	h = newHarness(t)
	if code := h.run("validate", good, bad); code != ExitUsage {
		t.Fatalf("exit %d", code)
	}
	out := h.out.String()
	assertContains(t, out, "ok: "+good, bad+":4:", `unknown step type "nope"`, "mesage")
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		if !strings.HasPrefix(l, bad+":") {
			t.Errorf("problem line not file:line:col: %q", l)
		}
	}
	if h.dialed != 0 {
		t.Error("validate dialed Temporal")
	}

	h = newHarness(t)
	if code := h.run("validate", "-o", "json", good, bad); code != ExitUsage {
		t.Fatalf("exit %d", code)
	}
	var res []validateResult
	if err := json.Unmarshal(h.out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || !res[0].OK || res[1].OK || len(res[1].Problems) < 2 || res[1].Problems[0].Line == 0 {
		t.Errorf("json results: %+v", res)
	}
}

func TestCatalogue(t *testing.T) {
	h := newHarness(t)
	if code := h.run("runbooks"); code != ExitOK {
		t.Fatal(code)
	}
	assertContains(t, h.out.String(), "STEP TYPE", "log", "message*, level", "wait", "duration*",
		"RUNBOOK", "hello", "image*")
	h = newHarness(t)
	if code := h.run("catalogue", "-o", "json"); code != ExitOK {
		t.Fatal(code)
	}
	var doc catalogueJSON
	if err := json.Unmarshal(h.out.Bytes(), &doc); err != nil || len(doc.StepTypes) == 0 || len(doc.Runbooks) == 0 {
		t.Fatalf("%v %s", err, h.out)
	}
	h = newHarness(t)
	if code := h.run("catalog", "-o", "markdown"); code != ExitOK {
		t.Fatal(code)
	}
	assertContains(t, h.out.String(), "| log | message*, level |", "| hello |")
}

func TestStart(t *testing.T) {
	h := newHarness(t)
	run := &mocks.WorkflowRun{}
	run.On("GetID").Return("patch-20261122-024501")
	run.On("GetRunID").Return("run-1")
	var opts client.StartWorkflowOptions
	var input workflows.RunInput
	h.client.On("ExecuteWorkflow", mock.Anything, mock.Anything, workflows.WorkflowType, mock.Anything).
		Run(func(args mock.Arguments) {
			opts = args.Get(1).(client.StartWorkflowOptions)
			input = args.Get(3).(workflows.RunInput)
		}).Return(run, nil).Once()

	dir := t.TempDir()
	pf := filepath.Join(dir, "params.yaml")
	os.WriteFile(pf, []byte("pr: 42\nimage: from-file\n"), 0o600)
	code := h.run("start", "patch", "--param", "image=reg/app:pr-42=x", "--params-file", pf, "--task-queue", "q")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	if opts.ID != "patch-20261122-024501" || opts.TaskQueue != "q" || !opts.WorkflowExecutionErrorWhenAlreadyStarted {
		t.Errorf("options %+v", opts)
	}
	// The Temporal UI shows these as the run's summary and details.
	if opts.StaticSummary != "patch: image reg/app:pr-42=x · pr 42 · requested by alice" {
		t.Errorf("static summary %q", opts.StaticSummary)
	}
	assertContains(t, opts.StaticDetails, "Runbook **patch**", "- `pr`: 42")
	if input.Runbook != "patch" || input.Definition != "" || input.RequestedBy != "alice" ||
		input.Params["image"] != "reg/app:pr-42=x" || input.Params["pr"] != 42 {
		t.Errorf("input %+v", input)
	}
	assertContains(t, h.out.String(), "patch-20261122-024501", "run-1", "stagehand watch patch-20261122-024501", "stagehand approve patch-20261122-024501")
}

func TestStartAlreadyRunning(t *testing.T) {
	h := newHarness(t)
	h.client.On("ExecuteWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything).
		Return(nil, serviceerror.NewWorkflowExecutionAlreadyStarted("already", "", "")).Once()
	if code := h.run("start", "patch", "--id", "mine"); code != ExitUsage {
		t.Fatalf("exit %d", code)
	}
	assertContains(t, h.errOut.String(), `a run with id "mine" is already running`, "--id")
}

func TestStartInlineFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hello.yaml")
	os.WriteFile(file, []byte(`name: hello
params:
  image: {type: string, required: true}
  count: {type: int, default: 1}
steps:
  - id: a
    uses: log
    with: {message: "{{ .params.image }}"}
`), 0o600)

	t.Run("invalid params fail before dialing", func(t *testing.T) {
		h := newHarness(t)
		if code := h.run("start", "--file", file, "--param", "count=many", "--param", "nope=1"); code != ExitUsage {
			t.Fatalf("exit %d", code)
		}
		assertContains(t, h.errOut.String(), "image", "count", "nope")
		if h.dialed != 0 {
			t.Error("dialed Temporal for invalid params")
		}
	})
	t.Run("invalid runbook fails before dialing", func(t *testing.T) {
		h := newHarness(t)
		bad := filepath.Join(dir, "bad.yaml")
		os.WriteFile(bad, []byte("name: bad\nsteps:\n  - id: a\n    uses: nope\n"), 0o600)
		if code := h.run("start", "-f", bad); code != ExitUsage {
			t.Fatalf("exit %d", code)
		}
		assertContains(t, h.errOut.String(), bad+":4:", "nothing was started")
		if h.dialed != 0 {
			t.Error("dialed Temporal for an invalid runbook")
		}
	})
	t.Run("sends the definition", func(t *testing.T) {
		h := newHarness(t)
		run := &mocks.WorkflowRun{}
		run.On("GetID").Return("hello-20261122-024501")
		run.On("GetRunID").Return("r")
		h.client.On("ExecuteWorkflow", mock.Anything, mock.MatchedBy(func(o client.StartWorkflowOptions) bool {
			return o.ID == "hello-20261122-024501"
		}), workflows.WorkflowType, mock.MatchedBy(func(in workflows.RunInput) bool {
			return in.Runbook == "" && strings.Contains(in.Definition, "name: hello") && in.Params["image"] == "x"
		})).Return(run, nil).Once()
		if code := h.run("start", "--file", file, "--param", "image=x", "-o", "json"); code != ExitOK {
			t.Fatalf("exit %d: %s", code, h.errOut)
		}
		var res startResult
		if err := json.Unmarshal(h.out.Bytes(), &res); err != nil || res.WorkflowID != "hello-20261122-024501" {
			t.Errorf("json %s (%v)", h.out, err)
		}
	})
}

func TestStartWait(t *testing.T) {
	final := waitingStatus()
	final.State = workflows.RunFailed
	final.PendingGate = nil
	final.FailedStep = "settle"
	final.Error = "timer broke"
	tests := []struct {
		name   string
		result error
		want   int
		out    []string
	}{
		{name: "succeeded", result: nil, want: ExitOK, out: []string{"State:", "succeeded"}},
		{name: "failed with status", result: temporal.NewApplicationError("run failed", workflows.RunFailedErrorType, final), want: ExitRunFailed,
			out: []string{"failed", "step settle: timer broke"}},
		{name: "terminated", result: temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_START_TO_CLOSE, nil), want: ExitRunFailed, out: []string{"Run ended:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			run := &mocks.WorkflowRun{}
			run.On("GetID").Return("hello-1")
			run.On("GetRunID").Return("r")
			run.On("Get", mock.Anything, mock.Anything).Run(func(args mock.Arguments) {
				if tt.result == nil {
					st := args.Get(1).(*workflows.Status)
					*st = waitingStatus()
					st.State, st.PendingGate = workflows.RunSucceeded, nil
				}
			}).Return(tt.result)
			h.client.On("ExecuteWorkflow", mock.Anything, mock.Anything, mock.Anything, mock.Anything).Return(run, nil)
			if code := h.run("start", "hello", "--wait"); code != tt.want {
				t.Fatalf("exit %d, want %d: %s", code, tt.want, h.errOut)
			}
			assertContains(t, h.out.String(), tt.out...)
		})
	}
}

func TestStatus(t *testing.T) {
	h := newHarness(t)
	h.client.On("DescribeWorkflowExecution", mock.Anything, "hello-1", "").
		Return(describeResp(t, "hello-1", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil), nil)
	h.client.On("QueryWorkflow", mock.Anything, "hello-1", "run-1", workflows.StatusQuery).Return(statusValue{waitingStatus()}, nil)
	if code := h.run("status", "hello-1", "--namespace", "ops"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	out := h.out.String()
	assertContains(t, out,
		"Runbook:      hello", "State:        waiting_approval", "Requested by: alice", "Environment:  sandbox",
		"Image:        registry/backend:pr-42-1a2b3c4d-1763779501", "Current step: merge",
		`Waiting for approval at gate "merge"`, "approvers: bob, carol", "deadline:  2026-11-25 02:40:01Z",
		"approve:   stagehand --namespace ops approve hello-1 --gate merge\n",
		"STEP", "USES", "ATTEMPTS", "settle", "wait", "succeeded", "2.0s", "(approval)", "waiting_approval", "4m58s+", "note", "pending")
	assert.NotContains(t, out, "WORKER", "no step named a worker")

	// Steps run by workers that name themselves show which ran each.
	st := waitingStatus()
	st.Steps[0].Worker = "worker-b"
	h = newHarness(t)
	h.client.On("DescribeWorkflowExecution", mock.Anything, "hello-1", "").
		Return(describeResp(t, "hello-1", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil), nil)
	h.client.On("QueryWorkflow", mock.Anything, "hello-1", "run-1", workflows.StatusQuery).Return(statusValue{st}, nil)
	if code := h.run("status", "hello-1"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	assert.Regexp(t, `(?m)^settle\s+wait\s+succeeded\s+\S+\s+\S+\s+worker-b\s*$`, h.out.String())
	assert.Regexp(t, `(?m)^STEP\s+USES\s+STATE\s+ATTEMPTS\s+DURATION\s+WORKER\s+ERROR`, h.out.String())

	h = newHarness(t)
	h.client.On("DescribeWorkflowExecution", mock.Anything, "hello-1", "").
		Return(describeResp(t, "hello-1", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil), nil)
	h.client.On("QueryWorkflow", mock.Anything, "hello-1", "run-1", workflows.StatusQuery).Return(statusValue{waitingStatus()}, nil)
	if code := h.run("status", "hello-1", "-o", "json"); code != ExitOK {
		t.Fatal(code)
	}
	var got map[string]any
	if err := json.Unmarshal(h.out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got["workflowId"] != "hello-1" || got["state"] != "waiting_approval" || got["execution"] != "running" || got["pendingGate"] == nil {
		t.Errorf("json: %s", h.out)
	}
}

func TestStatusClosedRunFallsBackToResult(t *testing.T) {
	final := waitingStatus()
	final.State, final.PendingGate, final.FailedStep, final.Error = workflows.RunRejected, nil, "merge", "rejected by bob: not today"
	h := newHarness(t)
	h.client.On("DescribeWorkflowExecution", mock.Anything, "hello-1", "").
		Return(describeResp(t, "hello-1", enumspb.WORKFLOW_EXECUTION_STATUS_FAILED, nil), nil)
	run := &mocks.WorkflowRun{}
	run.On("Get", mock.Anything, mock.Anything).Return(temporal.NewApplicationError("rejected", workflows.RunRejectedErrorType, final))
	h.client.On("GetWorkflow", mock.Anything, "hello-1", "run-1").Return(run)
	if code := h.run("status", "hello-1"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	assertContains(t, h.out.String(), "State:        rejected", "Error:        step merge: rejected by bob: not today", "settle")
}

func TestStatusTerminatedWithoutWorker(t *testing.T) {
	h := newHarness(t)
	h.client.On("DescribeWorkflowExecution", mock.Anything, "hello-1", "").
		Return(describeResp(t, "hello-1", enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED, map[string]any{"StagehandRunbook": "hello", "StagehandRequestedBy": "alice"}), nil)
	run := &mocks.WorkflowRun{}
	run.On("Get", mock.Anything, mock.Anything).Return(temporal.NewTimeoutError(enumspb.TIMEOUT_TYPE_START_TO_CLOSE, nil))
	h.client.On("GetWorkflow", mock.Anything, "hello-1", "run-1").Return(run)
	h.client.On("QueryWorkflow", mock.Anything, "hello-1", "run-1", workflows.StatusQuery).Return(nil, context.DeadlineExceeded)
	if code := h.run("status", "hello-1"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	assertContains(t, h.out.String(), "Runbook:      hello", "State:        terminated", "Requested by: alice", "no worker answered")
}

func TestStatusNoWorker(t *testing.T) {
	h := newHarness(t)
	h.client.On("DescribeWorkflowExecution", mock.Anything, "hello-1", "").
		Return(describeResp(t, "hello-1", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil), nil)
	h.client.On("QueryWorkflow", mock.Anything, "hello-1", "run-1", workflows.StatusQuery).Return(nil, context.DeadlineExceeded)
	if code := h.run("status", "hello-1"); code != ExitTemporal {
		t.Fatalf("exit %d", code)
	}
	assertContains(t, h.errOut.String(), "no worker answered the status query of run hello-1", `task queue "stagehand"`)
}

func TestApprove(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		gateless bool // the command must look the gate up
		updErr   error
		getErr   error
		want     int
		out      []string
		errOut   []string
		decision workflows.ApprovalDecision
	}{
		{
			name: "approve", args: []string{"approve", "hello-1", "--gate", "merge", "--as", "bob", "--comment", "lgtm"},
			want: ExitOK, out: []string{"Approved gate merge of run hello-1 as bob"},
			decision: workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob", Comment: "lgtm"},
		},
		{
			name: "reject defaults to $USER and the waiting gate", args: []string{"reject", "hello-1"}, gateless: true,
			want: ExitOK, out: []string{"Rejected gate merge of run hello-1 as alice"},
			decision: workflows.ApprovalDecision{Gate: "merge", Decision: "reject", By: "alice"},
		},
		{
			name: "refused by the validator", args: []string{"approve", "hello-1", "--gate", "merge"},
			getErr: temporal.NewApplicationError(`alice is not an approver of gate "merge" (approvers: bob, carol)`, "NotApprover"),
			want:   ExitUsage, errOut: []string{"approve of gate merge refused by run hello-1", "alice is not an approver", "stagehand status hello-1"},
			decision: workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "alice"},
		},
		{
			name: "run ended", args: []string{"approve", "hello-1", "--gate", "merge"},
			updErr: serviceerror.NewNotFound("workflow execution already completed"),
			want:   ExitNotFound, errOut: []string{"not found or already ended"},
			decision: workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "alice"},
		},
		{
			name: "no worker", args: []string{"approve", "hello-1", "--gate", "merge"},
			updErr: context.DeadlineExceeded,
			want:   ExitTemporal, errOut: []string{"no worker answered the approval", "may still be applied"},
			decision: workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "alice"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.gateless {
				h.client.On("DescribeWorkflowExecution", mock.Anything, "hello-1", "").
					Return(describeResp(t, "hello-1", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil), nil)
				h.client.On("QueryWorkflow", mock.Anything, "hello-1", "run-1", workflows.StatusQuery).Return(statusValue{waitingStatus()}, nil)
			}
			handle := &mocks.WorkflowUpdateHandle{}
			handle.On("Get", mock.Anything, mock.Anything).Return(tt.getErr).Maybe()
			var updHandle client.WorkflowUpdateHandle = handle
			if tt.updErr != nil {
				updHandle = nil
			}
			h.client.On("UpdateWorkflow", mock.Anything, mock.MatchedBy(func(o client.UpdateWorkflowOptions) bool {
				return o.WorkflowID == "hello-1" && o.UpdateName == workflows.ApproveUpdate &&
					o.WaitForStage == client.WorkflowUpdateStageCompleted && len(o.Args) == 1 && o.Args[0] == tt.decision
			})).Return(updHandle, tt.updErr).Once()
			if code := h.run(tt.args...); code != tt.want {
				t.Fatalf("exit %d, want %d: %s", code, tt.want, h.errOut)
			}
			assertContains(t, h.out.String(), tt.out...)
			assertContains(t, h.errOut.String(), tt.errOut...)
		})
	}
}

func TestApproveSignal(t *testing.T) {
	h := newHarness(t)
	h.client.On("SignalWorkflow", mock.Anything, "hello-1", "", workflows.ApprovalSignal,
		workflows.ApprovalDecision{Gate: "merge", Decision: "approve", By: "bob"}).Return(nil).Once()
	if code := h.run("approve", "hello-1", "--gate", "merge", "--as", "bob", "--signal"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	assertContains(t, h.out.String(), "Sent approve signal for gate merge", "not checked")
}

func TestApproveNoGateWaiting(t *testing.T) {
	h := newHarness(t)
	st := waitingStatus()
	st.State, st.PendingGate = workflows.RunRunning, nil
	h.client.On("DescribeWorkflowExecution", mock.Anything, "hello-1", "").
		Return(describeResp(t, "hello-1", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil), nil)
	h.client.On("QueryWorkflow", mock.Anything, "hello-1", "run-1", workflows.StatusQuery).Return(statusValue{st}, nil)
	if code := h.run("approve", "hello-1"); code != ExitUsage {
		t.Fatalf("exit %d", code)
	}
	assertContains(t, h.errOut.String(), "not waiting at an approval gate (state running)")
}

// queryScript answers successive status queries with the given snapshots,
// repeating the last one.
func queryScript(snapshots ...workflows.Status) func(context.Context, string, string, string, ...any) (converter.EncodedValue, error) {
	i := 0
	return func(context.Context, string, string, string, ...any) (converter.EncodedValue, error) {
		st := snapshots[min(i, len(snapshots)-1)]
		i++
		return statusValue{st}, nil
	}
}

func TestWatch(t *testing.T) {
	start := fixedNow.Add(-5 * 60e9)
	running := waitingStatus()
	running.State, running.PendingGate = workflows.RunRunning, nil
	running.Steps = []workflows.StepStatus{
		{ID: "settle", Uses: "wait", State: workflows.StepRunning, StartedAt: tp(start)},
		{ID: "merge", Kind: "approval", State: workflows.StepPending},
	}
	waiting := waitingStatus()
	waiting.Steps = waiting.Steps[:2]
	succeeded := waitingStatus()
	succeeded.State, succeeded.PendingGate, succeeded.EndedAt = workflows.RunSucceeded, nil, tp(start.Add(65e9))
	succeeded.Steps[1].State = workflows.StepApproved
	failed := running
	failed.State, failed.FailedStep, failed.Error, failed.EndedAt = workflows.RunFailed, "settle", "boom", tp(start.Add(4e9))
	failed.Steps = []workflows.StepStatus{{ID: "settle", Uses: "wait", State: workflows.StepFailed, Attempts: 3, Error: "boom", StartedAt: tp(start), EndedAt: tp(start.Add(3e9))}}
	// Failed, but onFailure steps still running: the run has not ended.
	compensating := failed
	compensating.EndedAt = nil

	tests := []struct {
		name      string
		snapshots []workflows.Status
		want      int
		out       []string
	}{
		{name: "stops at the gate", snapshots: []workflows.Status{running, running, waiting}, want: ExitWaitingApproval,
			out: []string{"Watching hello run hello-1", "settle  running", "settle  succeeded (2.0s)", "merge   waiting_approval",
				`waiting for approval at gate "merge" (approvers: bob, carol)`, "stagehand approve hello-1 --gate merge"}},
		{name: "succeeds", snapshots: []workflows.Status{running, succeeded}, want: ExitOK,
			out: []string{"settle  running", "merge   approved", "Run hello-1 succeeded in 1m5s."}},
		{name: "waits for compensation", snapshots: []workflows.Status{running, compensating, failed}, want: ExitRunFailed,
			out: []string{"settle", "failed"}},
		{name: "fails", snapshots: []workflows.Status{running, failed}, want: ExitRunFailed,
			out: []string{"settle  failed (3.0s) [attempt 3]: boom", "Run hello-1 failed in 4.0s at step settle: boom"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.client.On("DescribeWorkflowExecution", mock.Anything, "hello-1", "").
				Return(describeResp(t, "hello-1", enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil), nil)
			h.client.On("QueryWorkflow", mock.Anything, "hello-1", "run-1", workflows.StatusQuery).Return(queryScript(tt.snapshots...))
			if code := h.run("watch", "hello-1", "--interval", "1ms"); code != tt.want {
				t.Fatalf("exit %d, want %d: %s%s", code, tt.want, h.out, h.errOut)
			}
			out := h.out.String()
			assertContains(t, out, tt.out...)
			if strings.Count(out, "settle  running") != 1 {
				t.Errorf("a state printed twice:\n%s", out)
			}
		})
	}
}

// A running step's worker comes from the server's pending activities
// (the run learns it only when the step ends), a resumed one's too.
func TestRunningWorkers(t *testing.T) {
	st := waitingStatus()
	st.Steps[0].State = workflows.StepRunning
	st.Steps[0].Worker = ""
	st.Steps[1].State = workflows.StepRunning
	started := enumspb.PENDING_ACTIVITY_STATE_STARTED
	runningWorkers(&st, []*workflowpb.PendingActivityInfo{
		{ActivityId: st.Steps[0].ID + "~1", LastWorkerIdentity: "worker-b", State: started},
		// Waiting to retry: its worker is the failed attempt's, not a runner.
		{ActivityId: st.Steps[1].ID, LastWorkerIdentity: "worker-c", State: enumspb.PENDING_ACTIVITY_STATE_SCHEDULED},
		// A pending step: nothing of it runs yet, whatever the server says.
		{ActivityId: st.Steps[2].ID, LastWorkerIdentity: "worker-d", State: started},
	})
	assert.Equal(t, "worker-b", st.Steps[0].Worker)
	st.Steps[1].State = workflows.StepRunning
	runningWorkers(&st, []*workflowpb.PendingActivityInfo{
		{ActivityId: st.Steps[1].ID, LastWorkerIdentity: "worker-e", State: enumspb.PENDING_ACTIVITY_STATE_CANCEL_REQUESTED},
	})
	assert.Equal(t, "worker-e", st.Steps[1].Worker, "a step being cancelled still runs on its worker")
	st.Steps[1].Worker = ""
	assert.Empty(t, st.Steps[1].Worker, "a step waiting to retry runs nowhere")
	assert.Empty(t, st.Steps[2].Worker, "a pending step runs nowhere")
}
