package cli

import (
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/runbooks"
)

// CatalogueOptions are the inputs of `stagehand runbooks`.
type CatalogueOptions struct {
	Output string
}

// stepTypeInfo is one step type as --output json prints it.
type stepTypeInfo struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	With        []string `json:"with,omitempty"`
	Required    []string `json:"required,omitempty"`
	// Native steps run inside the workflow (timers), not as activities.
	Native  bool                `json:"native,omitempty"`
	Args    []activities.Arg    `json:"args,omitempty"`
	Outputs []activities.Output `json:"outputs,omitempty"`
	// Errors are the error types the step may fail with.
	Errors           []string          `json:"errors,omitempty"`
	DefaultTimeout   runbooks.Duration `json:"defaultTimeout,omitempty"`
	HeartbeatTimeout runbooks.Duration `json:"heartbeatTimeout,omitempty"`
}

// runbookInfo is one built-in runbook as --output json prints it.
type runbookInfo struct {
	Name        string                    `json:"name"`
	Description string                    `json:"description,omitempty"`
	File        string                    `json:"file"`
	Params      map[string]runbooks.Param `json:"params,omitempty"`
	Steps       int                       `json:"steps"`
}

// catalogueJSON is the --output json document.
type catalogueJSON struct {
	StepTypes  []stepTypeInfo         `json:"stepTypes"`
	ErrorTypes []activities.ErrorType `json:"errorTypes"`
	Runbooks   []runbookInfo          `json:"runbooks"`
}

func newCatalogueCmd(f *Factory, _ *GlobalOptions) *cobra.Command {
	opts := &CatalogueOptions{}
	cmd := &cobra.Command{
		Use:     "runbooks",
		Aliases: []string{"catalogue", "catalog"},
		Short:   "List the step types runbooks can use, and the built-in runbooks",
		Long: `List the step types a runbook can name in ` + "`uses`" + `, with the ` + "`with`" + ` keys
each accepts (required ones marked *) and what it does; the error types each
may fail with; every error type with whether it is retried and what it means
(the names ` + "`retry.nonRetryable`" + ` accepts); then the runbooks built into this
binary with their params (required ones marked *, defaults after =).

This is the catalogue validate checks runbooks against; it needs no server. A
worker may add or override runbooks from its runbooks directory.`,
		Example: `  stagehand runbooks
  stagehand catalogue --output markdown > docs/step-types.md
  stagehand catalogue --output json | jq '.stepTypes[].name'`,
		Args: cobra.NoArgs,
		RunE: func(_ *cobra.Command, _ []string) error {
			return runCatalogue(f, opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Output, "output", "o", "table", "output format: table, json or markdown")
	return cmd
}

func runCatalogue(f *Factory, opts *CatalogueOptions) error {
	if err := checkOutput(opts.Output, "table", "json", "markdown"); err != nil {
		return err
	}
	cat, err := f.Catalogue()
	if err != nil {
		return exitf(ExitUsage, "build step catalogue: %v", err)
	}
	doc := catalogueJSON{StepTypes: []stepTypeInfo{}, ErrorTypes: activities.ErrorTypes(), Runbooks: []runbookInfo{}}
	for _, t := range cat.All() {
		doc.StepTypes = append(doc.StepTypes, stepTypeInfo{
			Name: t.Name, Description: t.Description, With: t.ArgNames(), Required: t.RequiredArgs(), Native: t.Native,
			Args: t.Args, Outputs: t.Outputs, Errors: t.ErrorTypeNames(),
			DefaultTimeout: runbooks.Duration(t.DefaultTimeout), HeartbeatTimeout: runbooks.Duration(t.HeartbeatTimeout),
		})
	}
	sources, err := runbooks.BuiltinSources()
	if err != nil {
		return exitf(ExitUsage, "read built-in runbooks: %v", err)
	}
	for _, src := range sources {
		rb, err := runbooks.Parse(src.File, src.Data, cat)
		if err != nil {
			// A broken built-in is a bug; show it rather than hide the rest.
			fmt.Fprintf(f.IO.ErrOut, "warning: built-in runbook %s: %v\n", src.File, err)
			continue
		}
		doc.Runbooks = append(doc.Runbooks, runbookInfo{Name: rb.Name, Description: rb.Description, File: src.File, Params: rb.Params, Steps: len(rb.Steps)})
	}
	if opts.Output == "json" {
		return writeJSON(f.IO.Out, doc)
	}

	steps := &table{header: []string{"STEP TYPE", "WITH", "DESCRIPTION"}}
	for _, in := range doc.StepTypes {
		steps.add(in.Name, orDash(markRequired(in.With, in.Required)), in.Description)
	}
	// Every activity-backed step may fail with the common types; listing
	// them on each row would hide what is particular to the step.
	stepErrors := &table{header: []string{"STEP TYPE", "MAY FAIL WITH (besides " + strings.Join(activities.CommonStepErrors, ", ") + ")"}}
	for _, in := range doc.StepTypes {
		var own []string
		for _, e := range in.Errors {
			if !slices.Contains(activities.CommonStepErrors, e) {
				own = append(own, e)
			}
		}
		stepErrors.add(in.Name, orDash(strings.Join(own, ", ")))
	}
	errTypes := &table{header: []string{"ERROR TYPE", "RETRIED", "SCOPE", "MEANING"}}
	for _, e := range doc.ErrorTypes {
		errTypes.add(e.Name, map[bool]string{true: "yes", false: "no"}[e.Retryable], string(e.Scope), e.Meaning)
	}
	books := &table{header: []string{"RUNBOOK", "PARAMS", "DESCRIPTION"}}
	for _, rb := range doc.Runbooks {
		books.add(rb.Name, orDash(describeParams(rb.Params)), truncate(rb.Description, 100))
	}
	write := func(w io.Writer, t *table) error {
		if opts.Output == "markdown" {
			return t.writeMarkdown(w)
		}
		return t.writeText(w)
	}
	err = write(f.IO.Out, steps)
	for _, t := range []*table{stepErrors, errTypes} {
		if err == nil {
			fmt.Fprintln(f.IO.Out)
			err = write(f.IO.Out, t)
		}
	}
	if err == nil && len(doc.Runbooks) > 0 {
		fmt.Fprintln(f.IO.Out)
		err = write(f.IO.Out, books)
	}
	if err != nil {
		return exitf(ExitUsage, "write output: %v", err)
	}
	return nil
}

// markRequired lists keys with a * after the required ones.
func markRequired(keys, required []string) string {
	req := map[string]bool{}
	for _, r := range required {
		req[r] = true
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		if req[k] {
			k += "*"
		}
		out = append(out, k)
	}
	return strings.Join(out, ", ")
}

// describeParams lists params as name* (required) or name=default.
func describeParams(params map[string]runbooks.Param) string {
	names := make([]string, 0, len(params))
	for n := range params {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]string, 0, len(names))
	for _, n := range names {
		p := params[n]
		switch {
		case p.Required && p.Default == nil:
			n += "*"
		case p.Default != nil:
			n += fmt.Sprintf("=%v", p.Default)
		}
		out = append(out, n)
	}
	return strings.Join(out, ", ")
}
