// Package explain describes what a run of a runbook would do, before it
// starts and without touching anything: each step in order with its `if`
// decided where params and the worker config decide it, its timeout, retry
// policy and whether it is irreversible, its arguments rendered where they
// can be known before the run (runbooks.PreviewValue), the approval gates
// with their approvers, and what runs on failure. `stagehand explain`
// prints a Plan as text or, with --output json, as the JSON below, which
// scripts may rely on: fields are added, never renamed or removed.
package explain

import (
	"sort"
	"strings"
	"time"

	"github.com/stagehand-dev/stagehand/activities"
	"github.com/stagehand-dev/stagehand/runbooks"
)

// Defaults the workflow applies to an activity step that sets none
// (workflows/stepcall.go); repeated here because the plan shows them.
const (
	DefaultStepTimeout     = 10 * time.Minute
	DefaultMaxAttempts     = 3
	DefaultInitialInterval = time.Second
	DefaultBackoff         = 2.0
	DefaultMaximumInterval = 30 * time.Second
)

// Plan is what a run would do.
type Plan struct {
	Runbook     string `json:"runbook"`
	Description string `json:"description,omitempty"`
	// Source is where the runbook comes from: builtin/<name>.yaml or a
	// file in the worker's runbooks directory.
	Source      string `json:"source"`
	RequestedBy string `json:"requestedBy"`
	// Config is the worker config file settings and environments were read
	// from; empty when none was given (they then show as
	// "<from worker config: ...>" or stay templates).
	Config string  `json:"config,omitempty"`
	Params []Param `json:"params"`
	Steps  []Step  `json:"steps"`
	// OnFailure is what runs, in order, when a step fails, a gate rejects
	// or the run is cancelled.
	OnFailure []Step `json:"onFailure"`
	Audit     *Audit `json:"audit,omitempty"`
}

// Param is one resolved parameter.
type Param struct {
	Name string `json:"name"`
	Type string `json:"type"`
	// Value is the value the run would use, converted to the declared type.
	Value any `json:"value"`
	// From says where the value comes from: given, default or unset (the
	// type's zero value).
	From string `json:"from"`
	// Secret params hold a reference (env:NAME, secret:NAME/KEY), never a
	// secret, and are printed as given.
	Secret      bool   `json:"secret,omitempty"`
	Description string `json:"description,omitempty"`
}

// Runs says whether a step would run, as far as is known before the run.
type Runs string

// The values of Step.Runs.
const (
	RunsYes Runs = "yes"
	// RunsNo: its `if` renders false from params and config.
	RunsNo Runs = "no"
	// RunsAtRunTime: its `if` reads step outputs or other run data.
	RunsAtRunTime Runs = "decided at run time"
	// RunsByConfig: its `if` reads the worker config, which was not given.
	RunsByConfig Runs = "decided by the worker config"
	// RunsError: its `if` fails to render; the run would fail there.
	RunsError Runs = "if fails to render"
)

// Step is one step of the plan.
type Step struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Kind is activity, approval or parallel.
	Kind string `json:"kind"`
	Uses string `json:"uses,omitempty"`
	// Summary is the step type's description, first sentence.
	Summary string            `json:"summary,omitempty"`
	If      *runbooks.Preview `json:"if,omitempty"`
	Runs    Runs              `json:"runs"`
	// Timeout bounds one attempt; TimeoutFrom says who set it: runbook,
	// step type or workflow default. Empty for gates without a timeout,
	// parallel groups and native steps.
	Timeout          string `json:"timeout,omitempty"`
	TimeoutFrom      string `json:"timeoutFrom,omitempty"`
	HeartbeatTimeout string `json:"heartbeatTimeout,omitempty"`
	Retry            *Retry `json:"retry,omitempty"`
	// Irreversible steps cannot be taken back by cancelling once under
	// way (a merge, a push, a restore); a cancel waits for their outcome.
	Irreversible    bool  `json:"irreversible,omitempty"`
	ContinueOnError bool  `json:"continueOnError,omitempty"`
	With            []Arg `json:"with,omitempty"`
	Gate            *Gate `json:"gate,omitempty"`
	// Parallel holds a parallel group's steps, which run at once.
	Parallel []Step `json:"parallel,omitempty"`
}

// Arg is one `with` argument.
type Arg struct {
	Name string `json:"name"`
	runbooks.Preview
}

