package cli

// Finding a run's workflows.Status, whatever state the run is in: the
// status query for an open run, the result for a closed one, an outline
// from the search attributes when neither answers. status, watch, show and
// approve all start here.

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	workflowpb "go.temporal.io/api/workflow/v1"

	"github.com/stagehand-dev/stagehand/workflows"
)

// loadStatus finds out where run is. An open run answers the status query
// (a worker must be up). A closed run's final Status is read from its
// result, which needs no worker; if the run left none (terminated, timed
// out) a worker is asked briefly, and failing that the search attributes
// give the outline.
func loadStatus(ctx context.Context, f *Factory, g *GlobalOptions, c Client, run string) (*runView, *workflows.Status, error) {
	desc, err := c.DescribeWorkflowExecution(ctx, run, "")
	if err != nil {
		return nil, nil, g.rpcError(err, run, "describe run "+run)
	}
	info := desc.GetWorkflowExecutionInfo()
	view := &runView{
		WorkflowID: run,
		RunID:      info.GetExecution().GetRunId(),
		Execution:  executionStatus(info.GetStatus()),
		TaskQueue:  info.GetTaskQueue(),
		Search:     decodeSearchAttrs(info.GetSearchAttributes()),
	}
	if info.GetStartTime() != nil {
		view.Start = info.GetStartTime().AsTime()
	}
	if info.GetCloseTime() != nil {
		view.Close = info.GetCloseTime().AsTime()
	}
	if info.GetType().GetName() != "" && info.GetType().GetName() != workflows.WorkflowType {
		return nil, nil, exitf(ExitNotFound, "%s is a %s workflow, not a Stagehand run (%s)", run, info.GetType().GetName(), workflows.WorkflowType)
	}

	if info.GetStatus() == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
		st, err := queryStatus(ctx, f, c, run, view.RunID)
		if err != nil {
			return nil, nil, queryError(g, err, run, view.TaskQueue)
		}
		runningWorkers(st, desc.GetPendingActivities())
		return view, st, nil
	}

	var st workflows.Status
	runErr := c.GetWorkflow(ctx, run, view.RunID).Get(ctx, &st)
	final, _, err := finalStatus(runErr, &st)
	if err != nil {
		return nil, nil, g.rpcError(err, run, "read result of run "+run)
	}
	if final != nil {
		return view, final, nil
	}
	// Terminated, timed out, or failed without a Status: a worker can still
	// replay the history and answer the query.
	qctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if st, err := queryStatus(qctx, f, c, run, view.RunID); err == nil {
		return view, st, nil
	}
	view.Note = "step details unavailable: the run ended without a result"
	if runErr != nil {
		view.Note += " (" + runErr.Error() + ")"
	}
	view.Note += " and no worker answered the status query"
	return view, outlineStatus(view), nil
}

func queryStatus(ctx context.Context, f *Factory, c Client, run, runID string) (*workflows.Status, error) {
	qctx, cancel := context.WithTimeout(ctx, f.RPCTimeout)
	defer cancel()
	v, err := c.QueryWorkflow(qctx, run, runID, workflows.StatusQuery)
	if err != nil {
		return nil, err
	}
	var st workflows.Status
	if err := v.Get(&st); err != nil {
		return nil, fmt.Errorf("decode status: %w", err)
	}
	return &st, nil
}

// errNoWorker marks failures where Temporal is up but no worker answered.
var errNoWorker = errors.New("no worker answered")

// queryError explains a failed status query; the usual cause is that no
// worker polls the run's task queue.
func queryError(g *GlobalOptions, err error, run, taskQueue string) *ExitError {
	var notFound *serviceerror.NotFound
	if errors.As(err, &notFound) {
		return g.rpcError(err, run, "query run "+run)
	}
	var unavailable *serviceerror.Unavailable
	if errors.As(err, &unavailable) {
		return g.rpcError(err, run, "query run "+run)
	}
	var deadline *serviceerror.DeadlineExceeded
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &deadline) {
		return &ExitError{Code: ExitTemporal, Err: fmt.Errorf("%w the status query of run %s (is the Stagehand worker running on task queue %q?)", errNoWorker, run, taskQueue)}
	}
	return exitf(ExitTemporal, "query run %s: %v", run, err)
}

// outlineStatus builds what can be known of a run without its workflow:
// the search attributes and Temporal's execution status.
func outlineStatus(v *runView) *workflows.Status {
	st := &workflows.Status{
		Runbook:     v.Search.Runbook,
		RequestedBy: v.Search.RequestedBy,
		Environment: v.Search.Environment,
		Image:       v.Search.Image,
		State:       workflows.RunState(v.Search.Outcome),
		StartedAt:   v.Start,
	}
	if st.State == "" {
		switch v.Execution {
		case "completed":
			st.State = workflows.RunSucceeded
		case "canceled":
			st.State = workflows.RunCancelled
		case "running":
			st.State = workflows.RunRunning
		default:
			st.State = workflows.RunState(v.Execution)
		}
	}
	if !v.Close.IsZero() {
		end := v.Close
		st.EndedAt = &end
	}
	return st
}

// runningWorkers names the worker of each running step from the server's
// pending activities (the run itself learns it only when the step ends).
// A step run again after its worker stopped has the activity id
// <step>~<n>.
func runningWorkers(st *workflows.Status, pending []*workflowpb.PendingActivityInfo) {
	byStep := map[string]string{}
	for _, p := range pending {
		// One waiting to retry names the worker of its failed attempt;
		// one being cancelled or paused still runs there.
		if w := p.GetLastWorkerIdentity(); w != "" && p.GetState() != enumspb.PENDING_ACTIVITY_STATE_SCHEDULED {
			step, _, _ := strings.Cut(p.GetActivityId(), "~")
			byStep[step] = w
		}
	}
	for _, steps := range [][]workflows.StepStatus{st.Steps, st.Compensation} {
		for i := range steps {
			if w, ok := byStep[steps[i].ID]; ok && steps[i].State == workflows.StepRunning {
				steps[i].Worker = w
			}
		}
	}
}
