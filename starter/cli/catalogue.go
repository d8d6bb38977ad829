package cli

import (
	"errors"
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
	// Name, if set, is the one runbook (or step type) to show in detail.
	Name        string
	Config      string
	RunbooksDir string
	Output      string
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
	// Irreversible steps cannot be taken back by cancelling once under way.
	Irreversible bool `json:"irreversible,omitempty"`
	// Resumable steps hand over at once when their worker stops.
	Resumable bool `json:"resumable,omitempty"`
}

// runbookInfo is one runbook as --output json prints it.
type runbookInfo struct {
	Name        string                    `json:"name"`
	Description string                    `json:"description,omitempty"`
	File        string                    `json:"file"`
	Params      map[string]runbooks.Param `json:"params,omitempty"`
	Steps       int                       `json:"steps"`
	// Builtin runbooks are embedded in the binary; the others come from
	// the worker's runbooks directory.
	Builtin bool `json:"builtin"`
	// Overrides is the built-in file a runbook of the same name from the
	// runbooks directory replaces.
	Overrides string `json:"overrides,omitempty"`
	// StepIDs and OnFailureIDs list the steps in order (parallel members
	// after their group).
	StepIDs      []string `json:"stepIds"`
	OnFailureIDs []string `json:"onFailureIds,omitempty"`
	AuditSummary []string `json:"auditSummary,omitempty"`
}

// catalogueJSON is the --output json document.
type catalogueJSON struct {
	StepTypes  []stepTypeInfo         `json:"stepTypes"`
	ErrorTypes []activities.ErrorType `json:"errorTypes"`
	Runbooks   []runbookInfo          `json:"runbooks"`
	// RunbooksDir is the directory the runbooks beyond the built-in ones
	// were read from ("" for none).
	RunbooksDir string `json:"runbooksDir,omitempty"`
	// Problems are the runbook files that failed to load, with file, line
	// and field; the command exits 2 when there are any.
	Problems []runbooks.Problem `json:"problems,omitempty"`
}

// catalogueDetailJSON is what --output json prints for one name.
type catalogueDetailJSON struct {
	Runbook  *runbookInfo       `json:"runbook,omitempty"`
	StepType *stepTypeInfo      `json:"stepType,omitempty"`
	Problems []runbooks.Problem `json:"problems,omitempty"`
}

