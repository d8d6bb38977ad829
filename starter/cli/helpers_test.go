package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/mocks"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/stagehand-dev/stagehand/workflows"
)

// fixedNow is the clock of every unit test.
var fixedNow = time.Date(2026, 11, 22, 2, 45, 1, 0, time.UTC)

// harness is a Factory wired to buffers and a mocked Temporal client.
type harness struct {
	f      *Factory
	out    *bytes.Buffer
	errOut *bytes.Buffer
	client *mocks.Client
	dialed int
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{out: &bytes.Buffer{}, errOut: &bytes.Buffer{}, client: &mocks.Client{}}
	h.f = NewFactory(&IOStreams{In: strings.NewReader(""), Out: h.out, ErrOut: h.errOut})
	h.f.Getenv = func(k string) string {
		if k == "USER" {
			return "alice"
		}
		return ""
	}
	h.f.Now = func() time.Time { return fixedNow }
	h.f.OSUser = func() string { return "" }
	h.f.RPCTimeout = 2 * time.Second
	h.f.Dial = func(context.Context, client.Options) (Client, error) {
		h.dialed++
		return h.client, nil
	}
	h.client.On("Close").Return().Maybe()
	t.Cleanup(func() { h.client.AssertExpectations(t) })
	return h
}

// run executes the CLI with args and returns the exit code.
func (h *harness) run(args ...string) int {
	return Main(context.Background(), args, h.f)
}

// statusValue is a query result holding a Status, as the SDK would decode it.
type statusValue struct{ st workflows.Status }

func (v statusValue) HasValue() bool { return true }

func (v statusValue) Get(ptr any) error {
	b, err := json.Marshal(v.st)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, ptr)
}

var _ converter.EncodedValue = statusValue{}

func payload(t *testing.T, v any) *commonpb.Payload {
	t.Helper()
	p, err := converter.GetDefaultDataConverter().ToPayload(v)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// describeResp is a DescribeWorkflowExecution answer for a RunbookWorkflow.
func describeResp(t *testing.T, id string, status enumspb.WorkflowExecutionStatus, sa map[string]any) *workflowservice.DescribeWorkflowExecutionResponse {
	t.Helper()
	fields := map[string]*commonpb.Payload{}
	for k, v := range sa {
		fields[k] = payload(t, v)
	}
	info := &workflowpb.WorkflowExecutionInfo{
		Execution:        &commonpb.WorkflowExecution{WorkflowId: id, RunId: "run-1"},
		Type:             &commonpb.WorkflowType{Name: workflows.WorkflowType},
		Status:           status,
		TaskQueue:        workflows.DefaultTaskQueue,
		StartTime:        timestamppb.New(fixedNow.Add(-5 * time.Minute)),
		SearchAttributes: &commonpb.SearchAttributes{IndexedFields: fields},
	}
	if status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		info.CloseTime = timestamppb.New(fixedNow.Add(-time.Minute))
	}
	return &workflowservice.DescribeWorkflowExecutionResponse{WorkflowExecutionInfo: info}
}

func tp(t time.Time) *time.Time { return &t }

// waitingStatus is a run of the hello runbook stopped at its merge gate.
func waitingStatus() workflows.Status {
	start := fixedNow.Add(-5 * time.Minute)
	return workflows.Status{
		Runbook:     "hello",
		RequestedBy: "alice",
		Environment: "sandbox",
		Image:       "registry/backend:pr-42-1a2b3c4d-1763779501",
		State:       workflows.RunWaitingApproval,
		CurrentStep: "merge",
		StartedAt:   start,
		Steps: []workflows.StepStatus{
			{ID: "settle", Uses: "wait", Kind: "activity", State: workflows.StepSucceeded, Attempts: 1, StartedAt: tp(start), EndedAt: tp(start.Add(2 * time.Second))},
			{ID: "merge", Kind: "approval", State: workflows.StepWaitingApproval, StartedAt: tp(start.Add(2 * time.Second))},
			{ID: "note", Uses: "log", Kind: "activity", State: workflows.StepPending},
		},
		PendingGate: &workflows.GateStatus{
			Gate: "merge", Message: "Merge registry/backend:pr-42?", Approvers: []string{"bob", "carol"},
			OpenedAt: start.Add(2 * time.Second), Deadline: tp(start.Add(72 * time.Hour)),
		},
	}
}

func assertContains(t *testing.T, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("output lacks %q:\n%s", w, got)
		}
	}
}
