package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"

	"github.com/stagehand-dev/stagehand/workflows"
)

// ShowOptions are the inputs of `stagehand audit show`.
type ShowOptions struct {
	Output string
}

func newShowCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &ShowOptions{}
	cmd := &cobra.Command{
		Use:   "show RUN",
		Short: "Print the timeline of one run from its history",
		Long: `Print what happened in one run, read from its Temporal history (which no
worker or file change can alter): when it started, with which runbook and
params, each step with its attempts, duration and error, every wait, every
approval decision with who, from which connection identity, when and
comment (refused signals too; refused updates are only in the worker's log,
msg="approval refused"), how it
ended, and the facts the runbook's audit section recorded (summary and
details, e.g. the schema diff of each plugin after an upgrade).`,
		Example: `  stagehand audit show patch-20261122-024501
  stagehand audit show patch-20261122-024501 --output markdown >> CHANGE-1234.md`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runShow(cmd.Context(), f, g, opts, args[0])
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "table", "output format: table, json or markdown")
	return cmd
}

type showResult struct {
	Run      *runView          `json:"run"`
	Status   *workflows.Status `json:"status,omitempty"`
	Timeline Timeline          `json:"timeline"`
}

func runShow(ctx context.Context, f *Factory, g *GlobalOptions, opts *ShowOptions, run string) error {
	if err := checkOutput(opts.Output, "table", "json", "markdown"); err != nil {
		return err
	}
	c, err := f.connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.Close()
	view, st, err := loadStatus(ctx, f, g, c, run)
	if err != nil {
		return err
	}
	var events []*historypb.HistoryEvent
	iter := c.GetWorkflowHistory(ctx, run, view.RunID, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return g.rpcError(err, run, "read history of run "+run)
		}
		events = append(events, ev)
	}
	res := showResult{Run: view, Status: st, Timeline: BuildTimeline(events)}
	out := f.IO.Out
	if opts.Output == "json" {
		return writeJSON(out, res)
	}
	return writeShow(out, res, opts.Output == "markdown")
}

// refusedUpdatesNote tells where refused approval updates are: the update
// validator cannot write history, so only the worker's log has them.
var refusedUpdatesNote = fmt.Sprintf("Refused approval updates are not in the history: the worker logs each one (msg=%q, with workflowId, runId, gate, by, identity and reason).", workflows.RefusedApprovalLog)

func writeShow(w io.Writer, res showResult, markdown bool) error {
	title := res.Run.WorkflowID
	runbook, outcome := "", string(res.Run.Execution)
	if res.Status != nil {
		runbook = res.Status.Runbook
		if res.Status.State != "" {
			outcome = string(res.Status.State)
		}
	}
	if markdown {
		fmt.Fprintf(w, "### Run `%s` (%s): %s\n\n", title, runbook, outcome)
	} else {
		fmt.Fprintf(w, "Run %s (%s): %s\n\n", title, runbook, outcome)
	}
	start := res.Run.Start
	t := &table{header: []string{"TIME", "+", "STEP", "WHAT", "ATTEMPTS", "DURATION", "OUTCOME", "DETAIL"}}
	withWorker := slices.ContainsFunc(res.Timeline.Entries, func(e TimelineEntry) bool { return e.Worker != "" })
	if withWorker {
		t.header = []string{"TIME", "+", "STEP", "WHAT", "ATTEMPTS", "DURATION", "WORKER", "OUTCOME", "DETAIL"}
	}
	for _, e := range res.Timeline.Entries {
		attempts, dur := "", ""
		if e.Attempts > 0 {
			attempts = fmt.Sprint(e.Attempts)
		}
		if e.Duration > 0 {
			dur = fmtDuration(e.Duration)
		}
		what := e.What
		if e.Uses != "" && e.What == "step" {
			what = e.Uses
		}
		if withWorker {
			t.add(e.At.UTC().Format("15:04:05"), fmtDuration(e.At.Sub(start)), e.Step, what, attempts, dur, e.Worker, e.Outcome, truncate(e.Detail, 160))
			continue
		}
		t.add(e.At.UTC().Format("15:04:05"), fmtDuration(e.At.Sub(start)), e.Step, what, attempts, dur, e.Outcome, truncate(e.Detail, 160))
	}
	var err error
	if markdown {
		err = t.writeMarkdown(w)
	} else {
		err = t.writeText(w)
	}
	if err != nil {
		return err
	}
	if res.Status != nil && len(res.Status.Decisions) > 0 {
		fmt.Fprintln(w)
		if markdown {
			fmt.Fprintln(w, "**Approval decisions**")
			fmt.Fprintln(w)
		} else {
			fmt.Fprintln(w, "Approval decisions:")
		}
		for _, d := range res.Status.Decisions {
			line := fmt.Sprintf("%s  %s  %s by %s", d.At.UTC().Format("2006-01-02 15:04:05Z"), d.Gate, d.Decision, d.By)
			if d.Identity != "" {
				line += fmt.Sprintf(" (identity %s)", d.Identity)
			}
			if d.Comment != "" {
				line += fmt.Sprintf(": %q", d.Comment)
			}
			if d.Refused != "" {
				line += " — REFUSED: " + d.Refused
			}
			if markdown {
				line = "- " + line
			} else {
				line = "  " + line
			}
			fmt.Fprintln(w, line)
		}
		if res.Status.RefusedDropped > 0 {
			fmt.Fprintf(w, "  (%d older refused signals not listed)\n", res.Status.RefusedDropped)
		}
	}
	// Refused updates never reach history; say where they are.
	fmt.Fprintf(w, "\n%s\n", refusedUpdatesNote)
	if res.Status != nil && res.Status.Error != "" {
		fmt.Fprintf(w, "\nError at %s: %s\n", orDash(res.Status.FailedStep), res.Status.Error)
	}
	if res.Status != nil && len(res.Status.Compensated) > 0 {
		fmt.Fprintf(w, "Compensated: %v\n", res.Status.Compensated)
	}
	if res.Status != nil && res.Status.Audit != nil {
		writeAudit(w, res.Status.Audit, markdown)
	}
	return nil
}

// writeAudit prints the facts the runbook's audit section recorded: the
// summary as key: value lines, then each detail as a block under its name
// (details are multi-line text such as a schema diff).
func writeAudit(w io.Writer, a *workflows.AuditRecord, markdown bool) {
	if len(a.Summary) == 0 && len(a.Details) == 0 {
		return
	}
	fmt.Fprintln(w)
	if markdown {
		fmt.Fprintln(w, "**Audit**")
		fmt.Fprintln(w)
	} else {
		fmt.Fprintln(w, "Audit:")
	}
	for _, k := range slices.Sorted(maps.Keys(a.Summary)) {
		if markdown {
			fmt.Fprintf(w, "- %s: %s\n", k, a.Summary[k])
		} else {
			fmt.Fprintf(w, "  %s: %s\n", k, a.Summary[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(a.Details)) {
		text := strings.TrimRight(a.Details[k], "\n")
		if markdown {
			// A fence longer than any backtick run inside keeps the text verbatim.
			fence := "```"
			for strings.Contains(text, fence) {
				fence += "`"
			}
			fmt.Fprintf(w, "\n%s:\n\n%s\n%s\n%s\n", k, fence, text, fence)
			continue
		}
		fmt.Fprintf(w, "  %s:\n", k)
		if text == "" {
			fmt.Fprintln(w, "    -")
			continue
		}
		for _, line := range strings.Split(text, "\n") {
			fmt.Fprintf(w, "    %s\n", line)
		}
	}
}