func newCatalogueCmd(f *Factory, _ *GlobalOptions) *cobra.Command {
	opts := &CatalogueOptions{}
	cmd := &cobra.Command{
		Use:     "runbooks [RUNBOOK | STEP-TYPE]",
		Aliases: []string{"catalogue", "catalog"},
		Short:   "List the runbooks a worker would offer, their params, and the step types",
		Long: `List the runbooks a worker would offer: the ones built into this binary and
those in its runbooks directory (from --runbooks-dir, the worker config's
runbooksDir given with --config, or STAGEHAND_RUNBOOKS_DIR), a file there
that replaces a built-in runbook of the same name marked as overriding it.
Each runbook's params follow with type, whether required, default, pattern
or allowed values, and description.

Then the step types a runbook can name in ` + "`uses`" + `, with the ` + "`with`" + ` keys each
accepts (required ones marked *), its outputs, whether it is irreversible, and
what it does; the error types each may fail with; every error type with
whether it is retried and what it means (the names ` + "`retry.nonRetryable`" + `
accepts).

With a name, only that runbook (its params and steps) or step type (its
arguments, outputs, errors and timeouts) is shown, in detail.

Runbook files that fail to load are reported with file, line and field,
after everything that loaded; the command then exits 2. Nothing is
contacted: the worker config is only read. See what a run would do with
` + "`stagehand explain RUNBOOK`" + `.`,
		Example: `  stagehand runbooks
  stagehand runbooks patch
  stagehand runbooks kube.waitRollout
  stagehand runbooks --config /etc/stagehand/worker.yaml
  stagehand catalogue --output markdown > docs/step-types.md
  stagehand catalogue --output json | jq '.stepTypes[].name'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Name = args[0]
			}
			return runCatalogue(f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&opts.Output, "output", "o", "text", "output format: text (or table), json or markdown")
	fl.StringVar(&opts.Config, "config", "", "the worker's config file, for its runbooksDir (env STAGEHAND_CONFIG)")
	fl.StringVar(&opts.RunbooksDir, "runbooks-dir", "", "the worker's directory of extra runbooks (default: the config's runbooksDir, env STAGEHAND_RUNBOOKS_DIR)")
	return cmd
}

func runCatalogue(f *Factory, opts *CatalogueOptions) error {
	if err := checkOutput(opts.Output, "text", "table", "json", "markdown"); err != nil {
		return err
	}
	cat, err := f.Catalogue()
	if err != nil {
		return exitf(ExitUsage, "build step catalogue: %v", err)
	}
	view, err := loadWorkerView(f, opts.Config, opts.RunbooksDir)
	if err != nil {
		return err
	}
	entries, problems, err := runbooks.SurveyLibrary(view.RunbooksDir, cat)
	if err != nil {
		return usageError("%v", err)
	}
	doc := catalogueJSON{StepTypes: []stepTypeInfo{}, ErrorTypes: activities.ErrorTypes(), Runbooks: []runbookInfo{},
		RunbooksDir: view.RunbooksDir, Problems: problems}
	for _, t := range cat.All() {
		doc.StepTypes = append(doc.StepTypes, stepTypeInfo{
			Name: t.Name, Description: t.Description, With: t.ArgNames(), Required: t.RequiredArgs(), Native: t.Native,
			Args: t.Args, Outputs: t.Outputs, Errors: t.ErrorTypeNames(),
			DefaultTimeout: runbooks.Duration(t.DefaultTimeout), HeartbeatTimeout: runbooks.Duration(t.HeartbeatTimeout),
			Irreversible: t.Irreversible, Resumable: t.Resumable,
		})
	}
	for _, e := range entries {
		doc.Runbooks = append(doc.Runbooks, newRunbookInfo(e))
	}
	var werr error
	if opts.Name != "" {
		werr = writeCatalogueDetail(f, opts, &doc)
	} else if opts.Output == "json" {
		werr = writeJSON(f.IO.Out, doc)
	} else {
		werr = writeCatalogueTables(f.IO.Out, opts.Output == "markdown", &doc)
	}
	if werr != nil {
		var ee *ExitError
		if errors.As(werr, &ee) {
			return werr
		}
		return exitf(ExitUsage, "write output: %v", werr)
	}
	if len(problems) > 0 {
		if opts.Output != "json" {
			for _, p := range problems {
				fmt.Fprintln(f.IO.ErrOut, p.String())
			}
		}
		files := map[string]bool{}
		for _, p := range problems {
			files[p.File] = true
		}
		return usageError("%s in %s failed to load (%s); the worker would not start with them", plural(len(files), "runbook file"), orDash(view.RunbooksDir), plural(len(problems), "problem"))
	}
	return nil
}

func newRunbookInfo(e runbooks.LibraryEntry) runbookInfo {
	rb := e.Runbook
	info := runbookInfo{Name: rb.Name, Description: strings.TrimSpace(rb.Description), File: e.File, Params: rb.Params,
		Steps: len(rb.Steps), Builtin: e.Builtin, Overrides: e.Overrides, StepIDs: stepIDs(rb.Steps), OnFailureIDs: stepIDs(rb.OnFailure)}
	if rb.Audit != nil {
		for k := range rb.Audit.Summary {
			info.AuditSummary = append(info.AuditSummary, k)
		}
		sort.Strings(info.AuditSummary)
	}
	return info
}

func stepIDs(steps []runbooks.Step) []string {
	out := []string{}
	for _, s := range steps {
		out = append(out, s.ID)
		out = append(out, stepIDs(s.Parallel)...)
	}
	return out
}

// source says where a runbook comes from, for people.
func (r runbookInfo) source() string {
	switch {
	case r.Builtin:
		return "built-in"
	case r.Overrides != "":
		return r.File + " (overrides built-in)"
	default:
		return r.File
	}
}

func writeCatalogueTables(w io.Writer, markdown bool, doc *catalogueJSON) error {
	books := &table{header: []string{"RUNBOOK", "SOURCE", "STEPS", "REQUIRED PARAMS", "DESCRIPTION"}}
	params := &table{header: []string{"RUNBOOK", "PARAM", "TYPE", "REQUIRED", "DEFAULT", "PATTERN / VALUES", "DESCRIPTION"}}
	for _, rb := range doc.Runbooks {
		books.add(rb.Name, rb.source(), fmt.Sprintf("%d+%d", len(rb.StepIDs), len(rb.OnFailureIDs)), orDash(strings.TrimSpace(strings.ReplaceAll(requiredParamHint(rb.Params), " --param ", " "))), truncate(rb.Description, 100))
		addParamRows(params, rb.Name, rb.Params)
	}
	steps := &table{header: []string{"STEP TYPE", "WITH", "OUTPUTS", "IRREVERSIBLE", "DESCRIPTION"}}
	for _, in := range doc.StepTypes {
		outs := make([]string, 0, len(in.Outputs))
		for _, o := range in.Outputs {
			outs = append(outs, o.Name)
		}
		steps.add(in.Name, orDash(markRequired(in.With, in.Required)), orDash(strings.Join(outs, ", ")), yesDash(in.Irreversible), in.Description)
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
	tables := []*table{books, params, steps, stepErrors, errTypes}
	for i, t := range tables {
		if len(t.rows) == 0 {
			continue
		}
		if i > 0 {
			fmt.Fprintln(w)
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
	}
	return nil
}

func addParamRows(t *table, runbook string, params map[string]runbooks.Param) {
	for _, n := range sortedParamNames(params) {
		p := params[n]
		typ := string(p.Type)
		if typ == "" {
			typ = string(runbooks.ParamString)
		}
		if p.Secret {
			typ += " (secret ref)"
		}
		def := "-"
		if p.Default != nil {
			def = fmtValue(p.Default)
		}
		pattern := p.Pattern
		if len(p.Enum) > 0 {
			pattern = strings.Join(p.Enum, " | ")
		}
		t.add(runbook, n, typ, yesDash(p.Required && p.Default == nil), def, orDash(pattern), orDash(p.Description))
	}
}

func sortedParamNames(params map[string]runbooks.Param) []string {
	names := make([]string, 0, len(params))
	for n := range params {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func yesDash(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

// writeCatalogueDetail prints one runbook or step type.
func writeCatalogueDetail(f *Factory, opts *CatalogueOptions, doc *catalogueJSON) error {
	w := f.IO.Out
	for i := range doc.Runbooks {
		rb := &doc.Runbooks[i]
		if rb.Name != opts.Name {
			continue
		}
		if opts.Output == "json" {
			return writeJSON(w, catalogueDetailJSON{Runbook: rb, Problems: doc.Problems})
		}
		fmt.Fprintf(w, "Runbook %s (%s)\n", rb.Name, rb.source())
		if rb.Description != "" {
			fmt.Fprintf(w, "  %s\n", strings.Join(strings.Fields(rb.Description), " "))
		}
		fmt.Fprintln(w)
		if len(rb.Params) > 0 {
			t := &table{header: []string{"PARAM", "TYPE", "REQUIRED", "DEFAULT", "PATTERN / VALUES", "DESCRIPTION"}}
			rows := &table{}
			addParamRows(rows, rb.Name, rb.Params)
			for _, r := range rows.rows {
				t.add(r[1:]...)
			}
			if err := writeTable(w, opts.Output == "markdown", t); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(w, "No params.")
		}
		fmt.Fprintf(w, "\nSteps: %s\n", strings.Join(rb.StepIDs, ", "))
		if len(rb.OnFailureIDs) > 0 {
			fmt.Fprintf(w, "On failure: %s\n", strings.Join(rb.OnFailureIDs, ", "))
		}
		if len(rb.AuditSummary) > 0 {
			fmt.Fprintf(w, "Audit summary: %s\n", strings.Join(rb.AuditSummary, ", "))
		}
		_, err := fmt.Fprintf(w, "\nWhat a run would do: stagehand explain %s%s\n", rb.Name, requiredParamHint(rb.Params))
		return err
	}
	for i := range doc.StepTypes {
		st := &doc.StepTypes[i]
		if st.Name != opts.Name {
			continue
		}
		if opts.Output == "json" {
			return writeJSON(w, catalogueDetailJSON{StepType: st, Problems: doc.Problems})
		}
		fmt.Fprintf(w, "Step type %s\n  %s\n\n", st.Name, st.Description)
		if st.Native {
			fmt.Fprintln(w, "Runs inside the workflow (no activity, no retries).")
		} else {
			fmt.Fprintf(w, "Default timeout %s", orDash(durationText(st.DefaultTimeout)))
			if st.HeartbeatTimeout > 0 {
				fmt.Fprintf(w, ", heartbeat %s", st.HeartbeatTimeout)
			}
			fmt.Fprintln(w)
		}
		if st.Irreversible {
			fmt.Fprintln(w, "Irreversible: cancelling a run waits for this step's outcome.")
		}
		if st.Resumable {
			fmt.Fprintln(w, "Resumable: when its worker stops, it hands over at once and runs again on another worker.")
		}
		fmt.Fprintln(w)
		args := &table{header: []string{"WITH", "TYPE", "REQUIRED", "HELP"}}
		for _, a := range st.Args {
			args.add(a.Name, a.Type, yesDash(a.Required), a.Help)
		}
		outs := &table{header: []string{"OUTPUT", "TYPE", "HELP"}}
		for _, o := range st.Outputs {
			outs.add(o.Name, o.Type, o.Help)
		}
		for _, t := range []*table{args, outs} {
			if len(t.rows) == 0 {
				continue
			}
			if err := writeTable(w, opts.Output == "markdown", t); err != nil {
				return err
			}
			fmt.Fprintln(w)
		}
		_, err := fmt.Fprintf(w, "May fail with: %s\n", strings.Join(st.Errors, ", "))
		return err
	}
	names := make([]string, 0, len(doc.Runbooks))
	for _, rb := range doc.Runbooks {
		names = append(names, rb.Name)
	}
	return usageError("no runbook or step type %q (runbooks: %s; step types: `stagehand runbooks`)", opts.Name, orDash(strings.Join(names, ", ")))
}

func writeTable(w io.Writer, markdown bool, t *table) error {
	if markdown {
		return t.writeMarkdown(w)
	}
	return t.writeText(w)
}

func durationText(d runbooks.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// requiredParamHint spells the required params without defaults as
// --param flags to fill in.
func requiredParamHint(params map[string]runbooks.Param) string {
	var b strings.Builder
	for _, n := range sortedParamNames(params) {
		if p := params[n]; p.Required && p.Default == nil {
			fmt.Fprintf(&b, " --param %s=...", n)
		}
	}
	return b.String()
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
