package cli

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// ValidateOptions are the inputs of `stagehand validate`.
type ValidateOptions struct {
	Files  []string
	Output string
}

// validateResult is one file's outcome, as --output json prints it.
type validateResult struct {
	File     string             `json:"file"`
	OK       bool               `json:"ok"`
	Runbook  string             `json:"runbook,omitempty"`
	Steps    int                `json:"steps,omitempty"`
	Problems []runbooks.Problem `json:"problems,omitempty"`
}

func newValidateCmd(f *Factory, _ *GlobalOptions) *cobra.Command {
	opts := &ValidateOptions{}
	cmd := &cobra.Command{
		Use:   "validate FILE...",
		Short: "Check runbook files for errors without running them",
		Long: `Parse each runbook file and validate it against the built-in step catalogue:
fields, step types, their ` + "`with`" + ` keys, parameters, templates, and the
error types named in ` + "`retry.nonRetryable`" + `.

Every problem is printed on its own line as FILE:LINE:COL: PATH: MESSAGE, so
editors and CI can jump to it. Exits 2 if any file has a problem.`,
		Example: `  stagehand validate runbooks/builtin/patch.yaml
  stagehand validate runbooks/builtin/*.yaml
  stagehand validate --output json my-runbook.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Files = args
			return runValidate(f, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "text", "output format: text or json")
	return cmd
}

func runValidate(f *Factory, opts *ValidateOptions) error {
	if err := checkOutput(opts.Output, "text", "json"); err != nil {
		return err
	}
	cat, err := f.Catalogue()
	if err != nil {
		return exitf(ExitUsage, "build step catalogue: %v", err)
	}
	var results []validateResult
	bad := 0
	for _, file := range opts.Files {
		res := validateResult{File: file}
		rb, err := f.LoadRunbook(file, cat)
		switch {
		case err == nil:
			res.OK, res.Runbook, res.Steps = true, rb.Name, len(rb.Steps)
		case problemsOf(err) != nil:
			res.Problems = problemsOf(err)
		default:
			res.Problems = []runbooks.Problem{{File: file, Message: err.Error()}}
		}
		if !res.OK {
			bad++
		}
		results = append(results, res)
	}
	if opts.Output == "json" {
		enc := json.NewEncoder(f.IO.Out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return exitf(ExitUsage, "write output: %v", err)
		}
	} else {
		for _, r := range results {
			if r.OK {
				fmt.Fprintf(f.IO.Out, "ok: %s (runbook %s, %s)\n", r.File, r.Runbook, plural(r.Steps, "step"))
				continue
			}
			for _, p := range r.Problems {
				fmt.Fprintln(f.IO.Out, p.String())
			}
		}
	}
	if bad > 0 {
		if opts.Output != "json" {
			fmt.Fprintf(f.IO.ErrOut, "%d of %d runbook files have problems\n", bad, len(results))
		}
		return silentExit(ExitUsage)
	}
	return nil
}
