// Package activities holds the step catalogue: the step types a runbook may
// name in `uses`, each backed by a Temporal activity registered under that
// name. Sub-packages hold one adapter per outside system (kube, image, db,
// web, git, ...); this package holds what they share: the StepType
// description and the adapter that turns a typed Go method into a step.
package activities

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/stagehand-dev/stagehand/runbooks"
)

// StepType describes one entry of the catalogue.
type StepType struct {
	// Name is what runbooks write in `uses`, and the activity's registered name.
	Name        string
	Description string
	// Input is the Go type the step's `with` map decodes into; its JSON
	// field names are the keys a runbook may use. Nil for workflow-native
	// steps that take no typed input.
	Input reflect.Type
	// Required lists `with` keys that must be present.
	Required []string
	// DefaultTimeout bounds one attempt when the runbook sets none.
	DefaultTimeout time.Duration
	// HeartbeatTimeout, when set, is applied to the activity: the step
	// heartbeats and a silent worker is noticed within this time.
	HeartbeatTimeout time.Duration
	// Native marks steps the workflow runs itself (e.g. a durable timer)
	// instead of calling an activity.
	Native bool
	// Handler is the activity function registered under Name; nil for
	// native steps.
	Handler func(ctx context.Context, req StepRequest) (StepResult, error) `json:"-"`
}

// StepRequest is what the workflow sends to every step activity: the
// rendered `with` arguments and where the step sits in which run.
type StepRequest struct {
	// WorkflowID is the run's workflow id (templates call it .run.id).
	WorkflowID string         `json:"workflowId,omitempty"`
	StepID     string         `json:"stepId"`
	With       map[string]any `json:"with,omitempty"`
}

// StepResult is what every step activity returns.
type StepResult struct {
	Outputs map[string]any `json:"outputs,omitempty"`
	// Attempt is the attempt that succeeded (1 for the first).
	Attempt int32 `json:"attempt"`
}

// StepFailureDetails rides on a failed step's ApplicationError so the
// workflow can report how many attempts were made.
type StepFailureDetails struct {
	Attempt int32 `json:"attempt"`
}

// Step adapts a typed activity method into a StepType. The `with` map is
// decoded into In by its JSON field names (unknown keys are an error, so a
// typo in a runbook fails loudly), and Out is encoded back into the outputs
// map that later steps reference as .steps.<id>.outputs.
func Step[In any, Out any](name, description string, fn func(context.Context, In) (Out, error)) StepType {
	var zero In
	return StepType{
		Name:        name,
		Description: description,
		Input:       reflect.TypeOf(zero),
		Handler: func(ctx context.Context, req StepRequest) (StepResult, error) {
			attempt := int32(1)
			if activity.IsActivity(ctx) {
				attempt = activity.GetInfo(ctx).Attempt
			}
			var in In
			if err := decodeWith(req.With, &in); err != nil {
				return StepResult{}, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("step %q (%s): bad arguments: %v", req.StepID, name, err), "InvalidArguments", nil)
			}
			out, err := fn(ctx, in)
			if err != nil {
				return StepResult{}, annotateFailure(err, attempt)
			}
			outputs, err := toMap(out)
			if err != nil {
				return StepResult{}, temporal.NewNonRetryableApplicationError(
					fmt.Sprintf("step %q (%s): encode outputs: %v", req.StepID, name, err), "InvalidOutputs", nil)
			}
			return StepResult{Outputs: outputs, Attempt: attempt}, nil
		},
	}
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

// Catalogue is the set of step types a worker offers.
type Catalogue struct {
	types map[string]StepType
}

// NewCatalogue builds a catalogue; a duplicate name is a programming error.
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
	if t.Name == "" {
		return errors.New("step type with an empty name")
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
	names := make([]string, 0, len(c.types))
	for n := range c.types {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Types lists the step types sorted by name.
func (c *Catalogue) Types() []StepType {
	out := make([]StepType, 0, len(c.types))
	for _, n := range c.Names() {
		out = append(out, c.types[n])
	}
	return out
}

// InputKeys returns the `with` keys a step type accepts (its input's JSON
// field names), or nil when it declares no typed input.
func (t StepType) InputKeys() []string {
	if t.Input == nil {
		return nil
	}
	it := t.Input
	for it.Kind() == reflect.Pointer {
		it = it.Elem()
	}
	if it.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := 0; i < it.NumField(); i++ {
		f := it.Field(i)
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

// StepInfo implements runbooks.Catalogue.
func (c *Catalogue) StepInfo(uses string) (runbooks.StepInfo, bool) {
	t, ok := c.Lookup(uses)
	if !ok {
		return runbooks.StepInfo{}, false
	}
	return runbooks.StepInfo{Keys: t.InputKeys(), Required: t.Required}, true
}
