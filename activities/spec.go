package activities

import (
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// StepSpec describes a step type as runbook authors see it: its name, its
// arguments and outputs, the error types it may fail with and its default
// timeouts. It is data, independent of the handler that implements it, so
// that validation and documentation (`stagehand validate`, `runbooks`,
// `explain`) need no clients; package activities/steps lists every spec.
type StepSpec struct {
	// Name is what runbooks write in `uses`, and the activity's registered name.
	Name        string `json:"name"`
	Description string `json:"description"`
	// Args are the `with` keys the step accepts. They must equal the JSON
	// field names of the handler's input struct (checked when binding).
	Args []Arg `json:"args,omitempty"`
	// Outputs are what later steps read as .steps.<id>.outputs.<name>.
	Outputs []Output `json:"outputs,omitempty"`
	// Errors are the error types the step may fail with, beyond
	// CommonStepErrors.
	Errors []string `json:"errors,omitempty"`
	// DefaultTimeout bounds one attempt when the runbook sets none.
	DefaultTimeout time.Duration `json:"defaultTimeout,omitempty"`
	// HeartbeatTimeout, when set, is applied to the activity: the step
	// heartbeats and a silent worker is noticed within this time.
	HeartbeatTimeout time.Duration `json:"heartbeatTimeout,omitempty"`
	// Native marks steps the workflow runs itself (e.g. a durable timer)
	// instead of calling an activity.
	Native bool `json:"native,omitempty"`
	// Irreversible marks steps whose side effect cancelling cannot take
	// back once the attempt is under way (a merge, a push, a restore, an
	// image set on a cluster). Cancelling a run during one waits for the
	// attempt's outcome (Temporal's WaitForCancellation) instead of giving
	// up on it at once, so compensation reads what really happened: a
	// merge that completed after the cancel is recorded as succeeded.
	Irreversible bool `json:"irreversible,omitempty"`
	// Resumable marks steps that only observe (watches, checks): when
	// their worker stops they hand over at once, and the workflow runs
	// them again on another worker, instead of holding the stop for its
	// timeout.
	Resumable bool `json:"resumable,omitempty"`
}

// Arg is one `with` key of a step type.
type Arg struct {
	Name string `json:"name"`
	// Type is what the value must be after templating: string, int, bool,
	// duration (a string such as 30s), list, map, or any.
	Type     string `json:"type"`
	Required bool   `json:"required,omitempty"`
	Help     string `json:"help"`
}

// Output is one output of a step type.
type Output struct {
	Name string `json:"name"`
	Type string `json:"type"`
	Help string `json:"help"`
}

// ArgNames lists the `with` keys in declaration order.
func (s StepSpec) ArgNames() []string {
	out := make([]string, 0, len(s.Args))
	for _, a := range s.Args {
		out = append(out, a.Name)
	}
	return out
}

// RequiredArgs lists the `with` keys that must be present.
func (s StepSpec) RequiredArgs() []string {
	var out []string
	for _, a := range s.Args {
		if a.Required {
			out = append(out, a.Name)
		}
	}
	return out
}

// OutputNames lists the outputs in declaration order.
func (s StepSpec) OutputNames() []string {
	out := make([]string, 0, len(s.Outputs))
	for _, o := range s.Outputs {
		out = append(out, o.Name)
	}
	return out
}

// ErrorTypeNames lists every error type the step may fail with: its own and,
// for activity-backed steps, CommonStepErrors; sorted, without duplicates.
func (s StepSpec) ErrorTypeNames() []string {
	seen := map[string]bool{}
	var out []string
	add := func(names []string) {
		for _, n := range names {
			if !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	add(s.Errors)
	if s.Native {
		// Native steps are run by the workflow: no adapter decodes their
		// arguments, the workflow checks them and renders templates.
		add([]string{ErrInvalidArguments, ErrTemplateError})
	} else {
		add(CommonStepErrors)
	}
	sort.Strings(out)
	return out
}

// Check reports what is wrong with a spec on its own: a missing name,
// duplicate args or outputs, a run's error type listed as a step's.
func (s StepSpec) Check() error {
	var errs []error
	if s.Name == "" {
		errs = append(errs, errors.New("a step spec with an empty name"))
	}
	seen := map[string]bool{}
	for _, a := range s.Args {
		if a.Name == "" || seen[a.Name] {
			errs = append(errs, fmt.Errorf("%s: argument %q is empty or declared twice", s.Name, a.Name))
		}
		seen[a.Name] = true
	}
	seen = map[string]bool{}
	for _, o := range s.Outputs {
		if o.Name == "" || seen[o.Name] {
			errs = append(errs, fmt.Errorf("%s: output %q is empty or declared twice", s.Name, o.Name))
		}
		seen[o.Name] = true
	}
	for _, e := range s.Errors {
		// A type outside the table is allowed (a test's or an experiment's
		// step type may declare its own); the built-in specs are held to
		// the table by activities/steps' tests.
		if t, ok := LookupErrorType(e); ok && t.Scope != ScopeStep {
			errs = append(errs, fmt.Errorf("%s: error type %q is a run's, not a step's", s.Name, e))
		}
	}
	return errors.Join(errs...)
}

// Specs is a set of step specs: what validation and documentation read.
// It implements runbooks.Catalogue.
type Specs struct {
	specs map[string]StepSpec
}

// NewSpecs builds a set; a duplicate name or a bad spec is an error.
func NewSpecs(specs ...StepSpec) (*Specs, error) {
	s := &Specs{specs: map[string]StepSpec{}}
	var errs []error
	for _, sp := range specs {
		if err := sp.Check(); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := s.specs[sp.Name]; dup {
			errs = append(errs, fmt.Errorf("step type %q described twice", sp.Name))
			continue
		}
		s.specs[sp.Name] = sp
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return s, nil
}

// Lookup returns the spec with that name.
func (s *Specs) Lookup(name string) (StepSpec, bool) {
	if s == nil {
		return StepSpec{}, false
	}
	sp, ok := s.specs[name]
	return sp, ok
}

// Names lists the step types in sorted order.
func (s *Specs) Names() []string {
	names := make([]string, 0, len(s.specs))
	for n := range s.specs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// All lists the specs sorted by name.
func (s *Specs) All() []StepSpec {
	out := make([]StepSpec, 0, len(s.specs))
	for _, n := range s.Names() {
		out = append(out, s.specs[n])
	}
	return out
}

// StepInfo implements runbooks.Catalogue.
func (s *Specs) StepInfo(uses string) (runbooks.StepInfo, bool) {
	sp, ok := s.Lookup(uses)
	if !ok {
		return runbooks.StepInfo{}, false
	}
	return stepInfo(sp), true
}

// ErrorTypes implements runbooks.Catalogue: every step error type of the
// table, plus any a spec declares beyond it (step types defined outside
// the built-in set, such as tests').
func (s *Specs) ErrorTypes() []string {
	return errorTypeNames(s.All())
}

func stepInfo(sp StepSpec) runbooks.StepInfo {
	info := runbooks.StepInfo{Keys: sp.ArgNames(), Required: sp.RequiredArgs(), Native: sp.Native}
	for _, a := range sp.Args {
		if a.Type == "duration" {
			info.Durations = append(info.Durations, a.Name)
		}
	}
	return info
}

func errorTypeNames(specs []StepSpec) []string {
	seen := map[string]bool{}
	names := StepErrorTypeNames()
	for _, n := range names {
		seen[n] = true
	}
	for _, sp := range specs {
		for _, e := range sp.Errors {
			if !seen[e] {
				seen[e] = true
				names = append(names, e)
			}
		}
	}
	sort.Strings(names)
	return names
}
