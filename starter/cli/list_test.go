package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	workflowpb "go.temporal.io/api/workflow/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestBuildListQuery(t *testing.T) {
	base := "WorkflowType = 'RunbookWorkflow'"
	tests := []struct {
		name    string
		opts    ListOptions
		want    string
		wantErr string
	}{
		{name: "no filters", want: base},
		{name: "runbook", opts: ListOptions{Runbook: "patch"}, want: base + " AND StagehandRunbook = 'patch'"},
		{
			name: "all combined",
			opts: ListOptions{Runbook: "patch", Outcome: "failed", Image: "reg/app:prod-1", RequestedBy: "alice", Since: "24h"},
			want: base + " AND StagehandRunbook = 'patch' AND StagehandOutcome = 'failed' AND StagehandImage = 'reg/app:prod-1'" +
				" AND StagehandRequestedBy = 'alice' AND StartTime >= '2026-11-21T02:45:01Z'",
		},
		{name: "days", opts: ListOptions{Since: "7d"}, want: base + " AND StartTime >= '2026-11-15T02:45:01Z'"},
		{name: "rfc3339 since", opts: ListOptions{Since: "2026-11-01T10:00:00+01:00"}, want: base + " AND StartTime >= '2026-11-01T09:00:00Z'"},
		{name: "date since", opts: ListOptions{Since: "2026-11-01"}, want: base + " AND StartTime >= '2026-11-01T00:00:00Z'"},
		{name: "running", opts: ListOptions{Outcome: "running"}, want: base + " AND ExecutionStatus = 'Running'"},
		{
			name: "quotes escaped",
			opts: ListOptions{RequestedBy: "o'brien' OR WorkflowType != '"},
			want: base + ` AND StagehandRequestedBy = 'o\'brien\' OR WorkflowType != \''`,
		},
		{name: "backslash escaped", opts: ListOptions{Image: `a\' OR 1=1`}, want: base + ` AND StagehandImage = 'a\\\' OR 1=1'`},
		{name: "bad outcome", opts: ListOptions{Outcome: "done"}, wantErr: `invalid --outcome "done"`},
		{name: "bad since", opts: ListOptions{Since: "yesterday"}, wantErr: `invalid --since "yesterday"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := buildListQuery(&tt.opts, fixedNow)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || ExitCode(err) != ExitUsage {
					t.Fatalf("err = %v, want %q with exit 2", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("query\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func listResponse(t *testing.T) *workflowservice.ListWorkflowExecutionsResponse {
	sa := func(m map[string]any) *commonpb.SearchAttributes {
		f := map[string]*commonpb.Payload{}
		for k, v := range m {
			f[k] = payload(t, v)
		}
		return &commonpb.SearchAttributes{IndexedFields: f}
	}
	start := fixedNow.Add(-2 * time.Hour)
	return &workflowservice.ListWorkflowExecutionsResponse{Executions: []*workflowpb.WorkflowExecutionInfo{
		{
			Execution: &commonpb.WorkflowExecution{WorkflowId: "patch-20261122-004501", RunId: "r1"},
			Status:    enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED,
			StartTime: timestamppb.New(start), CloseTime: timestamppb.New(start.Add(90 * time.Second)),
			SearchAttributes: sa(map[string]any{
				"StagehandRunbook": "patch", "StagehandEnvironment": "prod", "StagehandImage": "reg/app:prod-1a2b",
				"StagehandRequestedBy": "alice", "StagehandApprovers": []string{"bob", "carol"}, "StagehandOutcome": "succeeded",
			}),
		},
		{
			Execution: &commonpb.WorkflowExecution{WorkflowId: "odd|id", RunId: "r2"},
			Status:    enumspb.WORKFLOW_EXECUTION_STATUS_TERMINATED,
			StartTime: timestamppb.New(start), CloseTime: timestamppb.New(start.Add(time.Hour)),
			SearchAttributes: sa(map[string]any{"StagehandRunbook": "upgrade"}),
		},
		{
			Execution: &commonpb.WorkflowExecution{WorkflowId: "hello-1", RunId: "r3"},
			Status:    enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING,
			StartTime: timestamppb.New(fixedNow.Add(-30 * time.Second)),
		},
	}}
}

func TestListOutputs(t *testing.T) {
	tests := []struct {
		output string
		check  func(t *testing.T, out string)
	}{
		{"table", func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 4 {
				t.Fatalf("want header + 3 rows, got:\n%s", out)
			}
			assertContains(t, lines[0], "WORKFLOW ID", "RUNBOOK", "ENVIRONMENT", "IMAGE", "REQUESTED BY", "APPROVERS", "OUTCOME", "START", "DURATION")
			assertContains(t, lines[1], "patch-20261122-004501", "patch", "prod", "reg/app:prod-1a2b", "alice", "bob, carol", "succeeded", "2026-11-22 00:45:01Z", "1m30s")
			assertContains(t, lines[2], "odd|id", "upgrade", "terminated", "1h")
			assertContains(t, lines[3], "hello-1", "running", "30.0s+")
		}},
		{"markdown", func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 5 {
				t.Fatalf("want header, separator + 3 rows, got:\n%s", out)
			}
			if !strings.HasPrefix(lines[0], "| Workflow ID |") && !strings.HasPrefix(lines[0], "| WORKFLOW ID |") {
				t.Errorf("header: %s", lines[0])
			}
			assertContains(t, lines[1], "| --- |")
			assertContains(t, lines[3], `odd\|id`)
			assertContains(t, lines[2], "| succeeded |")
		}},
		{"json", func(t *testing.T, out string) {
			var rows []runRow
			if err := json.Unmarshal([]byte(out), &rows); err != nil {
				t.Fatal(err)
			}
			if len(rows) != 3 || rows[0].Outcome != "succeeded" || rows[0].Duration != 90 || len(rows[0].Approvers) != 2 {
				t.Errorf("rows[0] = %+v", rows[0])
			}
			if rows[1].Outcome != "terminated" || rows[2].Outcome != "running" || rows[2].End != nil {
				t.Errorf("rows = %+v", rows)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.output, func(t *testing.T) {
			h := newHarness(t)
			h.client.On("ListWorkflow", mock.Anything, mock.MatchedBy(func(r *workflowservice.ListWorkflowExecutionsRequest) bool {
				return r.Query == "WorkflowType = 'RunbookWorkflow' AND StagehandRunbook = 'patch'" && r.Namespace == "default" && r.PageSize == 50
			})).Return(listResponse(t), nil).Once()
			if code := h.run("list", "--runbook", "patch", "--output", tt.output); code != ExitOK {
				t.Fatalf("exit %d: %s", code, h.errOut)
			}
			tt.check(t, h.out.String())
		})
	}
}

func TestListLimitAndPaging(t *testing.T) {
	h := newHarness(t)
	first := listResponse(t)
	first.Executions = first.Executions[:2]
	first.NextPageToken = []byte("next")
	second := listResponse(t)
	h.client.On("ListWorkflow", mock.Anything, mock.MatchedBy(func(r *workflowservice.ListWorkflowExecutionsRequest) bool {
		return r.NextPageToken == nil && r.PageSize == 3
	})).Return(first, nil).Once()
	h.client.On("ListWorkflow", mock.Anything, mock.MatchedBy(func(r *workflowservice.ListWorkflowExecutionsRequest) bool {
		return string(r.NextPageToken) == "next" && r.PageSize == 1
	})).Return(second, nil).Once()
	if code := h.run("audit", "-n", "3", "-o", "json"); code != ExitOK {
		t.Fatalf("exit %d: %s", code, h.errOut)
	}
	var rows []runRow
	if err := json.Unmarshal(h.out.Bytes(), &rows); err != nil || len(rows) != 3 {
		t.Fatalf("rows %d, err %v", len(rows), err)
	}
}

func TestListEmpty(t *testing.T) {
	h := newHarness(t)
	h.client.On("ListWorkflow", mock.Anything, mock.Anything).Return(&workflowservice.ListWorkflowExecutionsResponse{}, nil)
	if code := h.run("list", "-o", "json"); code != ExitOK {
		t.Fatal(code)
	}
	if strings.TrimSpace(h.out.String()) != "[]" {
		t.Errorf("json for no runs: %q", h.out)
	}
}
