package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/converter"

	"github.com/stagehand-dev/stagehand/workflows"
)

// StatusOptions are the inputs of `stagehand status`.
type StatusOptions struct {
	Run    string
	Output string
}

func newStatusCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &StatusOptions{}
	cmd := &cobra.Command{
		Use:   "status RUN",
		Short: "Show a run's state, its pending gate and its steps",
		Long: `Show where a run is: runbook, state, who asked for it, environment and image,
the step running now, the approval gate it waits at (with the exact command
to approve it), and every step with its state, attempts, duration and error.

RUN is the workflow id that start printed. For a run that has ended, the
final status is read from the run's result, so no worker needs to be up.`,
		Example: `  stagehand status patch-20261122-024501
  stagehand status patch-20261122-024501 --output json | jq .state`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Run = args[0]
			return runStatus(cmd.Context(), f, g, opts, commandPrefix(cmd, g))
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "table", "output format: table or json")
	return cmd
}

func runStatus(ctx context.Context, f *Factory, g *GlobalOptions, opts *StatusOptions, prefix string) error {
	if err := checkOutput(opts.Output, "table", "json"); err != nil {
		return err
	}
	c, err := f.connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.Close()
	view, st, err := loadStatus(ctx, f, g, c, opts.Run)
	if err != nil {
		return err
	}
	if opts.Output == "json" {
		return writeJSON(f.IO.Out, statusJSON{WorkflowID: view.WorkflowID, RunID: view.RunID, Execution: view.Execution, Note: view.Note, Status: st})
	}
	writeStatusText(f.IO.Out, f.Now(), view, st, prefix)
	return nil
}

// statusJSON is the --output json form: the workflow's Status with the
// execution's identity alongside.
type statusJSON struct {
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId,omitempty"`
	// Execution is Temporal's view: Running, Completed, Failed, ...
	Execution string `json:"execution,omitempty"`
	Note      string `json:"note,omitempty"`
	*workflows.Status
}

// runView is what Temporal itself knows about an execution.
type runView struct {
	WorkflowID string
	RunID      string
	Execution  string
	TaskQueue  string
	Start      time.Time
	Close      time.Time
	Search     searchAttrs
	// Note explains why step details are missing, when they are.
	Note string
}

// searchAttrs are the Stagehand search attributes of one execution.
type searchAttrs struct {
	Runbook, Environment, Image, Outcome, RequestedBy, PR, FailedStep string
	Approvers                                                         []string
}

func decodeSearchAttrs(sa *commonpb.SearchAttributes) searchAttrs {
	var out searchAttrs
	if sa == nil {
		return out
	}
	dc := converter.GetDefaultDataConverter()
	str := func(key string) string {
		p, ok := sa.GetIndexedFields()[key]
		if !ok {
			return ""
		}
		var s string
		if dc.FromPayload(p, &s) == nil {
			return s
		}
		// A keyword set as a list by mistake still reads.
		var l []string
		if dc.FromPayload(p, &l) == nil {
			return strings.Join(l, ",")
		}
		return ""
	}
	out.Runbook = str(workflows.SearchRunbook.GetName())
	out.Environment = str(workflows.SearchEnvironment.GetName())
	out.Image = str(workflows.SearchImage.GetName())
	out.Outcome = str(workflows.SearchOutcome.GetName())
	out.RequestedBy = str(workflows.SearchRequestedBy.GetName())
	out.PR = str(workflows.SearchPR.GetName())
	out.FailedStep = str(workflows.SearchFailedStep.GetName())
	if p, ok := sa.GetIndexedFields()[workflows.SearchApprovers.GetName()]; ok {
		var l []string
		if dc.FromPayload(p, &l) != nil {
			var s string
			if dc.FromPayload(p, &s) == nil && s != "" {
				l = []string{s}
			}
		}
		out.Approvers = l
	}
	return out
}

// executionStatus renders Temporal's execution status as a lower-case word
// (running, completed, failed, canceled, terminated, timed_out, ...).
func executionStatus(s enumspb.WorkflowExecutionStatus) string {
	switch s {
	case enumspb.WORKFLOW_EXECUTION_STATUS_UNSPECIFIED:
		return "unknown"
	case enumspb.WORKFLOW_EXECUTION_STATUS_TIMED_OUT:
		return "timed_out"
	case enumspb.WORKFLOW_EXECUTION_STATUS_CONTINUED_AS_NEW:
		return "continued_as_new"
	}
	return strings.ToLower(s.String())
}

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

