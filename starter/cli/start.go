package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/workflows"
)

// StartOptions are the inputs of `stagehand start`.
type StartOptions struct {
	Runbook     string
	Params      []string
	ParamsFile  string
	File        string
	ID          string
	RequestedBy string
	Wait        bool
	Output      string
}

func newStartCmd(f *Factory, g *GlobalOptions) *cobra.Command {
	opts := &StartOptions{}
	cmd := &cobra.Command{
		Use:   "start RUNBOOK [--param KEY=VALUE]...",
		Short: "Start a runbook run",
		Long: `Start RunbookWorkflow for a runbook the worker knows (by name), or for a local
runbook file sent inline with --file.

Parameters come from --params-file (YAML or JSON, "-" for stdin) and from
--param flags, which win. --param values are sent as strings; the workflow
converts them to the types the runbook declares. A local runbook is validated,
and its params checked, before anything is started.

The workflow id is RUNBOOK-YYYYMMDD-HHMMSS (UTC) unless --id is given; use it
with watch, status, approve and reject.

With --wait, the command waits for the run to end, prints its final status and
exits 1 if it failed, was rejected or was cancelled.`,
		Example: `  stagehand start patch \
    --param image=registry.example.com/backstage-portal/backend:pr-42-1a2b3c4d-1763779501 \
    --param pr=42

  # Shared params in a file, one overridden
  stagehand start upgrade --params-file upgrade.yaml --param environment=sandbox

  # Try a runbook under development before adding it to the worker's runbooks
  stagehand start --file ./my-runbook.yaml --param dryRun=true --wait`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Runbook = args[0]
			}
			return runStart(cmd.Context(), f, g, opts, commandPrefix(cmd, g))
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&opts.Params, "param", "p", nil, "runbook parameter as KEY=VALUE (repeatable)")
	fl.StringVar(&opts.ParamsFile, "params-file", "", "YAML or JSON file of parameters (- for stdin); --param wins")
	fl.StringVarP(&opts.File, "file", "f", "", "local runbook YAML to send inline instead of a runbook name")
	fl.StringVar(&opts.ID, "id", "", "workflow id (default RUNBOOK-YYYYMMDD-HHMMSS)")
	fl.StringVar(&opts.RequestedBy, "requested-by", f.currentUser(), "who asks for the run (from $USER)")
	fl.BoolVarP(&opts.Wait, "wait", "w", false, "wait for the run to end and print its final status")
	fl.StringVarP(&opts.Output, "output", "o", "text", "output format: text or json")
	return cmd
}

// startResult is what --output json prints.
type startResult struct {
	WorkflowID string             `json:"workflowId"`
	RunID      string             `json:"runId"`
	Runbook    string             `json:"runbook"`
	Final      *workflows.Status  `json:"final,omitempty"`
	Input      workflows.RunInput `json:"input"`
}

