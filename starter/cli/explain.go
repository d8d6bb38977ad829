package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/runbooks"
	"github.com/stagehand-dev/stagehand/runbooks/explain"
	"github.com/stagehand-dev/stagehand/workflows"
)

// ExplainOptions are the inputs of `stagehand explain`.
type ExplainOptions struct {
	Runbook     string
	Params      []string
	ParamsFile  string
	Config      string
	RunbooksDir string
	RequestedBy string
	Output      string
}

func newExplainCmd(f *Factory, _ *GlobalOptions) *cobra.Command {
	opts := &ExplainOptions{}
	cmd := &cobra.Command{
		Use:   "explain RUNBOOK [--param KEY=VALUE]...",
		Short: "Show what a run would do, without running or touching anything",
		Long: `Show what a run of RUNBOOK with these params would do, before starting it:
the params resolved exactly as the worker resolves them (defaults applied,
types, patterns and required params checked: bad params fail here with the
error a start would get), then each step in order — parallel groups and
approval gates marked — with its ` + "`if`" + `, timeout, retry policy, whether it is
irreversible, and its ` + "`with`" + ` arguments; then what runs on failure, and the
audit summary keys.

Arguments are rendered with the workflow's own templating where they can be
known before the run: templates that read only .params, .run.requestedBy,
.settings and .environments. Settings and environments come from the worker
config (--config, default $STAGEHAND_CONFIG); without one they show as
<from worker config: settings.x.y>. Templates that read step outputs or the
run's id or start time are shown as templates, "(known at run time)", with
their known parts rendered. Settings are printed as the config has them:
secrets there are references (env:NAME), never values.

Nothing is touched: no Temporal connection, no cluster, no database, no
network, no file written. The worker config is only read.`,
		Example: `  stagehand explain patch --param image=registry/backend:pr-42-1a2b3c4d-1763779501 --param pr=42
  stagehand explain upgrade --param release=1.45.0 --config /etc/stagehand/worker.yaml
  stagehand explain upgrade --params-file upgrade.yaml --output json | jq '.steps[].id'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Runbook = args[0]
			return runExplain(cmd.Context(), f, opts)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&opts.Params, "param", "p", nil, "runbook parameter as KEY=VALUE (repeatable)")
	fl.StringVar(&opts.ParamsFile, "params-file", "", "YAML or JSON file of parameters (- for stdin); --param wins")
	fl.StringVar(&opts.Config, "config", "", "the worker's config file, for settings, environments and runbooksDir (env STAGEHAND_CONFIG)")
	fl.StringVar(&opts.RunbooksDir, "runbooks-dir", "", "the worker's directory of extra runbooks (default: the config's runbooksDir, env STAGEHAND_RUNBOOKS_DIR)")
	fl.StringVar(&opts.RequestedBy, "requested-by", f.currentUser(), "who would ask for the run (from $USER)")
	fl.StringVarP(&opts.Output, "output", "o", "text", "output format: text or json")
	return cmd
}

func runExplain(ctx context.Context, f *Factory, opts *ExplainOptions) error {
	if err := checkOutput(opts.Output, "text", "json"); err != nil {
		return err
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
	given := mergeParams(fileParams, flagParams)
	view, err := loadWorkerView(f, opts.Config, opts.RunbooksDir)
	if err != nil {
		return err
	}
	specs, err := f.Catalogue()
	if err != nil {
		return usageError("build step catalogue: %v", err)
	}
	cat, err := specsCatalogue(specs)
	if err != nil {
		return usageError("build step catalogue: %v", err)
	}
	lib, err := runbooks.NewLibrary(view.RunbooksDir, cat)
	if err != nil {
		if ps := problemsOf(err); ps != nil {
			for _, p := range ps {
				fmt.Fprintln(f.IO.ErrOut, p.String())
			}
			return usageError("the worker would not start with the runbooks in %s (%s); fix them first", view.RunbooksDir, plural(len(ps), "problem"))
		}
		return usageError("%v", err)
	}

	in := explain.Input{Given: given, RequestedBy: opts.RequestedBy, Lookup: specs.Lookup}
	if view.ConfigFile != "" {
		// With the worker's config at hand, the run resolves through the
		// workflow's own resolve: the same library lookup, param checks
		// against the configured environments, and config-key check a
		// start would meet, with the same errors.
		r := &workflows.Resolver{Library: lib, Catalogue: cat, Environments: view.File.TemplateData(),
			Settings: view.File.SettingsData(), Approvals: view.File.Approvals}
		res, err := r.Resolve(ctx, workflows.RunInput{Runbook: opts.Runbook, Params: given, RequestedBy: opts.RequestedBy})
		if err != nil {
			return usageError("%s", resolveMessage(err))
		}
		in.Runbook, in.Source, in.Params = &res.Runbook, res.Source, res.Params
		in.Config, in.Settings, in.Environments = view.ConfigFile, res.Settings, res.Environments
	} else {
		// No config: the same checks, minus what needs it (environment
		// names, settings keys).
		if strings.TrimSpace(opts.RequestedBy) == "" {
			return usageError("say who would ask for the run with --requested-by USER ($USER is not set)")
		}
		src, err := lib.Source(opts.Runbook)
		if err != nil {
			return usageError("%v", err)
		}
		rb, err := runbooks.Parse(src.File, src.Data, cat)
		if err != nil {
			return usageError("%v", err)
		}
		params, err := runbooks.ResolveParams(rb, given)
		if err != nil {
			return usageError("%v", err)
		}
		in.Runbook, in.Source, in.Params = rb, src.File, params
	}
	plan := explain.Build(in)
	if opts.Output == "json" {
		return writeJSON(f.IO.Out, plan)
	}
	if err := writePlanText(f.IO.Out, plan); err != nil {
		return exitf(ExitUsage, "write output: %v", err)
	}
	return nil
}

// resolveMessage is the message of a resolve failure, as a start's run
// would record it.
func resolveMessage(err error) string {
	var ae *temporal.ApplicationError
	if errors.As(err, &ae) {
		return ae.Message()
	}
	return err.Error()
}

// writePlanText prints a plan for people.
func writePlanText(w io.Writer, p *explain.Plan) error {
	pw := &planWriter{w: w}
	pw.line(0, "Runbook %s (%s), requested by %s", p.Runbook, p.Source, p.RequestedBy)
	if p.Description != "" {
		pw.line(1, "%s", strings.Join(strings.Fields(p.Description), " "))
	}
	if p.Config != "" {
		pw.line(0, "Worker config: %s", p.Config)
	} else {
		pw.line(0, "No worker config given (--config): settings and environments show as <from worker config: ...>.")
	}
	pw.blank()
	pw.line(0, "Params:")
	t := &table{header: []string{"  NAME", "TYPE", "VALUE", "FROM"}}
	for _, prm := range p.Params {
		t.add("  "+prm.Name, prm.Type, fmtValue(prm.Value), prm.From)
	}
	if len(p.Params) > 0 {
		if err := t.writeText(w); err != nil {
			return err
		}
	} else {
		pw.line(1, "none")
	}
	pw.blank()
	pw.line(0, "Steps, in order:")
	pw.steps(p.Steps, 1, "")
	pw.blank()
	if len(p.OnFailure) == 0 {
		pw.line(0, "On failure: nothing runs (no onFailure steps).")
	} else {
		pw.line(0, "On failure (a step fails, a gate rejects or the run is cancelled), in order:")
		pw.steps(p.OnFailure, 1, "")
	}
	if p.Audit != nil && len(p.Audit.Summary)+len(p.Audit.Details) > 0 {
		pw.blank()
		pw.line(0, "Audit summary: %s", orDash(joinComma(p.Audit.Summary)))
		if len(p.Audit.Details) > 0 {
			pw.line(0, "Audit details: %s", joinComma(p.Audit.Details))
		}
	}
	return pw.err
}

type planWriter struct {
	w   io.Writer
	err error
}

func (pw *planWriter) line(indent int, format string, args ...any) {
	if pw.err != nil {
		return
	}
	_, pw.err = fmt.Fprintf(pw.w, "%s%s\n", strings.Repeat("  ", indent), fmt.Sprintf(format, args...))
}

func (pw *planWriter) blank() { pw.line(0, "") }

func (pw *planWriter) steps(steps []explain.Step, indent int, prefix string) {
	for i, s := range steps {
		pw.step(s, indent, fmt.Sprintf("%s%d", prefix, i+1))
	}
}

func (pw *planWriter) step(s explain.Step, indent int, num string) {
	head := fmt.Sprintf("%s. %s", num, s.ID)
	switch s.Kind {
	case "parallel":
		head += "  [parallel group: these run at once]"
	case "approval":
		head += "  [approval gate]"
	default:
		head += "  " + s.Uses
	}
	if s.Irreversible {
		head += "  [irreversible]"
	}
	if s.ContinueOnError {
		head += "  [continues on error]"
	}
	pw.line(indent, "%s", head)
	in := indent + 2
	if s.Name != "" {
		pw.line(in, "%s", s.Name)
	}
	if s.Summary != "" {
		pw.line(in, "%s", s.Summary)
	}
	if s.If != nil {
		switch s.Runs {
		case explain.RunsYes:
			pw.line(in, "if: true, runs (%s)", strings.TrimSpace(s.If.Template))
		case explain.RunsNo:
			pw.line(in, "if: false, SKIPPED (%s)", strings.TrimSpace(s.If.Template))
		case explain.RunsAtRunTime:
			pw.line(in, "if: decided at run time: %s", strings.TrimSpace(s.If.Template))
		case explain.RunsByConfig:
			pw.line(in, "if: decided by the worker config: %s", strings.TrimSpace(s.If.Template))
		default:
			pw.line(in, "if: fails to render: %s (%s)", s.If.Error, strings.TrimSpace(s.If.Template))
		}
	}
	if s.Timeout != "" {
		l := fmt.Sprintf("timeout %s (%s)", s.Timeout, s.TimeoutFrom)
		if s.HeartbeatTimeout != "" {
			l += ", heartbeat " + s.HeartbeatTimeout
		}
		if r := s.Retry; r != nil {
			l += fmt.Sprintf(", up to %s", plural(r.MaxAttempts, "attempt"))
			if r.MaxAttempts != 1 {
				l += fmt.Sprintf(" (backoff %s ×%g up to %s)", r.InitialInterval, r.BackoffCoefficient, r.MaximumInterval)
			}
			if !r.FromRunbook {
				l += " [defaults]"
			}
			if len(r.NonRetryable) > 0 {
				l += ", not retried on " + joinComma(r.NonRetryable)
			}
		}
		pw.line(in, "%s", l)
	}
	if g := s.Gate; g != nil {
		pw.line(in, "message: %s", previewText(g.Message, in))
		approvers := joinComma(g.Approvers)
		for _, u := range g.ApproversUnknown {
			if approvers != "" {
				approvers += ", "
			}
			approvers += previewText(u, in)
		}
		pw.line(in, "approvers: %s", orDash(approvers))
		if g.Timeout != nil {
			pw.line(in, "timeout: %s (then the gate rejects)", previewText(*g.Timeout, in))
		} else {
			pw.line(in, "timeout: none (waits until decided)")
		}
		if g.RequireIdentity {
			pw.line(in, "requires a verified identity")
		}
		if r := g.Remind; r != nil {
			l := fmt.Sprintf("reminders: every %s via %s", r.Every, r.Uses)
			if r.If != nil {
				l += " if " + strings.TrimSpace(r.If.Template)
			}
			pw.line(in, "%s", l)
			pw.args(r.With, in+1)
		}
	}
	pw.args(s.With, in)
	pw.steps(s.Parallel, in, num+".")
}

func (pw *planWriter) args(args []explain.Arg, indent int) {
	if len(args) == 0 {
		return
	}
	pw.line(indent, "with:")
	for _, a := range args {
		pw.line(indent+1, "%s: %s", a.Name, previewText(a.Preview, indent+2))
	}
}

// previewText prints a previewed value with a note on what is not known.
func previewText(p runbooks.Preview, indent int) string {
	s := fmtValue(p.Value)
	if strings.Contains(s, "\n") {
		s = strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n"+strings.Repeat("  ", indent+1))
	}
	switch p.State {
	case runbooks.PreviewRuntime:
		return s + "  (known at run time)"
	case runbooks.PreviewNeedsConfig:
		if strings.Contains(s, "{{") {
			return s + "  (from worker config: " + joinComma(p.Needs) + ")"
		}
		return s
	case runbooks.PreviewError:
		return s + "  (fails to render: " + p.Error + ")"
	}
	return s
}

// fmtValue prints a value: strings as they are ("" when empty), anything
// else as compact JSON.
func fmtValue(v any) string {
	switch x := v.(type) {
	case string:
		if x == "" {
			return `""`
		}
		return x
	case nil:
		return "null"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
