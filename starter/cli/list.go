package cli

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/workflows"
)

// ListOptions are the inputs of `stagehand list` / `stagehand audit`.
type ListOptions struct {
	Runbook     string
	Outcome     string
	Since       string
	Image       string
	RequestedBy string
	PR          string
	Limit       int
	Output      string
}

// outcomes a run can be filtered by; all but running are StagehandOutcome
// values.
var outcomes = []string{
	string(workflows.RunSucceeded), string(workflows.RunFailed),
	string(workflows.RunRejected), string(workflows.RunCancelled), "running",
}

func newListCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &ListOptions{}
	cmd := &cobra.Command{
		Use:     "audit",
		Aliases: []string{"list"},
		Short:   "List past and current runs (the audit trail)",
		Long: `List runs from Temporal's visibility store (running runs first, then the most
recently ended), filtered by the search attributes every run keeps current:
runbook, outcome, image and who requested it, plus a start time.

Columns: workflow id, runbook, environment, image, requested by, approvers,
outcome (the run's StagehandOutcome, else Temporal's execution status), start
and duration, and SUMMARY (the runbook's audit facts, e.g. the version before
and after an upgrade) when a listed run has one. --output markdown pastes into a change ticket; --output json
feeds scripts.`,
		Example: `  stagehand list
  stagehand audit --runbook patch --since 168h --output markdown
  stagehand audit --outcome failed --since 2026-11-01T00:00:00Z
  stagehand list --image registry.example.com/backstage-portal/backend:prod-1a2b3c4d-1763779501
  stagehand list --requested-by alice --limit 10 --output json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runList(cmd.Context(), f, g, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Runbook, "runbook", "", "only runs of this runbook")
	fl.StringVar(&opts.Outcome, "outcome", "", "only runs with this outcome: "+strings.Join(outcomes, ", "))
	fl.StringVar(&opts.Since, "since", "", "only runs started since: a duration back from now (24h, 7d) or an RFC3339 time")
	fl.StringVar(&opts.Image, "image", "", "only runs of this image")
	fl.StringVar(&opts.RequestedBy, "requested-by", "", "only runs requested by this user")
	fl.StringVar(&opts.PR, "pr", "", "only runs for this pull request number")
	fl.IntVarP(&opts.Limit, "limit", "n", 50, "at most this many runs")
	fl.StringVarP(&opts.Output, "output", "o", "table", "output format: table, json or markdown")
	cmd.AddCommand(newShowCmd(f, g))
	return cmd
}

// visibilityString quotes s as a string literal of Temporal's visibility
// query language (SQL-like): backslashes and quotes are escaped so a value
// can never end the literal and inject a clause.
func visibilityString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// parseSince accepts a duration back from now (Go syntax plus "d" for days)
// or an absolute RFC3339 time or date.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := runbooks.ParseDuration(s); err == nil {
		return now.Add(-d.D()), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, usageError("invalid --since %q: want a duration such as 24h or 7d, or a time such as 2026-11-01T00:00:00Z", s)
}

// buildListQuery turns the filters into a visibility query.
func buildListQuery(opts *ListOptions, now time.Time) (string, error) {
	clauses := []string{"WorkflowType = " + visibilityString(workflows.WorkflowType)}
	eq := func(attr, value string) {
		if value != "" {
			clauses = append(clauses, attr+" = "+visibilityString(value))
		}
	}
	eq(workflows.SearchRunbook.GetName(), opts.Runbook)
	switch opts.Outcome {
	case "":
	case "running":
		clauses = append(clauses, "ExecutionStatus = 'Running'")
	default:
		ok := false
		for _, o := range outcomes {
			ok = ok || o == opts.Outcome
		}
		if !ok {
			return "", usageError("invalid --outcome %q: want one of %s", opts.Outcome, strings.Join(outcomes, ", "))
		}
		eq(workflows.SearchOutcome.GetName(), opts.Outcome)
	}
	eq(workflows.SearchImage.GetName(), opts.Image)
	eq(workflows.SearchRequestedBy.GetName(), opts.RequestedBy)
	eq(workflows.SearchPR.GetName(), strings.TrimPrefix(opts.PR, "#"))
	if opts.Since != "" {
		t, err := parseSince(opts.Since, now)
		if err != nil {
			return "", err
		}
		clauses = append(clauses, "StartTime >= "+visibilityString(t.UTC().Format(time.RFC3339Nano)))
	}
	return strings.Join(clauses, " AND "), nil
}

// runRow is one run in the list, as every output format sees it.
type runRow struct {
	WorkflowID  string     `json:"workflowId"`
	RunID       string     `json:"runId"`
	Runbook     string     `json:"runbook,omitempty"`
	Environment string     `json:"environment,omitempty"`
	Image       string     `json:"image,omitempty"`
	RequestedBy string     `json:"requestedBy,omitempty"`
	Approvers   []string   `json:"approvers,omitempty"`
	PR          string     `json:"pr,omitempty"`
	Outcome     string     `json:"outcome"`
	FailedStep  string     `json:"failedStep,omitempty"`
	Execution   string     `json:"execution"`
	Start       time.Time  `json:"start"`
	End         *time.Time `json:"end,omitempty"`
	// Duration is in seconds, up to now for runs still going.
	Duration float64 `json:"durationSeconds"`
	// Audit is the summary of the runbook's audit section (the run's
	// memo), set once the run ended, for runbooks that have one.
	Audit map[string]string `json:"audit,omitempty"`
}

// decodeAuditMemo reads the audit summary a run left in its memo. A memo
// that does not decode (written by something else) is left out rather
// than failing the whole list.
func decodeAuditMemo(m *commonpb.Memo) map[string]string {
	p, ok := m.GetFields()[workflows.MemoAudit]
	if !ok {
		return nil
	}
	var out map[string]string
	if converter.GetDefaultDataConverter().FromPayload(p, &out) != nil || len(out) == 0 {
		return nil
	}
	return out
}

// auditSummary is one line of audit facts in key order, e.g.
// "digest=sha256:… · version=1.44.0 → 1.45.0".
func auditSummary(m map[string]string) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, " · ")
}

func runList(ctx context.Context, f *Factory, g *GlobalOptions, opts *ListOptions) error {
	if err := checkOutput(opts.Output, "table", "json", "markdown"); err != nil {
		return err
	}
	if opts.Limit <= 0 {
		return usageError("invalid --limit %d: must be positive", opts.Limit)
	}
	now := f.Now()
	query, err := buildListQuery(opts, now)
	if err != nil {
		return err
	}
	c, err := f.connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.Close()

	var rows []runRow
	var token []byte
	for len(rows) < opts.Limit {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
			Namespace:     g.Namespace,
			PageSize:      int32(min(opts.Limit-len(rows), 1000)),
			NextPageToken: token,
			Query:         query,
		})
		if err != nil {
			return g.rpcError(err, "", "list runs (query: "+query+")")
		}
		for _, e := range resp.GetExecutions() {
			if len(rows) == opts.Limit {
				break
			}
			sa := decodeSearchAttrs(e.GetSearchAttributes())
			r := runRow{
				WorkflowID:  e.GetExecution().GetWorkflowId(),
				RunID:       e.GetExecution().GetRunId(),
				Runbook:     sa.Runbook,
				Environment: sa.Environment,
				Image:       sa.Image,
				RequestedBy: sa.RequestedBy,
				Approvers:   sa.Approvers,
				PR:          sa.PR,
				Outcome:     sa.Outcome,
				FailedStep:  sa.FailedStep,
				Execution:   executionStatus(e.GetStatus()),
				Audit:       decodeAuditMemo(e.GetMemo()),
			}
			if r.Outcome == "" {
				r.Outcome = r.Execution
			}
			if e.GetStartTime() != nil {
				r.Start = e.GetStartTime().AsTime()
			}
			end := now
			if e.GetCloseTime() != nil && e.GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				t := e.GetCloseTime().AsTime()
				r.End, end = &t, t
			}
			if !r.Start.IsZero() {
				r.Duration = end.Sub(r.Start).Seconds()
			}
			rows = append(rows, r)
		}
		token = resp.GetNextPageToken()
		if len(token) == 0 {
			break
		}
	}
	return writeRuns(f, opts.Output, rows)
}

func writeRuns(f *Factory, output string, rows []runRow) error {
	if output == "json" {
		if rows == nil {
			rows = []runRow{}
		}
		return writeJSON(f.IO.Out, rows)
	}
	if len(rows) == 0 && output == "table" {
		fmt.Fprintln(f.IO.ErrOut, "No runs match these filters.")
		return nil
	}
	t := &table{header: []string{"WORKFLOW ID", "RUNBOOK", "ENVIRONMENT", "IMAGE", "PR", "REQUESTED BY", "APPROVERS", "OUTCOME", "FAILED STEP", "START", "DURATION"}}
	// The SUMMARY column only appears when a listed run has audit facts, so
	// lists of runbooks without an audit section stay as narrow as before.
	withSummary := slices.ContainsFunc(rows, func(r runRow) bool { return len(r.Audit) > 0 })
	if withSummary {
		t.header = append(t.header, "SUMMARY")
	}
	for _, r := range rows {
		dur := fmtDuration(time.Duration(r.Duration * float64(time.Second)))
		if r.End == nil {
			dur += "+"
		}
		cells := []string{r.WorkflowID, orDash(r.Runbook), orDash(r.Environment), orDash(r.Image), orDash(r.PR), orDash(r.RequestedBy),
			orDash(joinComma(r.Approvers)), r.Outcome, orDash(r.FailedStep), fmtTime(r.Start), dur}
		if withSummary {
			cells = append(cells, orDash(auditSummary(r.Audit)))
		}
		t.add(cells...)
	}
	var err error
	if output == "markdown" {
		err = t.writeMarkdown(f.IO.Out)
	} else {
		err = t.writeText(f.IO.Out)
	}
	if err != nil {
		return exitf(ExitUsage, "write output: %v", err)
	}
	return nil
}
