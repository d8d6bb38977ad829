package cli

import (
	"context"

	"github.com/spf13/cobra"

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
