// Package steptest runs step types in tests the way a worker runs them:
// the catalogue adapter of a step, registered under its name in Temporal's
// test activity environment, so argument decoding, heartbeats and the
// conversion of errors are the real ones. Adapter packages (activities/db,
// git, image, kube, command) share it instead of each writing the lookup,
// the environment and the error checks again.
package steptest

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/activities"
)

// Result is what one step execution produced.
type Result struct {
	Outputs map[string]any
	// Err is the error the activity environment returned (an
	// *temporal.ApplicationError inside for a step failure).
	Err error
	// Heartbeats holds the JSON of each heartbeat's details, in order.
	Heartbeats []string
}

type config struct {
	stepID      string
	onHeartbeat func(converter.EncodedValues)
}

// Option changes how RunStep runs a step.
type Option func(*config)

// StepID sets the request's step id (default "step").
func StepID(id string) Option { return func(c *config) { c.stepID = id } }

// OnHeartbeat calls f with the details of every heartbeat as it arrives,
// for a test that reacts while the step runs or decodes the details into
// the step's own progress type. The heartbeat is recorded in
// Result.Heartbeats as well.
func OnHeartbeat(f func(details converter.EncodedValues)) Option {
	return func(c *config) { c.onHeartbeat = f }
}

// Find returns the step type called name, failing the test when types has
// none.
func Find(t testing.TB, types []activities.StepType, name string) activities.StepType {
	t.Helper()
	for _, s := range types {
		if s.Name == name && s.Handler != nil {
			return s
		}
	}
	t.Fatalf("no step type %s", name)
	return activities.StepType{}
}

// RunStep runs the step type called name with the given `with` arguments
// as an activity. A step failure is returned in Result.Err; a result that
// cannot be decoded fails the test.
func RunStep(t testing.TB, types []activities.StepType, name string, with map[string]any, opts ...Option) Result {
	t.Helper()
	cfg := config{stepID: "step"}
	for _, o := range opts {
		o(&cfg)
	}
	step := Find(t, types, name)
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	var mu sync.Mutex
	var run Result
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var d any
		if details.HasValues() && details.Get(&d) == nil {
			b, _ := json.Marshal(d)
			mu.Lock()
			run.Heartbeats = append(run.Heartbeats, string(b))
			mu.Unlock()
		}
		if cfg.onHeartbeat != nil {
			cfg.onHeartbeat(details)
		}
	})
	env.RegisterActivityWithOptions(step.Handler, activity.RegisterOptions{Name: name})
	val, err := env.ExecuteActivity(name, activities.StepRequest{StepID: cfg.stepID, With: with})
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		run.Err = err
		return run
	}
	var res activities.StepResult
	if err := val.Get(&res); err != nil {
		t.Fatalf("%s: decode the step result: %v", name, err)
	}
	run.Outputs = res.Outputs
	return run
}

// MustStep is RunStep for a step that has to succeed.
func MustStep(t testing.TB, types []activities.StepType, name string, with map[string]any, opts ...Option) Result {
	t.Helper()
	run := RunStep(t, types, name, with, opts...)
	if run.Err != nil {
		t.Fatalf("%s: %v", name, run.Err)
	}
	return run
}

// WantAppError checks that err is an application error of errType with
// the given retryability whose text (the whole chain, which is what
// reaches workflow history) contains every want and none of the forbidden
// strings. It returns that text.
func WantAppError(t testing.TB, err error, errType string, nonRetryable bool, want []string, forbidden ...string) string {
	t.Helper()
	if err == nil {
		t.Fatalf("want a %s error, got success", errType)
	}
	var ae *temporal.ApplicationError
	if !errors.As(err, &ae) {
		t.Fatalf("error %v is not an ApplicationError", err)
	}
	if ae.Type() != errType {
		t.Errorf("error type %q, want %q (%v)", ae.Type(), errType, err)
	}
	if ae.NonRetryable() != nonRetryable {
		t.Errorf("nonRetryable %v, want %v (%v)", ae.NonRetryable(), nonRetryable, err)
	}
	msg := FullText(err)
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not contain %q", msg, w)
		}
	}
	for _, f := range forbidden {
		if f != "" && strings.Contains(msg, f) {
			t.Errorf("error %q leaks %q", msg, f)
		}
	}
	return msg
}

// FullText is every message in the error chain, one a line.
func FullText(err error) string {
	var b strings.Builder
	for e := err; e != nil; e = errors.Unwrap(e) {
		b.WriteString(e.Error())
		b.WriteString("\n")
	}
	return b.String()
}
