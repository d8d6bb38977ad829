package image

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/stagehand-dev/stagehand/activities"
)

// syncBuffer is a log sink tests read while steps write to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// newLogger returns a logger writing text to the returned buffer.
func newLogger() (*slog.Logger, *syncBuffer) {
	var b syncBuffer
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}

// stepRun is what one step execution produced.
type stepRun struct {
	outputs    map[string]any
	err        error
	heartbeats []string // JSON of each heartbeat's details
}

// runStep runs a step type the way a worker does: through the catalogue
// adapter, registered under its name in a test activity environment.
func runStep(t testing.TB, a *Activities, name string, with map[string]any) stepRun {
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
	var mu sync.Mutex
	var run stepRun
	env.SetOnActivityHeartbeatListener(func(_ *activity.Info, details converter.EncodedValues) {
		var d any
		if details.HasValues() && details.Get(&d) == nil {
			b, _ := json.Marshal(d)
			mu.Lock()
			run.heartbeats = append(run.heartbeats, string(b))
			mu.Unlock()
		}
	})
	env.RegisterActivityWithOptions(step.Handler, activity.RegisterOptions{Name: name})
	val, err := env.ExecuteActivity(name, activities.StepRequest{StepID: "img", With: with})
	if err != nil {
		run.err = err
		return run
	}
	var res activities.StepResult
	if err := val.Get(&res); err != nil {
		t.Fatal(err)
	}
	run.outputs = res.Outputs
	return run
}

func mustStep(t testing.TB, a *Activities, name string, with map[string]any) stepRun {
	t.Helper()
	run := runStep(t, a, name, with)
	if run.err != nil {
		t.Fatalf("%s: %v", name, run.err)
	}
	return run
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