// Retry is the retry policy of an activity step, defaults applied.
type Retry struct {
	MaxAttempts        int      `json:"maxAttempts"`
	InitialInterval    string   `json:"initialInterval"`
	BackoffCoefficient float64  `json:"backoffCoefficient"`
	MaximumInterval    string   `json:"maximumInterval"`
	NonRetryable       []string `json:"nonRetryable,omitempty"`
	// FromRunbook says the runbook sets a retry policy (else all defaults).
	FromRunbook bool `json:"fromRunbook,omitempty"`
}

// Gate is an approval step.
type Gate struct {
	Message runbooks.Preview `json:"message"`
	// Approvers are the rendered names (each entry split at commas, as the
	// workflow does) when known; ApproversUnknown holds the entries that
	// are known only at run time or from the worker config.
	Approvers        []string           `json:"approvers"`
	ApproversUnknown []runbooks.Preview `json:"approversUnknown,omitempty"`
	// Timeout after which the gate rejects; nil means it waits forever.
	Timeout         *runbooks.Preview `json:"timeout,omitempty"`
	RequireIdentity bool              `json:"requireIdentity,omitempty"`
	Remind          *Reminder         `json:"remind,omitempty"`
}

// Reminder re-announces an open gate.
type Reminder struct {
	Every string            `json:"every"`
	Uses  string            `json:"uses"`
	If    *runbooks.Preview `json:"if,omitempty"`
	With  []Arg             `json:"with,omitempty"`
}

// Audit names the facts a run leaves for `stagehand audit`.
type Audit struct {
	Summary []string `json:"summary,omitempty"`
	Details []string `json:"details,omitempty"`
}

// Input is what a plan is built from.
type Input struct {
	Runbook *runbooks.Runbook
	Source  string
	// Params are the resolved params (runbooks.ResolveParams or the
	// workflow's resolve); Given are those the caller passed.
	Params      map[string]any
	Given       map[string]any
	RequestedBy string
	// Config is the worker config file read, "" when none.
	Config       string
	Settings     map[string]any
	Environments map[string]any
	// Lookup finds a step type's spec (the catalogue the runbook was
	// validated against).
	Lookup func(name string) (activities.StepSpec, bool)
}

// Build describes what a run would do. It reads nothing but its input.
func Build(in Input) *Plan {
	rb := in.Runbook
	b := &builder{in: in, preview: runbooks.PreviewInput{
		Params: in.Params, Runbook: rb.Name, RequestedBy: in.RequestedBy,
		ConfigKnown: in.Config != "", Settings: in.Settings, Environments: in.Environments,
	}}
	p := &Plan{Runbook: rb.Name, Description: strings.TrimSpace(rb.Description), Source: in.Source,
		RequestedBy: in.RequestedBy, Config: in.Config, Params: []Param{}, Steps: []Step{}, OnFailure: []Step{}}
	names := make([]string, 0, len(rb.Params))
	for n := range rb.Params {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		decl := rb.Params[n]
		from := "unset"
		if _, ok := in.Given[n]; ok {
			from = "given"
		} else if decl.Default != nil {
			from = "default"
		}
		typ := string(decl.Type)
		if typ == "" {
			typ = string(runbooks.ParamString)
		}
		p.Params = append(p.Params, Param{Name: n, Type: typ, Value: in.Params[n], From: from, Secret: decl.Secret, Description: decl.Description})
	}
	for _, s := range rb.Steps {
		p.Steps = append(p.Steps, b.step(s))
	}
	for _, s := range rb.OnFailure {
		p.OnFailure = append(p.OnFailure, b.step(s))
	}
	if a := rb.Audit; a != nil {
		p.Audit = &Audit{Summary: sortedKeys(a.Summary), Details: sortedKeys(a.Details)}
	}
	return p
}

type builder struct {
	in      Input
	preview runbooks.PreviewInput
}