func runStart(ctx context.Context, f *Factory, g *GlobalOptions, opts *StartOptions, prefix string) error {
	if err := checkOutput(opts.Output, "text", "json"); err != nil {
		return err
	}
	if strings.TrimSpace(opts.RequestedBy) == "" {
		// The worker refuses runs without a requester (four-eyes needs one).
		return usageError("say who asks for the run with --requested-by USER ($USER is not set)")
	}
	if opts.Runbook == "" && opts.File == "" {
		return usageError("name a runbook (e.g. `stagehand start patch`) or pass --file RUNBOOK.yaml; list step types with `stagehand runbooks`")
	}
	fileParams := map[string]any{}
	if opts.ParamsFile != "" {
		var err error
		if fileParams, err = readParamsFile(opts.ParamsFile, f.IO.In); err != nil {
			return err
		}
	}
	flagParams, err := parseParamFlags(opts.Params)
	if err != nil {
		return err
	}
	in := workflows.RunInput{
		Runbook:     opts.Runbook,
		Params:      mergeParams(fileParams, flagParams),
		RequestedBy: opts.RequestedBy,
	}
	if len(in.Params) == 0 {
		in.Params = nil
	}
	name := opts.Runbook
	if opts.File != "" {
		data, err := os.ReadFile(opts.File)
		if err != nil {
			return usageError("read --file: %v", err)
		}
		cat, err := f.Catalogue()
		if err != nil {
			return usageError("build step catalogue: %v", err)
		}
		rb, err := f.LoadRunbook(opts.File, cat)
		if err != nil {
			if ps := problemsOf(err); ps != nil {
				for _, p := range ps {
					fmt.Fprintln(f.IO.ErrOut, p.String())
				}
				return usageError("runbook %s is invalid (%s); nothing was started", opts.File, plural(len(ps), "problem"))
			}
			return usageError("runbook %s: %v", opts.File, err)
		}
		if opts.Runbook != "" && opts.Runbook != rb.Name {
			return usageError("--file %s defines runbook %q, not %q; drop the RUNBOOK argument or fix the name", opts.File, rb.Name, opts.Runbook)
		}
		if err := checkParams(rb, in.Params); err != nil {
			return err
		}
		name = rb.Name
		if name == "" {
			name = strings.TrimSuffix(filepath.Base(opts.File), filepath.Ext(opts.File))
		}
		in.Runbook, in.Definition = "", string(data)
	}
	id := opts.ID
	if id == "" {
		id = fmt.Sprintf("%s-%s", name, f.Now().UTC().Format("20060102-150405"))
	}

	c, err := f.connect(ctx, g)
	if err != nil {
		return err
	}
	defer c.Close()
	sas := []temporal.SearchAttributeUpdate{workflows.SearchRunbook.ValueSet(name)}
	if in.RequestedBy != "" {
		sas = append(sas, workflows.SearchRequestedBy.ValueSet(in.RequestedBy))
	}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        id,
		TaskQueue: g.TaskQueue,
		// What the Temporal UI shows for the run (User Metadata).
		StaticSummary: workflows.RunSummary(name, in.Params, in.RequestedBy),
		StaticDetails: workflows.RunDetails(name, in.Params, in.RequestedBy),
		// Starting twice under one id is a mistake, not a request to
		// attach to the earlier run.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		// Visible in `stagehand list` even before a worker picks the run up;
		// the workflow keeps them current afterwards.
		TypedSearchAttributes: temporal.NewSearchAttributes(sas...),
	}, workflows.WorkflowType, in)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return usageError("a run with id %q is already running; pick another with --id or watch it with `%s watch %s`", id, prefix, id)
		}
		return g.rpcError(err, "", "start run "+id)
	}
	res := startResult{WorkflowID: run.GetID(), RunID: run.GetRunID(), Runbook: name, Input: in}
	res.Input.Definition = "" // echoing the whole YAML back helps no one
	if opts.Output == "text" {
		w := f.IO.Out
		fmt.Fprintf(w, "Started %s run %s (run id %s) on task queue %s\n", name, res.WorkflowID, res.RunID, g.TaskQueue)
		if !opts.Wait {
			fmt.Fprintf(w, "  watch:   %s watch %s\n", prefix, shellQuote(res.WorkflowID))
			fmt.Fprintf(w, "  status:  %s status %s\n", prefix, shellQuote(res.WorkflowID))
			fmt.Fprintf(w, "  approve: %s approve %s --gate GATE   (when it waits at a gate)\n", prefix, shellQuote(res.WorkflowID))
		}
	}
	if !opts.Wait {
		if opts.Output == "json" {
			return writeJSON(f.IO.Out, res)
		}
		return nil
	}

	var st workflows.Status
	runErr := run.Get(ctx, &st)
	final, code, err := finalStatus(runErr, &st)
	if err != nil {
		if ctx.Err() != nil {
			return exitf(ExitTemporal, "stopped waiting; run %s goes on (follow it with `%s watch %s`)", res.WorkflowID, prefix, shellQuote(res.WorkflowID))
		}
		return g.rpcError(err, res.WorkflowID, "wait for run "+res.WorkflowID)
	}
	res.Final = final
	if opts.Output == "json" {
		if err := writeJSON(f.IO.Out, res); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(f.IO.Out)
		writeStatusText(f.IO.Out, f.Now(), &runView{WorkflowID: res.WorkflowID, RunID: res.RunID}, final, prefix)
		if runErr != nil && final == nil {
			fmt.Fprintf(f.IO.Out, "Run ended: %v\n", runErr)
		}
	}
	if code != ExitOK {
		return silentExit(code)
	}
	return nil
}

// finalStatus interprets a run's result: the Status it returned, or the one
// carried by its failure. It returns the exit code the outcome maps to, or an
// error when the result could not be read at all (an RPC failure).
func finalStatus(runErr error, ok *workflows.Status) (*workflows.Status, int, error) {
	if runErr == nil {
		return ok, ExitOK, nil
	}
	var appErr *temporal.ApplicationError
	var canceled *temporal.CanceledError
	var terminated *temporal.TerminatedError
	var timeout *temporal.TimeoutError
	switch {
	case errors.As(runErr, &appErr):
		var st workflows.Status
		if appErr.HasDetails() && appErr.Details(&st) == nil {
			return &st, ExitRunFailed, nil
		}
		return nil, ExitRunFailed, nil
	case errors.As(runErr, &canceled):
		var st workflows.Status
		if canceled.HasDetails() && canceled.Details(&st) == nil {
			return &st, ExitRunFailed, nil
		}
		return nil, ExitRunFailed, nil
	case errors.As(runErr, &terminated), errors.As(runErr, &timeout):
		return nil, ExitRunFailed, nil
	}
	var wee *temporal.WorkflowExecutionError
	if errors.As(runErr, &wee) {
		return nil, ExitRunFailed, nil
	}
	return nil, 0, runErr
}
