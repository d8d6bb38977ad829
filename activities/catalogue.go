// Package activities holds the step catalogue: the step types a runbook may
// name in `uses`, each backed by a Temporal activity registered under that
// name. Sub-packages hold one adapter per outside system (kube, image, db,
// web, git, ...); this package holds what they share: StepSpec (what a step
// type is, as data; activities/steps lists them), the error-type table, and
// the binding of a typed Go method to its spec into a worker's Catalogue.
package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// StepType is one entry of a worker's catalogue: a step spec bound to the
// handler that implements it.
type StepType struct {
	StepSpec
	// Input is the Go type the step's `with` map decodes into; its JSON
	// field names must be the spec's Args. Nil when the step declares no
	// typed input.
	Input reflect.Type `json:"-"`
	// Output is the Go type of the handler's result; its JSON field names
	// must be the spec's Outputs. Nil for native steps.
	Output reflect.Type `json:"-"`
	// Handler is the activity function registered under Name; nil for
	// native steps.
	Handler Handler `json:"-"`
}

// Handler is the activity every step type registers: the rendered `with`
// map in, the outputs out.
type Handler func(ctx context.Context, req StepRequest) (StepResult, error)

// StepRequest is what the workflow sends to every step activity: the
// rendered `with` arguments and where the step sits in which run.
type StepRequest struct {
	// WorkflowID is the run's workflow id (templates call it .run.id).
	WorkflowID string `json:"workflowId,omitempty"`
	// Runbook is the name of the worker-loaded runbook the step belongs to;
	// empty for an inline definition, whose self-chosen name must not earn
	// the allowances (secret references) of a loaded runbook's steps.
	Runbook string         `json:"runbook,omitempty"`
	StepID  string         `json:"stepId"`
	With    map[string]any `json:"with,omitempty"`
}

// StepUse names the step an activity call serves: its step type and, for
// runbooks the worker loaded, the runbook and step id. The secret policy
// (activities/secrets) decides from it which references the call may
// resolve.
type StepUse struct {
	Type    string
	Runbook string
	StepID  string
}

type stepUseKey struct{}

// WithStepUse returns ctx carrying u; every step handler bound with
// Implement runs with one.
func WithStepUse(ctx context.Context, u StepUse) context.Context {
	return context.WithValue(ctx, stepUseKey{}, u)
}

// StepUseOf returns the step ctx serves; false outside a step (the
// worker's own start-up checks).
func StepUseOf(ctx context.Context) (StepUse, bool) {
	u, ok := ctx.Value(stepUseKey{}).(StepUse)
	return u, ok
}

// StepResult is what every step activity returns.
type StepResult struct {
	Outputs map[string]any `json:"outputs,omitempty"`
	// Attempt is the attempt that succeeded (1 for the first).
	Attempt int32 `json:"attempt"`
	// Worker is the identity of the worker that ran it (of several on one
	// task queue); empty from a worker that predates it.
	Worker string `json:"worker,omitempty"`
}

// StepFailureDetails rides on a failed step's ApplicationError so the
// workflow can report how many attempts were made.
type StepFailureDetails struct {
	Attempt int32 `json:"attempt"`
}

// Implement binds a typed activity method to its spec. The `with` map is
// decoded into In by its JSON field names (unknown keys are an error, so a
// typo in a runbook fails loudly), and Out is encoded back into the outputs
// map that later steps reference as .steps.<id>.outputs. Whether In and Out
// agree with the spec is checked by Bind, not here, so that a mismatch is
// reported together with every other one.
func Implement[In any, Out any](spec StepSpec, fn func(context.Context, In) (Out, error)) StepType {
	name := spec.Name
	return StepType{
		StepSpec: spec,
		Input:    reflect.TypeFor[In](),
		Output:   reflect.TypeFor[Out](),
		Handler: func(ctx context.Context, req StepRequest) (StepResult, error) {
			attempt := int32(1)
			if activity.IsActivity(ctx) {
				attempt = activity.GetInfo(ctx).Attempt
			}
			var in In
			if err := decodeWith(req.With, &in); err != nil {
				return StepResult{}, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("step %q (%s): bad arguments: %v", req.StepID, name, err), ErrInvalidArguments, nil)
			}
			ctx = WithStepUse(ctx, StepUse{Type: name, Runbook: req.Runbook, StepID: req.StepID})
			w := WorkerOf(ctx)
			w.begin()
			defer w.end()
			ctx, stop, cancel := stopWatch(ctx, spec.Resumable)
			defer cancel()
			out, err := fn(ctx, in)
			if err != nil {
				if interrupted(ctx, stop) {
					return StepResult{}, interruptedError(req.StepID, name, w, attempt)
				}
				return StepResult{}, annotateFailure(err, attempt)
			}
			outputs, err := toMap(out)
			if err != nil {
				return StepResult{}, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("step %q (%s): encode outputs: %v", req.StepID, name, err), ErrInvalidOutputs, nil)
			}
			return StepResult{Outputs: outputs, Attempt: attempt, Worker: w.identity()}, nil
		},
	}
}