func (b *builder) step(s runbooks.Step) Step {
	out := Step{ID: s.ID, Name: s.Name, Kind: string(s.Kind()), Uses: s.Uses, Runs: RunsYes, ContinueOnError: s.ContinueOnError}
	if s.If != "" {
		c := runbooks.PreviewCondition(s.If, b.preview)
		out.If = &c
		switch c.State {
		case runbooks.PreviewLiteral, runbooks.PreviewRendered:
			if v, _ := c.Value.(bool); !v {
				out.Runs = RunsNo
			}
		case runbooks.PreviewNeedsConfig:
			out.Runs = RunsByConfig
		case runbooks.PreviewRuntime:
			out.Runs = RunsAtRunTime
		default:
			out.Runs = RunsError
		}
	}
	switch s.Kind() {
	case runbooks.KindParallel:
		for _, c := range s.Parallel {
			out.Parallel = append(out.Parallel, b.step(c))
		}
	case runbooks.KindApproval:
		out.Gate = b.gate(s.Approval)
	default:
		spec, known := b.lookup(s.Uses)
		if known {
			out.Summary = firstSentence(spec.Description)
			out.Irreversible = spec.Irreversible
		}
		if !spec.Native {
			switch {
			case s.Timeout > 0:
				out.Timeout, out.TimeoutFrom = s.Timeout.String(), "runbook"
			case spec.DefaultTimeout > 0:
				out.Timeout, out.TimeoutFrom = spec.DefaultTimeout.String(), "step type"
			default:
				out.Timeout, out.TimeoutFrom = DefaultStepTimeout.String(), "workflow default"
			}
			hb := s.HeartbeatTimeout.D()
			if hb == 0 {
				hb = spec.HeartbeatTimeout
			}
			if hb > 0 {
				out.HeartbeatTimeout = hb.String()
			}
			out.Retry = retry(s.Retry)
		}
		out.With = b.args(s.With)
	}
	return out
}

func (b *builder) lookup(name string) (activities.StepSpec, bool) {
	if b.in.Lookup == nil {
		return activities.StepSpec{}, false
	}
	return b.in.Lookup(name)
}

func (b *builder) args(with map[string]any) []Arg {
	var out []Arg
	for _, k := range sortedKeys(with) {
		out = append(out, Arg{Name: k, Preview: runbooks.PreviewValue(with[k], b.preview)})
	}
	return out
}

func (b *builder) gate(a *runbooks.Approval) *Gate {
	g := &Gate{Message: runbooks.PreviewString(a.Message, b.preview), Approvers: []string{}, RequireIdentity: a.RequireIdentity}
	for _, text := range a.Approvers {
		v := runbooks.PreviewString(text, b.preview)
		if !v.Known() {
			g.ApproversUnknown = append(g.ApproversUnknown, v)
			continue
		}
		s, _ := v.Value.(string)
		for _, one := range strings.Split(s, ",") {
			if one = strings.TrimSpace(one); one != "" {
				g.Approvers = append(g.Approvers, one)
			}
		}
	}
	if a.Timeout != "" {
		t := runbooks.PreviewString(a.Timeout, b.preview)
		g.Timeout = &t
	}
	if r := a.Remind; r != nil {
		rem := &Reminder{Every: r.Every.String(), Uses: r.Uses, With: b.args(r.With)}
		if r.If != "" {
			c := runbooks.PreviewCondition(r.If, b.preview)
			rem.If = &c
		}
		g.Remind = rem
	}
	return g
}

func retry(p *runbooks.RetryPolicy) *Retry {
	r := &Retry{MaxAttempts: DefaultMaxAttempts, InitialInterval: DefaultInitialInterval.String(),
		BackoffCoefficient: DefaultBackoff, MaximumInterval: DefaultMaximumInterval.String()}
	if p == nil {
		return r
	}
	r.FromRunbook = true
	if p.MaxAttempts != 0 {
		r.MaxAttempts = p.MaxAttempts
	}
	initial := DefaultInitialInterval
	if p.InitialInterval > 0 {
		initial = p.InitialInterval.D()
		r.InitialInterval = initial.String()
	}
	if p.BackoffCoefficient > 0 {
		r.BackoffCoefficient = p.BackoffCoefficient
	}
	switch {
	case p.MaximumInterval > 0:
		r.MaximumInterval = p.MaximumInterval.D().String()
	case DefaultMaximumInterval < initial:
		r.MaximumInterval = initial.String()
	}
	r.NonRetryable = p.NonRetryable
	return r
}

// StepIDs lists every step id of steps, parallel members included, in order.
func StepIDs(steps []Step) []string {
	var out []string
	for _, s := range steps {
		out = append(out, s.ID)
		out = append(out, StepIDs(s.Parallel)...)
	}
	return out
}

func firstSentence(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