// writeStatusText renders a run for people.
func writeStatusText(w io.Writer, now time.Time, v *runView, st *workflows.Status, prefix string) {
	if st == nil {
		fmt.Fprintf(w, "Run:          %s\n", v.WorkflowID)
		return
	}
	run := v.WorkflowID
	if v.RunID != "" {
		run += " (run id " + v.RunID + ")"
	}
	kv := func(k, val string) {
		if val != "" {
			fmt.Fprintf(w, "%-14s%s\n", k+":", val)
		}
	}
	kv("Run", run)
	rb := st.Runbook
	if st.Description != "" {
		rb += " — " + st.Description
	}
	kv("Runbook", rb)
	state := string(st.State)
	if v.Execution != "" && !strings.EqualFold(v.Execution, "running") && !st.State.Terminal() {
		state += " (execution " + v.Execution + ")"
	}
	kv("State", state)
	kv("Requested by", st.RequestedBy)
	kv("Environment", st.Environment)
	kv("Image", st.Image)
	if !st.StartedAt.IsZero() {
		started := fmtTime(st.StartedAt)
		if st.EndedAt != nil {
			kv("Started", started)
			kv("Ended", fmt.Sprintf("%s (took %s)", fmtTime(*st.EndedAt), fmtDuration(st.EndedAt.Sub(st.StartedAt))))
		} else {
			kv("Started", fmt.Sprintf("%s (%s ago)", started, fmtDuration(now.Sub(st.StartedAt))))
		}
	}
	if !st.State.Terminal() {
		kv("Current step", st.CurrentStep)
	}
	if st.FailedStep != "" || st.Error != "" {
		msg := st.Error
		if st.FailedStep != "" {
			msg = "step " + st.FailedStep + ": " + msg
		}
		kv("Error", msg)
	}
	if len(st.Compensated) > 0 {
		kv("Compensated", strings.Join(st.Compensated, ", "))
	}
	if v.Note != "" {
		kv("Note", v.Note)
	}
	if g := st.PendingGate; g != nil {
		fmt.Fprintf(w, "\nWaiting for approval at gate %q\n", g.Gate)
		if g.Message != "" {
			fmt.Fprintf(w, "  message:   %s\n", strings.ReplaceAll(strings.TrimSpace(g.Message), "\n", "\n             "))
		}
		fmt.Fprintf(w, "  approvers: %s\n", orDash(strings.Join(g.Approvers, ", ")))
		if !g.OpenedAt.IsZero() {
			fmt.Fprintf(w, "  opened:    %s (%s ago)\n", fmtTime(g.OpenedAt), fmtDuration(now.Sub(g.OpenedAt)))
		}
		if g.Deadline != nil {
			fmt.Fprintf(w, "  deadline:  %s (in %s; the run is rejected then)\n", fmtTime(*g.Deadline), fmtDuration(g.Deadline.Sub(now)))
		}
		fmt.Fprintf(w, "  approve:   %s\n", approveCommand(prefix, "approve", v.WorkflowID, g.Gate))
		fmt.Fprintf(w, "  reject:    %s\n", approveCommand(prefix, "reject", v.WorkflowID, g.Gate))
	}
	if len(st.Steps) > 0 {
		fmt.Fprintln(w)
		_ = stepTable(st.Steps, now).writeText(w)
	}
	if len(st.Compensation) > 0 {
		fmt.Fprintln(w, "\nCompensation (onFailure):")
		_ = stepTable(st.Compensation, now).writeText(w)
	}
	if len(st.Decisions) > 0 {
		fmt.Fprintln(w, "\nDecisions:")
		for _, d := range st.Decisions {
			line := fmt.Sprintf("  %s  %s  %s by %s", fmtTime(d.At), d.Gate, d.Decision, d.By)
			if d.Comment != "" {
				line += fmt.Sprintf(": %q", d.Comment)
			}
			if d.Refused != "" {
				line += " (refused: " + d.Refused + ")"
			}
			fmt.Fprintln(w, line)
		}
	}
}

func approveCommand(prefix, verb, run, gate string) string {
	return fmt.Sprintf("%s %s %s --gate %s", prefix, verb, shellQuote(run), shellQuote(gate))
}

func stepTable(steps []workflows.StepStatus, now time.Time) *table {
	t := &table{header: []string{"STEP", "USES", "STATE", "ATTEMPTS", "DURATION", "ERROR"}}
	for _, s := range steps {
		id := s.ID
		if s.Parent != "" {
			id = "  " + id
		}
		uses := s.Uses
		if uses == "" {
			uses = "(" + s.Kind + ")"
		}
		attempts := "-"
		if s.Attempts > 0 {
			attempts = fmt.Sprint(s.Attempts)
		}
		t.add(id, uses, string(s.State), attempts, stepDuration(s, now), truncate(s.Error, 60))
	}
	return t
}

// stepDuration is how long the step took, or has been running.
func stepDuration(s workflows.StepStatus, now time.Time) string {
	if s.StartedAt == nil {
		return "-"
	}
	if s.EndedAt != nil {
		return fmtDuration(s.EndedAt.Sub(*s.StartedAt))
	}
	return fmtDuration(now.Sub(*s.StartedAt)) + "+"
}