// ImplementNative declares the typed input of a step the workflow runs
// itself, so its arguments are checked against the spec like any other's.
func ImplementNative[In any](spec StepSpec) StepType {
	return StepType{StepSpec: spec, Input: reflect.TypeFor[In]()}
}

// Step makes an ad hoc step type whose spec is derived from its Go types:
// the input's JSON fields become its arguments, the output's its outputs.
// It is for step types that are not part of the built-in set (tests,
// experiments); built-in step types are described in activities/steps and
// bound with Implement.
func Step[In any, Out any](name, description string, fn func(context.Context, In) (Out, error)) StepType {
	spec := StepSpec{Name: name, Description: description}
	for _, k := range jsonKeys(reflect.TypeFor[In]()) {
		spec.Args = append(spec.Args, Arg{Name: k, Type: "any"})
	}
	for _, k := range jsonKeys(reflect.TypeFor[Out]()) {
		spec.Outputs = append(spec.Outputs, Output{Name: k, Type: "any"})
	}
	return Implement(spec, fn)
}

func decodeWith(with map[string]any, into any) error {
	b, err := json.Marshal(with)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	return dec.Decode(into)
}

func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if string(b) == "null" {
		return nil, nil
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		// Non-object outputs are exposed as .outputs.value.
		var x any
		if err2 := json.Unmarshal(b, &x); err2 != nil {
			return nil, err
		}
		return map[string]any{"value": x}, nil
	}
	return m, nil
}

// annotateFailure keeps the error's type and retryability (so runbook
// nonRetryable lists and the worker's retry policy see the same thing) and
// attaches the attempt number for the status report.
func annotateFailure(err error, attempt int32) error {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return temporal.NewApplicationErrorWithOptions(CleanMessage(err), appErr.Type(), temporal.ApplicationErrorOptions{
			NonRetryable: appErr.NonRetryable(),
			Cause:        errors.Unwrap(appErr),
			Details:      []any{StepFailureDetails{Attempt: attempt}},
		})
	}
	return temporal.NewApplicationErrorWithOptions(err.Error(), errorTypeName(err), temporal.ApplicationErrorOptions{
		Details: []any{StepFailureDetails{Attempt: attempt}},
	})
}

var errorSuffixRE = regexp.MustCompile(` \(type: [^,()]+, retryable: (true|false)\)`)

// CleanMessage is err.Error() without the "(type: X, retryable: false)"
// suffixes Temporal's ApplicationError adds, which mean nothing to a person
// reading a step's error.
func CleanMessage(err error) string {
	return errorSuffixRE.ReplaceAllString(err.Error(), "")
}

func errorTypeName(err error) string {
	t := reflect.TypeOf(err)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Name()
}

// Catalogue is the set of step types a worker offers: specs bound to
// handlers. It implements runbooks.Catalogue, so the worker validates
// runbooks against exactly what it registered.
type Catalogue struct {
	types map[string]StepType
}

