package git

import (
	"errors"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/activities"
)

func newActivities(t testing.TB) *Activities {
	return &Activities{WorkDir: t.TempDir(), CommandTimeout: time.Minute}
}

// runStep runs a step type the way a worker does: through the catalogue
// adapter, registered under its name in a test activity environment.
func runStep(t testing.TB, a *Activities, name string, with map[string]any) (map[string]any, error) {
	t.Helper()
	var step activities.StepType
	for _, s := range StepTypes(a) {
		if s.Name == name {
			step = s
		}
	}
	if step.Handler == nil {
		t.Fatalf("no step type %s", name)
	}
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.RegisterActivityWithOptions(step.Handler, activity.RegisterOptions{Name: name})
	val, err := env.ExecuteActivity(name, activities.StepRequest{StepID: "merge", With: with})
	if err != nil {
		return nil, err
	}
	var res activities.StepResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	return res.Outputs, nil
}

func mustStep(t testing.TB, a *Activities, name string, with map[string]any) map[string]any {
	t.Helper()
	out, err := runStep(t, a, name, with)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return out
}

// wantAppError checks the error type, retryability and that the message
// contains every want and none of the forbidden strings.
func wantAppError(t testing.TB, err error, errType string, nonRetryable bool, want []string, forbidden ...string) {
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
	msg := fullText(err)
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
}

// fullText is every message in the error chain, which is what reaches
// workflow history.
func fullText(err error) string {
	var b strings.Builder
	for e := err; e != nil; e = errors.Unwrap(e) {
		b.WriteString(e.Error())
		b.WriteString("\n")
	}
	return b.String()
}