// Bind builds a worker's catalogue from the step specs and the step types
// the adapters implement, and refuses one where they disagree: a spec with
// no implementation, an implementation with no spec, or a handler whose Go
// input or output struct has other JSON keys than the spec declares. The
// worker calls it at start-up, so such a mismatch stops the worker instead
// of surfacing as a runbook that validates but fails to decode.
func Bind(specs []StepSpec, impls ...StepType) (*Catalogue, error) {
	var errs []error
	byName := map[string]StepType{}
	for _, t := range impls {
		if _, dup := byName[t.Name]; dup {
			errs = append(errs, fmt.Errorf("step type %q implemented twice", t.Name))
			continue
		}
		byName[t.Name] = t
	}
	c := &Catalogue{types: map[string]StepType{}}
	for _, sp := range specs {
		t, ok := byName[sp.Name]
		if !ok {
			errs = append(errs, fmt.Errorf("step type %q is described but no adapter implements it", sp.Name))
			continue
		}
		delete(byName, sp.Name)
		if err := CheckImplements(sp, t); err != nil {
			errs = append(errs, err)
			continue
		}
		t.StepSpec = sp
		if err := c.Add(t); err != nil {
			errs = append(errs, err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		errs = append(errs, fmt.Errorf("step type %q is implemented but not described in activities/steps", name))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// CheckImplements reports where a step type's Go types disagree with a
// spec: the input struct's JSON keys must be the spec's arguments and the
// output struct's (when it is a struct) its outputs.
func CheckImplements(sp StepSpec, t StepType) error {
	var errs []error
	if t.Name != sp.Name {
		errs = append(errs, fmt.Errorf("step type %q is bound to the spec of %q", t.Name, sp.Name))
	}
	if sp.Native != (t.Handler == nil) {
		errs = append(errs, fmt.Errorf("%s: native is %v in its spec, but it has%s a handler", sp.Name, sp.Native, map[bool]string{true: "", false: " no"}[t.Handler != nil]))
	}
	if t.Input != nil {
		if d := diffKeys(jsonKeys(t.Input), sp.ArgNames()); d != "" {
			errs = append(errs, fmt.Errorf("%s: input %s and the spec's args disagree: %s", sp.Name, t.Input, d))
		}
	} else if len(sp.Args) > 0 {
		errs = append(errs, fmt.Errorf("%s: the spec declares args but the step type has no typed input", sp.Name))
	}
	if t.Output != nil && isStruct(t.Output) {
		if d := diffKeys(jsonKeys(t.Output), sp.OutputNames()); d != "" {
			errs = append(errs, fmt.Errorf("%s: output %s and the spec's outputs disagree: %s", sp.Name, t.Output, d))
		}
	}
	return errors.Join(errs...)
}

func diffKeys(goKeys, specKeys []string) string {
	inGo, inSpec := map[string]bool{}, map[string]bool{}
	for _, k := range goKeys {
		inGo[k] = true
	}
	for _, k := range specKeys {
		inSpec[k] = true
	}
	var onlyGo, onlySpec []string
	for _, k := range goKeys {
		if !inSpec[k] {
			onlyGo = append(onlyGo, k)
		}
	}
	for _, k := range specKeys {
		if !inGo[k] {
			onlySpec = append(onlySpec, k)
		}
	}
	var parts []string
	if len(onlyGo) > 0 {
		parts = append(parts, "undeclared in the spec: "+strings.Join(onlyGo, ", "))
	}
	if len(onlySpec) > 0 {
		parts = append(parts, "not in the Go struct: "+strings.Join(onlySpec, ", "))
	}
	return strings.Join(parts, "; ")
}

// NewCatalogue builds a catalogue of ad hoc step types, each described by
// its own spec; a duplicate name is a programming error.
func NewCatalogue(types ...StepType) (*Catalogue, error) {
	c := &Catalogue{types: map[string]StepType{}}
	for _, t := range types {
		if err := c.Add(t); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Add registers one more step type.
func (c *Catalogue) Add(t StepType) error {
	if err := t.Check(); err != nil {
		return err
	}
	if _, dup := c.types[t.Name]; dup {
		return fmt.Errorf("step type %q registered twice", t.Name)
	}
	if !t.Native && t.Handler == nil {
		return fmt.Errorf("step type %q has no handler", t.Name)
	}
	c.types[t.Name] = t
	return nil
}

// Lookup returns the step type with that name.
func (c *Catalogue) Lookup(name string) (StepType, bool) {
	if c == nil {
		return StepType{}, false
	}
	t, ok := c.types[name]
	return t, ok
}

// Names lists the step types in sorted order.
func (c *Catalogue) Names() []string {
	return slices.Sorted(maps.Keys(c.types))
}

// Types lists the step types sorted by name.
func (c *Catalogue) Types() []StepType {
	out := make([]StepType, 0, len(c.types))
	for _, n := range c.Names() {
		out = append(out, c.types[n])
	}
	return out
}

// Specs lists the step types' specs sorted by name.
func (c *Catalogue) Specs() []StepSpec {
	out := make([]StepSpec, 0, len(c.types))
	for _, t := range c.Types() {
		out = append(out, t.StepSpec)
	}
	return out
}

// StepInfo implements runbooks.Catalogue.
func (c *Catalogue) StepInfo(uses string) (runbooks.StepInfo, bool) {
	t, ok := c.Lookup(uses)
	if !ok {
		return runbooks.StepInfo{}, false
	}
	return stepInfo(t.StepSpec), true
}

// ErrorTypes implements runbooks.Catalogue.
func (c *Catalogue) ErrorTypes() []string {
	return errorTypeNames(c.Specs())
}

// jsonKeys returns the JSON field names of a struct type (nil for other
// types): the keys encoding/json reads and writes.
func jsonKeys(t reflect.Type) []string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if !isStruct(t) {
		return nil
	}
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name := f.Name
		if tag, ok := f.Tag.Lookup("json"); ok {
			n, _, _ := strings.Cut(tag, ",")
			if n == "-" {
				continue
			}
			if n != "" {
				name = n
			}
		}
		keys = append(keys, name)
	}
	return keys
}

func isStruct(t reflect.Type) bool {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t != nil && t.Kind() == reflect.Struct
}
